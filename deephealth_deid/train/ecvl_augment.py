"""ECVL's augmentations on training volumes (``data.ecvl_augmentations`` with ``data.reader: ecvl``).

The augmentation is written in ECVL's own text format, the one
``ecvl.AugmentationFactory.create`` reads, e.g.::

    SequentialAugmentationContainer
        AugMirror p=0.5
        AugGammaContrast gamma=[0.8,1.2]
    end

It is applied by ECVL to the image and the label map together: geometric
augmentations move both the same way (ECVL resamples the label map by nearest
neighbour), intensity augmentations change the image only. The affine is kept,
so a mirror gives a mirrored subject, which the label classes allow (both eyes,
both ears). Seeded per sample.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..io.ecvl import _ecvl
from ..io.volume import Volume

__all__ = ["check_augmentations", "augment_pair"]


def _create(text: str):
    ecvl = _ecvl()
    try:
        aug = ecvl.AugmentationFactory.create(text)
    except Exception as e:  # ECVL raises RuntimeError with its parser's message
        raise ConfigError(f"data.ecvl_augmentations: ECVL cannot read it ({e})") from e
    if aug is None:
        raise ConfigError("data.ecvl_augmentations: ECVL read no augmentation from it")
    return aug


def check_augmentations(text: str) -> None:
    """Raise :class:`ConfigError` when ECVL cannot build the augmentation ``text``."""
    _create(text)


def augment_pair(image: Volume, labels: Volume, text: str, seed: int) -> tuple[Volume, Volume]:
    """``image`` and ``labels`` augmented together by ECVL (see the module docstring).

    Raises:
        ConfigError: ECVL cannot build the augmentation.
        ValueError: The image and the label map differ in shape.
    """
    if image.shape != labels.shape:
        raise ValueError(f"image {image.shape} and labels {labels.shape} differ in shape")
    ecvl = _ecvl()
    aug = _create(text)
    ecvl.AugmentationParam.SetSeed(int(seed) % (2**31))
    img = ecvl.Image.fromarray(np.ascontiguousarray(image.array, np.float32), "xyz", ecvl.ColorType.none)
    gt = ecvl.Image.fromarray(np.ascontiguousarray(labels.array, np.float32), "xyz", ecvl.ColorType.none)
    aug.Apply(img, gt)
    x, y = np.array(img), np.array(gt)
    if x.shape != image.shape or y.shape != labels.shape:
        raise ConfigError(
            f"data.ecvl_augmentations: the augmentation changed the volume's shape {image.shape} to "
            f"{x.shape}; use augmentations that keep it (mirror, flip, rotate, contrast, noise)"
        )
    return image.with_array(x.astype(np.float32)), labels.with_array(np.rint(y).astype(labels.array.dtype))
