"""From raw network labels to a safe removal mask.

Four steps, each one a safeguard against a known way defacers fail:

1. keep plausible components: at most two eyes, one nose, one mouth, two ears,
   and nothing smaller than a real feature (stray voxels in the brain or the
   background are dropped);
2. grow the mask by a margin in mm over the head's surface layer (cheap
   insurance for thin structures such as the pinnae and the lids);
3. the guard: nothing deeper than ``max_depth_mm`` under the skin is ever
   masked. The brain lies at least ~13 mm under the skin (scalp, skull, CSF)
   and the eyeball centres ~10 mm or more, so they stay bit-identical
   whatever the network predicts (the front of an eyeball, under the lid,
   does not; nor does a brain under a child's thin temple, nor bone under
   thin skin). The nose and the mouth below the eyes may go
   :data:`LOWER_FACE_EXTRA_MM` deeper (:func:`lower_face`). Depth is measured from air
   that was imaged (a field of view's cut is not skin), and nothing more than
   :data:`OUTLINE_DEPTH_MM` inside the head's outline is masked
   (:func:`guard_depth`): air that reaches into the head (the nasal cavity
   through the nostrils, a parted mouth, gaps in a faint skin) would
   otherwise make the bone and the brain beside it look shallow;
4. the face fill: the skin between the eyes, the nose and the mouth (the
   nasion, the bridge and the dorsum of the nose, where the network's labels
   are thinnest and where a cut field of view leaves only part of a nose) is
   peeled to ``face_depth_mm`` inside the outline of the features found, seen
   from the front; each ear likewise inside its outline seen from its side,
   so a pinna the network labelled in part goes whole. Air inside the head
   (nasal cavity, mouth) and everything deeper stay.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage

__all__ = [
    "FACE_LABELS",
    "MAX_COMPONENTS",
    "convex_outline",
    "fill_face",
    "open_box",
    "grow_and_guard",
    "guard_depth",
    "holes",
    "keep_plausible_components",
    "grow_box",
    "mask_box",
    "surface_depth",
    "to_ras",
]

#: Most components each feature may have (1 eyes, 2 nose, 3 mouth, 4 ears).
MAX_COMPONENTS: dict[int, int] = {1: 2, 2: 1, 3: 1, 4: 2}
#: Smallest plausible component, in mm^3, per feature.
MIN_VOLUME_MM3: dict[int, float] = {1: 150.0, 2: 300.0, 3: 200.0, 4: 300.0}
#: A second eye or ear must be at least this fraction of the first one's volume.
TWIN_MIN_FRACTION = 0.2


def holes(mask: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The holes of ``mask``, in 3D (``axes`` all three) or in every 2D slice across the missing axis.

    A hole is a component of the background (face-connected along ``axes``)
    that does not reach the array's border along them: what
    ``scipy.ndimage.binary_fill_holes`` fills, found with one labelling
    instead of its iterated dilation (twice as fast on a head, and one call
    for all slices).
    """
    structure = np.zeros((3, 3, 3), bool)
    structure[1, 1, 1] = True
    for axis in axes:
        for end in (0, 2):
            at = [1, 1, 1]
            at[axis] = end
            structure[tuple(at)] = True
    labels, n = ndimage.label(~mask, structure=structure)
    outside = np.zeros(n + 1, bool)
    outside[0] = True  # the mask itself
    for axis in axes:
        outside[np.take(labels, 0, axis=axis)] = True
        outside[np.take(labels, -1, axis=axis)] = True
    return ~outside[labels]


def keep_plausible_components(labels: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Keep, per feature, its largest components up to :data:`MAX_COMPONENTS`, each big enough."""
    voxel = float(np.prod(spacing))
    out = np.zeros_like(labels)
    # Each feature is labelled in its own bounding box only: the features are small, the array is not.
    boxes = ndimage.find_objects(labels, max_label=max(MAX_COMPONENTS))
    for value, most in MAX_COMPONENTS.items():
        box = boxes[value - 1]
        if box is None:
            continue
        comp, _ = ndimage.label(labels[box] == value)
        sizes = np.bincount(comp.ravel())[1:] * voxel
        order = np.argsort(sizes)[::-1][:most]
        keep = [
            i + 1
            for i in order
            if sizes[i] >= MIN_VOLUME_MM3[value] and sizes[i] >= sizes[order[0]] * TWIN_MIN_FRACTION
        ]
        out[box][np.isin(comp, keep)] = value
    return out


def surface_depth(head: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Distance in mm from each voxel to the nearest voxel outside the head (0 outside).

    The head mask is closed and filled first, so the nasal cavity, the mouth and
    the ear canals count as inside: depth is measured from the outer skin.
    """
    depth = np.zeros(head.shape, np.float32)
    # Worked out in the head's box grown by the closing's reach and one voxel of air: the same
    # values as on the whole array (every voxel beyond is air, farther than the box's own), in
    # a third of the time on a conformed head.
    box = _head_box(head, spacing)
    if box is None:
        return depth
    depth[box] = ndimage.distance_transform_edt(_fill(head[box], spacing), sampling=spacing)
    return depth


#: The head's outline: its mask closed by this radius, which seals the nostrils, a parted mouth
#: and gaps in a faint skin, and bridges the face's hollows (eye sockets, the sides of the nose).
OUTLINE_CLOSING_MM = 12.0
#: Nothing deeper than this inside the outline is masked. Every removal target lies within
#: 10 mm of the skin; a hollow the outline bridges adds a few mm more.
OUTLINE_DEPTH_MM = 18.0
#: The depth given to voxels out of the guard's reach.
OUT_OF_REACH_MM = 1000.0


def guard_depth(head: np.ndarray, seen: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Depth under the skin (mm) for the guard: :data:`OUT_OF_REACH_MM` where it cannot be trusted.

    Like :func:`surface_depth`, but measured from imaged air only (voxels
    outside ``seen``, the scan's field of view, count as inside: a cut is not
    skin), and :data:`OUT_OF_REACH_MM` for every voxel more than
    :data:`OUTLINE_DEPTH_MM` inside the head's outline (:data:`OUTLINE_CLOSING_MM`).
    """
    filled = np.zeros(head.shape, bool)
    box = _head_box(head, spacing)
    if box is not None:
        filled[box] = _fill(head[box], spacing)
    # The depth and what lies out of reach are independent: two threads (the distance transforms
    # let go of the GIL), unless a batch job was given one core.
    if _workers() == 1:
        depth, inner = _depth_from(filled, seen, spacing), _out_of_reach(filled, seen, spacing)
    else:
        with ThreadPoolExecutor(2) as pool:
            job = pool.submit(_depth_from, filled, seen, spacing)
            inner = _out_of_reach(filled, seen, spacing)
            depth = job.result()
    depth[inner] = OUT_OF_REACH_MM
    return depth


def _depth_from(filled: np.ndarray, seen: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    return ndimage.distance_transform_edt(filled | ~seen, sampling=spacing).astype(np.float32)


def _out_of_reach(filled: np.ndarray, seen: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Voxels more than :data:`OUTLINE_DEPTH_MM` inside the outline, or inside what was not imaged."""
    outline = _outline(filled, spacing)
    return ndimage.distance_transform_edt(outline | ~seen, sampling=spacing) > OUTLINE_DEPTH_MM


def _outline(filled: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """``filled`` closed by :data:`OUTLINE_CLOSING_MM`, the world beyond the array being air.

    Worked out in the mask's box grown by the closing's reach (the closing
    never leaves it), zeros standing in for what lies beyond the array.
    """
    reach = np.ceil(OUTLINE_CLOSING_MM / np.asarray(spacing)).astype(int) + 1
    found = ndimage.find_objects(filled.astype(np.uint8))
    if not found:
        return filled.copy()
    padded = np.pad(filled, [(int(r), int(r)) for r in reach])
    # The box in the padded array: the mask's box grown by the reach on every side.
    box = tuple(slice(b.start, b.stop + 2 * int(r)) for b, r in zip(found[0], reach, strict=True))
    part = padded[box]
    grown = ndimage.distance_transform_edt(~part, sampling=spacing) <= OUTLINE_CLOSING_MM
    closed = ndimage.distance_transform_edt(grown, sampling=spacing) > OUTLINE_CLOSING_MM
    out = np.zeros(padded.shape, bool)
    out[box] = closed
    return out[tuple(slice(int(r), -int(r)) for r in reach)] | filled


def mask_box(mask: np.ndarray, pad: int | Sequence[int] = 0) -> tuple[slice, ...] | None:
    """The bounding box of ``mask`` grown by ``pad`` voxels (per axis, or the same on all),
    clipped to the array; ``None`` when the mask is empty."""
    found = ndimage.find_objects(np.asarray(mask, dtype=np.uint8))
    if not found:
        return None
    return grow_box(found[0], pad, mask.shape)


def grow_box(box: tuple[slice, ...], pad: int | Sequence[int], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``box`` grown by ``pad`` voxels (per axis, or the same on all), clipped to an array of ``shape``."""
    pads = np.broadcast_to(np.asarray(pad, dtype=int), (len(box),))
    return tuple(
        slice(max(0, b.start - int(p)), min(n, b.stop + int(p)))
        for b, p, n in zip(box, pads, shape, strict=True)
    )


def _closing_radius(spacing: tuple[float, float, float]) -> np.ndarray:
    """Voxels along each axis of the 3 mm closing that :func:`surface_depth` applies first."""
    return np.maximum(1, np.round(3.0 / np.asarray(spacing)).astype(int))


def _head_box(head: np.ndarray, spacing: tuple[float, float, float]) -> tuple[slice, ...] | None:
    """The box :func:`_fill` needs: the head's, grown by the closing's reach and one voxel of air."""
    return mask_box(head, _closing_radius(spacing) + 1)


def _fill(head: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    r = _closing_radius(spacing)
    structure = np.ones(tuple(2 * r + 1), dtype=bool)
    padded = np.pad(head, [(int(k), int(k)) for k in r])
    closed = ndimage.binary_closing(padded, structure=structure)
    closed = closed[tuple(slice(int(k), -int(k)) for k in r)]
    filled = closed | head
    return filled | holes(filled, (0, 1, 2))


#: The nose and the mouth below the eyes may go this much deeper than the guard: behind them lie
#: the nasal cavity, the maxilla and the teeth, not the brain or the eyeballs.
LOWER_FACE_EXTRA_MM = 3.0
#: Below the eyes: more than this far below the mean height of the eye voxels.
BELOW_EYES_MM = 10.0


def lower_face(labels: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Voxels more than :data:`BELOW_EYES_MM` below the eyes' mean height (RAS superior axis).

    All False where no eye is labelled: without the eyes, nothing is known to
    be below them.
    """
    eyes = np.argwhere(labels == 1)
    if not len(eyes):
        return np.zeros(labels.shape, bool)
    level = to_ras(eyes, affine)[:, 2].mean() - BELOW_EYES_MM
    height = affine[2, 3] + sum(
        affine[2, k] * np.arange(n, dtype=np.float64).reshape([-1 if j == k else 1 for j in range(3)])
        for k, n in enumerate(labels.shape)
    )
    return np.broadcast_to(height < level, labels.shape)


def depth_limit(labels: np.ndarray, lower: np.ndarray | None, depth_mm: float) -> np.ndarray | float:
    """The deepest each labelled voxel may lie: ``depth_mm``, and :data:`LOWER_FACE_EXTRA_MM`
    more for the nose and mouth in the ``lower`` face (:func:`lower_face`; None: nowhere)."""
    if lower is None:
        return depth_mm
    return np.where(lower & np.isin(labels, (2, 3)), depth_mm + LOWER_FACE_EXTRA_MM, depth_mm)


def grow_and_guard(
    labels: np.ndarray,
    depth: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    margin_mm: float,
    max_depth_mm: float,
    lower: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Grow each feature by ``margin_mm`` and drop everything deeper than ``max_depth_mm``
    (the nose and mouth in the ``lower`` face: :func:`depth_limit`).

    Returns:
        ``(labels, clipped)``: the final labels and how many voxels the guard
        removed from the network's own (ungrown) prediction — a sign the
        prediction reached too deep.
    """
    fg = labels > 0
    grown = labels.copy()
    if margin_mm > 0 and fg.any():
        _grow(grown, labels, spacing, margin_mm)
    deep = depth > depth_limit(grown, lower, max_depth_mm)
    clipped = int((fg & deep).sum())
    grown[deep] = 0
    return grown, clipped


def _grow(out: np.ndarray, labels: np.ndarray, spacing: tuple[float, float, float], margin_mm: float) -> None:
    """Give every voxel within ``margin_mm`` of a feature the label of the nearest one, in ``out``.

    One distance transform per connected group of features, each in the
    group's own box grown by the margin: the same result as one transform over
    the whole array, in a fraction of the time (the features are small, the
    box around all of them is not).
    """
    pad = np.ceil(margin_mm / np.asarray(spacing)).astype(int) + 1
    best = np.full(labels.shape, np.inf, dtype=np.float32)
    comp, _ = ndimage.label(labels > 0)
    for k, sl in enumerate(ndimage.find_objects(comp), start=1):
        if sl is None:
            continue
        box = grow_box(sl, pad, labels.shape)
        part = comp[box] == k
        dist, nearest = ndimage.distance_transform_edt(~part, sampling=spacing, return_indices=True)
        closer = (dist <= margin_mm) & (dist < best[box]) & ~(labels[box] > 0)
        out[box][closer] = labels[box][tuple(n[closer] for n in nearest)]
        best[box][closer] = dist[closer]


#: The central face: eyes, nose and mouth (each ear is filled from its own outline).
FACE_LABELS: tuple[int, ...] = (1, 2, 3)


def fill_face(
    labels: np.ndarray,
    depth: np.ndarray,
    tissue: np.ndarray,
    affine: np.ndarray,
    *,
    face_depth_mm: float,
    margin_mm: float,
) -> np.ndarray:
    """Add the skin between the features to ``labels``: the face, and around each ear.

    Seen from the front, the face is the outline (convex hull) of the eye,
    nose and mouth voxels in the subject's left-right / up-down plane, grown by
    ``margin_mm``. A voxel is added when it lies in that outline, no further
    back than the features' rearmost voxel, within ``face_depth_mm`` of the
    skin (``0 < depth <= face_depth_mm``), and is tissue, not air. Each ear is
    filled the same way seen from its side: the outline of its voxels in the
    front-back / up-down plane, no further in than its innermost voxel. A voxel
    takes the label of the nearest feature voxel. The face is not filled
    without eyes, nor an ear without a side to look from (eyes, or both ears).

    Args:
        labels: Labels 0-4 (a modified copy is returned).
        depth: Depth under the skin in mm, same shape (0 outside the head).
        tissue: Voxels brighter than air, same shape.
        affine: Voxel indices of ``labels`` to RAS mm.
        face_depth_mm: How deep under the skin the fill goes; 0 turns it off.
        margin_mm: How far beyond the outlines and behind the features the fill reaches.

    Returns:
        The labels with the face and the ears filled.
    """
    if face_depth_mm <= 0 or not (labels > 0).any():
        return labels
    out = labels.copy()
    if (labels == 1).any():
        face = np.argwhere(np.isin(labels, FACE_LABELS))
        _fill_outline(out, labels, face, depth, tissue, affine, (0, 2), 1, 1.0, face_depth_mm, margin_mm)
    for ear, side in _ears(labels, affine):
        _fill_outline(out, labels, ear, depth, tissue, affine, (1, 2), 0, side, face_depth_mm, margin_mm)
    return out


def _ears(labels: np.ndarray, affine: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Each ear's voxel indices and the side it is seen from (-1: the subject's left, +1: right).

    The side comes from the ear's place against the eyes' midline, or, without
    eyes, against the other ear; a lone ear without eyes is left as labelled.
    """
    comp, n = ndimage.label(labels == 4)
    ears = [np.argwhere(comp == k) for k in range(1, n + 1)]
    centres = [to_ras(e, affine)[:, 0].mean() for e in ears]
    if (labels == 1).any():
        midline = to_ras(np.argwhere(labels == 1), affine)[:, 0].mean()
    elif len(ears) == 2:
        midline = float(np.mean(centres))
    else:
        return []
    return [(e, 1.0 if c > midline else -1.0) for e, c in zip(ears, centres, strict=True)]


def _fill_outline(
    out: np.ndarray,
    labels: np.ndarray,
    feature: np.ndarray,
    depth: np.ndarray,
    tissue: np.ndarray,
    affine: np.ndarray,
    plane: tuple[int, int],
    axis: int,
    direction: float,
    depth_mm: float,
    margin_mm: float,
) -> None:
    """Label in ``out`` the shallow tissue inside the outline of ``feature`` seen along ``axis``.

    ``feature`` holds voxel indices, seen from ``direction`` (+1 or -1) along RAS
    ``axis``; ``plane`` names the two RAS axes of the outline. Voxels count when
    they lie within ``margin_mm`` of the outline, no further from the viewer
    than ``margin_mm`` beyond the feature's farthest voxel, at
    ``0 < depth <= depth_mm``, are tissue and unlabelled.
    """
    ras = to_ras(feature, affine)
    outline = convex_outline(ras[:, list(plane)])
    if outline is None:  # too few points, or all on one line
        return
    sub = open_box(ras, affine, labels.shape, margin_mm, axis, direction)
    corner = np.array([sl.start for sl in sub])
    idx = np.argwhere(tissue[sub] & (depth[sub] > 0) & (depth[sub] <= depth_mm) & (labels[sub] == 0))
    cand = to_ras(idx + corner, affine)
    # Towards the viewer from the farthest feature voxel, and inside the outline grown by the
    # margin: for every edge (unit normal n, offset b) n.p + b <= margin.
    keep = direction * cand[:, axis] >= (direction * ras[:, axis]).min() - margin_mm
    normals, offsets = outline
    keep[keep] = (cand[keep][:, list(plane)] @ normals.T + offsets <= margin_mm).all(axis=1)
    if not keep.any():
        return
    idx = idx[keep]
    values = labels[tuple(feature.T)]
    if (values == values[0]).all():  # one label (an ear): no need to look for the nearest voxel
        out[sub][tuple(idx.T)] = values[0]
        return
    out[tuple((idx + corner).T)] = labels[tuple(_nearest(feature, idx + corner, affine).T)]


#: Largest box (voxels) whose distance transform finds the nearest feature voxels (13 bytes each).
_MAX_TRANSFORM_VOXELS = 20_000_000


def _nearest(feature: np.ndarray, points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """For each voxel index in ``points``, the index of the nearest ``feature`` voxel, in mm.

    One distance transform of the box around both (in mm along the voxel axes: true distances
    when the axes are at right angles, as in almost every scan). A sheared grid (a CT gantry
    tilt), or a box too large to transform, is searched with a k-d tree instead.
    """
    both = np.concatenate([points, feature])
    lo = both.min(axis=0)
    shape = tuple(both.max(axis=0) - lo + 1)
    columns = affine[:3, :3]
    gram = columns.T @ columns
    right_angles = np.abs(gram - np.diag(np.diag(gram))).max() <= 1e-6 * np.abs(gram).max()
    if right_angles and np.prod(shape, dtype=np.float64) <= _MAX_TRANSFORM_VOXELS:
        outside = np.ones(shape, bool)
        outside[tuple((feature - lo).T)] = False
        nearest = ndimage.distance_transform_edt(
            outside, sampling=np.sqrt(np.diag(gram)), return_distances=False, return_indices=True
        )
        return nearest[(slice(None), *(points - lo).T)].T + lo
    from scipy.spatial import cKDTree  # 0.18 s to import: only for these grids

    _, k = cKDTree(to_ras(feature, affine)).query(to_ras(points, affine), workers=_workers())
    return feature[k]


def convex_outline(points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The convex hull of 2D ``points`` as its edges' unit outward normals ``(k, 2)`` and offsets ``(k,)``.

    A point ``p`` is inside when ``normals @ p + offsets <= 0`` for every edge
    (Qhull's ``equations``). ``None`` when the points span no area (fewer than
    three, or all on one line). Andrew's monotone chain, after dropping the
    points inside the octagon of the extreme points (none of them can be a
    corner of the hull).

    Example:
        >>> normals, offsets = convex_outline(np.array([[0, 0], [2, 0], [2, 1], [0, 1], [1, 0.5]]))
        >>> bool((np.array([1.0, 0.5]) @ normals.T + offsets <= 0).all())
        True
        >>> len(offsets), convex_outline(np.array([[0, 0], [1, 1], [2, 2]])) is None
        (4, True)
    """
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 3:
        return None
    pts = np.unique(_outside_octagon(pts), axis=0)  # sorted by x, then y
    hull = _half_hull(pts)[:-1] + _half_hull(pts[::-1])[:-1]  # counter-clockwise
    if len(hull) < 3:
        return None
    corners = np.array(hull)
    edges = np.roll(corners, -1, axis=0) - corners
    length = np.hypot(edges[:, 0], edges[:, 1])
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1) / length[:, None]
    return normals, -(normals * corners).sum(axis=1)


def _outside_octagon(pts: np.ndarray) -> np.ndarray:
    """``pts`` less those strictly inside the polygon of the extremes along 8 directions."""
    keys = np.stack([pts[:, 0], pts[:, 0] + pts[:, 1], pts[:, 1], pts[:, 1] - pts[:, 0]], axis=1)
    poly = pts[np.concatenate([keys.argmax(axis=0), keys.argmin(axis=0)])]  # counter-clockwise
    poly = poly[(poly != np.roll(poly, 1, axis=0)).any(axis=1)]  # a corner extreme two ways
    if len(poly) < 3:
        return pts
    inside = np.ones(len(pts), bool)
    for (ax, ay), (bx, by) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        inside &= (bx - ax) * (pts[:, 1] - ay) - (by - ay) * (pts[:, 0] - ax) > 0
    return pts[~inside]


def _half_hull(pts: np.ndarray) -> list[np.ndarray]:
    """One half of Andrew's monotone chain: left turns only (a point on a line with the last two,
    to rounding, is not a corner)."""
    chain: list[np.ndarray] = []
    for p in pts:
        while len(chain) >= 2:
            (ax, ay), (bx, by) = chain[-2], chain[-1]
            u, v = (bx - ax, by - ay), (p[0] - ax, p[1] - ay)
            if u[0] * v[1] - u[1] * v[0] > 1e-12 * (abs(u[0]) + abs(u[1])) * (abs(v[0]) + abs(v[1])):
                break
            chain.pop()
        chain.append(p)
    return chain


def _workers() -> int:
    """Threads of a query: the job's share of the cores under ``deid *-batch --jobs``, else all (-1)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else -1


def open_box(
    ras: np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, ...],
    margin_mm: float,
    axis: int = 0,
    direction: float = 0.0,
) -> tuple[slice, ...]:
    """Index box holding the RAS box of ``ras`` grown by ``margin_mm``.

    With a ``direction`` (+1 or -1), the box is open along RAS ``axis`` that way, up to the
    array's edge.
    """
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in shape], indexing="ij")).reshape(3, -1).T
    edge = to_ras(corners, affine)[:, axis]
    lo, hi = ras.min(axis=0) - margin_mm, ras.max(axis=0) + margin_mm
    if direction > 0:
        hi[axis] = max(hi[axis], edge.max())
    elif direction < 0:
        lo[axis] = min(lo[axis], edge.min())
    box = np.array(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij")).reshape(3, -1).T
    inv = np.linalg.inv(affine)
    ijk = box @ inv[:3, :3].T + inv[:3, 3]
    first = np.clip(np.floor(ijk.min(axis=0)).astype(int) - 1, 0, shape)
    last = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 2, 0, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(first, last, strict=True))


def to_ras(idx: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``(n, 3)`` voxel indices to ``(n, 3)`` RAS mm."""
    return idx @ affine[:3, :3].T + affine[:3, 3]
