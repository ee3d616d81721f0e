"""Defacing: remove the eyes (lids), nose, mouth (lips) and ears (pinnae) from head MRI."""

from __future__ import annotations

from .batch import deface_batch, find_cases
from .files import deface_file, write_qc_png
from .pipeline import FEATURE_NAMES, DefaceQC, DefaceResult, deface

__all__ = [
    "FEATURE_NAMES",
    "DefaceQC",
    "DefaceResult",
    "deface",
    "deface_batch",
    "deface_file",
    "find_cases",
    "write_qc_png",
]
