"""What the engines that hold their weights as numpy arrays share (EDDL, ONNX Runtime).

Their models keep ``spec`` and a ``state_dict()`` of numpy arrays in the model
file's layout, so writing the model file, reading and checking it, and
writing the ONNX graph are the same code for both; so are checking a batch
before prediction and the softmax after it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._version import __version__
from ..nets import UNetSpec
from .reference import weight_shapes
from .registry import atomic_write, check_weights, read_model_file, write_model_file

__all__ = ["WeightFileEngine", "checked_batch", "softmax"]

logger = logging.getLogger(__name__)


def checked_batch(spec: UNetSpec, array: np.ndarray, batch_size: int) -> np.ndarray:
    """``array`` as float32 after checking its rank, channels and values, and ``batch_size``.

    Raises:
        ValueError: Wrong rank or channels, a batch size under 1, or non-finite values.
    """
    x = np.asarray(array, dtype=np.float32)
    if x.ndim != spec.ndim + 2 or x.shape[1] != spec.in_channels:
        spec.check_input_shape(x.shape)  # raises with the explanation
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not np.isfinite(x).all():
        raise ValueError("the input holds NaN or infinite values")
    return x


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the class axis (1), in place on a float copy."""
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class WeightFileEngine:
    """Model file and ONNX methods for an engine whose models have ``spec`` and ``state_dict()``.

    A subclass sets ``name`` and ``device``, has a ``version`` and builds its
    model from checked tensors in :meth:`_model`.
    """

    name: str
    device: str
    version: str

    def _model(self, spec: UNetSpec, tensors: dict[str, np.ndarray]) -> Any:
        raise NotImplementedError

    def _check_spec(self, spec: UNetSpec) -> None:
        """Refuse a spec this engine cannot run (default: none)."""

    def save(
        self,
        model: Any,
        spec: UNetSpec,
        path: str | os.PathLike[str],
        *,
        metadata: Mapping[str, Any],
        overwrite: bool = False,
    ) -> str:
        """Write the model file (the same file every engine writes and reads); returns its SHA-256."""
        if model.spec != spec:
            raise ValueError(f"spec {spec} is not the model's spec {model.spec}")
        saved_by = {"engine": self.name, "engine_version": self.version, "library_version": __version__}
        return write_model_file(
            path, model.state_dict(), spec=spec, metadata=metadata, saved_by=saved_by, overwrite=overwrite
        )

    def load(
        self, path: str | os.PathLike[str], *, sha256: str | None = None
    ) -> tuple[Any, UNetSpec, dict[str, Any]]:
        """Read a model file written by any engine: ``(model, spec, metadata)``, in evaluation mode."""
        tensors, spec, metadata, saved_by = read_model_file(path, sha256=sha256)
        self._check_spec(spec)
        check_weights(path, tensors, weight_shapes(spec))
        logger.info("loaded model %s on %s %s (saved by %s)", path, self.name, self.device, saved_by or "?")
        return self._model(spec, tensors), spec, metadata

    def export_onnx(
        self,
        model: Any,
        spec: UNetSpec,
        path: str | os.PathLike[str],
        *,
        opset: int = 11,
        overwrite: bool = False,
    ) -> str:
        """Write the model as ONNX (the graph every engine exports); returns the file's SHA-256."""
        from .onnx_graph import checked_onnx

        proto = checked_onnx(spec, model.state_dict(), opset=opset)
        return atomic_write(path, [proto.SerializeToString()], overwrite=overwrite)
