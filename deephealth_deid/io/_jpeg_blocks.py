"""A JPEG with some of its blocks filled, every other block's compressed data unchanged.

Re-encoding a JPEG moves every pixel by a level or two. When the only change
to an image is a solid fill of whole minimum coded units (MCUs: 8 x 8 pixels,
or 16 x 16 with 4:2:0 chroma), the source's DCT coefficients can be kept as
they are and only those MCUs replaced by flat blocks (every AC coefficient 0,
the DC coefficient giving the fill's value). A decoder then gives every pixel
of the other MCUs exactly as before. One exception: with subsampled chroma,
decoders interpolate chroma between neighbouring samples ("fancy
upsampling"), so the one row or column of pixels on each side of a filled
MCU's edge takes part of its colour (chroma) from across the edge: outside,
the pixels keep their own brightness (luma) and lose a little colour; inside,
the fill's black is tinted by the colour of the pixels outside. The filled
MCUs hold no trace of what they covered: flat blocks carry one value each,
and the tint comes from outside them.

The coefficients are read and written by ``jpeglib`` (libjpeg, no decoding
to pixels). The result is decoded again with Pillow, as the source was read,
and checked before it is used: pixels outside the filled MCUs (and, with
subsampled chroma, their one-pixel border) identical to the source, pixels
inside (but for that border) at the fill. Anything else (a change that is not whole constant MCUs, a
colour space other than grey or YCbCr, ``jpeglib`` not installed) returns
``None``, and the caller encodes the image again.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import secrets
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = ["available", "replace_blocks"]

log = logging.getLogger(__name__)


@functools.cache
def available() -> bool:
    """Whether ``jpeglib`` can be imported (the block editing needs it)."""
    try:
        import jpeglib  # noqa: F401
    except ImportError:
        return False
    return True


def replace_blocks(
    source_data: bytes, before: np.ndarray, after: np.ndarray, mcu: tuple[int, int], folder: Path
) -> bytes | None:
    """``source_data`` with the MCUs where ``after`` differs from ``before`` filled; None when not exact.

    Args:
        source_data: The source JPEG's bytes (metadata already removed).
        before: What ``source_data`` decodes to with Pillow, ``(rows, columns)``
            or ``(rows, columns, 3)``.
        after: The image to write: ``before`` with some whole MCUs set to one
            value each.
        mcu: The MCU in pixels, (rows, columns).
        folder: Where the two working files go (``jpeglib`` reads and writes
            files); the output's folder, so nothing is written elsewhere.
            They are removed before returning.
    """
    if not available() or before.shape != after.shape or before.dtype != np.uint8 or after.dtype != np.uint8:
        return None
    changed = after != before
    if changed.ndim == 3:
        changed = changed.any(axis=-1)
    cells = _changed_cells(changed, after, mcu)
    if cells is None:
        return None
    if not cells:
        return source_data
    token = secrets.token_hex(6)
    src_file, out_file = folder / f".deid-{token}-in.jpg", folder / f".deid-{token}-out.jpg"
    try:
        src_file.write_bytes(source_data)
        data = _write_filled(src_file, out_file, cells, mcu)
    except Exception as e:  # libjpeg's errors have no common type; encoding again is safe
        log.debug("JPEG blocks could not be replaced (%s); the image is encoded again", e)
        return None
    finally:
        for f in (src_file, out_file):
            with contextlib.suppress(OSError):
                os.unlink(f)
    if data is None or not _decodes_as_meant(data, before, after, changed, mcu):
        return None
    return data


def _changed_cells(
    changed: np.ndarray, after: np.ndarray, mcu: tuple[int, int]
) -> dict[tuple[int, int], tuple[int, ...]] | None:
    """``{(MCU row, MCU column): fill}`` of each MCU holding a change; None unless each is one value."""
    my, mx = mcu
    rows, cols = changed.shape
    cells: dict[tuple[int, int], tuple[int, ...]] = {}
    ys, xs = np.nonzero(changed)
    for cy, cx in np.unique(np.stack([ys // my, xs // mx], axis=1), axis=0).tolist():
        box = (slice(cy * my, min((cy + 1) * my, rows)), slice(cx * mx, min((cx + 1) * mx, cols)))
        values = after[box].reshape(-1, *after.shape[2:])
        first = values[0]
        if not (values == first).all():
            return None
        cells[(cy, cx)] = tuple(int(v) for v in np.atleast_1d(first))
    return cells


_SQUARE = np.ones((3, 3), bool)  # a pixel's eight neighbours: chroma is interpolated diagonally too

#: JFIF's RGB to YCbCr (what libjpeg and Pillow use).
_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def _write_filled(
    src: Path, dst: Path, cells: dict[tuple[int, int], tuple[int, ...]], mcu: tuple[int, int]
) -> bytes | None:
    import jpeglib

    jpeg = jpeglib.read_dct(str(src))
    jpeg.load()
    components = [jpeg.Y] + ([jpeg.Cb, jpeg.Cr] if jpeg.has_chrominance else [])
    if len(components) not in (1, 3) or jpeg.has_black:
        return None
    sampling = np.asarray(jpeg.samp_factor).reshape(len(components), 2)  # (vertical, horizontal)
    if (8 * sampling[:, 0].max(), 8 * sampling[:, 1].max()) != tuple(mcu):
        return None
    for (cy, cx), value in cells.items():
        ycc = [float(value[0])] if len(value) == 1 else list(_YCC @ np.array(value, float) + [0, 128, 128])
        if len(ycc) != len(components):
            return None
        for k, (coef, (v, h)) in enumerate(zip(components, sampling, strict=True)):
            q = float(jpeg.qt[jpeg.quant_tbl_no[k]][0, 0])
            level = (ycc[k] - 128.0) * 8.0 / q
            # Black and white lie beyond the decoder's clamp: round outwards so the block saturates.
            dc = np.floor(level) if ycc[k] <= 0.5 else np.ceil(level) if ycc[k] >= 254.5 else np.rint(level)
            block = (slice(cy * v, (cy + 1) * v), slice(cx * h, (cx + 1) * h))
            coef[block] = 0
            coef[(*block, 0, 0)] = int(np.clip(dc, -2047, 2047))
    jpeg.write_dct(str(dst))
    from .raster import jpeg_without_metadata

    return jpeg_without_metadata(dst.read_bytes())  # also drops the second JFIF header libjpeg adds


def _decodes_as_meant(
    data: bytes, before: np.ndarray, after: np.ndarray, changed: np.ndarray, mcu: tuple[int, int]
) -> bool:
    """Whether ``data`` decodes (Pillow) to ``before`` outside the filled MCUs and to the fill inside."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(data)) as im:
            decoded = np.asarray(im)
    except (OSError, ValueError, SyntaxError):
        return False
    if decoded.shape != before.shape:
        return False
    filled = _whole_cells(changed, mcu)
    subsampled = before.ndim == 3 and tuple(mcu) != (8, 8)
    # With subsampled chroma, one pixel on each side of a filled MCU's edge mixes their colours.
    border = (
        ndimage.binary_dilation(filled, _SQUARE) & ~ndimage.binary_erosion(filled, _SQUARE, border_value=1)
        if subsampled
        else np.zeros_like(filled)
    )
    outside = ~filled & ~border
    if not np.array_equal(decoded[outside], before[outside]):
        return False
    inside = filled & ~border
    return np.array_equal(decoded[inside], after[inside])


def _whole_cells(changed: np.ndarray, mcu: tuple[int, int]) -> np.ndarray:
    my, mx = mcu
    rows, cols = changed.shape
    grid = np.zeros((-(-rows // my), -(-cols // mx)), bool)
    ys, xs = np.nonzero(changed)
    grid[ys // my, xs // mx] = True
    return np.repeat(np.repeat(grid, my, axis=0), mx, axis=1)[:rows, :cols]
