"""Apply a removal mask to a volume: only masked voxels change, the rest stays bit-identical."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["MODES", "apply_mask", "background_values"]

#: How masked voxels are replaced.
MODES = ("zero", "noise", "blur")


def background_values(array: np.ndarray, head: np.ndarray, *, max_samples: int = 200_000) -> np.ndarray:
    """A sample of the air voxels' values (outside the head), for noise that looks like air.

    Every k-th voxel of the volume is looked at, k chosen so that about
    ``max_samples`` of them are air: the whole volume is never copied.
    """
    n_air = head.size - int(np.count_nonzero(head))
    if n_air == 0:
        return np.array([array.min()], dtype=array.dtype)
    step = max(1, n_air // max_samples)
    order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
    values = np.ravel(array, order=order)[::step]
    air = values[~np.ravel(head, order=order)[::step]]
    return air if air.size else array[~head]


def apply_mask(
    array: np.ndarray,
    mask: np.ndarray,
    *,
    mode: str,
    air: np.ndarray,
    spacing: tuple[float, float, float],
    seed: int = 0,
) -> np.ndarray:
    """A copy of ``array`` with the voxels in ``mask`` replaced.

    Args:
        array: Native voxel values (never modified).
        mask: Boolean mask of the voxels to replace.
        mode: ``'zero'``: the air level (the lowest common air value, e.g. 0, or
            -1000 on CT); ``'noise'``: values drawn from the air around the head;
            ``'blur'``: half of a heavy blur (8 mm) of the volume with the
            masked voxels at the air level, plus air noise. In every mode the
            new values depend on nothing inside the mask: the removed tissue
            cannot be recovered from them.
        air: Sample of air values (see :func:`background_values`).
        spacing: Voxel size in mm.
        seed: Seed of the noise.

    Returns:
        The new array, same dtype as ``array``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    out = array.copy()
    n = int(mask.sum())
    if n == 0:
        return out
    rng = np.random.default_rng(seed)
    if mode == "zero":
        level = np.median(air) if air.size else 0
        values = np.full(n, level)
    elif mode == "noise":
        values = rng.choice(air, size=n) if air.size else np.zeros(n)
    else:
        # The masked voxels are set to the air level before blurring, so that nothing of what is
        # removed enters the result: blurring the face itself kept its surface where it was.
        sigma = [8.0 / s for s in spacing]
        source = array.astype(np.float32)
        source[mask] = np.median(air) if air.size else 0
        blurred = ndimage.gaussian_filter(source, sigma, truncate=2.0)
        values = blurred[mask] * 0.5 + (rng.choice(air, size=n) if air.size else 0)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    out[mask] = values.astype(array.dtype)
    return out
