"""Reading and writing volumes and images: the only package that knows file formats.

Downstream code receives a :class:`Volume` (array + affine + source) or an
:class:`Image` (frames + photometric meaning + source) and never touches
nibabel or pydicom.
"""

from __future__ import annotations

from .api import load_image, load_volume, save_image, save_volume
from .image import Image
from .volume import Volume

__all__ = ["Volume", "Image", "load_volume", "save_volume", "load_image", "save_image"]
