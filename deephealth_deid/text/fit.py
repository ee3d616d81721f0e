"""Fit each detected box to the ink it holds, where the text lies on a plain background.

A detector's box is blanked with a margin that grows with the line's height
(:func:`~.blank.default_pad`), because a box drawn from a probability map can
fall a little short of the glyphs. Where the margin's outer ring is plain (nine
tenths of it exactly one value, as on a solid label box or the black around an
ultrasound sector), the glyphs can be told from the background: every pixel
whose value differs from it at all is ink. The box is then cut to the ink's
extent plus a one-pixel margin (:data:`FIT_MARGIN_PX`), inside the window it would have
blanked anyway. A fitted box therefore never uncovers a pixel that differs from
the background, and never grows. A plate (label box) smaller than the window
is fitted too, leaving out the image around it where that runs along the
window's edge and stays wholly outside the plate.

Where the ring is not plain (text straight on anatomy, a noisy radiograph, the
noise a lossy JPEG leaves), holds no ink, or anything is in doubt, the region
is returned unchanged and keeps its full margin. Device-rule boxes are never
fitted.

Values are compared as stored (grey, RGB or palette indices), not as
displayed: a faint string that a reader could bring out by windowing, or a
palette index that shows as the background's colour, is ink too.

Example:
    >>> import numpy as np
    >>> frame = np.zeros((40, 80), np.uint16)
    >>> frame[10:20, 10:50] = 900             # a string's glyphs
    >>> r = fit_region(Region(0, 6, 6, 56, 24), frame)
    >>> r.box, r.fitted
    ((9, 9, 51, 21), True)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .blank import padded_box
from .regions import Region

__all__ = ["FIT_MARGIN_PX", "fit_region", "fit_regions", "value_keys"]

#: Width in pixels of the ring, inside the padded window, whose value is the background.
RING_PX = 2

#: A ring with more than this share of pixels off the background's value is not plain.
MAX_RING_INK = 0.1

#: A ring with more than this share off the background value is not a plate around the text.
MAX_RING_OFF = 0.5


#: Margin in pixels kept around the ink of a fitted box. Every pixel that differs from the
#: background at all is ink already, antialiased edges included, so the margin uncovers nothing;
#: one pixel leaves a visible border round the glyphs. (It was a tenth of the line, at least 2:
#: on four held-out sets one pixel blanks 2-4 points less area outside text, and covers every
#: string the wider margin covered.)
FIT_MARGIN_PX = 1


def fit_regions(regions: list[Region], values: np.ndarray) -> list[Region]:
    """:func:`fit_region` for each region of one frame (``values``: that frame as stored)."""
    return [fit_region(r, values) for r in regions]


def fit_region(region: Region, values: np.ndarray) -> Region:
    """``region`` cut to the ink it holds, when its margin's ring is plain; else unchanged.

    Args:
        region: A detected region (device-rule regions are returned as they are).
        values: The frame as stored: ``(rows, columns)`` grey or ``(rows, columns, channels)``.

    Returns:
        A region with ``fitted=True`` and the box of its ink grown by
        :data:`FIT_MARGIN_PX` (clipped to the window :func:`~.blank.padded_box`
        gives the region), or ``region`` itself.
    """
    if region.source == "rules" or region.fitted:
        return region
    rows, columns = values.shape[:2]
    x0, y0, x1, y1 = padded_box(region, rows, columns)
    if x1 - x0 <= 2 * RING_PX or y1 - y0 <= 2 * RING_PX:
        return region
    window = values[y0:y1, x0:x1]
    if window.ndim == 2:
        window = window[..., None]
    window = window.astype(np.float64)
    if not np.isfinite(window).all():
        return region
    ring = _ring(window)
    background = _mode(ring)
    # Ink: every pixel whose value differs from the background's at all (no tolerance: a faint
    # string a level above a noisy background is a shape a reader can bring out).
    off = (window != background).any(axis=-1)
    ring_off = float(np.mean((ring != background).any(axis=-1)))
    if ring_off <= MAX_RING_INK:
        ink = off
    elif ring_off <= MAX_RING_OFF:
        # A plate (a label's solid box) that does not fill the window: at least half the ring
        # is on it. What lies off it at the window's edge is the image around the plate, left
        # out when it stays outside the plate (see _inner_ink).
        ink = _inner_ink(off, region, x0, y0)
        if ink is None:
            return region
    else:
        return region
    if not ink.any():
        return region
    ys = np.flatnonzero(ink.any(axis=1))
    xs = np.flatnonzero(ink.any(axis=0))
    m = FIT_MARGIN_PX
    box = (
        x0 + max(int(xs[0]) - m, 0),
        y0 + max(int(ys[0]) - m, 0),
        x0 + min(int(xs[-1]) + 1 + m, x1 - x0),
        y0 + min(int(ys[-1]) + 1 + m, y1 - y0),
    )
    return region.with_(x0=box[0], y0=box[1], x1=box[2], y1=box[3], fitted=True)


def _ring(window: np.ndarray) -> np.ndarray:
    """The pixels of the window's outer ``RING_PX`` rows and columns, ``(n, channels)``."""
    k = RING_PX
    parts = [window[:k].reshape(-1, window.shape[-1]), window[-k:].reshape(-1, window.shape[-1])]
    parts += [window[k:-k, :k].reshape(-1, window.shape[-1]), window[k:-k, -k:].reshape(-1, window.shape[-1])]
    return np.concatenate(parts)


def _mode(ring: np.ndarray) -> np.ndarray:
    """The ring's most common value (per channel, as one colour): the plate's value."""
    channels = ring.shape[1]
    if channels <= 3 and ring.min() >= 0 and ring.max() < 65536 and np.array_equal(ring, np.round(ring)):
        # Whole values of up to 16 bits (what stored pixels are): one key per colour, in the order
        # of the colours themselves (the first channel highest), sorted fast.
        shifts = [16 * (channels - 1 - c) for c in range(channels)]
        key = value_keys(ring)
        assert key is not None
        values, counts = np.unique(key, return_counts=True)
        top = int(values[int(np.argmax(counts))])
        return np.array([(top >> shift) & 0xFFFF for shift in shifts], dtype=ring.dtype)
    colours, counts = np.unique(ring, axis=0, return_counts=True)
    return colours[int(np.argmax(counts))]


def value_keys(values: np.ndarray) -> np.ndarray | None:
    """One integer per pixel for its stored value, its channels (last axis) packed, the first highest.

    Whole values from 0 to 65535 in up to three channels are packed 16 bits each;
    one channel of any integer type is its value. None for anything else
    (fractional values, wider colours), whose values cannot be keyed this way.
    """
    v = np.asarray(values)
    channels = v.shape[-1]
    if channels == 1 and v.dtype.kind in "iu":
        return v[..., 0].astype(np.int64)
    if channels > 3 or v.size == 0 or v.min() < 0 or v.max() >= 65536 or not np.array_equal(v, np.round(v)):
        return None
    key = np.zeros(v.shape[:-1], np.int64)
    for c in range(channels):
        key |= v[..., c].astype(np.int64) << (16 * (channels - 1 - c))
    return key


def _inner_ink(off: np.ndarray, region: Region, x0: int, y0: int) -> np.ndarray | None:
    """Off-plate pixels of the window, less the image around the plate.

    The image around the plate is what touches the window's edge along at least two line
    heights, stays in the margin and lies wholly outside the plate's extent. ``None`` (nothing
    is cut) when something touching the edge reaches into the detected box or into the plate's
    extent (a glyph the box missed, touching the plate's edge), or touches the edge only
    briefly: a glyph crossing it.
    """
    labels, _ = ndi.label(off, structure=np.ones((3, 3), bool))
    border = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    edge, contact = np.unique(border[border > 0], return_counts=True)
    if edge.size == 0:
        return off
    # Two line heights, or two of the box's shorter side where the line was underestimated.
    if contact.min() < 2 * max(region.line_height, min(region.width, region.height)):
        return None
    inner_box = labels[max(region.y0 - y0, 0) : region.y1 - y0, max(region.x0 - x0, 0) : region.x1 - x0]
    if np.isin(inner_box, edge).any():
        return None
    plates, n = ndi.label(~off)
    if n == 0:
        return None
    plate = plates == 1 + int(np.argmax(np.bincount(plates.ravel())[1:]))
    ys, xs = np.flatnonzero(plate.any(axis=1)), np.flatnonzero(plate.any(axis=0))
    extent = labels[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1]
    if np.isin(extent, edge).any():
        return None
    return off & ~np.isin(labels, edge)
