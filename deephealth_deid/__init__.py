"""deephealth_deid: de-identify medical images for research sharing.

Finds and removes the facial features in head MRI, and the patient data burned
into the pixels of radiographs, ultrasound and screen captures. Importing the
package is light: no compute engine (PyTorch, EDDL) is imported until a
function that needs one runs, and the text-removal half (``redact_*``) is
imported on first use, so a defacing job does not pay for it.

Example:
    >>> import deephealth_deid as dd
    >>> vol = dd.load_volume("head.nii.gz")  # doctest: +SKIP
    >>> dd.save_volume(vol, "copy.nii.gz")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from . import errors
from ._version import __version__
from .deface import DefaceResult, deface, deface_batch, deface_file
from .errors import DeidError
from .io import Image, Volume, load_image, load_volume, save_image, save_volume

if TYPE_CHECKING:
    from .text import RedactResult, redact_batch, redact_file, redact_text, redact_text_file

#: Names imported from their module on first use.
_LAZY = {
    name: ".text"
    for name in ("RedactResult", "redact_batch", "redact_file", "redact_text", "redact_text_file")
}

__all__ = [
    "__version__",
    "errors",
    "DeidError",
    "Volume",
    "Image",
    "load_volume",
    "save_volume",
    "load_image",
    "save_image",
    "deface",
    "deface_batch",
    "deface_file",
    "DefaceResult",
    "redact_text",
    "redact_file",
    "redact_text_file",
    "redact_batch",
    "RedactResult",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
