"""Labelled head templates: tissue and feature label maps derived from real template heads.

The synthetic head generator (:mod:`deephealth_deid.data.synth_heads`) deforms
these maps into many subjects. Each template is a 1 mm RAS grid of ``uint8``
codes: the low five bits are a *tissue* class (:data:`TISSUES`, what the image
is drawn from), the high three bits the identifying *feature* (0 none, 1 eyes,
2 nose, 3 mouth, 4 ears) that overrides the tissue in the label map. Keeping the
two apart means a feature never has an intensity of its own: eyelids look like
the skin, fat and muscle they are made of, as in a real scan.

The shipped assets (``assets/head_template_*.npz``) were made once, offline, by
:func:`build_template_assets` from:

* ``pydeface``'s mean head ``mean_reg2mean.nii.gz`` (PyPI ``pydeface`` 2.1.0,
  MIT): the whole head down to the neck with a complete (if averaged) face.
  Its brain is found by intensity inside an envelope fixed by landmarks.
* Colin27 ``ch2.nii.gz`` with its brain ``ch2bet.nii.gz`` (Debian
  ``mricron-data``; BSD-3-clause per Debian's copyright file; the Colin27 data
  are (c) McConnell Brain Imaging Centre, MNI, redistributable with notice):
  a sharp single subject whose field of view cuts the face in front of the
  forehead and below the nose, so it teaches "features cut by the field of
  view" and real skull/orbit anatomy.

Neither template has usable pinnae (averaged away in the mean head, cut off in
Colin27), so the pinnae are modelled (a tilted plate with a rim, a lobule and a
root at the ear canal) and attached at the ear canal found on each head. The
eyelids, nose and lips are the template's own tissue, labelled from landmarks
(globe centres fitted in the orbits; nasion, nose tip, subnasale, lips and chin
from the midline profile).

Example:
    >>> from deephealth_deid.data.head_templates import load_templates
    >>> [t.name for t in load_templates()]  # doctest: +SKIP
    ['pydeface_mean', 'colin27']
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .phantom import LABELS

__all__ = [
    "TISSUES",
    "TISSUE_LABEL",
    "FEATURE_SHIFT",
    "HeadTemplate",
    "load_templates",
    "build_template_assets",
    "TEMPLATE_NAMES",
]

log = logging.getLogger(__name__)

#: Tissue classes the images are drawn from: name -> code (low five bits of a template voxel).
TISSUES: dict[str, int] = {
    "air": 0,
    "skin": 1,
    "fat": 2,
    "muscle": 3,
    "bone": 4,
    "marrow": 5,
    "csf": 6,
    "gm": 7,
    "wm": 8,
    "deep_gm": 9,
    "vitreous": 10,
    "airway": 11,
    "orbital_fat": 12,
    "cartilage": 13,
    "body": 14,
    "object": 15,
    "mucosa": 16,
    "lens": 17,
}
#: Label value (:data:`~deephealth_deid.data.phantom.LABELS`) of each tissue class, indexed by tissue code.
TISSUE_LABEL: np.ndarray = np.zeros(32, np.uint8)
for _name, _lab in {
    "skin": "skin",
    "fat": "fat",
    "muscle": "fat",
    "bone": "skull",
    "marrow": "skull",
    "csf": "csf",
    "gm": "brain",
    "wm": "brain",
    "deep_gm": "brain",
    "vitreous": "eyeball",
    "airway": "airway",
    "orbital_fat": "fat",
    "cartilage": "skin",
    "body": "fat",
    "mucosa": "fat",
    "lens": "eyeball",
}.items():
    TISSUE_LABEL[TISSUES[_name]] = LABELS[_lab]
#: A template voxel is ``tissue | feature << FEATURE_SHIFT``.
FEATURE_SHIFT = 5
#: The templates shipped in ``assets/``, in the order :func:`load_templates` returns them.
TEMPLATE_NAMES: tuple[str, ...] = ("pydeface_mean", "colin27")

_ASSET_PACKAGE = "deephealth_deid.data"


@dataclass(frozen=True)
class HeadTemplate:
    """A labelled head on a 1 mm RAS grid.

    Attributes:
        name: Short name (``'pydeface_mean'``, ``'colin27'``).
        code: ``uint8`` array, ``tissue | feature << FEATURE_SHIFT`` per voxel.
        origin: World position (RAS mm) of voxel ``(0, 0, 0)``; the grid is
            axis-aligned with 1 mm voxels.
        landmarks: Named points in the template's world mm (``globe_l``,
            ``globe_r``, ``nasion``, ``pronasale``, ``subnasale``, ``stomion``,
            ``chin``, ``ear_l``, ``ear_r``, ``head_centre``, ``vertex``), ``nan``
            where a landmark lies outside the template's field of view.
        fov_inferior_open: Whether voxels below the grid continue the lowest
            slice (a neck that goes on), rather than being outside the head.
        source: Where the template comes from and its licence.
    """

    name: str
    code: np.ndarray
    origin: np.ndarray
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    fov_inferior_open: bool = False
    source: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape."""
        return tuple(int(n) for n in self.code.shape)  # type: ignore[return-value]

    @property
    def tissue(self) -> np.ndarray:
        """Tissue code per voxel (:data:`TISSUES`)."""
        return self.code & ((1 << FEATURE_SHIFT) - 1)

    @property
    def feature(self) -> np.ndarray:
        """Feature label per voxel (0 none, 1 eyes, 2 nose, 3 mouth, 4 ears)."""
        return self.code >> FEATURE_SHIFT

    def labels(self) -> np.ndarray:
        """The label map in :data:`~deephealth_deid.data.phantom.LABELS` values."""
        return label_of_code(self.code)


def label_of_code(code: np.ndarray) -> np.ndarray:
    """Label values (:data:`~deephealth_deid.data.phantom.LABELS`) of template codes.

    Args:
        code: ``uint8`` codes, ``tissue | feature << FEATURE_SHIFT``.

    Returns:
        ``uint8`` labels: the feature where there is one, else the tissue's label.
    """
    lut = np.empty(256, np.uint8)
    for c in range(256):
        f = c >> FEATURE_SHIFT
        lut[c] = f if 1 <= f <= 4 else TISSUE_LABEL[c & ((1 << FEATURE_SHIFT) - 1)]
    return lut[code]


@functools.lru_cache(maxsize=1)
def load_templates() -> tuple[HeadTemplate, ...]:
    """The shipped labelled templates (read once, then cached).

    Returns:
        The templates named in :data:`TEMPLATE_NAMES`.

    Raises:
        FileNotFoundError: If the package data are missing (a broken install).
    """
    out = []
    for name in TEMPLATE_NAMES:
        ref = resources.files(_ASSET_PACKAGE).joinpath("assets", f"head_template_{name}.npz")
        try:
            data = ref.read_bytes()
        except (FileNotFoundError, OSError) as e:
            raise FileNotFoundError(
                f"the head template asset {ref} is missing; reinstall deephealth_deid "
                "(its package data must include deephealth_deid/data/assets/*.npz)"
            ) from e
        out.append(_template_from_npz(name, data))
    return tuple(out)


def _template_from_npz(name: str, data: bytes) -> HeadTemplate:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return HeadTemplate(
            name=name,
            code=np.ascontiguousarray(z["code"], dtype=np.uint8),
            origin=np.asarray(z["origin"], dtype=np.float64),
            landmarks={k: np.asarray(v, dtype=np.float64) for k, v in meta["landmarks"].items()},
            fov_inferior_open=bool(meta.get("fov_inferior_open", False)),
            source=str(meta.get("source", "")),
        )


# =====================================================================================================
# Offline derivation (run once by a maintainer; needs the source images, not shipped)
# =====================================================================================================


def ball_voxels(r: float, n: int | None = None) -> np.ndarray:
    """Boolean ball of radius ``r`` voxels in a cube of side ``2 n + 1`` (default ``n = ceil(r)``)."""
    n = int(np.ceil(r)) if n is None else n
    g = np.mgrid[-n : n + 1, -n : n + 1, -n : n + 1]
    return (g**2).sum(0) <= r * r + 1e-6


def _resample_ras(path: str | os.PathLike[str], *, order: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI image onto an axis-aligned 1 mm RAS grid covering it. Returns (array, origin)."""
    import nibabel as nib

    img = nib.load(os.fspath(path))
    a = np.asarray(img.dataobj, dtype=np.float32)
    aff = img.affine
    corners = np.array(
        [[i, j, k, 1] for i in (0, a.shape[0] - 1) for j in (0, a.shape[1] - 1) for k in (0, a.shape[2] - 1)]
    )
    w = (aff @ corners.T)[:3]
    lo, hi = np.floor(w.min(1)), np.ceil(w.max(1))
    shape = tuple(int(n) for n in (hi - lo + 1))
    b = np.eye(4)
    b[:3, 3] = lo
    m = np.linalg.inv(aff) @ b
    out = ndi.affine_transform(
        a, m[:3, :3], m[:3, 3], output_shape=shape, order=order, mode="constant", cval=0.0
    )
    return out.astype(np.float32), lo.astype(np.float64)


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = ndi.sum(mask, lab, range(1, n + 1))
    return lab == (int(np.argmax(sizes)) + 1)


def _grid(shape: tuple[int, ...], origin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axes = [np.arange(n, dtype=np.float32) + np.float32(origin[i]) for i, n in enumerate(shape)]
    return tuple(np.meshgrid(*axes, indexing="ij", sparse=True))  # type: ignore[return-value]


def _head_mask(s: np.ndarray, threshold: float) -> np.ndarray:
    """Head mask: threshold, drop thin outside structures, keep the largest part, fill holes."""
    m = s > threshold
    m = ndi.binary_opening(m, ball_voxels(3))
    m = _largest(m)
    m = ndi.binary_closing(m, ball_voxels(2), border_value=0)
    m |= _fill_axial(m)
    return ndi.binary_fill_holes(m)


def _fill_axial(m: np.ndarray) -> np.ndarray:
    out = np.zeros_like(m)
    for k in range(m.shape[2]):
        out[:, :, k] = ndi.binary_fill_holes(m[:, :, k])
    return out


def _fit_globe(s: np.ndarray, origin: np.ndarray, guess: np.ndarray, *, radius: float = 11.5) -> np.ndarray:
    """Refine a globe centre: the darkest ball of ``radius`` with a bright rim, near ``guess``."""
    n = int(np.ceil(radius + 4))
    inner = ball_voxels(radius - 2, n).astype(np.float32)
    shell = (ball_voxels(radius + 4, n) & ~ball_voxels(radius + 1, n)).astype(np.float32)
    best, best_p = np.inf, guess
    g = np.round(guess - origin).astype(int)
    for dx in range(-5, 6):
        for dy in range(-5, 6):
            for dz in range(-5, 6):
                c = (*g, dx, dy, dz)
                sl = tuple(slice(c[a] - n, c[a] + n + 1) for a in range(3))
                box = s[sl]
                if box.shape != shell.shape:
                    continue
                score = (box * inner).sum() / inner.sum() - 0.5 * (box * shell).sum() / shell.sum()
                if score < best:
                    best, best_p = score, c + origin
    return np.asarray(best_p, dtype=np.float64)


def _profile(head: np.ndarray, origin: np.ndarray, half_width: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Anterior-most head y (mm) per axial level on the midline; returns (z, y) with nan where empty."""
    i0 = round(-origin[0])
    col = head[i0 - half_width : i0 + half_width + 1].any(0)  # (y, z)
    z = np.arange(head.shape[2]) + origin[2]
    y = np.full(head.shape[2], np.nan)
    for k in range(head.shape[2]):
        nz = np.nonzero(col[:, k])[0]
        if len(nz):
            y[k] = nz.max() + origin[1]
    return z, y


def _argext(z: np.ndarray, y: np.ndarray, lo: float, hi: float, *, mode: str) -> tuple[float, float]:
    sel = (z >= lo) & (z <= hi) & np.isfinite(y)
    if not sel.any():
        return np.nan, np.nan
    ys = ndi.uniform_filter1d(np.where(np.isfinite(y), y, -1e3), 3)[sel]
    k = int(np.argmax(ys) if mode == "max" else np.argmin(ys))
    return float(z[sel][k]), float(y[sel][k])


def _pinna(
    shape: tuple[int, int, int],
    origin: np.ndarray,
    canal: np.ndarray,
    side: int,
    *,
    height: float = 62.0,
    width: float = 34.0,
    angle_deg: float = 25.0,
    thickness: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A modelled pinna at ear canal opening ``canal`` on side ``side`` (+1 right, -1 left).

    The pinna is a plate hinged on a vertical line just in front of the canal,
    turned ``angle_deg`` away from the side of the head, with an outline of an
    ellipse (``height`` x ``width`` mm) that narrows to a lobule at the bottom, a
    thicker rim (helix) and a root (tragus and concha) joining it to the head.

    Returns:
        ``(pinna, cartilage)``: boolean masks on the grid (cartilage is inside pinna).
    """
    x, y, z = _grid(shape, origin)
    u = z - canal[2]  # up
    v = y - canal[1]  # anterior
    w = side * (x - canal[0])  # lateral, from the canal opening
    a = np.deg2rad(angle_deg)
    hinge_v = 6.0
    s = (hinge_v - v) * np.cos(a) + w * np.sin(a)  # in-plane, posterior from the hinge
    n = -(hinge_v - v) * np.sin(a) + w * np.cos(a) - 1.0  # normal, lateral of the plate
    uc, sc = 6.0, width / 2 + 2.0
    hu, hs = height / 2, width / 2
    # Narrower towards the lobule.
    taper = np.clip(1.0 - 0.35 * np.clip(-(u - uc) / hu, 0.0, 1.0), 0.5, 1.0)
    rho = np.sqrt(((u - uc) / hu) ** 2 + ((s - sc) / (hs * taper)) ** 2)
    plate = (rho <= 1.0) & (np.abs(n) <= thickness / 2)
    rim = (np.abs(rho - 0.93) <= 0.09) & (np.abs(n) <= thickness / 2 + 1.2) & (s > 2.0)
    lobule = (rho <= 1.0) & ((u - uc) < -0.6 * hu) & (np.abs(n) <= thickness / 2 + 1.5)
    root = (((u - 2.0) / 11.0) ** 2 + ((v - 1.0) / 8.0) ** 2 <= 1.0) & (w >= -3.0) & (w <= 7.0)
    concha = (((u - 4.0) / 9.0) ** 2 + ((s - 10.0) / 8.0) ** 2 <= 1.0) & (n <= 0) & (w >= 0) & (w <= 7)
    pinna = plate | rim | lobule | root | concha
    cartilage = ndi.binary_erosion(pinna, ball_voxels(1.0)) & ~lobule
    return pinna, cartilage


@dataclass
class _Derived:
    code: np.ndarray
    origin: np.ndarray
    landmarks: dict[str, list[float]]
    fov_inferior_open: bool
    source: str


def _derive(
    image: np.ndarray,
    origin: np.ndarray,
    *,
    brain: np.ndarray | None,
    head_threshold: float,
    globe_guess: tuple[tuple[float, float, float], tuple[float, float, float]],
    ear_guess: tuple[tuple[float, float, float], tuple[float, float, float]],
    brain_envelope: dict[str, list[float]] | None = None,
    face_in_fov: bool = True,
    fov_inferior_open: bool = False,
    source: str = "",
) -> _Derived:
    """Tissue classes and features of one T1 template on its 1 mm grid.

    Args:
        image: T1 intensities, 1 mm RAS.
        origin: World mm of voxel 0.
        brain: Brain mask, or None to find it by intensity inside ``brain_envelope``.
        head_threshold: Intensity above which a voxel is head.
        globe_guess: Approximate left and right globe centres (world mm).
        ear_guess: Approximate left and right ear canal positions (world mm).
        brain_envelope: Piecewise-linear limits for the intensity brain search:
            ``zbase_y``/``zbase_z`` (lowest brain z as a function of y) and
            ``lat_z``/``lat_x`` (largest ``|x|`` as a function of z).
        face_in_fov: Whether the nose and lips are inside the template's field of view.
        fov_inferior_open: Stored with the template (see :class:`HeadTemplate`).
        source: Provenance text.
    """
    s = ndi.gaussian_filter(image, 0.7).astype(np.float32)
    shape = s.shape
    x, y, z = _grid(shape, origin)
    head = _head_mask(s, head_threshold)
    globes = [_fit_globe(s, origin, np.asarray(g, float)) for g in globe_guess]
    log.info("globes at %s", [np.round(g, 1).tolist() for g in globes])
    # Thick things that are no anatomy (averaged spectacles, pads) beside and in front of the eyes.
    opened = ndi.binary_opening(head, ball_voxels(6))
    g_y = max(g[1] for g in globes)
    head &= ~(~opened & (np.abs(x) > 36.0) & (y > g_y + 10.0))
    head &= ~((np.abs(x) > 38.0) & (y > g_y + 15.0))
    head = _largest(head)
    dist = ndi.distance_transform_edt(head).astype(np.float32)

    # ---- brain
    if brain is None:
        env = brain_envelope or {}
        zb = np.interp(y, env["zbase_y"], env["zbase_z"])
        lat = np.interp(z, env["lat_z"], env["lat_x"])
        m = (s > env["threshold"]) & (dist > env.get("depth", 11.0)) & (z > zb) & (np.abs(x) < lat)
        for g in globes:
            m &= (x - g[0]) ** 2 + (y - g[1]) ** 2 + (z - g[2]) ** 2 > 20.0**2
        c = tuple(np.round(np.asarray(env["seed"]) - origin).astype(int))
        e = ndi.binary_erosion(m, ball_voxels(1))
        lab, _ = ndi.label(e)
        brain = ndi.binary_dilation(lab == lab[c], ball_voxels(1)) & m
        brain = ndi.binary_fill_holes(ndi.binary_closing(brain, ball_voxels(3)))
        brain = ndi.binary_opening(brain, ball_voxels(6))
        brain = _largest(brain)
    brain = ndi.binary_fill_holes(_largest(brain & head))
    bvals = s[brain]
    wm_level = float(np.percentile(bvals, 75))
    rel = s / wm_level  # 1 ~ white matter

    tissue = np.zeros(shape, np.uint8)
    tissue[head] = TISSUES["muscle"]
    bright = rel > 0.95
    dark = rel < 0.42
    tissue[head & bright] = TISSUES["fat"]

    # ---- skull and CSF around the brain
    icv = ndi.binary_fill_holes(ndi.binary_closing(brain, ball_voxels(4)))
    icv_d2 = ndi.binary_dilation(icv, ball_voxels(2.5))
    dist_icv = ndi.distance_transform_edt(~icv).astype(np.float32)
    shell = (dist_icv > 0) & (dist_icv <= 10.0) & head & (dist > 2.5)
    bone = shell & (dark | (rel < 0.55)) & ~icv_d2
    bone = ndi.binary_closing(bone, ball_voxels(2)) & shell & ~icv_d2
    bone_fill = ndi.binary_closing(bone, ball_voxels(3)) & shell
    tissue[bone_fill & ~bone] = TISSUES["marrow"]
    tissue[bone] = TISSUES["bone"]
    csf = (icv_d2 & ~brain & head) | (icv & ~brain)
    tissue[csf] = TISSUES["csf"]
    # Inner table: a thin dark shell right outside the CSF where nothing else was found.
    inner_table = ndi.binary_dilation(icv_d2, ball_voxels(1.5)) & ~icv_d2 & head & (dist > 2.5)
    tissue[inner_table & (tissue != TISSUES["marrow"])] = TISSUES["bone"]

    # ---- brain classes
    tissue[brain] = TISSUES["gm"]
    core = ndi.binary_erosion(brain, ball_voxels(3))
    tissue[brain & (rel > 0.80)] = TISSUES["wm"]
    deep = (
        core
        & (rel > 0.62)
        & (rel <= 0.80)
        & (np.abs(x) < 30)
        & (np.abs(z - np.median(np.nonzero(brain)[2] + origin[2])) < 25)
    )
    tissue[deep] = TISSUES["deep_gm"]
    vent = core & (rel < 0.45)
    vent = ndi.binary_opening(vent, ball_voxels(1))
    tissue[vent] = TISSUES["csf"]

    # ---- face: air and bone below and in front of the cranium
    outside_cranium = head & ~icv_d2 & ~shell
    fdark = outside_cranium & dark & (dist > 4.0)
    thick_air = ndi.binary_opening(fdark & (rel < 0.28) & (dist > 6.0), ball_voxels(2))
    airway_zone = (np.abs(x) < 42) & (y > -45) & (z < max(g[2] for g in globes) + 30)
    airway = thick_air & airway_zone
    tissue[fdark] = TISSUES["bone"]
    tissue[airway] = TISSUES["airway"]
    mucosa = ndi.binary_dilation(airway, ball_voxels(1.5)) & ~airway & (tissue == TISSUES["muscle"])
    tissue[mucosa] = TISSUES["mucosa"]
    # Orbital fat: bright tissue around the globes.
    near_globe = np.zeros(shape, bool)
    for g in globes:
        near_globe |= (x - g[0]) ** 2 + (y - g[1]) ** 2 + (z - g[2]) ** 2 <= 24.0**2
    tissue[near_globe & bright & ~brain & (tissue == TISSUES["fat"])] = TISSUES["orbital_fat"]
    # Skin: the outer 2 mm of the head.
    tissue[head & (dist <= 2.0)] = TISSUES["skin"]
    # Globes and lenses.
    globe_mask = np.zeros(shape, bool)
    for g in globes:
        gm = (x - g[0]) ** 2 + (y - g[1]) ** 2 + (z - g[2]) ** 2 <= 11.5**2
        globe_mask |= gm
        tissue[gm & head] = TISSUES["vitreous"]
        lens = ((x - g[0]) / 4.5) ** 2 + ((y - (g[1] + 8.5)) / 2.0) ** 2 + ((z - g[2]) / 4.5) ** 2 <= 1.0
        tissue[lens & gm] = TISSUES["lens"]

    feature = np.zeros(shape, np.uint8)
    soft = head & np.isin(
        tissue, [TISSUES[k] for k in ("skin", "fat", "muscle", "orbital_fat", "mucosa", "cartilage")]
    )
    far_from_brain = ndi.distance_transform_edt(~brain) > 8.0

    # ---- eyes: lids and periorbital skin in front of each globe
    for g in globes:
        region = ((x - g[0]) / 17.0) ** 2 + ((y - (g[1] + 6.0)) / 15.0) ** 2 + ((z - g[2]) / 14.0) ** 2 <= 1.0
        near = (x - g[0]) ** 2 + (y - g[1]) ** 2 + (z - g[2]) ** 2 <= (11.5 + 9.0) ** 2
        lid = soft & region & near & (y > g[1] + 3.5) & (dist <= 9.0) & ~globe_mask & far_from_brain
        feature[lid] = 1

    z_prof, y_prof = _profile(head, origin)
    lm: dict[str, list[float]] = {}
    for nm, g in zip(("globe_l", "globe_r"), sorted(globes, key=lambda p: p[0]), strict=True):
        lm[nm] = [float(v) for v in g]
    gz = float(np.mean([g[2] for g in globes]))
    gy = float(np.mean([g[1] for g in globes]))
    nan3 = [float("nan")] * 3
    if face_in_fov:
        z_tip, y_tip = _argext(z_prof, y_prof, gz - 50, gz - 12, mode="max")
        z_nas, y_nas = _argext(z_prof, y_prof, z_tip + 15, gz + 15, mode="min")
        z_sub, y_sub = _argext(z_prof, y_prof, z_tip - 28, z_tip - 8, mode="min")
        z_chin, y_chin = _argext(z_prof, y_prof, z_sub - 60, z_sub - 22, mode="max")
        z_ul, _ = _argext(z_prof, y_prof, z_sub - 12, z_sub - 2, mode="max")
        z_lmf, _ = _argext(z_prof, y_prof, z_chin + 4, z_ul - 8, mode="min")
        z_sto = 0.5 * (z_ul + z_lmf)
        lm.update(
            nasion=[0.0, y_nas, z_nas],
            pronasale=[0.0, y_tip, z_tip],
            subnasale=[0.0, y_sub, z_sub],
            stomion=[0.0, float(np.interp(z_sto, z_prof, y_prof)), z_sto],
            chin=[0.0, y_chin, z_chin],
        )
        log.info("face landmarks %s", {k: np.round(v, 1).tolist() for k, v in lm.items()})
        # ---- nose: tissue in front of the nasion-subnasale line, on the midline
        t = np.clip((z - z_nas) / (z_sub - z_nas), 0.0, 1.0)
        y_line = y_nas + t * (y_sub - y_nas)
        half_w = 9.0 + 10.0 * t
        nose = head & (y > y_line - 7.0) & (z <= z_nas + 3.0) & (z >= z_sub - 1.0) & (np.abs(x) <= half_w)
        nose &= ~(feature == 1) & ~globe_mask & far_from_brain
        lab, _ = ndi.label(nose)
        tip = tuple(np.round(np.array([0.0, y_tip - 2.0, z_tip]) - origin).astype(int))
        if lab[tip]:
            nose = lab == lab[tip]
        feature[nose] = 2
        # Nostrils: air enclosed in the nose stays air but is part of the nose.
        # ---- mouth: lips, soft tissue within ~11 mm of the front surface, subnasale to labiomental fold
        i_front = np.where(head.any(1), head.shape[1] - 1 - np.argmax(head[:, ::-1, :], axis=1), -1)  # (x, z)
        y_front = (i_front + origin[1]).astype(np.float32)[:, None, :]
        zc, hz = 0.5 * (z_sub + z_lmf), 0.5 * (z_sub - z_lmf) + 2.0
        ellipse = (x / 27.0) ** 2 + ((z - zc) / hz) ** 2 <= 1.0
        lips = head & ellipse & (y >= y_front - 11.0) & (z < z_sub - 1.0) & (feature == 0) & far_from_brain
        lips &= ~np.isin(tissue, [TISSUES["bone"], TISSUES["airway"]]) | (y >= y_front - 6.0)
        feature[lips] = 3
    else:
        lm.update(nasion=nan3, pronasale=nan3, subnasale=nan3, stomion=nan3, chin=nan3)

    # ---- ears: modelled pinnae at the canal openings on the side of the head
    mid_x = float(np.mean([g[0] for g in globes]))
    half = {}
    for g in ear_guess:
        side = 1 if g[0] > mid_x else -1
        j, k = round(g[1] - origin[1]), round(g[2] - origin[2])
        idx = np.nonzero(ndi.binary_opening(head[:, :, k], ball_voxels(8)[:, :, 8])[:, j])[0]
        half[side] = side * ((idx.max() if side > 0 else idx.min()) + origin[0] - mid_x)
    if abs(half[1] - half[-1]) > 4.0:  # something beside one ear: trust the narrower side
        half[1] = half[-1] = min(half.values())
    for nm, g in zip(("ear_l", "ear_r"), sorted(ear_guess, key=lambda p: p[0]), strict=True):
        side = 1 if g[0] > mid_x else -1
        canal = np.array([mid_x + side * (half[side] - 1.0), g[1], g[2]])
        lm[nm] = [float(v) for v in canal]
        # Remove what the template has of its own pinna (thin tissue sticking out there).
        box = (np.abs(y - g[1]) < 45) & (np.abs(z - g[2]) < 50) & (side * (x - canal[0]) > -4)
        old = head & ~opened & box
        tissue[old] = TISSUES["air"]
        feature[old] = 0
        pinna, cart = _pinna(shape, origin, canal, side)
        new = pinna & (~head | old | (dist <= 3.0))
        tissue[new] = TISSUES["skin"]
        tissue[new & cart] = TISSUES["cartilage"]
        feature[new & far_from_brain] = 4
        head |= new

    lm["head_centre"] = [float(v) for v in (np.array(ndi.center_of_mass(brain)) + origin)]
    top = np.nonzero(head.any((0, 1)))[0].max() + origin[2]
    lm["vertex"] = [0.0, lm["head_centre"][1], float(top)]
    lm["brain_centre"] = list(lm["head_centre"])
    del gy

    # Features never touch the brain, the globes, bone or airway.
    feature[~far_from_brain] = 0
    feature[globe_mask] = 0
    feature[np.isin(tissue, [TISSUES["bone"], TISSUES["marrow"], TISSUES["vitreous"], TISSUES["lens"]])] = 0
    code = (tissue & 31) | (feature << FEATURE_SHIFT)

    # Crop to the head plus a margin.
    nz = np.argwhere(code > 0)
    lo = np.maximum(nz.min(0) - 6, 0)
    hi = np.minimum(nz.max(0) + 7, np.array(shape))
    if fov_inferior_open:
        lo[2] = nz.min(0)[2]
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return _Derived(
        code=np.ascontiguousarray(code[sl]),
        origin=origin + lo,
        landmarks=lm,
        fov_inferior_open=fov_inferior_open,
        source=source,
    )


def build_template_assets(
    out_dir: str | os.PathLike[str],
    *,
    pydeface_mean: str | os.PathLike[str],
    colin: str | os.PathLike[str] | None = None,
    colin_brain: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Derive the labelled template assets from the source images (offline, once).

    Args:
        out_dir: Folder to write ``head_template_<name>.npz`` into.
        pydeface_mean: ``pydeface/data/mean_reg2mean.nii.gz`` from the pydeface wheel.
        colin: ``ch2.nii.gz`` from Debian's ``mricron-data`` (optional).
        colin_brain: ``ch2bet.nii.gz`` from the same package (needed with ``colin``).

    Returns:
        The files written.

    Example:
        >>> build_template_assets(  # doctest: +SKIP
        ...     "deephealth_deid/data/assets",
        ...     pydeface_mean="/tmp/pyd/pydeface/data/mean_reg2mean.nii.gz",
        ...     colin="/usr/share/mricron/templates/ch2.nii.gz",
        ...     colin_brain="/usr/share/mricron/templates/ch2bet.nii.gz",
        ... )
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    img, origin = _resample_ras(pydeface_mean)
    d = _derive(
        img,
        origin,
        brain=None,
        head_threshold=25.0,
        globe_guess=((-29.0, 72.0, -32.0), (29.0, 72.0, -32.0)),
        ear_guess=((-62.0, -18.0, -42.0), (62.0, -18.0, -42.0)),
        brain_envelope={
            "threshold": 145.0,
            "depth": 11.0,
            "seed": [0.0, -15.0, 10.0],
            "zbase_y": [-120.0, -90.0, -60.0, -40.0, 0.0, 20.0, 32.0, 45.0, 120.0],
            "zbase_z": [-42.0, -50.0, -62.0, -62.0, -50.0, -45.0, -35.0, -17.0, -17.0],
            "lat_z": [-70.0, -45.0, -25.0, 0.0],
            "lat_x": [44.0, 50.0, 56.0, 80.0],
        },
        face_in_fov=True,
        fov_inferior_open=True,
        source="pydeface 2.1.0 data/mean_reg2mean.nii.gz (MIT, Copyright (c) 2015 pydeface developers)",
    )
    written.append(_save(out / "head_template_pydeface_mean.npz", d))
    if colin is not None:
        import nibabel as nib

        img, origin = _resample_ras(colin)
        if colin_brain is None:
            raise ValueError("colin_brain (ch2bet.nii.gz) is needed with colin")
        b_img = nib.load(os.fspath(colin_brain))
        if not np.allclose(b_img.affine[:3, :3], np.eye(3)):
            raise ValueError(f"{colin_brain}: expected a 1 mm RAS grid like ch2.nii.gz")
        braw = np.asarray(b_img.dataobj) > 0
        brain = np.zeros(img.shape, bool)
        off = np.round(b_img.affine[:3, 3] - origin).astype(int)
        brain[tuple(slice(o, o + n) for o, n in zip(off, braw.shape, strict=True))] = braw
        brain = ndi.binary_fill_holes(
            ndi.binary_closing(_largest(ndi.binary_opening(brain, ball_voxels(1))), ball_voxels(2))
        )
        # Pad 20 mm on the left and right: the modelled pinnae stick out beyond ch2's field of view.
        img = np.pad(img, ((20, 20), (0, 0), (0, 0)))
        brain = np.pad(brain, ((20, 20), (0, 0), (0, 0)))
        origin = origin - np.array([20.0, 0.0, 0.0])
        d = _derive(
            img,
            origin,
            brain=brain,
            head_threshold=20.0,
            globe_guess=((-32.0, 62.0, -40.0), (32.0, 62.0, -40.0)),
            ear_guess=((-75.0, -20.0, -42.0), (75.0, -20.0, -42.0)),
            face_in_fov=False,
            fov_inferior_open=False,
            source=(
                "Colin27 ch2.nii.gz + ch2bet.nii.gz from Debian mricron-data 1.2.20211006 "
                "(BSD-3-clause per debian/copyright; Colin27 (c) McConnell Brain Imaging Centre, MNI)"
            ),
        )
        written.append(_save(out / "head_template_colin27.npz", d))
    load_templates.cache_clear()
    return written


def _save(path: Path, d: _Derived) -> Path:
    meta = {
        "landmarks": d.landmarks,
        "fov_inferior_open": d.fov_inferior_open,
        "source": d.source,
        "tissues": TISSUES,
        "feature_shift": FEATURE_SHIFT,
    }
    np.savez_compressed(path, code=d.code, origin=d.origin, meta=np.array(json.dumps(meta)))
    log.info("wrote %s: %s voxels, %.0f kB", path, d.code.shape, path.stat().st_size / 1024)
    return path
