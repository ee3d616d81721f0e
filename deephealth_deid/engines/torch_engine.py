"""The PyTorch engine: build, train, predict, save, load and export the networks of :mod:`..nets`.

This module imports torch; :func:`deephealth_deid.engines.get_engine` imports it
only when the ``"torch"`` engine is asked for.

Example:
    >>> from deephealth_deid.engines import get_engine
    >>> from deephealth_deid.nets import UNetSpec
    >>> engine = get_engine("torch", device="cpu")
    >>> model = engine.build(UNetSpec(ndim=2, classes=2, widths=(4, 8)), seed=0)
    >>> engine.predict(model, np.zeros((1, 1, 5, 7), np.float32)).shape
    (1, 2, 5, 7)
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._version import __version__
from ..errors import EngineUnavailableError
from ..nets import UNetSpec, crop_padding, pad_to_multiple
from .onnx_graph import ONNX_OPS, checked_onnx, onnx_problems, spec_to_onnx
from .registry import (
    atomic_write,
    check_device_name,
    check_weights,
    file_sha256,
    read_model_file,
    step_stats,
    write_model_file,
)
from .weight_files import checked_batch

__all__ = [
    "ONNX_OPS",
    "TorchEngine",
    "UNet",
    "create",
    "dice_ce_loss",
    "file_sha256",
    "onnx_problems",
    "require",
    "resolve_device",
    "seed_everything",
    "seeded",
    "set_threads",
    "spec_to_onnx",
]

logger = logging.getLogger(__name__)

_BN_EPS = 1e-5
_BN_MOMENTUM = 0.1  # PyTorch's convention; ONNX's momentum is 1 - this


def require() -> None:
    """Check that the engine can run (torch imported, which it has if this module imported)."""


def create(*, device: str = "auto") -> TorchEngine:
    """Make a :class:`TorchEngine` on ``device`` (the registry calls this)."""
    return TorchEngine(device=device)


def resolve_device(device: str = "auto") -> torch.device:
    """Turn a device option into a usable ``torch.device``.

    Args:
        device: ``"auto"`` (CUDA where usable, else CPU), ``"cpu"``, ``"cuda"``
            or ``"cuda:N"``.

    Returns:
        The device.

    Raises:
        ConfigError: A malformed device option.
        EngineUnavailableError: A GPU was asked for but this PyTorch build has no
            CUDA support or no GPU is visible, or the index is out of range.
    """
    device = check_device_name(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if torch.version.cuda is None:
        raise EngineUnavailableError(
            f"device {device!r} was asked for, but this PyTorch build ({torch.__version__}) has no CUDA "
            "support: install a CUDA build of torch (https://pytorch.org/get-started/locally/) or use "
            "--device cpu"
        )
    if not torch.cuda.is_available():
        raise EngineUnavailableError(
            f"device {device!r} was asked for, but no CUDA GPU is usable (check the NVIDIA driver and "
            "CUDA_VISIBLE_DEVICES), or use --device cpu"
        )
    dev = torch.device(device)
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise EngineUnavailableError(f"device {device!r} was asked for, but only {count} GPU(s) are visible")
    return dev


def set_threads(n: int) -> None:
    """Set how many CPU threads PyTorch uses for intra-op parallelism (and inter-op, where still possible).

    Args:
        n: Number of threads, at least 1.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # only settable before the first parallel work
        logger.debug("inter-op threads already fixed at %d", torch.get_num_interop_threads())


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, numpy and torch (CPU and CUDA), optionally asking for deterministic kernels.

    Args:
        seed: The seed.
        deterministic: Also make torch choose deterministic algorithms (slower
            on CUDA; a kernel without a deterministic version warns rather than
            fails) and turn off cuDNN autotuning.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def seeded(seed: int, *, deterministic: bool = False) -> Iterator[None]:
    """:func:`seed_everything` for the time of a ``with`` block; torch's kernel choices are put back after it.

    Example:
        >>> with seeded(0):
        ...     a = torch.rand(2)
        >>> with seeded(0):
        ...     b = torch.rand(2)
        >>> bool((a == b).all())
        True
    """
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    seed_everything(seed, deterministic=deterministic)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------


class _ConvUnit(nn.Module):
    """Conv -> BatchNorm (optional) -> ReLU; the conv has a bias only without BatchNorm.

    ``stride`` 1: "same" zero padding; above 1 (the stem): kernel and stride equal, no padding.
    """

    def __init__(self, ndim: int, cin: int, cout: int, kernel: int, norm: str, stride: int = 1) -> None:
        super().__init__()
        conv = nn.Conv3d if ndim == 3 else nn.Conv2d
        bn = nn.BatchNorm3d if ndim == 3 else nn.BatchNorm2d
        pad = kernel // 2 if stride == 1 else 0
        self.conv = conv(cin, cout, kernel, stride=stride, padding=pad, bias=norm == "none")
        self.bn = bn(cout, eps=_BN_EPS, momentum=_BN_MOMENTUM) if norm == "batch" else None
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_in", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x)


def _folded(model: UNet) -> UNet:
    """The model for inference: a copy in evaluation mode with each BatchNorm folded into its conv.

    ``conv`` then ``bn`` in evaluation mode is one convolution with weight
    ``w * g / sqrt(var + eps)`` and bias ``b - mean * g / sqrt(var + eps)``:
    the same logits to float32 rounding (about 1e-6), one pass over memory
    fewer per layer (measured 1.3-1.5x faster on the CPU). The copy is cached
    on the model and made again whenever a parameter or buffer changes (a
    training step bumps their version counters); the model itself is never
    modified.
    """
    tensors = [*model.parameters(), *model.buffers()]
    key = tuple((id(t), t._version, t.data_ptr()) for t in tensors)  # moved or changed: made again
    cached = model.__dict__.pop("_deid_folded", None)  # a stale copy is not worth copying
    if cached is not None and cached[0] == key:
        model.__dict__["_deid_folded"] = cached
        return cached[1]
    net = copy.deepcopy(model)
    net.eval()
    with torch.no_grad():
        for unit in net.modules():
            if isinstance(unit, _ConvUnit) and unit.bn is not None:
                conv, bn = unit.conv, unit.bn
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                shape = (-1,) + (1,) * (conv.weight.dim() - 1)
                conv.weight.mul_(scale.reshape(shape))
                conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale)
                unit.bn = None
    for param in net.parameters():
        param.requires_grad_(False)
    model.__dict__["_deid_folded"] = (key, net)
    return net


class UNet(nn.Module):
    """The U-Net a :class:`~deephealth_deid.nets.UNetSpec` describes (see its docstring).

    Parameter names (``stem.conv.weight``, ``enc.{level}.{i}.conv.weight``, ``up.{level}.bn.running_mean``,
    ``dec.{level}.{i}...``, ``head.weight``) are the tensor names in model files
    and ONNX initializers.

    Args:
        spec: The network spec.
    """

    def __init__(self, spec: UNetSpec) -> None:
        super().__init__()
        self.spec = spec
        nd, k, norm, w = spec.ndim, spec.kernel_size, spec.norm, spec.widths

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                *(_ConvUnit(nd, cin if i == 0 else cout, cout, k, norm) for i in range(spec.convs_per_level))
            )

        s = spec.input_stride
        self.stem = _ConvUnit(nd, spec.in_channels, w[0], s, norm, stride=s) if s > 1 else None
        first = w[0] if s > 1 else spec.in_channels
        self.enc = nn.ModuleList(block(first if i == 0 else w[i - 1], w[i]) for i in range(len(w)))
        self.up = nn.ModuleList(_ConvUnit(nd, w[i + 1], w[i], k, norm) for i in range(len(w) - 1))
        self.dec = nn.ModuleList(block(2 * w[i], w[i]) for i in range(len(w) - 1))
        self.head = (nn.Conv3d if nd == 3 else nn.Conv2d)(w[0], spec.classes, 1, bias=True)
        self.pool = (nn.MaxPool3d if nd == 3 else nn.MaxPool2d)(2)
        if spec.upsample == "nearest":
            self.upsample = nn.Upsample(scale_factor=2.0, mode="nearest")
        else:
            self.upsample = nn.Upsample(
                scale_factor=2.0, mode="trilinear" if nd == 3 else "bilinear", align_corners=False
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, classes, *spatial]`` of a batch ``[N, in_channels, *spatial]``."""
        if self.stem is not None:
            x = self.stem(x)
        skips = []
        for level, enc in enumerate(self.enc):
            if level:
                x = self.pool(x)
            x = enc(x)
            skips.append(x)
        for level in reversed(range(len(self.dec))):
            x = self.up[level](self.upsample(x))
            x = self.dec[level](torch.cat([skips[level], x], dim=1))
        x = self.head(x)
        if self.stem is not None:
            x = F.interpolate(x, scale_factor=float(self.spec.input_stride), mode="nearest")
        return x


# ---------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------


def dice_ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    class_weights: torch.Tensor | None = None,
    dice_weight: float = 1.0,
    smooth: float = 1e-5,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted cross-entropy plus soft Dice loss over the foreground classes.

    The soft Dice of each foreground class is computed over the whole batch
    (sums over samples and voxels), so a class present in one sample only is
    still learnt. The loss is ``CE + dice_weight * mean(1 - Dice)`` over the
    foreground classes present in the batch (absent classes are left to the
    cross-entropy: their soft Dice is 0 as soon as any probability lies on
    them, a constant that would only dilute the others' gradient).

    Args:
        logits: ``[N, K, *spatial]``.
        target: Class indices ``[N, *spatial]`` (int64).
        class_weights: ``[K]`` cross-entropy weights, or ``None``.
        dice_weight: Weight of the Dice term.
        smooth: Smoothing of the Dice ratio.

    Returns:
        ``(loss, parts)`` with ``parts["ce"]`` and ``parts["dice"]`` (``[K-1]``
        soft Dice per foreground class, detached).
    """
    logits = logits.float()
    classes = logits.shape[1]
    ce = F.cross_entropy(logits, target, weight=class_weights)
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, classes).movedim(-1, 1).to(probs.dtype)
    dims = (0, *range(2, logits.ndim))
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * intersection + smooth) / (denominator + smooth)
    foreground = dice[1:]
    present = onehot.sum(dims)[1:] > 0
    # Only the classes present in the batch: an absent class would add a constant
    # (its Dice is 0 as soon as any probability is spread over it) and dilute the
    # gradient of the others; cross-entropy already penalises its false positives.
    dice_term = (1 - foreground[present]).mean() if bool(present.any()) else ce.new_zeros(())
    loss = ce + dice_weight * dice_term
    return loss, {"ce": ce.detach(), "dice": foreground.detach()}


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


class TorchEngine:
    """The PyTorch engine bound to one device.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (see
            :func:`resolve_device`).

    Attributes:
        name: ``"torch"``.
        device: The resolved device, e.g. ``"cpu"`` or ``"cuda:0"``.
    """

    name = "torch"

    def __init__(self, *, device: str = "auto") -> None:
        self._device = resolve_device(device)
        if self._device.type == "cuda" and self._device.index is None:
            self._device = torch.device("cuda", torch.cuda.current_device())
        self.device = str(self._device)
        logger.debug("torch engine on %s (torch %s)", self.device, torch.__version__)

    def __repr__(self) -> str:
        return f"TorchEngine(device={self.device!r})"

    # -- build ---------------------------------------------------------------------------------

    def build(self, spec: UNetSpec, *, seed: int | None = None) -> UNet:
        """Build an untrained network on the engine's device.

        Args:
            spec: The network spec.
            seed: Seed of the weight initialisation (the global RNG state is
                left as it was), or ``None`` for the current global state.

        Returns:
            The model, in training mode.
        """
        if not isinstance(spec, UNetSpec):
            raise TypeError(f"spec must be a UNetSpec, got {type(spec).__name__}")
        if seed is None:
            model = UNet(spec)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = UNet(spec)
        return model.to(self._device)

    def optimizer(
        self, model: UNet, *, lr: float = 1e-3, weight_decay: float = 1e-4
    ) -> torch.optim.Optimizer:
        """An AdamW optimizer over the model's parameters (for :meth:`train_step`)."""
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def set_threads(self, n: int) -> None:
        """Use ``n`` CPU threads (see :func:`set_threads`)."""
        set_threads(n)

    def set_lr(self, optimizer: torch.optim.Optimizer, lr: float) -> None:
        """Change the learning rate of every parameter group from the next step on."""
        for group in optimizer.param_groups:
            group["lr"] = float(lr)

    # -- predict -------------------------------------------------------------------------------

    def predict(
        self,
        model: UNet,
        array: np.ndarray,
        *,
        batch_size: int = 1,
        probabilities: bool = False,
        pad: bool = True,
        amp: bool = True,
    ) -> np.ndarray:
        """Run the network on a batch.

        The model runs in evaluation mode without gradients (its previous mode
        is restored). Spatial sizes that are not a multiple of the network's
        stride are zero-padded and the output cropped back.

        Args:
            model: A model from :meth:`build` or :meth:`load`.
            array: ``[N, in_channels, *spatial]``; converted to float32; not modified.
            batch_size: Samples per forward pass.
            probabilities: Return softmax probabilities instead of logits.
            pad: Pad to the stride automatically; when false, a size that is not
                a multiple is an error.
            amp: On CUDA, run in bfloat16 (float16 where bfloat16 is not
                supported) autocast; ignored on the CPU, which runs in float32.

        Returns:
            float32 ``[N, classes, *spatial]``.

        Raises:
            ValueError: Wrong rank, channels or (with ``pad=False``) sizes, or
                non-finite values.
        """
        spec = _spec_of(model)
        x = checked_batch(spec, array, batch_size)
        padding: tuple[tuple[int, int], ...] = ((0, 0),) * spec.ndim
        if pad:
            x, padding = pad_to_multiple(x, spec.stride, axes=spec.ndim)
        else:
            spec.check_input_shape(x.shape)
        spatial = tuple(x.shape[2 + i] - a - b for i, (a, b) in enumerate(padding))
        out = np.empty((x.shape[0], spec.classes, *spatial), dtype=np.float32)
        device = next(model.parameters()).device
        net = _folded(model)
        with torch.inference_mode(), self._autocast(device, amp):
            for start in range(0, x.shape[0], batch_size):
                chunk = _tensor(x[start : start + batch_size], torch.float32).to(device)
                if spec.ndim == 2:
                    # oneDNN's 2D convolutions of few channels are ~1.5x faster on NHWC data
                    # (measured on the text detector; no gain for 3D); same numbers.
                    chunk = chunk.contiguous(memory_format=torch.channels_last)
                logits = net(chunk).float()
                if probabilities:
                    logits = torch.softmax(logits, dim=1)
                out[start : start + batch_size] = crop_padding(logits.cpu().numpy(), padding)
        return out

    @staticmethod
    def _autocast(device: torch.device, amp: bool) -> Any:
        if amp and device.type == "cuda":
            # bfloat16 only where cuDNN runs it natively (compute capability 8.0, Ampere, and up);
            # is_bf16_supported() also counts emulation, far slower on older GPUs.
            dtype = torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return torch.autocast(device.type, enabled=False)

    # -- train ---------------------------------------------------------------------------------

    def train_step(
        self,
        model: UNet,
        optimizer: torch.optim.Optimizer,
        x: np.ndarray | torch.Tensor,
        y: np.ndarray | torch.Tensor,
        *,
        class_weights: Sequence[float] | np.ndarray | None = None,
        dice_weight: float = 1.0,
        amp: bool = False,
    ) -> dict[str, float]:
        """One optimisation step on a batch with the Dice + cross-entropy loss (:func:`dice_ce_loss`).

        Args:
            model: The model (put in training mode).
            optimizer: Its optimizer (e.g. :meth:`optimizer`).
            x: Images ``[N, in_channels, *spatial]``; sizes must be multiples of
                the stride.
            y: Labels ``[N, *spatial]`` or ``[N, 1, *spatial]``, integers in
                ``[0, classes)``.
            class_weights: Cross-entropy weight per class (background
                included), e.g. higher for the tiny feature classes.
            dice_weight: Weight of the Dice term.
            amp: On CUDA, bfloat16 autocast where supported (ignored otherwise).

        Returns:
            ``{"loss", "ce", "dice"}`` as floats, ``dice`` the mean soft Dice of
            the foreground classes, plus ``"dice_<class name>"`` per foreground class.
        """
        spec = _spec_of(model)
        device = next(model.parameters()).device
        xt = _tensor(x, torch.float32).to(device)
        spec.check_input_shape(tuple(xt.shape))
        yt = _tensor(y, None).to(device)
        if yt.ndim == xt.ndim and yt.shape[1] == 1:
            yt = yt[:, 0]
        if tuple(yt.shape) != (xt.shape[0], *xt.shape[2:]):
            raise ValueError(
                f"labels of shape {tuple(yt.shape)} do not match images of shape {tuple(xt.shape)}"
            )
        if yt.is_floating_point() or yt.dtype == torch.bool:
            raise ValueError(f"labels must be integers, got {yt.dtype}")
        yt = yt.long()
        low, high = int(yt.min()), int(yt.max())
        if low < 0 or high >= spec.classes:
            raise ValueError(f"labels must be in [0, {spec.classes}), got values in [{low}, {high}]")
        weights = None
        if class_weights is not None:
            weights = torch.as_tensor(np.asarray(class_weights, dtype=np.float32), device=device)
            if weights.shape != (spec.classes,) or not bool(torch.all(weights >= 0)):
                raise ValueError(
                    f"class_weights must be {spec.classes} non-negative numbers, got {class_weights!r}"
                )
        model.train()
        optimizer.zero_grad(set_to_none=True)
        use_amp = amp and device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(xt)
        loss, parts = dice_ce_loss(logits, yt, class_weights=weights, dice_weight=dice_weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss is not finite ({float(loss)}); lower the learning rate")
        loss.backward()
        optimizer.step()
        return step_stats(spec, float(loss.detach()), float(parts["ce"]), parts["dice"].cpu().numpy())

    # -- save / load ---------------------------------------------------------------------------

    def save(
        self,
        model: UNet,
        spec: UNetSpec,
        path: str | os.PathLike[str],
        *,
        metadata: Mapping[str, Any],
        overwrite: bool = False,
    ) -> str:
        """Write the model (spec, weights, metadata) to one file, atomically.

        The file is in the safetensors layout described in
        :mod:`deephealth_deid.engines.registry`; it holds no pickle.

        Args:
            model: The model.
            spec: Its spec (must equal ``model.spec``).
            path: Destination, ``.safetensors`` by convention.
            metadata: JSON-serialisable metadata (training data, metrics, ...),
                returned as is by :meth:`load`.
            overwrite: Replace an existing file.

        Returns:
            The SHA-256 of the file (for model cards and registries).

        Raises:
            OutputExistsError: The file exists and ``overwrite`` is false.
            ValueError: ``spec`` is not the model's spec.
            TypeError: ``metadata`` is not JSON-serialisable.
        """
        if _spec_of(model) != spec:
            raise ValueError(f"spec {spec} is not the model's spec {model.spec}")
        tensors: dict[str, np.ndarray] = {}
        for name, tensor in model.state_dict().items():
            t = tensor.detach().cpu()
            if t.is_floating_point() and t.dtype != torch.float32:
                t = t.float()
            tensors[name] = t.contiguous().numpy()
        saved_by = {"engine": self.name, "engine_version": torch.__version__, "library_version": __version__}
        return write_model_file(
            path, tensors, spec=spec, metadata=metadata, saved_by=saved_by, overwrite=overwrite
        )

    def load(
        self, path: str | os.PathLike[str], *, sha256: str | None = None, device: str | None = None
    ) -> tuple[UNet, UNetSpec, dict[str, Any]]:
        """Read a model file written by :meth:`save` (by any engine).

        Args:
            path: The file.
            sha256: Expected SHA-256; a mismatch raises :class:`ModelCheckError`.
            device: Device to put the model on (default: the engine's).

        Returns:
            ``(model, spec, metadata)``, the model in evaluation mode.

        Raises:
            FileNotFoundError: No such file.
            ModelCheckError: Checksum mismatch, not a model file, or weights that
                do not fit the spec.
        """
        tensors, spec, metadata, saved_by = read_model_file(path, sha256=sha256)
        model = self.build(spec, seed=0)
        if device is not None:
            model = model.to(resolve_device(device))
        expected = model.state_dict()
        check_weights(path, tensors, {name: tuple(t.shape) for name, t in expected.items()})
        state = {name: torch.from_numpy(tensors[name]).to(ref.dtype) for name, ref in expected.items()}
        model.load_state_dict(state, strict=True)
        model.eval()
        logger.info("loaded model %s (saved by %s)", path, saved_by or "unknown")
        return model, spec, metadata

    # -- ONNX ----------------------------------------------------------------------------------

    def export_onnx(
        self,
        model: UNet,
        spec: UNetSpec,
        path: str | os.PathLike[str],
        *,
        opset: int = 11,
        overwrite: bool = False,
    ) -> str:
        """Export the model to ONNX for other runtimes and the EDDL engine.

        The graph is written from the spec, not traced, so it holds exactly the
        operators in :data:`ONNX_OPS`: Conv, BatchNormalization (kept, not
        folded into the convolutions), Relu, MaxPool, Resize (nearest:
        ``asymmetric``/``floor``; linear: ``half_pixel``) with its ``roi`` and
        ``scales`` as initializers, and Concat. Every weight is an initializer
        named as in the state dict; there are no Constant nodes. The input
        ``input`` is ``[N, in_channels, *spatial]`` with the batch and spatial
        axes dynamic; the output ``logits`` has no softmax. The spec is stored in
        the model's ``metadata_props`` (key ``deephealth_deid.spec``).

        Args:
            model: The model.
            spec: Its spec.
            path: Destination ``.onnx`` file.
            opset: ONNX opset, 11 (the default, what EDDL writes) to 17.
            overwrite: Replace an existing file.

        Returns:
            The SHA-256 of the file written.

        Raises:
            ImportError: The ``onnx`` package is missing.
            ModelCheckError: The exported graph fails the ONNX checker or the
                EDDL constraints (a bug).
        """
        if _spec_of(model) != spec:
            raise ValueError(f"spec {spec} is not the model's spec {model.spec}")
        weights = {name: t.detach().cpu().float().numpy() for name, t in model.state_dict().items()}
        proto = checked_onnx(spec, weights, opset=opset)
        if spec.upsample != "nearest":
            logger.warning(
                "%s: EDDL v1.1b's ONNX importer reads only nearest Resize; this linear-upsampling "
                "model will run on ONNX runtimes and PyTorch but not on the EDDL engine",
                path,
            )
        sha = atomic_write(path, [proto.SerializeToString()], overwrite=overwrite)
        logger.info("exported ONNX %s (opset %d, sha256 %s)", path, opset, sha)
        return sha


def _tensor(value: np.ndarray | torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """A CPU tensor from an array; read-only, strided or byte-swapped arrays are copied first."""
    if isinstance(value, torch.Tensor):
        return value if dtype is None else value.to(dtype)
    arr = np.asarray(value)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, order="C", copy=True)
    tensor = torch.from_numpy(arr)
    return tensor if dtype is None else tensor.to(dtype)


def _spec_of(model: nn.Module) -> UNetSpec:
    spec = getattr(model, "spec", None)
    if not isinstance(spec, UNetSpec):
        raise TypeError(f"expected a model built by this engine (a UNet), got {type(model).__name__}")
    return spec
