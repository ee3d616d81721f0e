"""Text boxes: a text-probability map to regions.

Threshold (with optional hysteresis), 8-connected blobs, small blobs
dropped; each blob split into tight boxes (a sparse blob, such as a vertical
string crossing horizontal ones, first into its horizontal and vertical
strokes, then every piece into its lines); pieces of one line joined across
gaps the network lost; boxes lying mostly inside a larger one absorbed by
it. Boxes of different strings may cross or touch: it is their union that is
blanked, not a box round them all. :func:`confirmed` then keeps the regions
the network is sure of, and the less sure ones only beside them.

Example:
    >>> prob = np.zeros((40, 60), np.float32)
    >>> prob[5:12, 10:40] = 0.9
    >>> [(r.box, round(r.score, 2)) for r in regions_from_probabilities(prob)]
    [((10, 5, 40, 12), 0.9)]
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from .blank import padded_box
from .regions import Region

__all__ = ["regions_from_probabilities", "confirmed", "EIGHT"]

#: 8-connectivity in 2D.
EIGHT = np.ones((3, 3), bool)


def regions_from_probabilities(
    prob: np.ndarray,
    *,
    threshold: float = 0.5,
    grow_threshold: float | None = None,
    min_area_px: int = 12,
    bridge_gap: float = 0.0,
    frame: int = 0,
) -> list[Region]:
    """Text regions from a text-probability map.

    Pixels with a probability of at least ``threshold`` are grouped into
    8-connected components (with ``grow_threshold``, hysteresis: components
    of the pixels of at least ``grow_threshold`` that hold a pixel of at least
    ``threshold``, so a string whose ends or faint glyphs the network is less
    sure of is boxed whole, while faint blobs alone stay out); components of
    fewer than ``min_area_px`` pixels are dropped. Each remaining component
    is split into tight boxes that hold all its pixels (:func:`_split_blob`:
    its lines, and first its horizontal and vertical strokes when it fills
    less than half its box). With ``bridge_gap``, pieces of one line of text
    are joined across the gap between them (see :func:`_bridge`). A box that
    lies mostly inside a larger one is absorbed by it
    (:func:`_absorb`); others may overlap. A region's score is the
    mean probability over the pixels of its boxes.

    Args:
        prob: ``(rows, columns)`` probabilities in 0-1.
        threshold: Probability from which a pixel is text.
        grow_threshold: Lower probability to which text blobs grow (``None``:
            no growing); at most ``threshold``.
        min_area_px: Smallest component kept, in pixels.
        bridge_gap: Join two boxes of one line of text whose gap is at most
            this many line thicknesses (0: never).
        frame: Frame index given to the regions.

    Returns:
        The regions (``source='net'``), sorted by their top, then left edge.
    """
    p = np.asarray(prob, dtype=np.float32)
    if p.ndim != 2:
        raise ValueError(f"expected a (rows, columns) probability map, got shape {p.shape}")
    if grow_threshold is not None and not 0.0 < grow_threshold <= threshold:
        raise ValueError(f"grow_threshold must be in (0, threshold], got {grow_threshold!r}")
    low = threshold if grow_threshold is None else grow_threshold
    parts: list[tuple[int, int, int, int, float, float, float]] = []
    for y, x, blob, prob_in in _blobs(p, low, threshold, max(int(min_area_px), 1)):
        for y0, y1, x0, x1 in _split_blob(blob):
            piece = blob[y0:y1, x0:x1]
            area = float(piece.sum())
            parts.append(
                (
                    x + x0,
                    y + y0,
                    x + x1,
                    y + y1,
                    float(prob_in[y0:y1, x0:x1][piece].sum(dtype=np.float64)),
                    area,
                    area / max(y1 - y0, x1 - x0),  # thickness of the line(s): area over length
                )
            )
    if not parts:
        return []
    table = np.array(parts, dtype=np.float64)
    merged = _absorb(table[:, :4].astype(np.int64), table[:, 4], table[:, 5], table[:, 6])
    while bridge_gap > 0 and _bridge(merged[0], merged[3], bridge_gap):
        merged = _absorb(*merged)
    boxes, sums, areas, lines = merged
    order = np.lexsort((boxes[:, 0], boxes[:, 1])) if len(boxes) else []
    return [
        Region(
            frame=frame,
            x0=int(boxes[k, 0]),
            y0=int(boxes[k, 1]),
            x1=int(boxes[k, 2]),
            y1=int(boxes[k, 3]),
            score=float(np.clip(sums[k] / areas[k], 0.0, 1.0)),
            source="net",
            line_px=max(1, math.ceil(lines[k])),
        )
        for k in order
    ]


#: Side of the blocks :func:`_blobs` first looks for text pixels in.
_BLOCK = 16


def _blobs(
    p: np.ndarray, low: float, high: float, min_area: int
) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """The 8-connected blobs of ``p >= low`` holding a pixel ``>= high``, of at least ``min_area`` pixels.

    Returns ``(y, x, blob, prob)`` per blob in raster order of its first
    pixel (the order of :func:`scipy.ndimage.label`): the top left of its
    bounding box, its mask there and ``p`` there. The frame is first looked
    at in blocks of :data:`_BLOCK` pixels: a blob's blocks are 8-connected,
    so each blob lies whole in one group of connected blocks holding text
    pixels, and only those groups are labelled pixel by pixel (each masked to
    its own blocks, so a blob of another group inside its box is not found
    twice). On a frame mostly free of text this is several times faster than
    labelling it all, and the blobs are the same.
    """
    mask = p >= low
    rows, cols = mask.shape
    b = _BLOCK
    grid = np.pad(mask, ((0, -rows % b), (0, -cols % b)))
    blocks = grid.reshape(grid.shape[0] // b, b, grid.shape[1] // b, b).any(axis=(1, 3))
    groups, _ = ndi.label(blocks, structure=EIGHT)
    found = []
    for g, gsl in enumerate(ndi.find_objects(groups), start=1):
        y, x = gsl[0].start * b, gsl[1].start * b
        sl = (slice(y, min(gsl[0].stop * b, rows)), slice(x, min(gsl[1].stop * b, cols)))
        inside = np.repeat(np.repeat(groups[gsl] == g, b, axis=0), b, axis=1)
        sub = mask[sl] & inside[: sl[0].stop - y, : sl[1].stop - x]
        labels, _ = ndi.label(sub, structure=EIGHT)
        for k, bsl in enumerate(ndi.find_objects(labels), start=1):
            blob = labels[bsl] == k
            prob = p[sl][bsl]
            if blob.sum() < min_area or (high > low and not (prob[blob] >= high).any()):
                continue
            by, bx = y + bsl[0].start, x + bsl[1].start
            found.append(((by, bx + int(np.argmax(blob[0]))), by, bx, blob, prob))
    found.sort(key=lambda f: f[0])
    return [f[1:] for f in found]


#: A valley between two lines of one blob: rows (columns) holding at most this share of the
#: fuller line's pixels per row (column).
_VALLEY = 0.25
#: Smallest line a blob is split into (pixels across), so glyphs are never cut into pieces.
_MIN_LINE_PX = 6


#: A blob filling less than this share of its box is taken apart into its horizontal and its
#: vertical strokes before its lines are found: strings that cross or touch at an angle.
_SPARSE_FILL = 0.5

_ROW_RUNS = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], bool)


def _split_blob(blob: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Tight ``(y0, y1, x0, x1)`` boxes that together hold every pixel of ``blob`` and little else.

    A blob that fills most of its box is split into lines (:func:`_split_lines`).
    A sparse one (a vertical string crossing horizontal ones, an L of two strings
    meeting at a corner) would give a box mostly of background: its pixels are
    first sorted into horizontal strokes, those whose run along their row is at
    least as long as the run along their column, and vertical strokes, the
    others; each 8-connected piece of either is then split into lines. Where
    strings cross, the crossing goes to the longer one, and the other is cut
    in two there.
    """
    area = int(blob.sum())
    if area >= _SPARSE_FILL * blob.size:
        return _split_lines(blob)
    along_row = _run_lengths(blob, _ROW_RUNS)
    along_column = _run_lengths(blob, _ROW_RUNS.T)
    horizontal = along_row >= along_column
    out = []
    for strokes in (blob & horizontal, blob & ~horizontal):
        pieces, _ = ndi.label(strokes, structure=EIGHT)
        for k, sl in enumerate(ndi.find_objects(pieces), start=1):
            for y0, y1, x0, x1 in _split_lines(pieces[sl] == k):
                out.append((sl[0].start + y0, sl[0].start + y1, sl[1].start + x0, sl[1].start + x1))
    return out


def _run_lengths(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """For every pixel of ``mask``, the length of its run of set pixels along ``structure`` (0 elsewhere)."""
    runs, _ = ndi.label(mask, structure=structure)
    return np.bincount(runs.ravel())[runs] * mask


def _split_lines(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Split one blob into the lines it bridges: tight ``(y0, y1, x0, x1)`` boxes covering all its pixels.

    Strings a few pixels apart often touch in the probability map, and one box
    around both would blank the background between them too. A blob wider than
    tall is cut between rows (stacked horizontal lines), one taller than wide
    between columns (side-by-side vertical lines), recursively, at the
    emptiest row (column) of a valley: a run holding at most ``_VALLEY`` of
    the pixels per row of the lines on both sides, each side at least
    ``_MIN_LINE_PX`` across. A line is never cut along its length, so a
    string is never cut into words, and every pixel of the blob is in exactly
    one box.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return []
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    m = mask[y0:y1, x0:x1]
    rows, cols = m.shape
    axis = 1 if cols >= rows else 0  # profile across the lines: per row, or per column
    profile = m.sum(axis=axis)
    n = profile.size
    if n >= 2 * _MIN_LINE_PX:
        # Fullest row (column) on each side of every cut position.
        before = np.maximum.accumulate(profile)
        after = np.maximum.accumulate(profile[::-1])[::-1]
        cut = np.arange(_MIN_LINE_PX, n - _MIN_LINE_PX + 1)
        ok = profile[cut] <= _VALLEY * np.minimum(before[cut - 1], after[cut])
        if ok.any():
            candidates = cut[ok]
            at = int(candidates[np.argmin(profile[candidates])])
            if axis == 1:
                halves = [(m[:at], 0, 0), (m[at:], at, 0)]
            else:
                halves = [(m[:, :at], 0, 0), (m[:, at:], 0, at)]
            out = []
            for half, dy, dx in halves:
                for a0, a1, b0, b1 in _split_lines(half):
                    out.append((y0 + dy + a0, y0 + dy + a1, x0 + dx + b0, x0 + dx + b1))
            return out
    return [(y0, y1, x0, x1)]


#: A box sharing at least this share of its area with a larger one is absorbed by it (:func:`_absorb`).
_ABSORB_SHARE = 0.5


def _box_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _shared_areas(b: np.ndarray) -> np.ndarray:
    """``[i, j]``: the pixels boxes ``b[i]`` and ``b[j]`` share."""
    across = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
    down = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
    return np.clip(across, 0, None) * np.clip(down, 0, None)


def _absorb(
    boxes: np.ndarray, sums: np.ndarray, areas: np.ndarray, lines: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Absorb every box that lies mostly inside a larger one into it (sums, areas add up; lines: the max).

    Boxes ``(x0, y0, x1, y1)`` are ordered from the largest down; one that
    shares at least :data:`_ABSORB_SHARE` of its area with a box before it is
    absorbed by the one it shares most with, which grows to hold it (a ragged
    edge of a string split off as a stroke of its own, a dot inside a box, a
    piece of a line bridged to another); a box absorbed by one that is itself
    absorbed goes with it. Repeated until no box is absorbed. Boxes of
    different strings that only cross or touch stay apart, so their union,
    not the box round them all, is blanked; and since a box is absorbed by
    one box only, it never joins two others.
    """
    while len(boxes) > 1:
        order = np.argsort(-_box_area(boxes), kind="stable")
        b, s, a, t = boxes[order], sums[order], areas[order], lines[order]
        n = len(b)
        shared = np.tril(_shared_areas(b), k=-1)  # row i: the boxes before it, at least as large
        best = np.argmax(shared, axis=1)
        most = shared[np.arange(n), best]
        absorbed = (most > 0) & (most >= _ABSORB_SHARE * _box_area(b))
        if not absorbed.any():
            return b, s, a, t
        into = np.where(absorbed, best, np.arange(n))
        while not np.array_equal(into[into], into):  # follow absorbed boxes to where they went
            into = into[into]
        groups, inverse = np.unique(into, return_inverse=True)
        boxes = b[groups].copy()
        np.minimum.at(boxes[:, 0], inverse, b[:, 0])
        np.minimum.at(boxes[:, 1], inverse, b[:, 1])
        np.maximum.at(boxes[:, 2], inverse, b[:, 2])
        np.maximum.at(boxes[:, 3], inverse, b[:, 3])
        sums = np.bincount(inverse, weights=s, minlength=len(groups))
        areas = np.bincount(inverse, weights=a, minlength=len(groups))
        lines = np.zeros(len(groups))
        np.maximum.at(lines, inverse, t)
    return boxes, sums, areas, lines


#: Boxes joined by :func:`_bridge` lie on one line: they share this much of the thinner one's
#: thickness across the line ...
_BRIDGE_OVERLAP = 0.6
#: ... and their lines' thicknesses differ by at most this factor.
_BRIDGE_THICKNESS = 2.0
#: A box more than this many line thicknesses across holds several lines: never bridged.
_BRIDGE_MAX_LINES = 2.5


def _bridge(boxes: np.ndarray, lines: np.ndarray, gap: float) -> bool:
    """Grow the first of two boxes of one line of text over the gap to the second; whether any grew.

    The network sometimes loses the middle of a faint or long string (a low
    contrast stretch of background, the spaces of a vertical string), and
    the pieces around the gap come out as separate boxes: the glyphs in the
    gap would stay. Two single-line boxes are taken for one line when they
    overlap across the line by :data:`_BRIDGE_OVERLAP` of the thinner one,
    their thicknesses are alike, and the gap along the line is at most
    ``gap`` times the thicker line. The first box then spans both, and
    :func:`_absorb` takes the second into it (``boxes`` is changed in place).
    """
    for axis in (0, 1):  # 0: horizontal lines (gap along x), 1: vertical lines (gap along y)
        idx = np.nonzero(_single_lines(boxes, lines, axis))[0]
        if idx.size < 2:
            continue
        b, t = boxes[idx], lines[idx]
        on_line, distance, _ = _line_pairs(b, t, b, t, axis)
        thick = np.maximum(t[:, None], t[None, :])
        ok = (
            on_line
            & (distance > 0)
            & (distance <= gap * thick)
            & (thick <= _BRIDGE_THICKNESS * np.minimum(t[:, None], t[None, :]))
        )
        rows = np.nonzero(ok.any(axis=1))[0]
        if rows.size:
            r = int(rows[0])  # the first box that has a next piece on its line ...
            k = int(np.argmin(np.where(ok[r], distance[r], np.iinfo(np.int64).max)))  # ... the nearest
            i, k = int(idx[r]), int(idx[k])
            boxes[i, :2] = np.minimum(boxes[i, :2], boxes[k, :2])
            boxes[i, 2:] = np.maximum(boxes[i, 2:], boxes[k, 2:])
            return True
    return False


def _single_lines(boxes: np.ndarray, lines: np.ndarray, axis: int) -> np.ndarray:
    """Which boxes ``(x0, y0, x1, y1)`` hold one line of text running along ``axis`` (0: x, 1: y)."""
    across0, across1 = (1, 3) if axis == 0 else (0, 2)
    return boxes[:, across1] - boxes[:, across0] <= _BRIDGE_MAX_LINES * lines


def _line_pairs(
    a: np.ndarray, a_lines: np.ndarray, b: np.ndarray, b_lines: np.ndarray, axis: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How boxes ``a`` and ``b`` lie with respect to lines of text along ``axis``, pair by pair.

    Returns ``(on_line, after, before)``, each ``[i, j]`` for ``a[i]`` and
    ``b[j]``: whether they share :data:`_BRIDGE_OVERLAP` of the thinner one
    across the line; how far ``b[j]`` starts after ``a[i]`` ends along it;
    how far ``a[i]`` starts after ``b[j]`` ends (negative where they overlap
    along the line).
    """
    along0, along1, across0, across1 = (0, 2, 1, 3) if axis == 0 else (1, 3, 0, 2)
    overlap = np.minimum(a[:, None, across1], b[None, :, across1]) - np.maximum(
        a[:, None, across0], b[None, :, across0]
    )
    thinner = np.minimum((a[:, across1] - a[:, across0])[:, None], (b[:, across1] - b[:, across0])[None, :])
    after = b[None, :, along0] - a[:, None, along1]
    before = a[:, None, along0] - b[None, :, along1]
    return overlap >= _BRIDGE_OVERLAP * thinner, after, before


def confirmed(
    regions: list[Region], min_score: float, rows: int, columns: int, *, reach_lines: float = 6.0
) -> list[Region]:
    """The regions scored at least ``min_score``, and the others only beside one of those.

    Hysteresis on regions: a region whose mean text probability is low is
    kept when its blanked box (:func:`~.blank.padded_box`) touches or
    overlaps that of a confident region (the faint first glyph of a string,
    a piece split off by a gap), or when both are single lines of text
    running the same way, on the same line (sharing :data:`_BRIDGE_OVERLAP`
    of the thinner one across it), at most ``reach_lines`` line thicknesses
    apart (a faint field of a header row); it is dropped when it stands
    alone. Real anatomy the
    network half takes for text (gyri the size of glyphs on a small frame)
    mostly gives such lone, unsure regions.

    Args:
        regions: Regions of one ``rows`` x ``columns`` frame.
        min_score: Score from which a region stands on its own; 0 keeps all.
        rows: Frame height.
        columns: Frame width.
        reach_lines: How far along a line a confident region vouches for
            others, in line thicknesses.

    Returns:
        The regions kept, in their order.

    Example:
        >>> sure = Region(0, 10, 10, 60, 20, score=0.9)
        >>> beside = Region(0, 2, 10, 9, 20, score=0.3)  # its first glyph
        >>> further = Region(0, 90, 10, 120, 20, score=0.3)  # a field further on the line
        >>> alone = Region(0, 100, 100, 120, 130, score=0.3)
        >>> confirmed([sure, beside, further, alone], 0.5, 200, 200) == [sure, beside, further]
        True
    """
    if not regions:
        return []
    score = np.array([r.score for r in regions])
    strong = score >= min_score
    if strong.all():
        return list(regions)
    boxes = np.array([padded_box(r, rows, columns) for r in regions])
    sure = boxes[strong]
    touches = (
        (boxes[:, None, 0] <= sure[None, :, 2])
        & (sure[None, :, 0] <= boxes[:, None, 2])
        & (boxes[:, None, 1] <= sure[None, :, 3])
        & (sure[None, :, 1] <= boxes[:, None, 3])
    ).any(axis=1)
    tight = np.array([r.box for r in regions])
    lines = np.array([r.line_height for r in regions], dtype=np.float64)
    thick = np.maximum(lines[:, None], lines[strong][None, :])
    on_line = np.zeros(len(regions), bool)
    for axis in (0, 1):  # rows of text, then columns
        single = _single_lines(tight, lines, axis)
        same, after, before = _line_pairs(tight, lines, tight[strong], lines[strong], axis)
        near = same & (np.maximum(after, before) <= reach_lines * thick)
        on_line |= (near & single[:, None] & single[strong][None, :]).any(axis=1)
    return [r for r, keep in zip(regions, strong | touches | on_line, strict=True) if keep]
