"""deephealth_deid: de-identify medical images for research sharing.

Finds and removes the facial features in head MRI, and the patient data burned
into the pixels of radiographs, ultrasound and screen captures. Importing the
package is light: no compute engine (PyTorch, EDDL) is imported until a
function that needs one runs.

Example:
    >>> import deephealth_deid as dd
    >>> vol = dd.load_volume("head.nii.gz")  # doctest: +SKIP
    >>> dd.save_volume(vol, "copy.nii.gz")  # doctest: +SKIP
"""

from __future__ import annotations

import logging

from . import errors
from ._version import __version__
from .deface import DefaceResult, deface, deface_batch, deface_file
from .errors import DeidError
from .io import Image, Volume, load_image, load_volume, save_image, save_volume
from .text import RedactResult, redact_batch, redact_file, redact_text, redact_text_file

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
