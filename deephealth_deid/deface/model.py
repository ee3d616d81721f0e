"""Load a defacing model (the shipped one by default) as a predictor on the conformed grid."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from ..errors import ModelCheckError
from ..shipped import warn_if_not_validated
from .conform import grid_depth, network_input
from .postprocess import mask_box

__all__ = ["load_predictor", "head_box", "DEFAULT_GRID", "HEAD_MARGIN_MM"]

log = logging.getLogger(__name__)

#: Grid used when a model file does not say: 2 mm voxels, 224 x 256 x 256 mm.
DEFAULT_GRID: tuple[float, tuple[int, int, int]] = (2.0, (112, 128, 128))

#: Air kept around the head when the network runs on the head's box only (mm).
HEAD_MARGIN_MM = 9.0

# The box starts an even number of voxels into the grid: on held-out synthetic heads the shipped
# network's nose Dice is 0.27-0.28 at every even shift of the head on the grid and 0.24 at every
# odd one (where the first pooling falls). The deeper poolings and the zero padding at the box's
# edges still differ from a whole-grid run: on chris_t1 the masks agree at Dice 0.99 (tested).
_BOX_STEP = 2


@functools.lru_cache(maxsize=4)
def _load(path: str, sha256: str | None, engine: str, device: str):
    from ..engines import get_predict_engine

    eng = get_predict_engine(engine, device=device)
    net, spec, metadata = eng.load(path, sha256=sha256)
    if spec.classes != 5 or spec.ndim != 3:
        raise ModelCheckError(
            f"{path}: not a defacing model ({spec.ndim}D, {spec.classes} classes; need 3D, 5)"
        )
    warn_if_not_validated(metadata, path, "defacing", "every case")  # once per model, not per case
    return eng, net, spec, metadata


def load_predictor(model: str | Path | None, *, engine: str = "auto", device: str = "auto"):
    """A function mapping a conformed image to class probabilities, and its grid.

    Args:
        model: A model file, or ``None`` for the shipped defacing model (its
            SHA-256 is checked).
        engine: ``'torch'``, ``'eddl'``, ``'onnxruntime'`` or ``'auto'`` (see
            :func:`~deephealth_deid.engines.get_predict_engine`).
        device: ``'cpu'``, ``'cuda'`` or ``'auto'``.

    Returns:
        ``(predictor, grid_spacing_mm, grid_shape)``.
    """
    if model is None:
        from ..shipped import shipped_model

        shipped = shipped_model("deface")
        path, sha256 = str(shipped.path), shipped.sha256
    else:
        path, sha256 = str(Path(model)), None
    eng, net, spec, metadata = _load(path, sha256, engine, device)
    grid = metadata.get("grid", {})
    spacing = float(grid.get("spacing_mm", DEFAULT_GRID[0]))
    shape = tuple(int(s) for s in grid.get("shape", DEFAULT_GRID[1]))

    def predictor(image: np.ndarray, grid: object = None) -> np.ndarray:
        x = network_input(image, spacing, spec.in_channels)
        box = head_box(image, spacing, multiple=spec.stride)
        probs = eng.predict(net, x[(None, slice(None), *box)], probabilities=True)[0]
        if probs.shape[1:] == image.shape:
            return probs
        # Outside the head's box is air: certain background.
        out = np.zeros((spec.classes, *image.shape), np.float32)
        out[0] = 1.0
        out[(slice(None), *box)] = probs
        return out

    return predictor, spacing, shape


def head_box(
    image: np.ndarray, spacing: float, *, multiple: int, margin_mm: float | None = None
) -> tuple[slice, ...]:
    """The part of a conformed image the network needs to see: the head and some air around it.

    The box holds the head (where :func:`~.conform.grid_depth` is above 0) and
    ``margin_mm`` (default :data:`HEAD_MARGIN_MM`) of air on every side,
    grown about its centre to a multiple of ``multiple`` voxels (the
    network's stride), moved inside the image and to an even offset. The
    network then runs on 0.44 of the grid's voxels on ``chris_t1`` (its field
    of view cuts the neck) and on about 0.8 on the synthetic heads, whose necks
    run to the grid's edge. Every feature lies on the head's
    surface, so it is inside; the network was trained on patches smaller than
    the grid, so a box is what it knows. The whole image when there is no head.

    Example:
        >>> image = np.zeros((80, 96, 96), np.float32)
        >>> image[20:50, 30:70, 40:60] = 1.0
        >>> head_box(image, 3.0, multiple=16)
        (slice(10, 58, None), slice(26, 74, None), slice(34, 66, None))
    """
    margin_mm = HEAD_MARGIN_MM if margin_mm is None else margin_mm
    found = mask_box(grid_depth(image, spacing) > 0)
    if found is None:
        return tuple(slice(0, n) for n in image.shape)
    pad = int(np.ceil(margin_mm / spacing))
    box = []
    for head, size in zip(found, image.shape, strict=True):
        lo, hi = head.start - pad, head.stop + pad
        n = -(-(hi - lo) // multiple) * multiple
        while n < size:
            start = min(max(0, (lo + hi - n) // 2), size - n)
            start -= start % _BOX_STEP
            if start + n >= min(hi, size):  # moving to an even offset may have cut a voxel
                break
            n += multiple
        else:
            start, n = 0, size
        box.append(slice(start, start + n))
    return tuple(box)
