"""The network text detector: the frame as the network's input, tiled prediction, probabilities to boxes.

A 2D U-Net (:func:`~deephealth_deid.nets.text_unet_spec`) marks the pixels of
burned-in strings; :class:`NetTextDetector` runs it on a displayed frame at
its own resolution (never downscaled: 6-pixel text must keep its pixels) and
turns the text probability into one :class:`~.regions.Region` per connected
blob.

* Input: :func:`network_input`, the one conversion shared with training (see
  :mod:`deephealth_deid.train.text_samples`): the displayed ``(rows, columns,
  3)`` uint8 RGB frame scaled to 0-1, channels first.
* Prediction: the frame is zero-padded to a multiple of the network's stride.
  When it fits in one ``tile`` it is predicted whole; otherwise the fewest
  equal overlapping tiles that fit (:func:`tile_windows`: at least ``overlap``
  pixels shared, sizes and origins on the stride's grid, so pooling
  windows line up with those of a whole-frame prediction) are predicted one
  by one and stitched by taking the maximum text probability, so a string cut
  by one tile's edge is still found whole in its neighbour.
* Boxes: :func:`~.boxes.regions_from_probabilities` (see :mod:`.boxes`).

Example:
    >>> tile_windows(2048, 1024, 64, 8)
    (736, [0, 656, 1312])
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import ModelCheckError
from ..nets import UNetSpec, crop_padding, pad_to_multiple
from .boxes import EIGHT, confirmed, regions_from_probabilities
from .regions import Region

__all__ = [
    "NetTextDetector",
    "check_text_spec",
    "network_input",
    "tile_windows",
]

log = logging.getLogger(__name__)


def network_input(frame: np.ndarray) -> np.ndarray:
    """The text network's input for a displayed frame: float32 ``[3, rows, columns]`` in 0-1.

    Training and inference both call this, so the network sees at run time
    exactly what it learnt on.

    Args:
        frame: The frame as displayed, ``(rows, columns, 3)`` uint8 RGB (see
            :class:`~.regions.Detector`) or ``(rows, columns)`` uint8 grey
            (repeated over the three channels). Not modified.

    Returns:
        ``frame / 255`` as float32, channels first.

    Raises:
        ValueError: Not a uint8 grey or RGB frame.

    Example:
        >>> network_input(np.full((2, 3), 255, np.uint8)).shape
        (3, 2, 3)
    """
    a = np.asarray(frame)
    if a.dtype != np.uint8:
        raise ValueError(f"the text detector takes the displayed uint8 frame, got dtype {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[None], 3, axis=0)
    elif a.ndim == 3 and a.shape[-1] == 3:
        a = np.moveaxis(a, -1, 0)
    else:
        raise ValueError(f"the text detector takes a (rows, columns[, 3]) frame, got shape {a.shape}")
    if min(a.shape[1:]) < 1:
        raise ValueError(f"empty frame of shape {np.shape(frame)}")
    return np.ascontiguousarray(a, dtype=np.float32) * np.float32(1.0 / 255.0)


def check_text_spec(spec: UNetSpec, source: str = "model") -> None:
    """Raise :class:`ModelCheckError` unless ``spec`` is a text detector: 2D, 3 input channels, 2 classes.

    Args:
        spec: The network spec of a model.
        source: What the spec came from (a file name), for the message.
    """
    if spec.ndim != 2 or spec.in_channels != 3 or spec.classes != 2:
        raise ModelCheckError(
            f"{source}: not a text-detection model ({spec.ndim}D, {spec.in_channels} input channel(s), "
            f"{spec.classes} classes; a text detector is 2D with 3 input channels and 2 classes: "
            "background, text); train one with 'deid train training/text.yaml'"
        )


def tile_windows(size: int, tile: int, overlap: int, stride: int = 1) -> tuple[int, list[int]]:
    """The fewest equal windows of at most ``tile`` that cover ``range(size)`` overlapping by ``overlap``.

    Windows are as short as that count allows (a 2,100-pixel axis with
    1,024-pixel tiles gives three windows of about 740, not three of 1,024),
    so no pixel is predicted more often than needed. Lengths and starts are
    multiples of ``stride``, so that pooling windows line up with those of a
    whole-frame prediction.

    Args:
        size: Axis length (a multiple of ``stride``).
        tile: Longest window (a multiple of ``stride``).
        overlap: Least overlap of neighbouring windows.
        stride: Grid of lengths and starts.

    Returns:
        ``(length, starts)``: ``(size, [0])`` when ``size <= tile``; else the
        window length and the sorted starts, the first 0 and the last
        ``size - length``.

    Example:
        >>> tile_windows(1024, 1024, 64, 8)
        (1024, [0])
        >>> tile_windows(2048, 1024, 64, 8)
        (736, [0, 656, 1312])
    """
    if stride < 1 or tile < stride or overlap < 0 or tile <= overlap + stride:
        raise ValueError(
            f"need stride >= 1, tile > overlap + stride; got tile {tile}, overlap {overlap}, stride {stride}"
        )
    if size % stride or tile % stride:
        raise ValueError(f"size {size} and tile {tile} must be multiples of the stride {stride}")
    if size <= tile:
        return size, [0]
    n = 2
    while True:
        # Starts are rounded down to the stride: ask for one stride more overlap than needed.
        length = -(-(size + (n - 1) * (overlap + stride)) // n)
        length = min(-(-length // stride) * stride, size)
        if length <= tile:
            break
        n += 1
    span = size - length
    starts = [(k * span // (n - 1)) // stride * stride for k in range(n - 1)] + [span]
    return length, starts


class NetTextDetector:
    """Finds burned-in text with a trained 2D text U-Net (a :class:`~.regions.Detector`).

    Usually made by :func:`~.detector.load_text_detector`.

    Args:
        engine: The engine the model runs on (:func:`~deephealth_deid.engines.get_engine`).
        model: A text model of that engine (2D, 3 input channels, 2 classes).
        spec: The model's spec; read from ``model.spec`` when not given.
        threshold: Text probability from which a pixel is text.
        grow_threshold: Lower probability text blobs grow to
            (:func:`regions_from_probabilities`); ``None`` for none. The
            shipped model's file sets 0.1 (with its threshold 0.2): on 937
            identifying strings of held-out images (nine seeds, 512 to
            2048 px) recall rose from 908 to 916, for 3-4 points more
            blanked area outside text (``models/text_unet.md``).
        tile: Largest side predicted in one pass (rounded up to the stride);
            larger frames are cut into overlapping tiles. Bounds the memory
            used, not the resolution: frames are never downscaled. The
            default predicts frames up to 2048 x 2048 whole (about 0.85 GB
            peak on the CPU with the default network; 1024 tiles take 0.55 GB
            and about 1.2 times as long, 3072 takes 1.6 GB).
        overlap: Overlap of neighbouring tiles in pixels (rounded up to the
            stride); text narrower than it is always whole in some tile.
        min_area_px: Smallest blob of text pixels kept.
        bridge_gap: Pieces of one line of text are joined across gaps of up to
            this many line thicknesses (:func:`regions_from_probabilities`):
            the network sometimes loses the middle of a faint or long string.
            With 6 (the default), recall of identifying strings on held-out
            images (512 px, seed 4000000) rose from 117/127 to 122/127, and
            the blanked area outside text from 38% to 44%
            (``0`` turns it off).
        vertical_look: Look again, a quarter turn round, along every region
            taller than wide (:meth:`detect`): the network finds horizontal
            text more reliably than vertical, and sometimes loses the ends of
            a long vertical string. On held-out images (seeds 3, 4 and
            5 million, 512 and 2048 px) recall of identifying strings rose
            from 296/311 to 301/311, for 1-2 points more blanked area outside
            text and 10-30% more time.

        min_score: A region whose mean text probability is under this is
            kept only beside a region at or above it: touching it, or on its
            line nearby (:func:`~.boxes.confirmed`); ``0`` keeps every
            region. With the shipped model (threshold 0.2), 0.6 took the
            text-free real anatomy frames with a region from 51 to 7 of 60,
            and the share of them blanked from 8.7% to 1.4%, and left
            MR_small without a region, while held-out recall stayed 350/359
            (seeds 3, 4, 5 million) and 382/392 (seeds 6, 7, 8 million,
            512 to 2048 px).

    Raises:
        ModelCheckError: The model is not a text detector.
        ValueError: An option out of range.

    Example:
        >>> from deephealth_deid.engines import get_engine  # doctest: +SKIP
        >>> from deephealth_deid.nets import text_unet_spec  # doctest: +SKIP
        >>> engine = get_engine("torch", device="cpu")  # doctest: +SKIP
        >>> det = NetTextDetector(engine, engine.build(text_unet_spec(), seed=0))  # doctest: +SKIP
        >>> det.detect(np.zeros((333, 517, 3), np.uint8))  # doctest: +SKIP
        [...]
    """

    def __init__(
        self,
        engine: Any,
        model: Any,
        *,
        spec: UNetSpec | None = None,
        threshold: float = 0.5,
        grow_threshold: float | None = None,
        tile: int = 2048,
        overlap: int = 64,
        min_area_px: int = 12,
        bridge_gap: float = 6.0,
        vertical_look: bool = True,
        min_score: float = 0.6,
    ) -> None:
        spec = spec if spec is not None else getattr(model, "spec", None)
        if not isinstance(spec, UNetSpec):
            raise ValueError("the model carries no UNetSpec; pass spec=")
        check_text_spec(spec)
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold!r}")
        if grow_threshold is not None and not 0.0 < float(grow_threshold) <= float(threshold):
            raise ValueError(f"grow_threshold must be in (0, threshold], got {grow_threshold!r}")
        if int(overlap) < 0 or int(tile) < 2 * int(overlap) + 1 or int(tile) < spec.stride:
            raise ValueError(
                f"tile must be at least the stride ({spec.stride}) and larger than twice the overlap; "
                f"got tile {tile}, overlap {overlap}"
            )
        if int(min_area_px) < 1:
            raise ValueError(f"min_area_px must be at least 1, got {min_area_px!r}")
        if not float(bridge_gap) >= 0:
            raise ValueError(f"bridge_gap must be >= 0, got {bridge_gap!r}")
        if not 0.0 <= float(min_score) <= 1.0:
            raise ValueError(f"min_score must be between 0 and 1, got {min_score!r}")
        stride = spec.stride
        self.engine = engine
        self.model = model
        self.spec = spec
        self.threshold = float(threshold)
        self.grow_threshold = None if grow_threshold is None else float(grow_threshold)
        self.tile = -(-int(tile) // stride) * stride
        self.overlap = -(-int(overlap) // stride) * stride
        self.min_area_px = int(min_area_px)
        self.bridge_gap = float(bridge_gap)
        self.vertical_look = bool(vertical_look)
        self.min_score = float(min_score)

    def __repr__(self) -> str:
        return (
            f"NetTextDetector({self.spec.name}, engine={getattr(self.engine, 'name', '?')}, "
            f"threshold={self.threshold}, tile={self.tile}, overlap={self.overlap})"
        )

    def probabilities(self, frame: np.ndarray) -> np.ndarray:
        """Text probability of every pixel of ``frame``: float32 ``(rows, columns)``.

        Args:
            frame: ``(rows, columns, 3)`` uint8 RGB as displayed, or
                ``(rows, columns)`` uint8 grey; any size.
        """
        x, pads = pad_to_multiple(network_input(frame), self.spec.stride, axes=2)
        rows, cols = x.shape[1:]
        if rows <= self.tile and cols <= self.tile:
            prob = self._predict(x)
        else:
            stride = self.spec.stride
            tr, ys = tile_windows(rows, self.tile, self.overlap, stride)
            tc, xs = tile_windows(cols, self.tile, self.overlap, stride)
            prob = np.zeros((rows, cols), np.float32)
            for y in ys:
                for x0 in xs:
                    win = (slice(y, y + tr), slice(x0, x0 + tc))
                    np.maximum(prob[win], self._predict(x[(slice(None), *win)]), out=prob[win])
        return np.ascontiguousarray(crop_padding(prob, pads))

    def _predict(self, x: np.ndarray) -> np.ndarray:
        out = self.engine.predict(self.model, np.ascontiguousarray(x[None]), probabilities=True)
        return np.asarray(out[0, 1], dtype=np.float32)

    def detect(self, frame: np.ndarray) -> list[Region]:
        """The text regions on ``frame`` (see :class:`~.regions.Detector`), ``source='net'``.

        With ``vertical_look``, every region at least 1.5 times as tall as
        wide is predicted again in a window around it (its own length further
        along both ends, and the tile overlap across), turned a quarter turn so
        that a vertical string reads horizontally; what the second look finds
        joined to the region is added to the text probability, and the regions
        are drawn again. Whatever else it finds in the window is left out, so
        it extends strings and never adds new blobs. Windows of neighbouring
        regions are looked at once together where one box round them is no
        larger than theirs (:func:`_merged_windows`).

        Regions scored under ``min_score`` are then kept only beside one at
        or above it (:func:`~.boxes.confirmed`).
        """
        prob = self.probabilities(frame)
        regions = self._regions(prob)
        vertical = [r for r in regions if r.y1 - r.y0 >= 1.5 * (r.x1 - r.x0)] if self.vertical_look else []
        rose = False
        for window, inside in _merged_windows([self._look_window(prob.shape, r) for r in vertical], vertical):
            rose |= self._look_along(frame, prob, window, inside)
        if rose:
            regions = self._regions(prob)
        return confirmed(regions, self.min_score, *prob.shape)

    def _look_window(self, shape: tuple[int, ...], region: Region) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of the second look along ``region``: its length on, the overlap across."""
        reach = (region.y1 - region.y0) + self.spec.stride
        return (
            max(0, region.y0 - reach),
            min(shape[0], region.y1 + reach),
            max(0, region.x0 - self.overlap),
            min(shape[1], region.x1 + self.overlap),
        )

    def _regions(self, prob: np.ndarray) -> list[Region]:
        return regions_from_probabilities(
            prob,
            threshold=self.threshold,
            grow_threshold=self.grow_threshold,
            min_area_px=self.min_area_px,
            bridge_gap=self.bridge_gap,
        )

    def _look_along(
        self, frame: np.ndarray, prob: np.ndarray, window: tuple[int, int, int, int], regions: list[Region]
    ) -> bool:
        """Raise ``prob`` (in place) with a quarter-turned look at ``window`` along vertical ``regions``.

        Only what the second look finds joined to one of the regions raises
        the probability. Returns whether any probability rose.
        """
        y0, y1, x0, x1 = window
        turned = np.ascontiguousarray(np.rot90(frame[y0:y1, x0:x1], 1))
        second = np.rot90(self.probabilities(turned), -1)
        blobs, _ = ndi.label(second >= self.threshold, structure=EIGHT)
        joined = np.unique(
            np.concatenate([blobs[r.y0 - y0 : r.y1 - y0, r.x0 - x0 : r.x1 - x0].ravel() for r in regions])
        )
        joined = joined[joined > 0]
        if not joined.size:
            return False
        view = prob[y0:y1, x0:x1]
        raised = np.where(np.isin(blobs, joined), second, 0.0)
        rose = bool((raised > view).any())
        np.maximum(view, raised, out=view)
        return rose


def _merged_windows(
    windows: list[tuple[int, int, int, int]], regions: list[Region]
) -> list[tuple[tuple[int, int, int, int], list[Region]]]:
    """Windows ``(y0, y1, x0, x1)`` merged where one box round two is no larger than both, with their regions.

    Neighbouring vertical regions (a column of short strings, the pieces of a
    string crossed by others) then share one second look instead of one each.
    """
    groups = [(w, [r]) for w, r in zip(windows, regions, strict=True)]
    merged = True
    while merged and len(groups) > 1:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                (a, ra), (b, rb) = groups[i], groups[j]
                box = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                if _window_area(box) <= _window_area(a) + _window_area(b):
                    groups[i] = (box, ra + rb)
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return groups


def _window_area(w: tuple[int, int, int, int]) -> int:
    return (w[1] - w[0]) * (w[3] - w[2])
