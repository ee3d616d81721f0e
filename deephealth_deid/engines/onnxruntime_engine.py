"""The ONNX Runtime engine: runs trained models (it does not train), the fastest on a CPU.

It reads the same model file as the other engines and runs the ONNX graph
:func:`~.onnx_graph.spec_to_onnx` writes from it, with ONNX Runtime's graph
optimisations (BatchNorm folded into the convolutions, fused activations).
On 2 CPU cores it predicts the text detector about twice as fast as PyTorch
(``python benchmarks/bench_engines.py``). Training, optimizers and learning
rates are not available: train with ``--engine torch`` or ``--engine eddl``
and predict here.

Needs ``onnx`` and ``onnxruntime`` (``pip install deephealth_deid[onnx]``);
``onnxruntime-gpu`` adds ``--device cuda``.

Example:
    >>> from deephealth_deid.engines import get_engine  # doctest: +SKIP
    >>> engine = get_engine("onnxruntime", device="cpu")  # doctest: +SKIP
    >>> model, spec, metadata = engine.load("models/text_unet.safetensors")  # doctest: +SKIP
    >>> engine.predict(model, x, probabilities=True)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import EngineUnavailableError
from ..nets import UNetSpec, crop_padding, pad_to_multiple
from .onnx_graph import spec_to_onnx
from .reference import random_weights
from .registry import INSTALL_HINTS, check_device_name
from .weight_files import WeightFileEngine, checked_batch, softmax

__all__ = ["OnnxRuntimeEngine", "OrtModel", "create", "require"]

logger = logging.getLogger(__name__)

_CPU, _CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
#: Threads of the sessions made from now on (0: ONNX Runtime's default, all cores).
_THREADS = [0]


def require() -> None:
    """Check that the engine can be used here.

    Raises:
        EngineUnavailableError: ``onnxruntime`` or ``onnx`` cannot be imported;
            the message says what to install.
    """
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise EngineUnavailableError(
            f"the 'onnxruntime' engine needs onnxruntime and onnx, which cannot be imported ({e}). To use "
            f"it, {INSTALL_HINTS['onnxruntime']}; or use --engine torch"
        ) from e


def create(*, device: str = "auto") -> OnnxRuntimeEngine:
    """Make the engine on ``device`` (the registry calls this)."""
    require()
    return OnnxRuntimeEngine(device=device)


def _resolve(device: str) -> tuple[str, list[Any]]:
    """``(device, providers)`` for a device option; a GPU that is not there is an error."""
    import onnxruntime as ort

    device = check_device_name(device)
    has_cuda = _CUDA in ort.get_available_providers()
    if device == "cpu" or (device == "auto" and not has_cuda):
        return "cpu", [_CPU]
    if not has_cuda:
        raise EngineUnavailableError(
            f"device {device!r} was asked for, but this onnxruntime ({ort.__version__}) has no CUDA "
            "provider: install onnxruntime-gpu, or use --device cpu"
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    return f"cuda:{index}", [(_CUDA, {"device_id": index}), _CPU]


def repeated(array: np.ndarray, factor: int) -> np.ndarray:
    """Nearest upsampling of ``[N, C, *spatial]`` by ``factor`` on every spatial axis (each value repeated).

    Example:
        >>> repeated(np.arange(4.0).reshape(1, 1, 2, 2), 2)[0, 0]
        array([[0., 0., 1., 1.],
               [0., 0., 1., 1.],
               [2., 2., 3., 3.],
               [2., 2., 3., 3.]])
    """
    for axis in range(2, array.ndim) if factor > 1 else ():
        array = np.repeat(array, factor, axis=axis)
    return array


class OrtModel:
    """A network for the ONNX Runtime engine: its spec, its weights and (made on first use) its session.

    Attributes:
        spec: The network spec.
        weights: The tensors of the model file, by name.
    """

    def __init__(self, spec: UNetSpec, weights: Mapping[str, np.ndarray]) -> None:
        self.spec = spec
        self.weights = {name: np.asarray(w) for name, w in weights.items()}
        self._sessions: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OrtModel({self.spec.name!r})"

    def session(self, providers: list[Any]) -> Any:
        """The inference session for ``providers`` and the current thread setting (cached)."""
        import onnxruntime as ort

        key = (repr(providers), _THREADS[0])
        with self._lock:
            if key not in self._sessions:
                options = ort.SessionOptions()
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.intra_op_num_threads = _THREADS[0]
                options.inter_op_num_threads = 1
                options.log_severity_level = 3  # errors only
                # Without the output's nearest upsampling: predict() repeats the values after the softmax.
                proto = spec_to_onnx(self.spec, self.weights, output_upsampling=False)
                self._sessions[key] = ort.InferenceSession(
                    proto.SerializeToString(), options, providers=providers
                )
            return self._sessions[key]

    def state_dict(self) -> dict[str, np.ndarray]:
        """The tensors, as the model file holds them."""
        return dict(self.weights)


class OnnxRuntimeEngine(WeightFileEngine):
    """The ONNX Runtime engine bound to one device.

    Args:
        device: ``"auto"`` (a GPU where onnxruntime-gpu sees one, else the
            CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Attributes:
        name: ``"onnxruntime"``.
        device: ``"cpu"`` or ``"cuda:N"``.
    """

    name = "onnxruntime"

    def __init__(self, *, device: str = "auto") -> None:
        self.device, self._providers = _resolve(device)
        self._auto = check_device_name(device) == "auto"

    def _session(self, model: OrtModel) -> Any:
        """``model``'s session on this engine's device; a GPU whose provider fails to start is not hidden.

        ONNX Runtime falls back to the CPU, with no error, when its CUDA provider
        cannot start (CUDA or cuDNN libraries missing or of another version).
        With ``device="auto"`` that is logged and the engine moves to the CPU;
        with a GPU asked for by name it is an error.
        """
        session = model.session(self._providers)
        if self.device == "cpu" or _CUDA in session.get_providers():
            return session
        import onnxruntime as ort

        why = (
            f"onnxruntime {ort.__version__} lists its CUDA provider, but the provider did not start on "
            f"{self.device} (CUDA or cuDNN libraries missing, or not the versions this onnxruntime-gpu was "
            "built for; its documentation lists them)"
        )
        if not self._auto:
            raise EngineUnavailableError(f"{why}: install them, or use --device cpu")
        logger.warning("%s: predicting on the CPU", why)
        self.device, self._providers = "cpu", [_CPU]
        return model.session(self._providers)

    def __repr__(self) -> str:
        return f"OnnxRuntimeEngine(device={self.device!r})"

    @property
    def version(self) -> str:
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__}"

    def build(self, spec: UNetSpec, *, seed: int | None = None) -> OrtModel:
        """A network with random weights (for tests: this engine cannot train it)."""
        if not isinstance(spec, UNetSpec):
            raise TypeError(f"spec must be a UNetSpec, got {type(spec).__name__}")
        return OrtModel(spec, random_weights(spec, seed=0 if seed is None else seed, trained_like=False))

    def set_threads(self, n: int) -> None:
        """Use ``n`` CPU threads in the sessions made from now on."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"threads must be a positive integer, got {n!r}")
        _THREADS[0] = n

    # -- predict -------------------------------------------------------------------------------

    def predict(
        self, model: OrtModel, array: np.ndarray, *, batch_size: int = 1, probabilities: bool = False
    ) -> np.ndarray:
        """Logits or probabilities ``[N, classes, *spatial]`` of a batch (see the torch engine).

        Sizes that are not a multiple of the network's stride are zero-padded
        and the output cropped back.
        """
        spec = model.spec
        x = checked_batch(spec, array, batch_size)
        x, padding = pad_to_multiple(x, spec.stride, axes=spec.ndim)
        session = self._session(model)
        name = session.get_inputs()[0].name
        outs = []
        for start in range(0, x.shape[0], batch_size):
            (out,) = session.run(None, {name: np.ascontiguousarray(x[start : start + batch_size])})
            out = out.astype(np.float32, copy=False)
            if probabilities:
                out = softmax(out)  # before the upsampling, on a quarter of the values: the same numbers
            outs.append(crop_padding(repeated(out, spec.input_stride), padding))
        return np.concatenate(outs)

    # -- training: not here ------------------------------------------------------------------------

    def optimizer(self, model: OrtModel, *, lr: float = 1e-3, weight_decay: float = 1e-4) -> Any:
        """Not available: this engine does not train."""
        raise EngineUnavailableError(_NO_TRAINING)

    def set_lr(self, optimizer: Any, lr: float) -> None:
        """Not available: this engine does not train."""
        raise EngineUnavailableError(_NO_TRAINING)

    def train_step(self, model: OrtModel, optimizer: Any, x: Any, y: Any, **kwargs: Any) -> dict[str, float]:
        """Not available: this engine does not train."""
        raise EngineUnavailableError(_NO_TRAINING)

    def _model(self, spec: UNetSpec, tensors: dict[str, np.ndarray]) -> OrtModel:
        return OrtModel(spec, tensors)


_NO_TRAINING = (
    "the 'onnxruntime' engine runs trained models only; train with --engine torch (or eddl), "
    "then predict with --engine onnxruntime"
)
