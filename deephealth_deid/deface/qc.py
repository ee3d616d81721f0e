"""The QC picture of a defaced head: surface renders before and after, and the mask on slices.

A person should be able to check a case in a second: the top row shows the
face as it was (front, left, right), the middle row as it is now, the bottom
row three slices through the features with the removal mask in colour.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..io.volume import Volume
from .conform import Grid, _sample, head_threshold

__all__ = ["qc_image", "render_surface"]

_COLOURS = {1: (255, 64, 64), 2: (64, 200, 64), 3: (64, 128, 255), 4: (255, 200, 0)}


def _ras_grid(volume: Volume, spacing: float) -> Grid:
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in volume.shape])).reshape(3, -1).T
    world = corners @ volume.affine[:3, :3].T + volume.affine[:3, 3]
    lo, hi = world.min(axis=0), world.max(axis=0)
    shape = tuple(int(np.ceil((h - lo_) / spacing)) + 1 for lo_, h in zip(lo, hi, strict=True))
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = lo
    return Grid(shape, affine)  # type: ignore[arg-type]


def render_surface(ras: np.ndarray, threshold: float, view: str) -> np.ndarray:
    """Shaded depth render (grey uint8) of the surface where ``ras`` first exceeds ``threshold``.

    Args:
        ras: Volume on an RAS grid (x right, y anterior, z superior).
        threshold: Head/air threshold.
        view: ``'front'`` (from anterior), ``'left'`` (from the subject's left) or ``'right'``.
    """
    inside = ndimage.gaussian_filter(ras.astype(np.float32), 1.0) > threshold
    if view == "front":
        vol = np.flip(inside, axis=1).transpose(0, 2, 1)  # rays along -y: (x, z, depth)
    elif view == "left":
        vol = inside.transpose(1, 2, 0)[::-1]  # rays along +x from the left: (y reversed, z, depth)
    else:
        vol = np.flip(inside, axis=0).transpose(1, 2, 0)  # rays along -x from the right: (y, z, depth)
    hit = vol.any(axis=2)
    depth = np.where(hit, vol.argmax(axis=2), vol.shape[2]).astype(np.float32)
    gy, gx = np.gradient(ndimage.gaussian_filter(depth, 0.7))
    shade = 1.0 / np.sqrt(1.0 + gx**2 + gy**2)
    light = np.clip(shade * (1.0 - 0.5 * depth / vol.shape[2]), 0, 1)
    img = np.where(hit, 40 + 215 * light, 0).astype(np.uint8)
    return np.rot90(img)  # superior up


def _slices(ras: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    fg = np.nonzero(labels)
    centre = [int(np.median(ix)) for ix in fg] if fg[0].size else [n // 2 for n in ras.shape]
    hi = np.percentile(ras, 99.5) or 1.0
    out = []
    for axis in (2, 1, 0):
        index = [slice(None)] * 3
        index[axis] = centre[axis]
        img = np.clip(ras[tuple(index)] / hi * 255, 0, 255).astype(np.uint8)
        lab = labels[tuple(index)]
        rgb = np.repeat(img[..., None], 3, axis=-1)
        for value, colour in _COLOURS.items():
            m = lab == value
            rgb[m] = (0.4 * rgb[m] + 0.6 * np.array(colour)).astype(np.uint8)
        out.append(np.rot90(rgb))
    return out


def qc_image(before: Volume, after: Volume, mask: Volume, *, spacing: float = 1.5) -> np.ndarray:
    """The QC picture as an RGB uint8 array (rows: before, after, mask on slices)."""
    grid = _ras_grid(before, spacing)
    lo = float(np.percentile(before.array, 1))
    ras_before = _sample(before.array.astype(np.float32), before.affine, grid, order=1, cval=lo)
    ras_after = _sample(after.array.astype(np.float32), after.affine, grid, order=1, cval=lo)
    ras_mask = _sample(mask.array, mask.affine, grid, order=0, cval=0)
    threshold = head_threshold(ras_before)
    rows = []
    for ras in (ras_before, ras_after):
        panels = [render_surface(ras, threshold, v) for v in ("front", "left", "right")]
        rows.append([np.repeat(p[..., None], 3, axis=-1) for p in panels])
    rows.append(_slices(ras_before, ras_mask))
    return _tile(rows)


def _tile(rows: list[list[np.ndarray]], gap: int = 4) -> np.ndarray:
    cell_h = max(p.shape[0] for row in rows for p in row)
    cell_w = max(p.shape[1] for row in rows for p in row)
    ncols = max(len(r) for r in rows)
    out = np.zeros((len(rows) * (cell_h + gap), ncols * (cell_w + gap), 3), np.uint8)
    for r, row in enumerate(rows):
        for c, p in enumerate(row):
            y, x = r * (cell_h + gap), c * (cell_w + gap)
            out[y : y + p.shape[0], x : x + p.shape[1]] = p
    return out
