"""A brain mask the user has: nothing near it is ever changed.

Research pipelines often hold a brain mask of each head already (FSL's BET,
SynthStrip, FreeSurfer's ``brainmask``, converted to NIfTI). Given one,
:func:`~.pipeline.deface` changes no voxel within :data:`BRAIN_KEEP_MM` of it,
whatever the network labelled and however thin the tissue over the brain is
(a child's temple, an infant's scalp): the depth guard alone keeps what lies
deeper than 10 mm under the skin, and the brain can lie closer than that.

Any voxel above 0 counts as brain. The mask may lie on another grid than the
head (another voxel size or orientation, from a converter that reorders axes):
it is sampled at the head's voxel centres by their position in the world
(nearest neighbour), so its affine must be right.

Example:
    >>> import numpy as np
    >>> from deephealth_deid.io.volume import Volume
    >>> head = Volume(np.zeros((40, 40, 40), np.float32), np.eye(4))
    >>> mask = Volume(np.zeros((40, 40, 40), np.uint8), np.eye(4))
    >>> mask.array[15:25, 15:25, 15:25] = 1
    >>> box = (slice(0, 40), slice(0, 40), slice(0, 40))
    >>> near = near_brain(mask, head, box)
    >>> bool(near[20, 20, 9]), bool(near[20, 20, 8])   # 6 mm and 7 mm from the mask
    (True, False)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..io.volume import Volume
from .conform import Grid, _sample
from .postprocess import grow_box

__all__ = ["BRAIN_KEEP_MM", "MAX_KEPT_SHARE", "check_brain_mask", "kept_features", "near_brain"]

#: No voxel within this distance of the brain mask changes (the landmark criterion's 6 mm).
BRAIN_KEEP_MM = 6.0

#: A brain mask that keeps more than this share of a feature's removal reaches the face: flagged.
#: Each synthetic head's own brain kept at most 2.7% of the eyes', 0% of the nose's and mouth's,
#: and 9.7% of the ears' (thin temples), on 24 held-out heads.
MAX_KEPT_SHARE = 0.2


def check_brain_mask(mask: object, volume: Volume) -> Volume:
    """``mask`` if it can keep the brain of ``volume``; otherwise a ValueError that says why.

    Raises:
        TypeError: Not a :class:`~deephealth_deid.io.volume.Volume`.
        ValueError: Not 3D, empty, or lying wholly outside the head's field of view.
    """
    if not isinstance(mask, Volume):
        raise TypeError(f"brain_mask must be a Volume (dd.load_volume(path)), got {type(mask).__name__}")
    if mask.array.ndim != 3:
        raise ValueError(f"the brain mask must be 3D, got an array of shape {mask.array.shape}")
    inside = np.argwhere(mask.array > 0)
    if not len(inside):
        raise ValueError("the brain mask holds no voxel above 0")
    # Its voxels' extent, in the head's voxel coordinates.
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    lo, hi = inside.min(axis=0), inside.max(axis=0)
    points = lo + corners * (hi - lo)
    m = np.linalg.inv(volume.affine) @ mask.affine
    ijk = points @ m[:3, :3].T + m[:3, 3]
    if (ijk.max(axis=0) < -0.5).any() or (ijk.min(axis=0) > np.array(volume.shape[:3]) - 0.5).any():
        raise ValueError(
            "the brain mask lies wholly outside the head's field of view: it belongs to another image, or "
            "its header (affine) does not place it on this one"
        )
    return mask


def kept_features(labels: np.ndarray, near: np.ndarray, names: dict[int, str]) -> list[str]:
    """QC flags for the features (label value -> name) whose removal (``labels``) the brain mask
    (``near``) keeps in large part."""
    flags = []
    for value, name in names.items():
        total = int(np.count_nonzero(labels == value))
        kept = int(np.count_nonzero(near & (labels == value)))
        if total and kept > MAX_KEPT_SHARE * total:
            flags.append(
                f"the brain mask keeps {kept / total:.0%} of the {name} to be removed: a mask that reaches "
                "the face keeps it identifiable; check the brain mask"
            )
    return flags


def near_brain(
    mask: Volume, volume: Volume, box: tuple[slice, ...], keep_mm: float = BRAIN_KEEP_MM
) -> np.ndarray:
    """Which voxels of ``volume[box]`` lie within ``keep_mm`` of the brain ``mask``.

    Worked out on the box grown by ``keep_mm`` (the brain voxels that count
    lie there), on the head's own voxels.
    """
    spacing = np.asarray(volume.spacing, dtype=np.float64)
    pad = np.ceil(keep_mm / spacing).astype(int) + 1
    grown = grow_box(box, pad, volume.shape[:3])
    corner = np.eye(4)
    corner[:3, 3] = [s.start for s in grown]
    shape = tuple(s.stop - s.start for s in grown)
    brain = _sample(
        (mask.array > 0).astype(np.uint8), mask.affine, Grid(shape, volume.affine @ corner), order=0, cval=0
    )
    if not brain.any():
        return np.zeros(tuple(s.stop - s.start for s in box), bool)
    near = ndimage.distance_transform_edt(brain == 0, sampling=spacing) <= keep_mm
    inner = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(box, grown, strict=True))
    return near[inner]
