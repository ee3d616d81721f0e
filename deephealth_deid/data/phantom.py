"""A small labelled head phantom built from ellipsoids: the built-in example.

It is not a training generator: one fixed, smooth head with the tissue classes
and the identifying features in their places, made in well under a second, so
that ``deid demo``, the docs and the tests have a head without any download.
"""

from __future__ import annotations

import numpy as np

from ..io.volume import Volume

__all__ = ["LABELS", "FEATURES", "make_phantom_head"]

#: Label values of the phantom. 1-4 are the identifying features, as everywhere in the library.
LABELS: dict[str, int] = {
    "background": 0,
    "eyes": 1,
    "nose": 2,
    "mouth": 3,
    "ears": 4,
    "skin": 5,
    "fat": 6,
    "skull": 7,
    "csf": 8,
    "brain": 9,
    "eyeball": 10,
    "airway": 11,
}
#: The identifying features: label value -> name.
FEATURES: dict[int, str] = {1: "eyes", 2: "nose", 3: "mouth", 4: "ears"}

# T1-like intensity of each label (0-1000).
_T1 = {0: 0, 1: 520, 2: 520, 3: 540, 4: 500, 5: 520, 6: 820, 7: 120, 8: 180, 9: 700, 10: 160, 11: 10}


def make_phantom_head(*, spacing: float = 1.5, noise: float = 12.0, seed: int = 0) -> tuple[Volume, Volume]:
    """Make a T1-like head and its label map, RAS, isotropic ``spacing`` mm.

    Args:
        spacing: Voxel size in mm (the head is about 150 x 200 x 190 mm).
        noise: Standard deviation of the Rician-like noise added to the image.
        seed: Seed of the noise.

    Returns:
        ``(image, labels)``: an int16 image and a uint8 label map (values in
        :data:`LABELS`) sharing one affine.

    Example:
        >>> image, labels = make_phantom_head(spacing=3.0)
        >>> sorted(set(np.unique(labels.array)) & set(FEATURES))
        [1, 2, 3, 4]
    """
    fov = np.array([180.0, 230.0, 210.0])  # x (L-R), y (P-A), z (I-S) in mm
    shape = tuple(round(f / spacing) for f in fov)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -fov / 2 + spacing / 2
    ijk = np.indices(shape, dtype=np.float32)
    x, y, z = (ijk[a] * spacing + affine[a, 3] for a in range(3))

    def ell(cx: float, cy: float, cz: float, rx: float, ry: float, rz: float) -> np.ndarray:
        return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1.0

    lab = np.zeros(shape, np.uint8)
    head = ell(0, 0, 10, 74, 96, 92) | ell(0, 20, -45, 58, 70, 45)  # cranium + face/jaw
    lab[head] = LABELS["skin"]
    lab[ell(0, 0, 10, 70, 92, 88) | ell(0, 20, -45, 54, 66, 41)] = LABELS["fat"]
    lab[ell(0, 0, 12, 66, 88, 84)] = LABELS["skull"]
    lab[ell(0, 0, 14, 60, 82, 78)] = LABELS["csf"]
    lab[ell(0, -2, 16, 57, 79, 74)] = LABELS["brain"]
    inner = ell(0, 0, 10, 70, 92, 88) | ell(0, 20, -45, 54, 66, 41)
    for side in (-1, 1):
        cx = side * 32
        globe = ell(cx, 71, -18, 11, 11, 11)
        lid = ell(cx, 81, -18, 14, 5, 10) & ~globe
        lab[lid & ~ell(0, 0, 12, 66, 88, 84)] = LABELS["eyes"]
        lab[globe] = LABELS["eyeball"]
        lab[ell(side * 77, -8, -20, 3, 16, 30) & ~head] = LABELS["ears"]  # pinna, 6 mm thick
    # Nose: a wedge on the midline that grows forward downwards; airway behind it.
    t = np.clip((-15.0 - z) / 47.0, 0.0, 1.0)
    reach = 82.0 + 24.0 * t
    nose = (z < -15) & (z > -62) & (y >= 60) & (y <= reach)
    nose &= np.abs(x) <= 3.0 + 11.0 * t * np.clip((reach - y) / (24.0 * t + 1e-3), 0.0, 1.0)
    lab[nose & ~inner] = LABELS["nose"]
    lab[ell(0, 66, -45, 5, 12, 12)] = LABELS["airway"]
    lab[ell(0, 76, -75, 22, 5, 7) & ~ell(0, 20, -45, 52, 62, 39)] = LABELS["mouth"]
    image = np.vectorize(_T1.get, otypes=[np.float32])(lab)
    rng = np.random.default_rng(seed)
    bias = 1.0 + 0.1 * (z / 100.0) - 0.05 * (y / 100.0)
    image = image * bias
    image = np.hypot(image + rng.normal(0, noise, shape), rng.normal(0, noise, shape))
    img_vol = Volume(np.round(image).astype(np.int16), affine)
    return img_vol, Volume(lab, affine)
