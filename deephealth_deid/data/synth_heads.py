"""Synthetic labelled heads for training and evaluating the defacer (the SynthSeg recipe).

Anatomy comes from real heads: label maps derived once from template images
(:mod:`deephealth_deid.data.head_templates`: pydeface's mean head with a complete
face, and Colin27 with a face cut by its field of view), each with modelled
pinnae. Every sample deforms one of them into a new subject, on the label map
and with nearest-neighbour sampling so the labels stay exact:

* head size from child to adult (``scale_range``, 0.75-1.1) and anisotropic scaling;
* a smaller or larger face relative to the cranium;
* local changes of each feature: nose length, projection and width; lip
  thickness and height; eye spacing; pinna size, angle, tilt and offset, each
  side drawn on its own (asymmetry);
* a smooth random elastic displacement field, and a random left-right mirror.

Images are drawn from the tissue classes with domain randomisation: a T1-, T2-,
PD- or FLAIR-like contrast with jitter, or a fully random one; texture inside
each tissue, partial-volume blur, a smooth bias field, a random gamma,
Gaussian or Rician noise, slices up to 7 mm thick along a random array axis
(blurred, subsampled and interpolated back), random orientation of the array
axes (permuted and flipped, the affine follows), a small rotation of the head
(up to 15 degrees about each axis), a field of view that sometimes cuts the
chin, the mouth, the nose, an ear or the top of the head, and background with
air noise, pads and sometimes shoulders.

Label values are those of :data:`~deephealth_deid.data.phantom.LABELS`:
0 background, 1 eyes (lids and periorbital skin, never the globe), 2 nose,
3 mouth (lips), 4 ears (pinnae), 5 skin, 6 fat and muscle, 7 skull and facial
bone, 8 CSF, 9 brain, 10 eyeball, 11 airway. Feature voxels are at least 8 mm
from the brain in the templates (and at least about 5 mm after deformation).

Speed (measured with :func:`benchmark`, one process on the shared 2-core
development machine, numpy/scipy only): about 0.4 s per 128^3 sample at 2 mm,
0.25 s at 96x112x112, 0.8 s at 160^3 and 1.5 mm. Two or three data loader
workers feed CPU or GPU training without a disk cache.

Example:
    >>> from deephealth_deid.data.synth_heads import SynthHeadGenerator
    >>> gen = SynthHeadGenerator(shape=(64, 64, 64), spacing_mm=4.0, seed=1)
    >>> image, labels = gen.sample(0)
    >>> image.shape == labels.shape == (64, 64, 64)
    True
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..io.volume import Volume
from ._choices import probabilities
from .head_templates import FEATURE_SHIFT, TISSUES, HeadTemplate, label_of_code, load_templates
from .phantom import FEATURES, LABELS

__all__ = [
    "SynthHeadGenerator",
    "SynthSample",
    "removal_targets",
    "CONTRASTS",
    "CROP_MODES",
    "write_synth_dataset",
    "benchmark",
]

log = logging.getLogger(__name__)

#: Contrast families :class:`SynthHeadGenerator` draws from, with their default probabilities.
CONTRASTS: dict[str, float] = {"t1": 0.25, "t2": 0.15, "pd": 0.1, "flair": 0.1, "random": 0.4}
#: Field-of-view crops and their default probabilities (``none``: the whole grid is imaged).
CROP_MODES: dict[str, float] = {
    "none": 0.45,
    "chin": 0.12,
    "mouth": 0.13,
    "nose": 0.1,
    "top": 0.12,
    "ear": 0.05,
    "tight": 0.03,
}

_T = TISSUES
_N_TISSUE = 32
# Mean intensity (0-1) of each tissue class per contrast family; unlisted classes are 0.
_PRESETS: dict[str, dict[str, float]] = {
    "t1": {
        "skin": 0.55, "fat": 0.95, "muscle": 0.38, "bone": 0.08, "marrow": 0.7, "csf": 0.15, "gm": 0.5,
        "wm": 0.75, "deep_gm": 0.6, "vitreous": 0.12, "airway": 0.02, "orbital_fat": 0.95, "cartilage": 0.45,
        "body": 0.6, "object": 0.3, "mucosa": 0.45, "lens": 0.5,
    },
    "t2": {
        "skin": 0.45, "fat": 0.7, "muscle": 0.22, "bone": 0.05, "marrow": 0.55, "csf": 0.95, "gm": 0.5,
        "wm": 0.35, "deep_gm": 0.42, "vitreous": 0.95, "airway": 0.02, "orbital_fat": 0.7, "cartilage": 0.35,
        "body": 0.5, "object": 0.2, "mucosa": 0.75, "lens": 0.3,
    },
    "pd": {
        "skin": 0.6, "fat": 0.8, "muscle": 0.5, "bone": 0.08, "marrow": 0.65, "csf": 0.8, "gm": 0.7,
        "wm": 0.6, "deep_gm": 0.65, "vitreous": 0.8, "airway": 0.02, "orbital_fat": 0.8, "cartilage": 0.5,
        "body": 0.6, "object": 0.3, "mucosa": 0.7, "lens": 0.5,
    },
    "flair": {
        "skin": 0.5, "fat": 0.85, "muscle": 0.3, "bone": 0.06, "marrow": 0.6, "csf": 0.08, "gm": 0.65,
        "wm": 0.5, "deep_gm": 0.58, "vitreous": 0.1, "airway": 0.02, "orbital_fat": 0.85, "cartilage": 0.4,
        "body": 0.55, "object": 0.25, "mucosa": 0.6, "lens": 0.4,
    },
}  # fmt: skip
_AXES = ("x", "y", "z")


@dataclass(frozen=True)
class SynthSample:
    """One generated head with what was drawn for it.

    Attributes:
        image: The image, ``float32``, in the sample's grid.
        labels: The label map, ``uint8``, same grid (features only when the
            generator's ``target_only`` is set).
        info: What was drawn: ``template``, ``mirrored``, ``scale``,
            ``contrast``, ``crop``, ``slice_axis``, ``slice_mm``, ``axcodes``, ...
    """

    image: Volume
    labels: Volume
    info: dict[str, Any] = field(default_factory=dict)


class SynthHeadGenerator:
    """Seeded generator of labelled synthetic heads.

    ``sample(i)`` is a pure function of ``(seed, i)`` and the constructor
    options: the same call gives the same head, image and labels, in any order
    and in any process. Each random aspect (anatomy, pose, orientation,
    contrast, degradation, crop, background) has its own random stream, so
    switching one option off leaves the others' draws unchanged.

    Args:
        spacing_mm: Voxel size of the output grid in mm (one number or three).
        shape: Output grid shape.
        seed: Seed of the whole sequence.
        target_only: Return only the training target (1 eyes, 2 nose, 3 mouth,
            4 ears; all else 0) instead of every label.
        templates: Names of the templates to use (default: all shipped ones).
        template_weights: Relative probability of each template.
        scale_range: Range of the overall head scale (0.75 child to 1.1 large adult).
        random_orientation: Permute and flip the array axes at random.
        rotation_deg: Largest rotation of the head about each axis.
        elastic_mm: Largest standard deviation of the elastic displacement.
        contrasts: Probabilities of the contrast families (:data:`CONTRASTS`).
        crops: Probabilities of the field-of-view crops (:data:`CROP_MODES`).
        thick_slice_probability: Probability of simulating thick slices.
        max_slice_mm: Thickest simulated slice.
        degrade: Add noise, blur, bias field and gamma (switch off to see the
            clean contrast).
        feature_margin_mm: Each feature's label takes in the skin and soft
            tissue within this distance of it (see :func:`removal_targets`);
            0 keeps the anatomical labels (lids, external nose, lips, pinnae).
        feature_depth_mm: ... but never deeper under the skin than this (the
            defacing pipeline's guard depth).

    Example:
        >>> gen = SynthHeadGenerator(shape=(48, 48, 48), spacing_mm=5.0, seed=3, target_only=True)
        >>> s = gen.sample_with_info(2)
        >>> set(np.unique(s.labels.array)) <= {0, 1, 2, 3, 4}
        True
    """

    def __init__(
        self,
        *,
        spacing_mm: float | Sequence[float] = 2.0,
        shape: Sequence[int] = (128, 128, 128),
        seed: int = 0,
        target_only: bool = False,
        templates: Sequence[str] | None = None,
        template_weights: Sequence[float] | None = None,
        scale_range: tuple[float, float] = (0.75, 1.1),
        random_orientation: bool = True,
        rotation_deg: float = 15.0,
        elastic_mm: float = 3.0,
        contrasts: dict[str, float] | None = None,
        crops: dict[str, float] | None = None,
        thick_slice_probability: float = 0.5,
        max_slice_mm: float = 7.0,
        degrade: bool = True,
        feature_margin_mm: float = 5.0,
        feature_depth_mm: float = 10.0,
    ) -> None:
        sp = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,)).copy()
        if np.any(sp <= 0):
            raise ValueError(f"spacing_mm must be positive, got {spacing_mm!r}")
        shp = tuple(int(n) for n in shape)
        if len(shp) != 3 or min(shp) < 8:
            raise ValueError(f"shape must be three sizes of at least 8, got {shape!r}")
        all_templates = load_templates()
        names = [t.name for t in all_templates]
        wanted = list(templates) if templates is not None else names
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise ValueError(f"unknown template(s) {unknown}; the templates are {names}")
        self._templates: tuple[HeadTemplate, ...] = tuple(t for t in all_templates if t.name in wanted)
        w = np.asarray(
            template_weights
            if template_weights is not None
            else [0.65 if t.name == "pydeface_mean" else 0.35 for t in self._templates],
            dtype=np.float64,
        )
        if w.shape != (len(self._templates),) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("template_weights needs one non-negative weight per template")
        self._template_p = w / w.sum()
        self.spacing = sp
        self.shape: tuple[int, int, int] = shp  # type: ignore[assignment]
        self.seed = int(seed)
        self.target_only = bool(target_only)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.random_orientation = bool(random_orientation)
        self.rotation_deg = float(rotation_deg)
        self.elastic_mm = float(elastic_mm)
        self.contrasts = probabilities(
            contrasts if contrasts is not None else CONTRASTS, CONTRASTS, "contrasts"
        )
        self.crops = probabilities(crops if crops is not None else CROP_MODES, CROP_MODES, "crops")
        self.thick_slice_probability = float(thick_slice_probability)
        self.max_slice_mm = float(max_slice_mm)
        self.degrade = bool(degrade)
        if feature_margin_mm < 0 or feature_depth_mm <= 0:
            raise ValueError("feature_margin_mm must be >= 0 and feature_depth_mm > 0")
        self.feature_margin_mm = float(feature_margin_mm)
        self.feature_depth_mm = float(feature_depth_mm)
        self._label_lut = label_of_code(np.arange(256, dtype=np.uint8))
        self._feature_lut = np.array(
            [(c >> FEATURE_SHIFT) if (c >> FEATURE_SHIFT) <= 4 else 0 for c in range(256)], np.uint8
        )

    # ------------------------------------------------------------------ public

    def sample(self, i: int) -> tuple[Volume, Volume]:
        """The ``i``-th head: ``(image, labels)`` sharing one affine.

        Args:
            i: Index of the sample (any non-negative integer).

        Returns:
            A ``float32`` image and a ``uint8`` label map.
        """
        s = self.sample_with_info(i)
        return s.image, s.labels

    def sample_with_info(self, i: int) -> SynthSample:
        """Like :meth:`sample`, with what was drawn (see :class:`SynthSample`)."""
        if i < 0:
            raise ValueError(f"sample index must be non-negative, got {i}")

        def rng(k: int) -> np.random.Generator:
            return np.random.default_rng([self.seed, int(i), k])

        info: dict[str, Any] = {"index": int(i), "seed": self.seed}
        r_anat = rng(1)
        tpl = self._templates[int(r_anat.choice(len(self._templates), p=self._template_p))]
        info["template"] = tpl.name
        affine = self._grid_affine(rng(3), info)
        to_template, world_of_template = self._subject(tpl, r_anat, rng(2), info)
        code = self._sample_code(tpl, affine, to_template)
        code = self._background(code, affine, world_of_template, tpl, rng(7), info)
        labels = self._label_lut[code]
        if self.feature_margin_mm > 0:
            labels = removal_targets(labels, self.spacing, self.feature_margin_mm, self.feature_depth_mm)
        crop_mask = self._crop(labels, affine, rng(6), info)
        image = self._image(code, rng(4), rng(5), info)
        if crop_mask is not None:
            image[crop_mask] = 0.0
            labels[crop_mask] = 0
            code[crop_mask] = 0
        if self.target_only:
            labels = np.where(labels <= 4, labels, 0).astype(np.uint8)
        info["features"] = sorted(int(v) for v in np.unique(labels) if v in FEATURES)
        return SynthSample(Volume(image, affine), Volume(labels, affine.copy()), info)

    # ------------------------------------------------------------------ geometry

    def _grid_affine(self, r: np.random.Generator, info: dict[str, Any]) -> np.ndarray:
        """Voxel -> world affine of the output grid: centred, axis-aligned, randomly permuted/flipped."""
        if self.random_orientation:
            perm = r.permutation(3)
            flips = np.where(r.random(3) < 0.5, -1.0, 1.0)
        else:
            perm = np.arange(3)
            flips = np.ones(3)
        a = np.zeros((4, 4))
        a[3, 3] = 1.0
        for ax in range(3):
            a[perm[ax], ax] = flips[ax] * self.spacing[ax]
        centre = (np.asarray(self.shape, dtype=np.float64) - 1.0) / 2.0
        a[:3, 3] = -a[:3, :3] @ centre
        info["axcodes"] = "".join(("RAS"[p] if f > 0 else "LPI"[p]) for p, f in zip(perm, flips, strict=True))
        return a

    def _subject(
        self, tpl: HeadTemplate, r: np.random.Generator, r_pose: np.random.Generator, info: dict[str, Any]
    ) -> tuple[Any, Any]:
        """Draw a subject: returns (world -> template map for points, template -> world map for landmarks)."""
        lm = {k: v.copy() for k, v in tpl.landmarks.items()}
        mid_x = float(np.mean([lm["globe_l"][0], lm["globe_r"][0]]))
        mirrored = bool(r.random() < 0.5)
        info["mirrored"] = mirrored

        def mirror(p: np.ndarray) -> np.ndarray:
            if not mirrored:
                return p
            q = p.copy()
            q[..., 0] = 2 * mid_x - q[..., 0]
            return q

        if mirrored:
            lm = {k: mirror(v) for k, v in lm.items()}
            lm["globe_l"], lm["globe_r"] = lm["globe_r"], lm["globe_l"]
            lm["ear_l"], lm["ear_r"] = lm["ear_r"], lm["ear_l"]
        # Head centre: between the brain centre and the face.
        h = lm["brain_centre"] + np.array([0.0, 12.0, -22.0])
        s = float(r.uniform(*self.scale_range))
        aniso = np.exp(r.normal(0.0, 0.04, 3))
        scale = s * aniso
        shear = r.normal(0.0, 0.02, 3)
        lin = np.diag(scale)
        lin[0, 1], lin[0, 2], lin[1, 2] = shear
        lin_inv = np.linalg.inv(lin)
        info["scale"] = round(s, 3)
        warps: list[
            tuple[np.ndarray, float, np.ndarray, np.ndarray, bool]
        ] = []  # centre, radius, A^-1, t, compact

        def add(
            centre: np.ndarray, radius: float, a: np.ndarray, t: np.ndarray, compact: bool = False
        ) -> None:
            if np.all(np.isfinite(centre)):
                warps.append((centre, radius, np.linalg.inv(a), t, compact))

        # Face size relative to the cranium (children have smaller faces).
        face_c = lm["globe_l"] * 0.5 + lm["globe_r"] * 0.5 + np.array([0.0, 10.0, -40.0])
        child = np.clip((1.0 - s) / 0.25, 0.0, 1.0)
        add(face_c, 45.0, np.eye(3) * float(r.uniform(0.92, 1.06) - 0.08 * child), np.zeros(3))
        if np.all(np.isfinite(lm["pronasale"])):
            nc = np.array([0.0, lm["subnasale"][1] - 4.0, 0.5 * (lm["nasion"][2] + lm["subnasale"][2])])
            nc[0] = mid_x
            add(
                nc,
                22.0,
                np.diag([r.uniform(0.8, 1.3), r.uniform(0.75, 1.45), r.uniform(0.8, 1.3)]),
                np.zeros(3),
            )
            mc = lm["stomion"] - np.array([0.0, 8.0, 0.0])
            add(
                mc,
                17.0,
                np.diag([r.uniform(0.85, 1.2), r.uniform(0.75, 1.4), r.uniform(0.85, 1.3)]),
                np.zeros(3),
            )
        for g, side in ((lm["globe_l"], -1.0), (lm["globe_r"], 1.0)):
            add(
                g + np.array([0.0, 6.0, 0.0]),
                20.0,
                np.eye(3),
                np.array([side * r.uniform(-3.0, 3.0), 0.0, 0.0]),
            )
        for e, side in ((lm["ear_l"], -1.0), (lm["ear_r"], 1.0)):
            c = e + np.array([side * 10.0, -6.0, 4.0])
            yaw = np.deg2rad(r.uniform(-15.0, 15.0)) * side
            tilt = np.deg2rad(r.uniform(-12.0, 12.0))
            rot = _rotation(np.array([tilt, 0.0, yaw]))
            add(
                c, 36.0, rot * r.uniform(0.8, 1.25), np.array([0.0, r.uniform(-5, 5), r.uniform(-5, 5)]), True
            )
        info["n_local_warps"] = len(warps)

        # Elastic: random displacements on a coarse lattice over the template.
        sd = float(r.uniform(0.0, self.elastic_mm))
        lat_step = 32.0
        lat_shape = tuple(math.ceil(n / lat_step) + 3 for n in tpl.shape)
        lattice = r.normal(0.0, sd, (3, *lat_shape)).astype(np.float32)
        lat_origin = tpl.origin - lat_step

        # Pose: rotation of the head and where it sits in the grid.
        rot = _rotation(np.deg2rad(r_pose.uniform(-self.rotation_deg, self.rotation_deg, 3)))
        shift = r_pose.normal(0.0, 6.0, 3)
        info["rotation_deg"] = [round(float(v), 1) for v in np.rad2deg(_euler(rot))]

        def to_template(w: np.ndarray) -> np.ndarray:
            """World points (..., 3) -> template points (..., 3)."""
            p = (w - shift) @ rot + h  # rot^T (w - shift) + h: subject space
            q = (p - h) @ lin_inv.T + h
            for c, rad, a_inv, t, compact in warps:
                d = q - c
                r2 = np.einsum("...i,...i->...", d, d)
                if compact:
                    wgt = np.clip(1.0 - r2 / (rad * rad), 0.0, None) ** 3
                else:
                    wgt = np.exp(-r2 / (2.0 * rad * rad))
                q = q + wgt[..., None] * (d @ a_inv.T - d - t)
            idx = (q - lat_origin) / lat_step
            disp = np.stack(
                [
                    ndi.map_coordinates(lattice[k], idx.reshape(-1, 3).T, order=3, mode="nearest")
                    for k in range(3)
                ],
                axis=-1,
            ).reshape(q.shape)
            return mirror(q + disp)

        def world_of_template(p: np.ndarray) -> np.ndarray:
            """Approximate template -> world for landmarks (global transform only)."""
            q = mirror(p)
            sp = (q - h) @ lin.T + h
            return (sp - h) @ rot.T + shift

        info["landmarks_world"] = {
            k: [round(float(x), 1) for x in world_of_template(v)]
            for k, v in tpl.landmarks.items()
            if np.all(np.isfinite(v))
        }
        return to_template, world_of_template

    def _sample_code(self, tpl: HeadTemplate, affine: np.ndarray, to_template: Any) -> np.ndarray:
        """Template codes at every output voxel (nearest neighbour through the smooth map)."""
        step = max(2, round(8.0 / float(np.min(self.spacing))))
        nodes = [np.linspace(0.0, n - 1.0, math.ceil((n - 1) / step) + 1) for n in self.shape]
        g = np.stack(np.meshgrid(*nodes, indexing="ij"), axis=-1)
        w = g @ affine[:3, :3].T + affine[:3, 3]
        q = to_template(w) - tpl.origin  # template voxel coordinates at the nodes
        out_idx = np.empty(self.shape, np.int64)
        valid = np.ones(self.shape, bool)
        dims = tpl.shape
        lin = None
        for k in range(3):
            f = _upsample_linear(q[..., k].astype(np.float32), self.shape)
            ik = np.rint(f).astype(np.int64)
            if k == 2 and tpl.fov_inferior_open:
                ik = np.maximum(ik, 0)
            valid &= (ik >= 0) & (ik < dims[k])
            np.clip(ik, 0, dims[k] - 1, out=ik)
            lin = ik if lin is None else lin * dims[k] + ik
        out_idx[...] = lin  # type: ignore[assignment]
        code = tpl.code.reshape(-1)[out_idx]
        code[~valid] = 0
        return code

    def _background(
        self,
        code: np.ndarray,
        affine: np.ndarray,
        world_of_template: Any,
        tpl: HeadTemplate,
        r: np.random.Generator,
        info: dict[str, Any],
    ) -> np.ndarray:
        """Pads near the head and sometimes shoulders, in air only."""
        objs: list[tuple[np.ndarray, np.ndarray, int]] = []
        hc = world_of_template(tpl.landmarks["brain_centre"])
        if r.random() < 0.3:
            for _ in range(int(r.integers(1, 4))):
                d = r.normal(0.0, 1.0, 3)
                d[2] = -abs(d[2]) * 0.5
                d /= np.linalg.norm(d) + 1e-9
                c = hc + d * r.uniform(85.0, 110.0)
                objs.append((c, r.uniform([15, 15, 8], [45, 45, 20]), TISSUES["object"]))
        if r.random() < 0.25:
            c = hc + np.array([0.0, -10.0, -r.uniform(150.0, 190.0)])
            objs.append((c, np.array([r.uniform(150, 200), r.uniform(80, 110), 60.0]), TISSUES["body"]))
        info["background_objects"] = len(objs)
        if not objs:
            return code
        inv = np.linalg.inv(affine)
        for c, radii, tissue in objs:
            corners = (
                np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * radii + c
            )
            v = corners @ inv[:3, :3].T + inv[:3, 3]
            lo = np.clip(np.floor(v.min(0)).astype(int), 0, np.asarray(self.shape))
            hi = np.clip(np.ceil(v.max(0)).astype(int) + 1, 0, np.asarray(self.shape))
            if np.any(hi <= lo):
                continue
            sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            ijk = np.stack(
                np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij"), -1
            )
            wpts = ijk @ affine[:3, :3].T + affine[:3, 3]
            inside = (((wpts - c) / radii) ** 2).sum(-1) <= 1.0
            sub = code[sl]
            sub[inside & (sub == 0)] = tissue
        return code

    def _crop(
        self, labels: np.ndarray, affine: np.ndarray, r: np.random.Generator, info: dict[str, Any]
    ) -> np.ndarray | None:
        """Choose a field-of-view cut from the actual feature positions; returns the outside mask or None."""
        modes = list(self.crops)
        mode = modes[int(r.choice(len(modes), p=np.array([self.crops[m] for m in modes])))]
        info["crop"] = mode
        if mode == "none":
            return None
        # World coordinate of each index along each array axis, and which world axis it is.
        world_axis = np.argmax(np.abs(affine[:3, :3]), axis=0)  # for array axis a: world axis
        array_axis = {int(world_axis[a]): a for a in range(3)}
        coords = [
            affine[world_axis[a], a] * np.arange(self.shape[a]) + affine[world_axis[a], 3] for a in range(3)
        ]

        def extent(label_value: int, wa: int) -> tuple[float, float] | None:
            a = array_axis[wa]
            other = tuple(b for b in range(3) if b != a)
            present = (labels == label_value).any(axis=other)
            if not present.any():
                return None
            vals = coords[a][present]
            return float(vals.min()), float(vals.max())

        cuts: list[tuple[int, str, float]] = []  # (world axis, 'below'|'above', value)
        if mode in ("chin", "tight"):
            m = extent(3, 2)
            if m is not None:
                cuts.append((2, "below", r.uniform(m[0] - 15.0, 0.5 * (m[0] + m[1]))))
        if mode == "mouth":
            m, n = extent(3, 2), extent(2, 2)
            if m is not None:
                hi = n[0] + 0.5 * (n[1] - n[0]) if n is not None else m[1] + 15.0
                lo = m[1] + 1.5 * float(np.max(self.spacing))
                cuts.append((2, "below", r.uniform(lo, max(lo, hi))))
        if mode in ("nose", "tight"):
            n = extent(2, 1)
            if n is not None:
                cuts.append((1, "above", r.uniform(n[0] + 0.2 * (n[1] - n[0]), n[1] - 0.1 * (n[1] - n[0]))))
        if mode in ("top", "tight"):
            head = labels > 0
            a = array_axis[2]
            present = head.any(axis=tuple(b for b in range(3) if b != a))
            if present.any():
                top = float(coords[a][present].max())
                cuts.append((2, "above", top - r.uniform(10.0, 50.0)))
        if mode == "ear":
            side = 0 if r.random() < 0.5 else 1
            e = extent(4, 0)
            if e is not None:
                if side:
                    cuts.append((0, "above", r.uniform(e[1] - 25.0, e[1] - 3.0)))
                else:
                    cuts.append((0, "below", r.uniform(e[0] + 3.0, e[0] + 25.0)))
        if not cuts:
            info["crop"] = "none"
            return None
        mask = np.zeros(self.shape, bool)
        for wa, where, value in cuts:
            a = array_axis[wa]
            sel = coords[a] < value if where == "below" else coords[a] > value
            idx = [slice(None)] * 3
            idx[a] = sel  # type: ignore[call-overload]
            mask[tuple(idx)] = True
        info["crop_cuts"] = [(_AXES[wa], where, round(float(v), 1)) for wa, where, v in cuts]
        return mask

    # ------------------------------------------------------------------ image

    def _image(
        self, code: np.ndarray, r: np.random.Generator, r_deg: np.random.Generator, info: dict[str, Any]
    ) -> np.ndarray:
        """Draw an image from the tissue classes with random contrast and degradation."""
        tissue = code & np.uint8((1 << FEATURE_SHIFT) - 1)
        names = list(self.contrasts)
        family = names[int(r.choice(len(names), p=np.array([self.contrasts[n] for n in names])))]
        info["contrast"] = family
        mean = np.zeros(_N_TISSUE, np.float32)
        if family == "random":
            mean[:] = r.uniform(0.0, 1.0, _N_TISSUE)
            mean[_T["air"]] = r.uniform(0.0, 0.1) if r.random() < 0.85 else r.uniform(0.0, 0.6)
            if r.random() < 0.5:  # brain classes often close to each other
                base = r.uniform(0.2, 0.9)
                for k in ("gm", "wm", "deep_gm"):
                    mean[_T[k]] = np.clip(base + r.normal(0.0, 0.12), 0.0, 1.0)
        else:
            for k, v in _PRESETS[family].items():
                mean[_T[k]] = v
            mean = np.clip(mean + r.normal(0.0, 0.06, _N_TISSUE).astype(np.float32) * (mean > 0), 0.0, 1.0)
            mean[_T["air"]] = r.uniform(0.0, 0.04)
            if r.random() < 0.2:  # fat suppression
                for k in ("fat", "orbital_fat", "marrow"):
                    mean[_T[k]] *= r.uniform(0.15, 0.5)
        std = r.uniform(0.005, 0.06, _N_TISSUE).astype(np.float32)
        std[_T["air"]] = 0.0
        img = mean[tissue]
        if not self.degrade:
            return img.astype(np.float32)
        # Texture: white noise per class, shaped by the partial-volume blur below.
        tex = r_deg.standard_normal(self.shape, dtype=np.float32)
        img += std[tissue] * tex
        sigma = r_deg.uniform(0.3, 1.0)
        img = ndi.gaussian_filter(img, sigma, truncate=2.5)
        # Bias field.
        bs = r_deg.uniform(0.0, 0.35)
        coarse = r_deg.normal(0.0, bs, (4, 4, 4)).astype(np.float32)
        img *= np.exp(_upsample_linear(coarse, self.shape))
        # Thick slices along a random array axis.
        info["slice_axis"], info["slice_mm"] = None, None
        if r_deg.random() < self.thick_slice_probability:
            ax = int(r_deg.integers(3))
            lo_mm = max(2.0, 1.5 * float(self.spacing[ax]))
            thick = float(r_deg.uniform(lo_mm, max(lo_mm, self.max_slice_mm)))
            k = thick / self.spacing[ax]
            if self.max_slice_mm >= lo_mm:
                img = ndi.gaussian_filter1d(img, k / 2.355, axis=ax, truncate=2.5)
                stride = max(2, round(k))
                start = int(r_deg.integers(stride))
                idx = np.arange(start, self.shape[ax], stride)
                sub = np.take(img, idx, axis=ax)
                img = _interp_axis(sub, idx.astype(np.float64), self.shape[ax], ax)
                info["slice_axis"], info["slice_mm"] = ax, round(stride * float(self.spacing[ax]), 2)
        # Gamma.
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) / max(hi - lo, 1e-6)
        np.power(img, np.float32(np.exp(r_deg.normal(0.0, 0.25))), out=img)
        # Noise.
        ns = r_deg.uniform(0.0, 0.06)
        n1 = r_deg.standard_normal(self.shape, dtype=np.float32)
        n1 *= ns
        if r_deg.random() < 0.6:
            n2 = r_deg.standard_normal(self.shape, dtype=np.float32)
            n2 *= ns
            img += n1
            np.hypot(img, n2, out=img)
            info["noise"] = "rician"
        else:
            img += n1
            np.maximum(img, 0.0, out=img)
            info["noise"] = "gaussian"
        gain = np.float32(r_deg.uniform(100.0, 4000.0))
        img *= gain
        return img.astype(np.float32, copy=False)


# ---------------------------------------------------------------------- helpers


def removal_targets(
    labels: np.ndarray, spacing: Sequence[float], margin_mm: float, depth_mm: float
) -> np.ndarray:
    """Grow each feature label over the skin and soft tissue around it: what a defacer removes.

    The anatomical features are thin (an eyelid or a pinna is 2-4 mm thick, one
    or two voxels of the network's grid), yet a face is recognised from its
    surface, and removing a 1 mm shell leaves it. The removal target of each
    feature is therefore the feature plus every skin and fat/muscle voxel within
    ``margin_mm`` of it (nearest feature wins) that lies at most ``depth_mm``
    under the skin and more than 8 mm from the brain. Skull, CSF, brain,
    eyeballs and airway are never included.

    Args:
        labels: Full label map (:data:`~deephealth_deid.data.phantom.LABELS`).
        spacing: Voxel size in mm.
        margin_mm: How far the features grow.
        depth_mm: Deepest voxel under the skin they may take.

    Returns:
        The label map with the grown features (a new array).
    """
    feature = (labels >= 1) & (labels <= 4)
    out = labels.copy()
    if not feature.any() or margin_mm <= 0:
        return out
    sp = np.asarray(spacing, dtype=np.float64)
    pad = np.ceil((margin_mm + depth_mm) / sp).astype(int) + 1
    idx = np.argwhere(feature)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, labels.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    sub = labels[box]
    fsub = feature[box]
    dist, nearest = ndi.distance_transform_edt(~fsub, sampling=sp, return_indices=True)
    # Depth under the skin: distance to the air, with the box edge counting as inside when the head goes on.
    inside = ndi.binary_fill_holes(sub != LABELS["background"])
    depth = ndi.distance_transform_edt(np.pad(inside, 1, mode="edge"), sampling=sp)[1:-1, 1:-1, 1:-1]
    soft = np.isin(sub, [LABELS["skin"], LABELS["fat"]])
    grow = soft & (dist <= margin_mm) & (depth <= depth_mm)
    brain = sub == LABELS["brain"]
    if brain.any():  # as in the templates: no feature within 8 mm of the brain
        grow &= ndi.distance_transform_edt(~brain, sampling=sp) > 8.0
    grown = sub.copy()
    grown[grow] = sub[tuple(n[grow] for n in nearest)]
    out[box] = grown
    return out


def _rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation matrix of Euler angles (radians) about x, then y, then z."""
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _euler(rot: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_rotation` (x, y, z angles in radians)."""
    return np.array(
        [
            math.atan2(rot[2, 1], rot[2, 2]),
            -math.asin(max(-1.0, min(1.0, rot[2, 0]))),
            math.atan2(rot[1, 0], rot[0, 0]),
        ]
    )


def _interp_axis(a: np.ndarray, pos: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Linear interpolation of ``a`` (samples at positions ``pos`` along ``axis``) onto ``0..n-1``."""
    x = np.arange(n, dtype=np.float64)
    i1 = np.clip(np.searchsorted(pos, x, side="right"), 1, len(pos) - 1)
    i0 = i1 - 1
    t = np.clip((x - pos[i0]) / np.maximum(pos[i1] - pos[i0], 1e-9), 0.0, 1.0).astype(np.float32)
    if len(pos) == 1:
        return np.repeat(a, n, axis=axis)
    shape = [1, 1, 1]
    shape[axis] = n
    t = t.reshape(shape)
    return np.take(a, i0, axis=axis) * (1.0 - t) + np.take(a, i1, axis=axis) * t


def _upsample_linear(a: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Separable linear interpolation of ``a`` (nodes evenly from first to last voxel) onto ``shape``."""
    out = a.astype(np.float32, copy=False)
    for ax in range(3):
        m = out.shape[ax]
        pos = np.linspace(0.0, shape[ax] - 1.0, m)
        out = _interp_axis(out, pos, int(shape[ax]), ax)
    return out


# ---------------------------------------------------------------------- datasets and speed


def write_synth_dataset(
    out_dir: str | os.PathLike[str],
    *,
    n: int,
    seed: int = 0,
    spacing_mm: float | Sequence[float] = 2.0,
    shape: Sequence[int] = (128, 128, 128),
    target_only: bool = True,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.0,
    name: str = "synthetic heads",
    overwrite: bool = False,
    **options: Any,
) -> Path:
    """Write ``n`` synthetic heads as NIfTI pairs and a DeepHealth YAML dataset.

    Files: ``images/synth_<seed>_<i>.nii.gz`` (float32 image) and
    ``labels/synth_<seed>_<i>_seg.nii.gz`` (uint8 labels), and ``dataset.yaml``
    listing them with a training/validation/test split by index.

    Args:
        out_dir: Folder to write into (created if missing).
        n: Number of samples.
        seed: Generator seed; sample ``i`` is ``SynthHeadGenerator(seed=seed).sample(i)``.
        spacing_mm: Voxel size of the grid.
        shape: Grid shape.
        target_only: Write only features 1-4 in the label maps (the training target).
        validation_fraction: Share of the samples in the validation split.
        test_fraction: Share of the samples in the test split.
        name: The dataset's name.
        overwrite: Replace existing files.
        **options: Further :class:`SynthHeadGenerator` options.

    Returns:
        The path of ``dataset.yaml``.

    Raises:
        OutputExistsError: If a file exists and ``overwrite`` is false.
        ValueError: If ``n`` or the fractions are out of range.
    """
    from ..io import save_volume
    from .dataset import Dataset, Sample, Split, save_dataset

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if (
        not (0.0 <= validation_fraction <= 1.0 and 0.0 <= test_fraction <= 1.0)
        or validation_fraction + test_fraction > 1.0
    ):
        raise ValueError("validation_fraction and test_fraction must be in [0, 1] and add up to at most 1")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    gen = SynthHeadGenerator(
        spacing_mm=spacing_mm, shape=shape, seed=seed, target_only=target_only, **options
    )
    samples = []
    t0 = time.perf_counter()
    for i in range(n):
        image, labels = gen.sample(i)
        img_p = out / "images" / f"synth_{seed}_{i:05d}.nii.gz"
        lab_p = out / "labels" / f"synth_{seed}_{i:05d}_seg.nii.gz"
        save_volume(image, img_p, overwrite=overwrite)
        save_volume(labels, lab_p, overwrite=overwrite)
        samples.append(Sample(img_p.resolve(), label=lab_p.resolve()))
        log.debug("wrote sample %d/%d", i + 1, n)
    n_test = round(test_fraction * n)
    n_val = round(validation_fraction * n)
    if validation_fraction > 0 and n_val == 0 and n - n_test > 1:
        n_val = 1
    n_train = n - n_val - n_test
    split = Split(
        training=tuple(range(n_train)),
        validation=tuple(range(n_train, n_train + n_val)),
        test=tuple(range(n_train + n_val, n)),
    )
    what = (
        "1 eyes, 2 nose, 3 mouth, 4 ears" if target_only else ", ".join(f"{v} {k}" for k, v in LABELS.items())
    )
    ds = Dataset(
        name,
        tuple(samples),
        description=f"synthetic heads (deephealth_deid synth_heads, seed {seed}); labels {what}",
        split=split,
    )
    path = save_dataset(ds, out / "dataset.yaml", overwrite=overwrite)
    log.info("wrote %d synthetic heads to %s in %.1f s", n, out, time.perf_counter() - t0)
    return path


def benchmark(
    *, n: int = 5, shape: Sequence[int] = (128, 128, 128), spacing_mm: float = 2.0, seed: int = 0
) -> float:
    """Mean seconds per sample of :meth:`SynthHeadGenerator.sample` (after one warm-up sample).

    Args:
        n: Samples to time.
        shape: Grid shape.
        spacing_mm: Voxel size.
        seed: Generator seed.
    """
    gen = SynthHeadGenerator(shape=shape, spacing_mm=spacing_mm, seed=seed)
    gen.sample(10_000)
    t0 = time.perf_counter()
    for i in range(n):
        gen.sample(i)
    return (time.perf_counter() - t0) / n
