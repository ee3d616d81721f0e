"""Network specs: each network defined once, built by every engine from the same spec.

Nothing here imports an engine: a spec is plain data (a frozen dataclass that
round-trips through JSON/YAML), and the engines in :mod:`deephealth_deid.engines`
turn it into a model.
"""

from __future__ import annotations

from .unet import (
    DEFACE_CLASSES,
    NORMS,
    TEXT_CLASSES,
    UPSAMPLES,
    UNetSpec,
    crop_padding,
    deface_unet_spec,
    pad_to_multiple,
    padded_shape,
    padding_for,
    text_unet_spec,
)

__all__ = [
    "DEFACE_CLASSES",
    "NORMS",
    "TEXT_CLASSES",
    "UPSAMPLES",
    "UNetSpec",
    "crop_padding",
    "deface_unet_spec",
    "pad_to_multiple",
    "padded_shape",
    "padding_for",
    "text_unet_spec",
]
