"""The EDDL engine (DeepHealth toolkit): the same U-Nets, built, trained and run by EDDL.

The network is built layer by layer from the :class:`~deephealth_deid.nets.UNetSpec`
(no ONNX round trip is needed to run a model file) and reads and writes the
engine-neutral model file of :mod:`.registry`, so a model trained with PyTorch
runs here and one trained here runs on PyTorch. ``pyeddl`` is imported only
inside this module's functions.

EDDL v1.1b has known defects on its CPU computing service (see the README):
Conv3D ignores its bias, and BatchNorm ignores the depth axis of 5D tensors.
When the engine starts, :func:`self_check` measures each of them on tiny
tensors and then checks a whole small 2D and 3D U-Net (and a 2D one with a stem), as this engine builds
it, against the numpy reference (:mod:`.reference`). The engine builds
networks that do not depend on the defects, exactly, on every build:

* BatchNorm of a 5D tensor ``[N, C, D, H, W]`` runs on the tensor reshaped to
  ``[N, C, D*H, W]``: the statistics are per channel over the same voxels,
  so the result is identical (training and inference);
* the only biased 3D convolution, the 1x1x1 head, runs as a 1x1 Conv2D on the
  same reshaped tensor (the same sum); the block convolutions have no bias
  (BatchNorm follows them). A spec without BatchNorm (``norm="none"``) needs
  biased 3D convolutions, and on a build whose Conv3D drops its bias the
  engine refuses it.

If the whole-network check still fails, the engine refuses to start with an
error that says what is wrong and to use ``--engine torch``: it never returns
masks computed by a wrong network.

Training uses EDDL's own optimiser (Adam) and loss (categorical
cross-entropy on the softmax over the classes); class weights and the Dice
term of the PyTorch engine are not available here, and the soft Dice per
class is reported from the forward pass.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EngineUnavailableError, ModelCheckError
from ..nets import UNetSpec
from .reference import random_weights, unet_forward, weight_shapes
from .registry import INSTALL_HINTS, _nvidia_device_visible, step_stats
from .weight_files import WeightFileEngine, checked_batch, softmax

__all__ = ["EddlEngine", "EddlModel", "SelfCheck", "create", "is_available", "require", "self_check"]

logger = logging.getLogger(__name__)

_BN_EPS = 1e-5
_BN_MOMENTUM = 0.9  # EDDL keeps momentum * running + (1 - momentum) * batch (PyTorch's 0.1)
_TOLERANCE = 1e-4  # largest |logit| error accepted by the self-check, relative to max(1, |logit|)
#: Inference networks (one per input shape) kept per model, by the spec's dimensions: at most
#: this many, and beyond the newest only while the input elements (pixels, voxels) of those kept
#: add up to at most :data:`_KEPT_ELEMENTS`. EDDL's CPU service holds buffers of about 3 kB per
#: input pixel for the text detector and 8 kB per voxel for the defacing U-Net (measured
#: 2026-11-28: 0.8 GB at 512 x 512, 11.6 GB at 2048 x 2048; 2.7 GB for a 64 x 80 x 64 head box,
#: 10.0 GB with three box shapes kept). A volume network is kept for one shape at a time (a new
#: head box rebuilds it, 3-11 s against 19-25 s for the prediction); image networks for a frame,
#: its tiles and the second looks along vertical text, up to two megapixels in all (a 1024 x 1024
#: tile and its looks).
_NETS_PER_MODEL = {2: 4, 3: 1}
_KEPT_ELEMENTS = {2: 2 * 1024 * 1024, 3: 0}


def _import_error() -> Exception | None:
    """The exception importing ``pyeddl.eddl`` raises, or ``None`` when it imports."""
    try:
        import pyeddl.eddl
        import pyeddl.tensor  # noqa: F401
    except Exception as e:  # also a missing libeddl.so, or bindings built for another EDDL
        return e
    return None


def is_available() -> bool:
    """Whether ``pyeddl`` (the EDDL library and its Python bindings) imports."""
    return _import_error() is None


def require() -> None:
    """Check that the engine can be used here.

    Raises:
        EngineUnavailableError: ``pyeddl`` cannot be imported; the message
            says what to install.
    """
    error = _import_error()
    if error is not None:
        raise EngineUnavailableError(
            f"the 'eddl' engine needs pyeddl, which cannot be imported ({error}). To use it, "
            f"{INSTALL_HINTS['eddl']}; or use --engine torch"
        ) from error


def create(*, device: str = "auto") -> EddlEngine:
    """Make the EDDL engine on ``device`` (runs the self-check once per device and process)."""
    require()
    return EddlEngine(device=device)


def _eddl() -> Any:
    from pyeddl import eddl

    return eddl


def _tensor_cls() -> Any:
    from pyeddl.tensor import Tensor

    return Tensor


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep what EDDL prints on the C++ side (tensor dumps, set-up lines) out of the terminal.

    EDDL writes to the process's standard output and error, where it would mix
    with a command's own output (``--json``). Its lines are logged instead: at
    debug level, or as a warning when the call fails.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    failed = False
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                (logger.warning if failed else logger.debug)("EDDL printed: %s", text[-2000:])


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------


def _gpu_count() -> int:
    """GPUs EDDL could use: 0 for a CPU-only build of EDDL, or where no NVIDIA device is visible.

    A GPU build of EDDL says it supports CUDA on any machine; asked for a GPU
    where there is none, it stops with a bare error, so the machine is asked
    too (its driver's device node, and ``CUDA_VISIBLE_DEVICES``, where the
    first ``-1`` ends the list as CUDA reads it).
    """
    try:
        from pyeddl.tensor import Tensor

        if not Tensor.is_hardware_supported("cuda") and not Tensor.is_hardware_supported("cudnn"):
            return 0
    except Exception:  # older bindings: no way to ask, assume none
        return 0
    if not _nvidia_device_visible():
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        listed = [v.strip() for v in visible.split(",")]
        return len(listed[: listed.index("-1")] if "-1" in listed else [v for v in listed if v])
    return 1


def resolve_device(device: str) -> str:
    """``"cpu"`` or ``"cuda:N"`` for a device option; a GPU that is not there is an error."""
    device = device.strip().lower()
    gpus = _gpu_count()
    if device == "auto":
        return "cuda:0" if gpus else "cpu"
    if device == "cpu":
        return "cpu"
    index = int(device.split(":")[1]) if ":" in device else 0
    if not gpus:
        raise EngineUnavailableError(
            f"device {device!r} was asked for, but this EDDL build has no GPU support (a CPU-only "
            "build, or no CUDA device); install the GPU build of EDDL (conda: eddl-gpu) or use "
            "--device cpu"
        )
    return f"cuda:{index}"


_THREADS = [-1]  # CPU threads of the computing services made from now on (-1: all cores)


def _computing_service(device: str) -> Any:
    eddl = _eddl()
    if device == "cpu":
        return eddl.CS_CPU(_THREADS[0], "full_mem")
    index = int(device.split(":")[1])
    mask = [0] * (index + 1)
    mask[index] = 1
    return eddl.CS_GPU(mask, 1, "full_mem")


# ---------------------------------------------------------------------------------------------
# Building a network from a spec
# ---------------------------------------------------------------------------------------------


@dataclass
class _Built:
    """An EDDL network for one input shape, and where each model-file tensor lives in it."""

    net: Any
    output: Any  # the logits layer, or the softmax layer of a training network
    slots: dict[str, tuple[str, int]] = field(default_factory=dict)  # tensor -> (layer, param index)
    head_2d: bool = False  # the 3D head runs as a Conv2D (its weight is [K, C, 1, 1])


#: Build networks that do not depend on EDDL's CPU defects (see the module docstring). Only a
#: test turns this off, to show that the self-check then refuses a defective build.
_WORKAROUND = True


def _build_graph(spec: UNetSpec, spatial: Sequence[int], *, softmax: bool) -> _Built:
    """The EDDL layers of ``spec`` for inputs ``[*, in_channels, *spatial]`` (see the module docstring)."""
    eddl = _eddl()
    nd, k = spec.ndim, spec.kernel_size
    slots: dict[str, tuple[str, int]] = {}
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}#{counter[0]}"

    def conv(x: Any, cout: int, kernel: int, bias: bool, prefix: str, stride: int = 1) -> Any:
        n = name(prefix)
        pad = "same" if stride == 1 else "none"
        if nd == 3:
            layer = eddl.Conv3D(x, cout, [kernel] * 3, [stride] * 3, pad, bias, 1, [1, 1, 1], n)
        else:
            layer = eddl.Conv2D(x, cout, [kernel] * 2, [stride] * 2, pad, bias, 1, [1, 1], n)
        slots[f"{prefix}.weight"] = (n, 0)
        if bias:
            slots[f"{prefix}.bias"] = (n, 1)
        return layer

    def batchnorm(x: Any, channels: int, shape: Sequence[int], prefix: str) -> Any:
        flat = nd == 3 and _WORKAROUND
        if flat:  # on [C, D*H, W]: the same statistics, without the 5D defect
            x = eddl.Reshape(x, [channels, shape[0] * shape[1], shape[2]], name(prefix + ".to4d"))
        n = name(prefix)
        x = eddl.BatchNormalization(x, True, _BN_MOMENTUM, _BN_EPS, n)
        for i, p in enumerate(("weight", "bias", "running_mean", "running_var")):
            slots[f"{prefix}.{p}"] = (n, i)
        if flat:
            x = eddl.Reshape(x, [channels, *shape], name(prefix + ".to5d"))
        return x

    def unit(prefix: str, x: Any, cout: int, shape: Sequence[int], kernel: int = k, stride: int = 1) -> Any:
        x = conv(x, cout, kernel, spec.norm == "none", f"{prefix}.conv", stride)
        if spec.norm == "batch":
            x = batchnorm(x, cout, shape, f"{prefix}.bn")
        return eddl.ReLu(x, name(prefix + ".relu"))

    shape = list(spatial)
    inp = eddl.Input([spec.in_channels, *shape], name("input"))
    x = inp
    s = spec.input_stride
    if s > 1:  # the stem: kernel = stride, no padding
        shape = [n // s for n in shape]
        x = unit("stem", x, spec.widths[0], shape, kernel=s, stride=s)
    skips, shapes = [], []
    for level in range(spec.levels):
        if level:
            pool = eddl.MaxPool3D if nd == 3 else eddl.MaxPool2D
            x = pool(x, [2] * nd, [2] * nd, "none", name(f"pool.{level}"))
            shape = [s // 2 for s in shape]
        for i in range(spec.convs_per_level):
            x = unit(f"enc.{level}.{i}", x, spec.widths[level], shape)
        skips.append(x)
        shapes.append(list(shape))
    for level in reversed(range(spec.levels - 1)):
        shape = shapes[level]
        if nd == 3:
            x = eddl.UpSampling3D(x, shape, True, "constant", 0.0, "asymmetric", name(f"upsample.{level}"))
        else:
            x = eddl.UpSampling2D(x, [2, 2], "nearest", name(f"upsample.{level}"))
        x = unit(f"up.{level}", x, spec.widths[level], shape)
        x = eddl.Concat([skips[level], x], 0, name(f"concat.{level}"))
        for i in range(spec.convs_per_level):
            x = unit(f"dec.{level}.{i}", x, spec.widths[level], shape)
    head_2d = nd == 3 and _WORKAROUND
    if head_2d:  # the biased 1x1x1 head as a 1x1 Conv2D on [C, D*H, W] (Conv3D drops biases)
        x = eddl.Reshape(x, [spec.widths[0], shape[0] * shape[1], shape[2]], name("head.to4d"))
        n = name("head")
        x = eddl.Conv2D(x, spec.classes, [1, 1], [1, 1], "same", True, 1, [1, 1], n)
        x = eddl.Reshape(x, [spec.classes, *shape], name("head.to5d"))
    else:
        n = name("head")
        conv_head = eddl.Conv3D if nd == 3 else eddl.Conv2D
        x = conv_head(x, spec.classes, [1] * nd, [1] * nd, "same", True, 1, [1] * nd, n)
    slots["head.weight"], slots["head.bias"] = (n, 0), (n, 1)
    if s > 1:  # logits back to the input's size, nearest
        if nd == 3:
            x = eddl.UpSampling3D(
                x, list(spatial), True, "constant", 0.0, "asymmetric", name("output.upsample")
            )
        else:
            x = eddl.UpSampling2D(x, [s, s], "nearest", name("output.upsample"))
    if softmax:
        x = eddl.Softmax(x, 1, name("softmax"))
    net = eddl.Model([inp], [x])
    return _Built(net=net, output=x, slots=slots, head_2d=head_2d)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class EddlModel:
    """A U-Net for the EDDL engine: the spec, its weights, and EDDL networks built from them.

    The weights (numpy, named and shaped as in the model file) are the model;
    EDDL networks are built from them on demand, one per input shape (EDDL
    networks have a fixed input shape), and the training network's weights
    are read back after training steps.

    Attributes:
        spec: The network spec.
        training: The mode :meth:`EddlEngine.train_step` sets and :meth:`eval` clears.
    """

    def __init__(self, spec: UNetSpec, weights: Mapping[str, np.ndarray], device: str) -> None:
        self.spec = spec
        self.device = device
        self.training = False
        self._weights = {k: np.array(v, copy=True) for k, v in weights.items()}
        self._nets: OrderedDict[tuple[Any, ...], _Built] = OrderedDict()
        self._trainer: _Built | None = None
        self._trainer_key: tuple[Any, ...] | None = None
        self._stale = False  # the training network holds newer weights than self._weights

    def __repr__(self) -> str:
        return f"EddlModel({self.spec.name}, device={self.device!r})"

    def eval(self) -> EddlModel:
        self.training = False
        return self

    def train(self, mode: bool = True) -> EddlModel:
        self.training = mode
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """The weights as numpy arrays, named as in the model file (a copy)."""
        self._pull()
        return {k: np.array(v, copy=True) for k, v in self._weights.items()}

    def load_state_dict(self, weights: Mapping[str, np.ndarray]) -> None:
        """Replace the weights (same names and shapes); built networks are rebuilt on demand."""
        expected = weight_shapes(self.spec)
        problems = sorted(set(expected) ^ set(weights))
        if problems:
            raise ModelCheckError(f"the weights do not fit the network spec ({problems[:5]})")
        for k, shape in expected.items():
            if tuple(np.shape(weights[k])) != shape:
                raise ModelCheckError(
                    f"tensor {k!r} has shape {np.shape(weights[k])}, the spec needs {shape}"
                )
        self._weights = {k: np.array(v, copy=True) for k, v in weights.items()}
        self._nets.clear()
        self._trainer, self._trainer_key, self._stale = None, None, False

    # -- networks ------------------------------------------------------------------------------

    def _push(self, built: _Built) -> None:
        """Copy the weights into a built network (all devices)."""
        eddl = _eddl()
        Tensor = _tensor_cls()
        layer_index = {layer.name: i for i, layer in enumerate(built.net.layers)}
        params = eddl.get_parameters(built.net, True)
        for tensor_name, (layer, p) in built.slots.items():
            value = np.asarray(self._weights[tensor_name], np.float32)
            if tensor_name == "head.weight" and built.head_2d:
                value = value.reshape(*value.shape[:2], 1, 1)
            params[layer_index[layer]][p] = Tensor.fromarray(np.ascontiguousarray(value))
        eddl.set_parameters(built.net, params)

    def _pull(self) -> None:
        """Read the weights back from the training network after training steps."""
        if not self._stale or self._trainer is None:
            return
        eddl = _eddl()
        built = self._trainer
        layer_index = {layer.name: i for i, layer in enumerate(built.net.layers)}
        with _quiet():
            params = eddl.get_parameters(built.net, True)
        for tensor_name, (layer, p) in built.slots.items():
            value = np.array(params[layer_index[layer]][p].getdata(), dtype=np.float32)
            self._weights[tensor_name] = value.reshape(self._weights[tensor_name].shape)
        self._stale = False
        self._nets.clear()  # inference networks hold old weights

    def inference_net(self, spatial: tuple[int, ...]) -> _Built:
        """The inference network for inputs of spatial size ``spatial`` (built and cached)."""
        self._pull()
        key = ("eval", spatial)
        built = self._nets.get(key)
        if built is not None:
            self._nets.move_to_end(key)
            return built
        # Free the oldest before building: their buffers add up.
        most, budget = _NETS_PER_MODEL.get(self.spec.ndim, 1), _KEPT_ELEMENTS.get(self.spec.ndim, 0)
        while self._nets and (
            len(self._nets) >= most or sum(math.prod(k[1]) for k in self._nets) + math.prod(spatial) > budget
        ):
            self._nets.popitem(last=False)
        eddl = _eddl()
        with _quiet():
            built = _build_graph(self.spec, spatial, softmax=False)
            eddl.build(built.net, eddl.sgd(0.0), ["mse"], ["mse"], _computing_service(self.device), False)
            eddl.set_mode(built.net, 0)  # TSMODE: BatchNorm uses the running statistics
            self._push(built)
        self._nets[key] = built
        return built

    def training_net(self, spatial: tuple[int, ...], lr: float, weight_decay: float) -> _Built:
        """The training network for ``spatial`` (built on the first step, kept while the shape holds)."""
        key = ("train", spatial)
        if self._trainer is not None and self._trainer_key == key:
            return self._trainer
        self._pull()
        eddl = _eddl()
        with _quiet():
            built = _build_graph(self.spec, spatial, softmax=True)
            optimizer = eddl.adam(lr, 0.9, 0.999, 1e-6, weight_decay, False)
            eddl.build(
                built.net,
                optimizer,
                ["categorical_cross_entropy"],
                ["mse"],
                _computing_service(self.device),
                False,
            )
            eddl.set_mode(built.net, 1)
            self._push(built)
        self._trainer, self._trainer_key = built, key
        return built


@dataclass
class EddlOptimizer:
    """The optimiser settings of an EDDL model (EDDL keeps Adam's state inside its network)."""

    lr: float
    weight_decay: float
    warned: bool = False  # the warning about the loss was given
    trainer: _Built | None = field(default=None, repr=False)  # the network it trains, once built


# ---------------------------------------------------------------------------------------------
# Self-check
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelfCheck:
    """What :func:`self_check` measured on one EDDL build and device.

    Attributes:
        device: ``"cpu"`` or ``"cuda:N"``.
        conv3d_bias: Conv3D adds its bias (false on EDDL v1.1b's CPU service).
        batchnorm_5d: BatchNorm normalises every voxel of a 5D tensor (false on v1.1b's CPU service).
        unet_error: Largest relative logit error of a small 2D and 3D U-Net, as
            this engine builds them, against the numpy reference.
    """

    device: str
    conv3d_bias: bool
    batchnorm_5d: bool
    unet_error: float

    @property
    def defects(self) -> list[str]:
        """The build's defects, in words (the engine works around them)."""
        out = []
        if not self.conv3d_bias:
            out.append("Conv3D ignores its bias")
        if not self.batchnorm_5d:
            out.append("BatchNorm ignores the depth axis of 5D tensors")
        return out

    @property
    def ok(self) -> bool:
        """Whether the networks this engine builds compute what the spec says."""
        return bool(self.unet_error <= _TOLERANCE)


_CHECKS: dict[str, SelfCheck] = {}


def _run(net: Any, x: np.ndarray, output: Any) -> np.ndarray:
    eddl = _eddl()
    Tensor = _tensor_cls()
    with _quiet():
        eddl.forward(net, [Tensor.fromarray(np.ascontiguousarray(x, dtype=np.float32))])
    return np.array(eddl.getOutput(output).getdata(), dtype=np.float64)


def _probe(device: str, make: Any, x: np.ndarray, params: Sequence[np.ndarray]) -> np.ndarray:
    """Output of a one-layer network ``make(input)`` with ``params`` set, in inference mode."""
    eddl = _eddl()
    Tensor = _tensor_cls()
    with _quiet():
        inp = eddl.Input(list(x.shape[1:]))
        out = make(inp)
        net = eddl.Model([inp], [out])
        eddl.build(net, eddl.sgd(0.0), ["mse"], ["mse"], _computing_service(device), False)
        eddl.set_mode(net, 0)
        all_params = eddl.get_parameters(net, True)
        index = next(i for i, layer in enumerate(net.layers) if layer.name == out.name)
        all_params[index] = [Tensor.fromarray(np.ascontiguousarray(p, dtype=np.float32)) for p in params]
        eddl.set_parameters(net, all_params)
    return _run(net, x, out)


def self_check(device: str = "cpu") -> SelfCheck:
    """Measure the known EDDL defects and check whole small U-Nets on ``device`` (cached).

    Returns:
        The :class:`SelfCheck`; the engine refuses to start when ``ok`` is false.
    """
    if device in _CHECKS:
        return _CHECKS[device]
    eddl = _eddl()
    rng = np.random.default_rng(0)
    # Conv3D with a bias: a 1x1x1 identity convolution plus 0.5.
    x = rng.standard_normal((1, 1, 2, 3, 4)).astype(np.float32)
    got = _probe(
        device,
        lambda i: eddl.Conv3D(i, 1, [1, 1, 1], [1, 1, 1], "same", True, 1, [1, 1, 1], "check_conv3d"),
        x,
        [np.ones((1, 1, 1, 1, 1), np.float32), np.full((1,), 0.5, np.float32)],
    )
    conv3d_bias = bool(np.allclose(got, x + 0.5, atol=1e-5))
    # BatchNorm of a 5D tensor with its running statistics.
    x = rng.standard_normal((1, 2, 3, 4, 5)).astype(np.float32)
    g, b, m, v = (np.array(a, np.float32) for a in ([1.5, 0.5], [0.2, -0.3], [0.1, -0.4], [2.0, 0.5]))
    got = _probe(
        device,
        lambda i: eddl.BatchNormalization(i, True, _BN_MOMENTUM, _BN_EPS, "check_bn5d"),
        x,
        [g, b, m, v],
    )
    c = (1, 2, 1, 1, 1)
    want = (x - m.reshape(c)) / np.sqrt(v.reshape(c) + _BN_EPS) * g.reshape(c) + b.reshape(c)
    batchnorm_5d = bool(np.allclose(got, want, atol=1e-4))
    # Whole networks as this engine builds them, against the numpy reference.
    from ..nets import UNetSpec as Spec

    error = 0.0
    for spec, shape in (
        (Spec(ndim=3, in_channels=2, classes=3, widths=(2, 4)), (2, 2, 4, 4, 6)),
        (Spec(ndim=2, in_channels=3, classes=2, widths=(3, 6)), (2, 3, 8, 6)),
        (Spec(ndim=2, in_channels=3, classes=2, widths=(3, 6), input_stride=2), (1, 3, 8, 12)),
    ):
        weights = random_weights(spec, seed=1)
        model = EddlModel(spec, weights, device)
        x = rng.standard_normal(shape).astype(np.float32)
        built = model.inference_net(tuple(shape[2:]))
        got = _run(built.net, x, built.output)
        want = unet_forward(spec, weights, x)
        error = max(error, float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))))
    check = SelfCheck(device, conv3d_bias, batchnorm_5d, error)
    _CHECKS[device] = check
    return check


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


class EddlEngine(WeightFileEngine):
    """The EDDL engine bound to one device (see the module docstring).

    Args:
        device: ``"auto"`` (a GPU where EDDL has one, else the CPU), ``"cpu"``,
            ``"cuda"`` or ``"cuda:N"``.

    Raises:
        EngineUnavailableError: The device is not usable, or the self-check
            found that this EDDL build computes the networks wrongly.
    """

    name = "eddl"

    def __init__(self, *, device: str = "auto") -> None:
        self.device = resolve_device(device)
        try:
            check = self_check(self.device)
        except RuntimeError as e:  # EDDL's own error, e.g. a GPU build on a machine without the GPU
            raise EngineUnavailableError(
                f"EDDL could not run a small network on {self.device} ({e}); use --device cpu, or "
                "check the GPU and its CUDA libraries"
            ) from e
        self.check = check
        if not check.ok:
            raise EngineUnavailableError(
                f"this EDDL build computes the U-Net wrongly on {self.device} (largest relative "
                f"logit error {check.unet_error:.2e} against the reference, limit {_TOLERANCE:g}; "
                f"known defects found: {', '.join(check.defects) or 'none'}); its masks cannot be "
                "trusted. Use --engine torch, or an EDDL build without these defects"
            )
        if check.defects:
            logger.info(
                "EDDL on %s: %s; this engine's networks do not depend on them (checked: relative "
                "logit error %.1e)",
                self.device,
                "; ".join(check.defects),
                check.unet_error,
            )

    def __repr__(self) -> str:
        return f"EddlEngine(device={self.device!r})"

    @property
    def version(self) -> str:
        try:
            from importlib.metadata import version

            return f"pyeddl {version('pyeddl')}"
        except Exception:
            return "pyeddl"

    # -- build ---------------------------------------------------------------------------------

    def build(self, spec: UNetSpec, *, seed: int | None = None) -> EddlModel:
        """An untrained model (He-normal convolutions, BatchNorm at ones and zeros)."""
        if not isinstance(spec, UNetSpec):
            raise TypeError(f"spec must be a UNetSpec, got {type(spec).__name__}")
        self._check_spec(spec)
        weights = random_weights(spec, seed=0 if seed is None else seed, trained_like=False)
        for name in weights:
            if (name.endswith(".bias") and ".conv." in name) or name == "head.bias":
                weights[name] = np.zeros_like(weights[name])
        return EddlModel(spec, weights, self.device).train()

    def _check_spec(self, spec: UNetSpec) -> None:
        if spec.upsample != "nearest":
            raise ModelCheckError(
                f"{spec.name}: linear upsampling is not available on the EDDL engine (EDDL upsamples "
                "by nearest neighbour only); use --engine torch for this model"
            )
        if spec.ndim == 3 and spec.norm == "none" and not self.check.conv3d_bias:
            raise ModelCheckError(
                f"{spec.name}: a 3D network without BatchNorm needs Conv3D biases, which this EDDL "
                f"build ignores on {self.device}; use --engine torch or an EDDL build without the defect"
            )

    def optimizer(self, model: EddlModel, *, lr: float = 1e-3, weight_decay: float = 1e-4) -> EddlOptimizer:
        """Adam settings for :meth:`train_step`."""
        return EddlOptimizer(lr=float(lr), weight_decay=float(weight_decay))

    def set_threads(self, n: int) -> None:
        """Use ``n`` CPU threads in the EDDL networks built from now on."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"threads must be a positive integer, got {n!r}")
        _THREADS[0] = n

    def set_lr(self, optimizer: EddlOptimizer, lr: float) -> None:
        """Change the learning rate from the next step on."""
        if optimizer.lr != lr:
            optimizer.lr = float(lr)
            model_trainer = optimizer.trainer
            if model_trainer is not None:
                with _quiet():
                    _eddl().setlr(model_trainer.net, [optimizer.lr])

    # -- predict -------------------------------------------------------------------------------

    def predict(
        self, model: EddlModel, array: np.ndarray, *, batch_size: int = 1, probabilities: bool = False
    ) -> np.ndarray:
        """Logits or probabilities ``[N, classes, *spatial]`` of a batch (see the torch engine)."""
        from ..nets import crop_padding, pad_to_multiple

        spec = model.spec
        x = checked_batch(spec, array, batch_size)
        x, padding = pad_to_multiple(x, spec.stride, axes=spec.ndim)
        built = model.inference_net(tuple(int(s) for s in x.shape[2:]))
        outs = []
        for start in range(0, x.shape[0], batch_size):
            logits = _run(built.net, x[start : start + batch_size], built.output).astype(np.float32)
            if probabilities:
                logits = softmax(logits)
            outs.append(crop_padding(logits, padding))
        return np.concatenate(outs, axis=0)

    # -- train ---------------------------------------------------------------------------------

    def train_step(
        self,
        model: EddlModel,
        optimizer: EddlOptimizer,
        x: np.ndarray,
        y: np.ndarray,
        *,
        class_weights: Any = None,
        dice_weight: float = 1.0,
    ) -> dict[str, float]:
        """One Adam step with EDDL's categorical cross-entropy (class weights and Dice: torch only).

        Returns:
            ``{"loss", "ce", "dice"}`` and ``"dice_<class name>"`` (soft Dice of
            the forward pass before the step).
        """
        spec = model.spec
        eddl = _eddl()
        Tensor = _tensor_cls()
        weighted = class_weights is not None and len(set(np.asarray(class_weights, float).tolist())) > 1
        if (weighted or dice_weight) and not optimizer.warned:
            logger.warning(
                "the EDDL engine trains with EDDL's unweighted categorical cross-entropy: the class "
                "weights and the Dice term of the configuration are not used (they are on --engine torch)"
            )
            optimizer.warned = True
        x = np.ascontiguousarray(x, dtype=np.float32)
        spec.check_input_shape(x.shape)
        y = np.asarray(y)
        if y.ndim == x.ndim and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (x.shape[0], *x.shape[2:]):
            raise ValueError(f"labels of shape {y.shape} do not match images of shape {x.shape}")
        if y.dtype.kind not in "iu":
            raise ValueError(f"labels must be integers, got {y.dtype}")
        if y.min() < 0 or y.max() >= spec.classes:
            raise ValueError(f"labels must be in [0, {spec.classes}), got values in [{y.min()}, {y.max()}]")
        built = model.training_net(tuple(x.shape[2:]), optimizer.lr, optimizer.weight_decay)
        optimizer.trainer = built
        onehot = np.moveaxis(np.eye(spec.classes, dtype=np.float32)[y], -1, 1)
        with _quiet():
            eddl.set_mode(built.net, 1)
            eddl.train_batch(
                built.net, [Tensor.fromarray(x)], [Tensor.fromarray(np.ascontiguousarray(onehot))]
            )
        model._stale = True
        model.training = True
        probs = np.array(eddl.getOutput(built.output).getdata(), dtype=np.float64)
        axes = (0, *range(2, probs.ndim))
        inter = (probs * onehot).sum(axes)
        dice = (2 * inter + 1e-5) / (probs.sum(axes) + onehot.sum(axes) + 1e-5)
        ce = float(-(onehot * np.log(np.clip(probs, 1e-12, 1))).sum(1).mean())
        return step_stats(spec, ce, ce, dice[1:])

    def _model(self, spec: UNetSpec, tensors: dict[str, np.ndarray]) -> EddlModel:
        return EddlModel(spec, tensors, self.device).eval()
