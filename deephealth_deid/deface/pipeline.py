"""``deface``: read -> conform -> predict -> map back -> post-process -> apply -> check.

Example:
    >>> import deephealth_deid as dd
    >>> vol = dd.load_volume("head.nii.gz")  # doctest: +SKIP
    >>> out = dd.deface(vol)  # doctest: +SKIP
    >>> out.qc.flags  # doctest: +SKIP
    []
    >>> dd.save_volume(out.volume, "head_defaced.nii.gz")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..io.volume import Volume
from .apply import MODES, apply_mask, background_values
from .brain import check_brain_mask, kept_features, near_brain
from .conform import (
    Grid,
    conform,
    field_of_view,
    grid_depth,
    grid_head,
    head_threshold,
    map_back_labels,
    sample_on_native,
)
from .postprocess import (
    FACE_LABELS,
    LOWER_FACE_EXTRA_MM,
    depth_limit,
    fill_face,
    grow_and_guard,
    guard_depth,
    keep_plausible_components,
    lower_face,
    mask_box,
    open_box,
    to_ras,
)
from .symmetry import complete_pairs

__all__ = ["FEATURE_NAMES", "DefaceQC", "DefaceResult", "deface", "Predictor"]

log = logging.getLogger(__name__)

#: Label value -> feature name, as everywhere in the library.
FEATURE_NAMES: dict[int, str] = {1: "eyes", 2: "nose", 3: "mouth", 4: "ears"}

#: Predicted voxels this much deeper than the guard lie where the brain can begin: flagged.
BRAIN_MARGIN_MM = 5.0
#: Features with the brain behind them (the orbits' roof, the temporal bone): eyes and ears.
NEAR_BRAIN: tuple[int, ...] = (1, 4)
#: The face fill reaches this far beyond the outline of the features found (skin
#: around the eyes, nose and mouth is face too).
FACE_MARGIN_MM = 10.0

#: A predictor maps a conformed image (D, H, W) and its grid to class probabilities (5, D, H, W).
Predictor = Callable[[np.ndarray, Grid], np.ndarray]


@dataclass(frozen=True)
class DefaceQC:
    """What a person checking a case needs to know, without opening it.

    Attributes:
        voxels: Native voxels removed per feature (after margin and guard).
        predicted: Native voxels the network labelled per feature.
        expected: Features whose region lies inside the field of view.
        guard_clipped: Predicted voxels deeper than the guard allows (left out
            of the mask). A few millilitres are usual: the labels of the lids
            and the pinnae reach a little deeper than the guard.
        deep_predicted: Predicted voxels more than :data:`BRAIN_MARGIN_MM`
            deeper than the guard, where the brain can begin (left out of the
            mask too). Flagged from 0.5 ml of eyes or ears (the brain lies
            behind the orbits and the ears) or 5 ml of any feature (a nose
            or mouth label a little deeper than its root lies in front of the
            nasal or oral cavity, not the brain; a large volume means the
            network did not understand the image).
        flags: Reasons to review the case (empty when all is well).
        brain_kept: Voxels of the mask left out because they lay within
            :data:`~.brain.BRAIN_KEEP_MM` of the brain mask given (0 without one).
    """

    voxels: dict[str, int]
    predicted: dict[str, int]
    expected: dict[str, bool]
    guard_clipped: int
    deep_predicted: int = 0
    flags: list[str] = field(default_factory=list)
    brain_kept: int = 0

    @property
    def ok(self) -> bool:
        return not self.flags


@dataclass(frozen=True)
class DefaceResult:
    """The defaced volume, the removal mask (labels 1-4) and the QC record."""

    volume: Volume
    mask: Volume
    qc: DefaceQC


def deface(
    volume: Volume,
    *,
    model: str | None = None,
    engine: str = "auto",
    device: str = "auto",
    mode: str = "zero",
    margin_mm: float = 3.0,
    max_depth_mm: float = 10.0,
    face_depth_mm: float = 10.0,
    seed: int = 0,
    predictor: Predictor | None = None,
    brain_mask: Volume | None = None,
) -> DefaceResult:
    """Remove the eyes (lids), nose, mouth (lips) and ears (pinnae) from a head volume.

    Args:
        volume: A head MRI in any orientation and at any resolution.
        model: Path of a model file; default: the shipped defacing model.
        engine: ``'torch'``, ``'eddl'`` or ``'auto'``.
        device: ``'cpu'``, ``'cuda'`` or ``'auto'``.
        mode: ``'zero'``, ``'noise'`` or ``'blur'`` (see :func:`~.apply.apply_mask`).
        margin_mm: The mask grows by this much over the head's surface layer.
        max_depth_mm: Nothing deeper under the skin is ever changed; keeps the
            brain and the eyeball centres bit-identical. The nose and the mouth
            below the eyes may go :data:`~.postprocess.LOWER_FACE_EXTRA_MM`
            deeper (:func:`~.postprocess.lower_face`).
        face_depth_mm: The skin between the eyes, nose and mouth, and around
            each ear, is removed to this depth too
            (:func:`~.postprocess.fill_face`), so the nasion, the bridge of the
            nose and whole pinnae go even where the network's labels are
            patchy; 0 removes the labelled features only. At most
            ``max_depth_mm``; the nose and mouth below the eyes go as deep as
            they may.
        seed: Seed of the noise modes.
        predictor: Use this instead of a model (tests, custom networks).
        brain_mask: A brain mask of this head (any voxel above 0 is brain; on
            any grid, placed by its affine): no voxel within
            :data:`~.brain.BRAIN_KEEP_MM` of it changes (:mod:`.brain`).

    Returns:
        :class:`DefaceResult`; ``result.volume`` keeps the input's source, so
        :func:`~deephealth_deid.save_volume` writes it in the input's format.
    """
    if not isinstance(volume, Volume):
        raise TypeError(
            f"volume must be a Volume (dd.load_volume(path)), got {type(volume).__name__}; "
            "dd.deface_file(src, dst) defaces a file"
        )
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not (np.isfinite(margin_mm) and margin_mm >= 0):
        raise ValueError(f"margin_mm must be 0 or more, got {margin_mm}")
    if not (np.isfinite(max_depth_mm) and max_depth_mm > 0):
        raise ValueError(f"max_depth_mm must be more than 0, got {max_depth_mm}")
    if not 0 <= face_depth_mm <= max_depth_mm:
        raise ValueError(
            f"face_depth_mm must be from 0 to max_depth_mm ({max_depth_mm}), got {face_depth_mm}"
        )
    if brain_mask is not None:
        check_brain_mask(brain_mask, volume)
    if predictor is None:
        from .model import load_predictor

        predictor, grid_spacing, grid_shape = load_predictor(model, engine=engine, device=device)
    else:
        grid_spacing, grid_shape = 2.0, (112, 128, 128)
    image, grid = conform(volume, spacing=grid_spacing, shape=grid_shape)
    probs = predictor(image, grid)
    probs, notes = complete_pairs(probs, grid_depth(image, grid.spacing) > 0, grid.spacing)
    native_labels = map_back_labels(probs, grid, volume)
    # Everything after prediction happens in the box around the features (plus
    # the margin): the rest of the volume is never touched.
    fill = face_depth_mm > 0
    box = _box(native_labels > 0, volume.spacing, pad_mm=margin_mm + 2.0)
    if box is not None and fill:
        box = _union(box, _fill_box(native_labels, volume, box))
    predicted = _counts(native_labels[box] if box is not None else native_labels[:0])
    labels = np.zeros_like(native_labels)
    clipped = deep = deep_near_brain = brain_kept = 0
    if box is not None:
        sub = keep_plausible_components(native_labels[box], volume.spacing)
        # Depth under the skin, computed on the network grid (RAS, isotropic) and
        # sampled at the native voxels of the box.
        depth_grid = guard_depth(
            grid_head(image, grid.spacing), field_of_view(volume, grid), (grid.spacing,) * 3
        )
        # Half a grid voxel is added so that sampling error can only make the guard stricter.
        depth = sample_on_native(depth_grid, grid, volume, box) + grid.spacing / 2
        # The QC counts by the depth itself: the half voxel that makes the guard strict would
        # count labels just past the guard as deep.
        far = depth - grid.spacing / 2 > max_depth_mm + BRAIN_MARGIN_MM
        deep = int(((sub > 0) & far).sum())
        deep_near_brain = int((np.isin(sub, NEAR_BRAIN) & far).sum())
        corner = np.eye(4)
        corner[:3, 3] = [sl.start for sl in box]
        lower = lower_face(sub, volume.affine @ corner)
        sub, clipped = grow_and_guard(
            sub, depth, volume.spacing, margin_mm=margin_mm, max_depth_mm=max_depth_mm, lower=lower
        )
        grown = sub
        # Tissue: brighter than the head/air threshold. Air inside the head (the nasal cavity,
        # the mouth) is internal anatomy and never changes, whatever the network labelled there;
        # the face is its tissue.
        tissue = volume.array[box] > head_threshold(volume.array)
        sub = fill_face(
            sub,
            depth,
            tissue,
            volume.affine @ corner,
            face_depth_mm=face_depth_mm + LOWER_FACE_EXTRA_MM if fill else 0.0,
            margin_mm=FACE_MARGIN_MM,
        )
        # The fill went as deep as the lower face may; every other voxel it added, to its own depth.
        sub[(grown == 0) & (depth > depth_limit(sub, lower, face_depth_mm))] = 0
        sub[~tissue & (depth > 0)] = 0
        if brain_mask is not None:
            near = near_brain(brain_mask, volume, box)
            brain_kept = int(np.count_nonzero((sub > 0) & near))
            notes = notes + kept_features(sub, near, FEATURE_NAMES)
            sub[near] = 0
        labels[box] = sub
    air = background_values(volume.array, _air_threshold(volume.array))
    new = apply_mask(volume.array, labels > 0, mode=mode, air=air, spacing=volume.spacing, seed=seed)
    qc = _qc(
        labels[box] if box is not None else labels[:0],
        predicted,
        probs,
        image,
        grid,
        clipped,
        (deep, deep_near_brain),
        voxel_mm3=float(np.prod(volume.spacing)),
        notes=notes,
        brain_kept=brain_kept,
    )
    for flag in qc.flags:
        log.warning("%s: %s", volume.path.name if volume.path else "volume", flag)
    return DefaceResult(volume=volume.with_array(new), mask=Volume(labels, volume.affine, path=None), qc=qc)


def _box(mask: np.ndarray, spacing: tuple[float, ...], *, pad_mm: float) -> tuple[slice, ...] | None:
    """Bounding box of ``mask`` grown by ``pad_mm``, clipped to the array; None if empty."""
    return mask_box(mask, [int(np.ceil(pad_mm / s)) for s in spacing])


def _fill_box(labels: np.ndarray, volume: Volume, within: tuple[slice, ...]) -> tuple[slice, ...] | None:
    """Where the fill can reach: the face's box open to the front, and the ears' box (grown by the margin).

    ``within`` holds every labelled voxel.
    """
    pad = FACE_MARGIN_MM + 2.0
    boxes = []
    sub = labels[within]
    corner = np.array([sl.start for sl in within])
    face = np.argwhere(np.isin(sub, FACE_LABELS)) + corner
    if face.size:
        boxes.append(open_box(to_ras(face, volume.affine), volume.affine, labels.shape, pad, 1, 1.0))
    ears = np.argwhere(sub == 4) + corner
    if ears.size:
        boxes.append(open_box(to_ras(ears, volume.affine), volume.affine, labels.shape, pad))
    if not boxes:
        return None
    box = boxes[0]
    for other in boxes[1:]:
        box = _union(box, other)
    return box


def _union(a: tuple[slice, ...], b: tuple[slice, ...] | None) -> tuple[slice, ...]:
    """The smallest box holding boxes ``a`` and ``b`` (``a`` when ``b`` is None)."""
    if b is None:
        return a
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b, strict=True))


def _air_threshold(array: np.ndarray) -> np.ndarray:
    """Voxels that are not air (a quick threshold; used only to sample air values)."""
    step = tuple(slice(None, None, max(1, n // 64)) for n in array.shape)
    sample = array[step].astype(np.float32)
    lo, hi = np.percentile(sample, [0.5, 99.5])
    return array > lo + 0.1 * (hi - lo)


def _counts(labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(labels.ravel(), minlength=5)
    return {name: int(counts[v]) for v, name in FEATURE_NAMES.items()}


def _qc(
    labels: np.ndarray,
    predicted: dict[str, int],
    probs: np.ndarray,
    image: np.ndarray,
    grid: Grid,
    clipped: int,
    deep: tuple[int, int],
    *,
    voxel_mm3: float,
    notes: list[str],
    brain_kept: int = 0,
) -> DefaceQC:
    voxels = _counts(labels)
    expected = _expected_features(probs, image, grid)
    flags = [
        f"expected {name} not found although in the field of view"
        for name, exp in expected.items()
        if exp and voxels[name] == 0
    ]
    # Labels a little deeper than the guard are usual (lids, pinnae, the root of the nose); labels
    # where the brain can begin are not.
    deep_all, deep_near_brain = deep
    if deep_near_brain * voxel_mm3 > 500 or deep_all * voxel_mm3 > 5000:
        flags.append(
            f"{deep_all} predicted voxels ({deep_all * voxel_mm3 / 1000:.1f} ml) lay deeper under the "
            f"skin than {BRAIN_MARGIN_MM:g} mm past the guard, where the brain can begin, and were not "
            "removed: check the mask"
        )
    flags += notes
    return DefaceQC(
        voxels=voxels,
        predicted=predicted,
        expected=expected,
        guard_clipped=clipped,
        deep_predicted=deep_all,
        flags=flags,
        brain_kept=brain_kept,
    )


#: How far behind the eyes the face reaches, for :func:`_expected_features` (mm): the lips of a head
#: pitched 30 degrees chin up lie about 35 mm behind the eyelids.
FACE_SLAB_MM = 45.0


def _expected_features(probs: np.ndarray, image: np.ndarray, grid: Grid) -> dict[str, bool]:
    """Which features should be visible, from the head's extent on the (RAS) grid.

    The eyes anchor everything: the nose starts about 15 mm below them, the lips
    about 60 mm, and the pinnae sit about 65-80 mm either side of the midline
    at eye level. The nose and the lips are looked for in the face, the part
    of the head in front of a plane :data:`FACE_SLAB_MM` behind the eyes: a
    tilted head whose field of view ends above the mouth reaches lower at the
    back of the head than in front. Without eyes, every feature is expected
    (and their absence flagged) unless the head itself ends above eye level.
    """
    s = grid.spacing
    head = image > 0.25
    eyes = probs[1] > 0.5
    zs = np.nonzero(head.any(axis=(0, 1)))[0]
    if zs.size == 0:
        return dict.fromkeys(FEATURE_NAMES.values(), False)
    z_lo = zs.min()
    if not eyes.any():
        return dict.fromkeys(FEATURE_NAMES.values(), True)
    _ci, cj, ck = (np.mean(ix) for ix in np.nonzero(eyes))
    xs = np.nonzero(head[:, :, round(ck)].any(axis=1))[0]
    width_mm = (xs.max() - xs.min()) * s if xs.size else 0.0
    face = head[:, max(0, round(cj - FACE_SLAB_MM / s)) :, :]  # axis 1 points anterior
    face_zs = np.nonzero(face.any(axis=(0, 1)))[0]
    below = (ck - (face_zs.min() if face_zs.size else z_lo)) * s  # mm of face below the eyes
    return {
        "eyes": True,
        "nose": bool(below > 30),
        "mouth": bool(below > 70),
        "ears": bool(width_mm > 130 and (ck - z_lo) * s > 25),
    }
