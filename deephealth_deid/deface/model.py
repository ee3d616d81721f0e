"""Load a defacing model (the shipped one by default) as a predictor on the conformed grid."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from ..errors import ModelCheckError
from ..shipped import warn_if_not_validated
from .conform import network_input

__all__ = ["load_predictor", "DEFAULT_GRID"]

log = logging.getLogger(__name__)

#: Grid used when a model file does not say: 2 mm voxels, 224 x 256 x 256 mm.
DEFAULT_GRID: tuple[float, tuple[int, int, int]] = (2.0, (112, 128, 128))


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
        return eng.predict(net, x[None], probabilities=True)[0]

    return predictor, spacing, shape
