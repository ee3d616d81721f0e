"""Measure a defaced head against hand-placed landmarks, and make test variants of a head.

The criteria (for every variant of a head), checked by :func:`check_landmarks`:

- every face-surface landmark in the field of view: at least 80% of the tissue
  voxels within 5 mm are changed;
- every brain probe: no voxel within 6 mm changes;
- every eyeball centre: at least 95% of the voxels within 4 mm are unchanged.

On a head with a full label map (the synthetic heads of
:mod:`deephealth_deid.data.synth_heads`), :func:`check_labels` checks the same
three criteria on every voxel: each feature's removal target, the whole brain
and the whole eyeballs.

Landmarks are given in world millimetres (RAS), so a variant that moves the
voxels (resampling, permuted axes, a rotated head) carries its landmarks along.
Contrast variants (:data:`CONTRAST_VARIANTS`) keep the voxels where they are
and remap the head's intensities (air stays dark), to see how a model trained
on synthetic contrasts meets a real head in another one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..io.volume import Volume

__all__ = [
    "Landmark",
    "LandmarkReport",
    "LabelReport",
    "check_labels",
    "ball_voxels",
    "load_landmarks",
    "check_landmarks",
    "make_variant",
    "VARIANTS",
    "CONTRAST_VARIANTS",
]

#: Variants of a head the defacer must handle.
VARIANTS = ("native", "1x1x5mm", "7mm_axial", "permuted_flipped", "rotated_15deg")
#: The head with its tissue contrast remapped: its 1st-99th percentiles scaled to 0-1 (``n``), then
#: ``n``, ``sqrt(n)``, ``n**3``, inverted (``1.05 - n``) and a T2-like fold
#: (``0.3 + 0.7 |sin(pi (1.3 n + 0.2))|``: dark white matter, bright fluid); air stays 0.
CONTRAST_VARIANTS = (
    "contrast_linear",
    "contrast_sqrt",
    "contrast_gamma3",
    "contrast_inverted",
    "contrast_t2like",
)


@dataclass(frozen=True)
class Landmark:
    name: str
    category: str  # face_surface, internal, brain_probe
    xyz: np.ndarray


@dataclass
class LandmarkReport:
    """Per-landmark fractions and whether every criterion holds."""

    changed_near_surface: dict[str, float] = field(default_factory=dict)
    changed_near_brain: dict[str, int] = field(default_factory=dict)
    unchanged_near_eyeball: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        out = [
            f"{n}: {f:.0%} of tissue within 5 mm changed (< 80%)"
            for n, f in self.changed_near_surface.items()
            if f < 0.8
        ]
        out += [f"{n}: {c} voxels within 6 mm changed" for n, c in self.changed_near_brain.items() if c > 0]
        out += [
            f"{n}: {f:.0%} within 4 mm unchanged (< 95%)"
            for n, f in self.unchanged_near_eyeball.items()
            if f < 0.95
        ]
        return out

    @property
    def ok(self) -> bool:
        return not self.failures


def load_landmarks(path: str | os.PathLike[str]) -> tuple[list[Landmark], float]:
    """Landmarks (with world coordinates) and the head/air threshold of a landmark JSON file."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    marks = [
        Landmark(name, v["category"], np.asarray(v["xyz"], dtype=np.float64))
        for group in ("landmarks", "extra_landmarks")
        for name, v in data.get(group, {}).items()
    ]
    return marks, float(data["threshold"]["head_air_threshold"])


def ball_voxels(
    volume: Volume, centre: np.ndarray, radius: float
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Index box and boolean mask of the voxels whose centres lie within ``radius`` mm of ``centre``."""
    inv = np.linalg.inv(volume.affine)
    c = inv[:3, :3] @ centre + inv[:3, 3]
    reach = radius / np.array(volume.spacing) + 1
    lo = np.maximum(np.floor(c - reach).astype(int), 0)
    hi = np.minimum(np.ceil(c + reach).astype(int) + 1, volume.shape)
    if np.any(hi <= lo):
        return None
    idx = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij"), -1)
    world = idx @ volume.affine[:3, :3].T + volume.affine[:3, 3]
    inside = np.linalg.norm(world - centre, axis=-1) <= radius
    if not inside.any():
        return None
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), inside


def check_landmarks(
    before: Volume, after: Volume, landmarks: list[Landmark], *, threshold: float
) -> LandmarkReport:
    """Check the three criteria for one defaced volume (``after``) of ``before``."""
    report = LandmarkReport()
    changed = after.array != before.array
    for lm in landmarks:
        radius = {"face_surface": 5.0, "brain_probe": 6.0, "internal": 4.0}[lm.category]
        if lm.category == "internal" and "eyeball" not in lm.name:
            continue
        ball = ball_voxels(before, lm.xyz, radius)
        if ball is None:
            report.skipped.append(lm.name)
            continue
        box, inside = ball
        ch = changed[box][inside]
        if lm.category == "face_surface":
            tissue = before.array[box][inside] > threshold
            if not tissue.any():
                report.skipped.append(lm.name)
                continue
            report.changed_near_surface[lm.name] = float(ch[tissue].mean())
        elif lm.category == "brain_probe":
            report.changed_near_brain[lm.name] = int(ch.sum())
        else:
            report.unchanged_near_eyeball[lm.name] = float(1.0 - ch.mean())
    return report


@dataclass
class LabelReport:
    """What a defacing changed of a labelled head: by feature, near the brain, in the eyeballs."""

    changed_feature: dict[str, float] = field(default_factory=dict)
    changed_near_brain: int = 0
    unchanged_eyeballs: float | None = None

    @property
    def failures(self) -> list[str]:
        out = [
            f"{n}: {f:.0%} of its target changed (< 80%)" for n, f in self.changed_feature.items() if f < 0.8
        ]
        if self.changed_near_brain:
            out.append(f"{self.changed_near_brain} voxels within 6 mm of the brain changed")
        if self.unchanged_eyeballs is not None and self.unchanged_eyeballs < 0.95:
            out.append(f"eyeballs: {self.unchanged_eyeballs:.0%} unchanged (< 95%)")
        return out

    @property
    def ok(self) -> bool:
        return not self.failures


def check_labels(before: Volume, after: Volume, labels: Volume, *, min_voxels: int = 10) -> LabelReport:
    """The landmark criteria on every voxel of a labelled head (``labels`` on ``before``'s grid).

    ``labels`` uses :data:`~deephealth_deid.data.phantom.LABELS`, the features
    as their removal targets (:func:`~deephealth_deid.data.synth_heads.removal_targets`).
    A feature counts when its target has at least ``min_voxels`` voxels.
    """
    from ..data.phantom import FEATURES, LABELS

    lab = np.asarray(labels.array)
    if lab.shape != before.shape or not np.allclose(labels.affine, before.affine, atol=1e-4):
        raise ValueError("labels must lie on the image's grid (same shape and affine)")
    changed = after.array != before.array
    report = LabelReport()
    for value, name in FEATURES.items():
        target = lab == value
        if np.count_nonzero(target) >= min_voxels:
            report.changed_feature[name] = float(changed[target].mean())
    brain = lab == LABELS["brain"]
    if brain.any():
        near = ndimage.distance_transform_edt(~brain, sampling=before.spacing) <= 6.0
        report.changed_near_brain = int(np.count_nonzero(changed & near))
    eyeball = lab == LABELS["eyeball"]
    if eyeball.any():
        report.unchanged_eyeballs = float(1.0 - changed[eyeball].mean())
    return report


def _resample(
    volume: Volume, spacing: tuple[float, float, float], *, thick_axis: int | None = None
) -> Volume:
    """``volume`` on an axis-aligned grid of ``spacing`` covering the same world box (RAS axes)."""
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in volume.shape])).reshape(3, -1).T
    world = corners @ volume.affine[:3, :3].T + volume.affine[:3, 3]
    lo, hi = world.min(axis=0), world.max(axis=0)
    shape = tuple(int(np.floor((h - lo_) / s)) + 1 for lo_, h, s in zip(lo, hi, spacing, strict=True))
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = lo
    src = volume.array.astype(np.float32)
    if thick_axis is not None:  # a thick slice integrates over its thickness
        sigma = [0.0, 0.0, 0.0]
        native_axis = int(np.argmax(np.abs(volume.affine[:3, :3])[thick_axis]))
        sigma[native_axis] = spacing[thick_axis] / 2.355 / volume.spacing[native_axis]
        src = ndimage.gaussian_filter(src, sigma)
    m = np.linalg.inv(volume.affine) @ affine
    out = ndimage.affine_transform(src, m[:3, :3], offset=m[:3, 3], output_shape=shape, order=1, cval=0.0)
    if np.issubdtype(volume.array.dtype, np.integer):
        info = np.iinfo(volume.array.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return Volume(out.astype(volume.array.dtype), affine)


def make_variant(volume: Volume, landmarks: list[Landmark], name: str) -> tuple[Volume, list[Landmark]]:
    """A variant of ``volume`` (see :data:`VARIANTS`) and its landmarks in the variant's world."""
    if name == "native":
        return volume, landmarks
    if name == "1x1x5mm":
        return _resample(volume, (1.0, 1.0, 5.0), thick_axis=2), landmarks
    if name == "7mm_axial":
        inplane = float(min(volume.spacing))
        return _resample(volume, (inplane, inplane, 7.0), thick_axis=2), landmarks
    if name == "permuted_flipped":
        perm, flips = (2, 0, 1), (True, False, True)
        arr = np.transpose(volume.array, perm)
        aff = volume.affine[:, [*perm, 3]].copy()
        for axis, flip in enumerate(flips):
            if flip:
                arr = np.flip(arr, axis)
                aff[:3, 3] += aff[:3, axis] * (arr.shape[axis] - 1)
                aff[:3, axis] *= -1
        return Volume(np.ascontiguousarray(arr), aff), landmarks
    if name == "rotated_15deg":
        # The head tilted (chin down) by 15 degrees about the left-right axis through
        # its centre: same voxels, rotated world; landmarks rotate with it.
        t = np.deg2rad(15.0)
        rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
        centre = volume.affine[:3, :3] @ (np.array(volume.shape) - 1) / 2 + volume.affine[:3, 3]
        move = np.eye(4)
        move[:3, :3] = rot
        move[:3, 3] = centre - rot @ centre
        moved = [replace(lm, xyz=rot @ (lm.xyz - centre) + centre) for lm in landmarks]
        return Volume(volume.array, move @ volume.affine), moved
    if name in CONTRAST_VARIANTS:
        return _remap_contrast(volume, name.removeprefix("contrast_")), landmarks
    raise ValueError(f"unknown variant {name!r} (known: {VARIANTS + CONTRAST_VARIANTS})")


def _remap_contrast(volume: Volume, kind: str) -> Volume:
    """``volume`` with the intensities inside its head remapped (see :data:`CONTRAST_VARIANTS`)."""
    from .conform import head_mask

    a = volume.array.astype(np.float32)
    head = head_mask(a)
    lo, hi = np.percentile(a[head], [1, 99])
    n = np.clip((a - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    mapped = {
        "linear": n,
        "sqrt": np.sqrt(n),
        "gamma3": n**3,
        "inverted": np.where(head, 1.05 - n, 0.0),
        "t2like": np.where(head, 0.3 + 0.7 * np.abs(np.sin(np.pi * (1.3 * n + 0.2))), 0.0),
    }[kind]
    top = float(np.iinfo(volume.array.dtype).max) if np.issubdtype(volume.array.dtype, np.integer) else 1000.0
    out = mapped / max(float(mapped.max()), 1e-6) * top
    if np.issubdtype(volume.array.dtype, np.integer):
        out = np.rint(out)
    return volume.with_array(out.astype(volume.array.dtype))
