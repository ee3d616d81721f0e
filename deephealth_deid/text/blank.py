"""Blanking: fill each region to remove (plus a margin) with black, in the image's own terms.

Black means what the image's photometric interpretation makes it mean: the
lowest value (0) for MONOCHROME2, the highest stored value for MONOCHROME1
(inverted grey), ``(0, 0, 0)`` for RGB, and for PALETTE COLOR the index whose
palette colour is darkest. Nothing outside the padded boxes changes, and an
image with nothing to blank is returned as it is (the same object).

Example:
    >>> import numpy as np
    >>> from deephealth_deid.io import Image
    >>> img = Image(np.full((1, 20, 40), 200, np.uint8), "MONOCHROME1")
    >>> out = blank_regions(img, [Region(0, 5, 5, 15, 10)], pad_px=0)
    >>> int(out.frames[0, 7, 7]), int(out.frames[0, 0, 0])
    (255, 200)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..io.image import Image
from .regions import Region

__all__ = ["fill_value", "default_pad", "padded_box", "blank_regions", "blank_mask"]


def default_pad(height: int) -> int:
    """Margin in pixels around a box of text ``height`` rows high: a fifth of it, at least 2.

    Covers the antialiased edges and descenders a tight box misses.
    """
    return max(2, math.ceil(0.2 * height))


def padded_box(
    region: Region,
    rows: int,
    columns: int,
    pad_px: int | None = None,
    grid: tuple[int, int] | None = None,
) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of ``region`` grown by the margin and clipped to the frame.

    Device-rule boxes are drawn by hand, and fitted boxes (:mod:`.fit`) were cut to their ink,
    margin included: they are used as given, unless ``pad_px`` is given for a fitted box.
    With a ``grid`` (rows, columns), the box then grows outwards to whole cells of it (a JPEG's
    blocks: :func:`deephealth_deid.io.api.edit_grid`).
    """
    if pad_px is not None and pad_px < 0:
        raise ValueError(f"pad_px must be >= 0, got {pad_px}")
    if region.source == "rules" or (region.fitted and pad_px is None):
        pad = 0
    elif pad_px is None:
        pad = default_pad(region.line_height)
    else:
        pad = int(pad_px)
    # Clipped on both sides: a box wholly outside the frame becomes empty (a negative end would
    # count from the other edge).
    x0, y0 = min(max(region.x0 - pad, 0), columns), min(max(region.y0 - pad, 0), rows)
    x1, y1 = max(min(region.x1 + pad, columns), x0), max(min(region.y1 + pad, rows), y0)
    if grid is not None and x1 > x0 and y1 > y0:
        gy, gx = grid
        x0, y0 = x0 // gx * gx, y0 // gy * gy
        x1, y1 = min(-(-x1 // gx) * gx, columns), min(-(-y1 // gy) * gy, rows)
    return x0, y0, x1, y1


def fill_value(image: Image, *, bits_stored: int | None = None) -> np.ndarray:
    """The stored value that shows as black in ``image``.

    Args:
        image: The image.
        bits_stored: Bits actually used per value (DICOM *Bits Stored*); a
            MONOCHROME1 image is filled with the largest value that many bits
            hold. Default: the largest value of the frames' type.

    Returns:
        A 0-d array of the frames' type, or a ``(3,)`` one for RGB.
    """
    frames = image.frames
    dtype = frames.dtype
    if image.photometric == "RGB":
        return np.zeros(3, dtype=dtype)
    if image.photometric == "PALETTE COLOR":
        return np.asarray(_darkest_index(image), dtype=dtype)
    if dtype.kind == "f":
        lo, hi = (float(frames.min()), float(frames.max())) if frames.size else (0.0, 0.0)
        return np.asarray(hi if image.photometric == "MONOCHROME1" else min(lo, 0.0), dtype=dtype)
    info = np.iinfo(dtype)
    if image.photometric == "MONOCHROME1":
        top = int(info.max)
        if bits_stored is not None and 0 < bits_stored < info.bits:
            top = (1 << (bits_stored - (1 if dtype.kind == "i" else 0))) - 1
        return np.asarray(top, dtype=dtype)
    # MONOCHROME2: 0, or the darkest value present where values go below 0 (signed data)
    low = min(0, int(frames.min())) if frames.size else 0
    return np.asarray(low, dtype=dtype)


def _darkest_index(image: Image) -> int:
    assert image.palette is not None
    lut = np.asarray(image.palette, dtype=np.float64)[:, :3]
    values = np.arange(len(lut), dtype=np.int64) + int(image.palette_first)
    info = np.iinfo(image.frames.dtype)
    valid = (values >= info.min) & (values <= info.max)
    if not valid.any():
        raise ValueError("no palette entry can be stored in the image's pixel type")
    luminance = lut @ np.array([0.299, 0.587, 0.114])
    luminance[~valid] = np.inf
    return int(values[int(np.argmin(luminance))])


def blank_regions(
    image: Image,
    regions: Iterable[Region],
    *,
    pad_px: int | None = None,
    bits_stored: int | None = None,
    grid: tuple[int, int] | None = None,
) -> Image:
    """``image`` with every region whose decision is ``'blank'`` filled with black.

    Args:
        image: The image; not modified.
        regions: Regions of any of its frames; those marked ``'keep'`` are left.
        pad_px: Margin around each box; ``None`` for :func:`default_pad` of
            its height.
        bits_stored: See :func:`fill_value`.
        grid: Grow each box to whole cells of this grid (see :func:`padded_box`).

    Returns:
        A new image (same meaning and source) whose frames differ from the
        input's only inside the padded boxes; ``image`` itself when there is
        nothing to blank.
    """
    todo = [r for r in regions if r.decision == "blank"]
    if not todo:
        return image
    value = fill_value(image, bits_stored=bits_stored)
    frames = image.frames.copy()
    for r in todo:
        if r.frame >= image.n_frames:
            raise ValueError(f"region of frame {r.frame} but the image has {image.n_frames} frame(s)")
        x0, y0, x1, y1 = padded_box(r, image.rows, image.columns, pad_px, grid)
        frames[r.frame, y0:y1, x0:x1] = value
    return image.with_frames(frames)


def blank_mask(
    shape: tuple[int, int, int],
    regions: Iterable[Region],
    *,
    pad_px: int | None = None,
    grid: tuple[int, int] | None = None,
) -> np.ndarray:
    """Boolean ``(frames, rows, columns)`` mask of the pixels :func:`blank_regions` fills."""
    mask = np.zeros(shape, dtype=bool)
    for r in regions:
        if r.decision == "blank":
            x0, y0, x1, y1 = padded_box(r, shape[1], shape[2], pad_px, grid)
            mask[r.frame, y0:y1, x0:x1] = True
    return mask
