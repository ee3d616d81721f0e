"""Defacing: remove the eyes (lids), nose, mouth (lips) and ears (pinnae) from head MRI."""

from __future__ import annotations

from .files import deface_file, write_qc_png
from .pipeline import FEATURE_NAMES, DefaceQC, DefaceResult, deface

__all__ = ["FEATURE_NAMES", "DefaceQC", "DefaceResult", "deface", "deface_file", "write_qc_png"]
