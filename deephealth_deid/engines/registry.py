"""Pick a compute engine by name or availability, and the engine-neutral model file.

Three engines run the networks of :mod:`deephealth_deid.nets`: ``"torch"``
(PyTorch, what a plain ``pip install`` gets), ``"eddl"`` (the DeepHealth
toolkit, used where ``pyeddl`` imports) and ``"onnxruntime"`` (ONNX Runtime:
runs trained models, does not train; the fastest on a CPU). Nothing here imports either: the
engine module is imported by :func:`get_engine`, so ``import
deephealth_deid.engines`` stays light.

The model file (``.safetensors``) is the safetensors layout, written and read
here with numpy alone, so any engine (and the ``safetensors`` package, where
installed) can read it, and loading never unpickles anything. It holds:

* an 8-byte little-endian header length, a JSON header, then the raw
  little-endian tensor data;
* header ``__metadata__`` (all values strings, as safetensors requires):
  ``format`` = ``"deephealth_deid.model"``, ``format_version`` = ``"1"``,
  ``spec`` (the network spec as JSON, see :meth:`UNetSpec.to_json`),
  ``metadata`` (the caller's metadata as JSON) and ``saved_by`` (JSON: engine,
  engine version, library version);
* one header entry per tensor: ``{"dtype": "F32", "shape": [...],
  "data_offsets": [begin, end]}``, named as in the engine's state dict.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import re
import struct
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import (
    ConfigError,
    EngineUnavailableError,
    InputNotFoundError,
    ModelCheckError,
    OutputExistsError,
)
from ..nets import UNetSpec

__all__ = [
    "ENGINE_NAMES",
    "INSTALL_HINTS",
    "MODEL_FORMAT",
    "Engine",
    "atomic_write",
    "available_engines",
    "check_weights",
    "check_device_name",
    "file_sha256",
    "get_engine",
    "get_predict_engine",
    "is_available",
    "read_model_file",
    "step_stats",
    "write_model_file",
]

logger = logging.getLogger(__name__)

#: Engine names, in the order ``"auto"`` tries them.
ENGINE_NAMES: tuple[str, ...] = ("torch", "eddl", "onnxruntime")

#: What to install when an engine is missing.
INSTALL_HINTS: dict[str, str] = {
    "torch": (
        "install PyTorch: `pip install torch` (the CPU-only build: `pip install torch==2.13.0 "
        "--index-url https://download.pytorch.org/whl/cpu`), or `pip install deephealth_deid[torch]`"
    ),
    "eddl": (
        "install the DeepHealth EDDL library (v1.1b) from the DeepHealth conda channel "
        "(`conda install -c dhealth eddl-cpu` or `eddl-gpu`) or build it from its sources, "
        "then its Python bindings: `pip install pyeddl`"
    ),
    "onnxruntime": "install ONNX Runtime: `pip install deephealth_deid[onnx]` (onnxruntime and onnx)",
}

_MODULES = {"torch": "torch", "eddl": "pyeddl", "onnxruntime": "onnxruntime"}
_ENGINE_MODULES = {
    "torch": "deephealth_deid.engines.torch_engine",
    "eddl": "deephealth_deid.engines.eddl_engine",
    "onnxruntime": "deephealth_deid.engines.onnxruntime_engine",
}
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

#: Value of ``__metadata__["format"]`` in a model file.
MODEL_FORMAT = "deephealth_deid.model"
_MODEL_FORMAT_VERSION = "1"
_MAX_HEADER = 64 * 1024 * 1024
_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_DTYPE_CODES = {(dt.kind, dt.itemsize): code for code, dt in _DTYPES.items()}


@runtime_checkable
class Engine(Protocol):
    """What every engine offers (see :class:`~deephealth_deid.engines.torch_engine.TorchEngine`).

    Models are engine objects; data crosses the boundary as numpy arrays.
    """

    name: str
    device: str

    def build(self, spec: UNetSpec, *, seed: int | None = None) -> Any:
        """Build an untrained network from a spec."""
        ...

    def predict(
        self, model: Any, array: np.ndarray, *, batch_size: int = 1, probabilities: bool = False
    ) -> np.ndarray:
        """Logits (or probabilities) ``[N, classes, *spatial]`` of a float32 batch ``[N, C, *spatial]``."""
        ...

    def optimizer(self, model: Any, *, lr: float = 1e-3, weight_decay: float = 1e-4) -> Any:
        """An optimizer for :meth:`train_step`."""
        ...

    def set_threads(self, n: int) -> None:
        """Use ``n`` CPU threads for the networks built or run from now on."""
        ...

    def set_lr(self, optimizer: Any, lr: float) -> None:
        """Change the optimizer's learning rate from the next step on."""
        ...

    def train_step(
        self, model: Any, optimizer: Any, x: np.ndarray, y: np.ndarray, *, class_weights: Any = None
    ) -> dict[str, float]:
        """One optimisation step with the Dice + cross-entropy loss; returns loss and Dice values."""
        ...

    def save(
        self,
        model: Any,
        spec: UNetSpec,
        path: str | os.PathLike[str],
        *,
        metadata: Mapping[str, Any],
        overwrite: bool = False,
    ) -> str:
        """Write a model file; returns its SHA-256."""
        ...

    def load(
        self, path: str | os.PathLike[str], *, sha256: str | None = None
    ) -> tuple[Any, UNetSpec, dict[str, Any]]:
        """Read a model file: ``(model, spec, metadata)``."""
        ...

    def export_onnx(
        self,
        model: Any,
        spec: UNetSpec,
        path: str | os.PathLike[str],
        *,
        opset: int = 11,
        overwrite: bool = False,
    ) -> str:
        """Write the model as ONNX; returns the file's SHA-256."""
        ...


def is_available(name: str) -> bool:
    """Whether an engine's package can be found, without importing it.

    A package that is found may still fail to import (a broken install, a
    missing shared library); :func:`get_engine` reports that.

    Args:
        name: ``"torch"``, ``"eddl"`` or ``"onnxruntime"``.
    """
    _check_engine_name(name, allow_auto=False)
    try:
        return importlib.util.find_spec(_MODULES[name]) is not None
    except (ImportError, ValueError):
        return False


def available_engines() -> list[str]:
    """Names of the engines whose package is installed, in the order ``"auto"`` tries them."""
    return [name for name in ENGINE_NAMES if is_available(name)]


def check_device_name(device: str) -> str:
    """Validate a device option: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns:
        The device, lower-cased.

    Raises:
        ConfigError: Anything else.
    """
    if not isinstance(device, str) or not _DEVICE_RE.match(device.strip().lower()):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return device.strip().lower()


def get_engine(name: str = "auto", *, device: str = "auto") -> Any:
    """Get an engine by name, or the first one available.

    Args:
        name: ``"torch"``, ``"eddl"``, ``"onnxruntime"`` or ``"auto"``
            (PyTorch where it imports, otherwise EDDL, otherwise ONNX
            Runtime, which predicts but does not train).
        device: ``"auto"`` (a GPU where one is usable, else the CPU),
            ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Asking for a GPU that is
            not there is an error, never a silent fall back.

    Returns:
        An engine object (see :class:`Engine`) bound to the device.

    Raises:
        ConfigError: An unknown engine name or a malformed device.
        EngineUnavailableError: The engine (or, for ``"auto"``, every engine)
            cannot be imported, or the device asked for is not usable; the
            message says what to install or use instead.

    Example:
        >>> engine = get_engine("torch", device="cpu")  # doctest: +SKIP
        >>> model = engine.build(deface_unet_spec())  # doctest: +SKIP
    """
    name = _check_engine_name(name, allow_auto=True)
    device = check_device_name(device)
    if name != "auto":
        return _import_engine_module(name).create(device=device)
    failures: list[str] = []
    for candidate in ENGINE_NAMES:
        if not is_available(candidate):
            failures.append(f"{candidate}: not installed")
            continue
        try:
            module = _import_engine_module(candidate)
        except EngineUnavailableError as e:
            logger.warning("engine %r is installed but unusable, trying the next one: %s", candidate, e)
            failures.append(f"{candidate}: {e}")
            continue
        logger.debug("engine 'auto' picked %r", candidate)
        return module.create(device=device)
    hints = "; or ".join(INSTALL_HINTS[n] for n in ENGINE_NAMES)
    raise EngineUnavailableError(
        f"no compute engine is available ({'; '.join(failures)}). To get one, {hints}"
    )


def get_predict_engine(name: str = "auto", *, device: str = "auto") -> Any:
    """The engine to predict with: as :func:`get_engine`, except that ``"auto"`` on a CPU is ONNX Runtime.

    Where ``onnxruntime`` is installed and the prediction runs on the CPU, ONNX
    Runtime predicts the shipped networks with the same outputs (logits to
    about 1e-5; the same masks and regions on the real test files), imports in
    a fraction of PyTorch's time (``deid deface`` on a 1 mm head: about a
    third faster end to end) and runs the 2D text network about twice as
    fast. On a GPU, and for training, ``"auto"`` stays with the first engine
    available. Where no NVIDIA device is visible, PyTorch is not even
    imported to find out.
    """
    if name.strip().lower() != "auto" or not is_available("onnxruntime"):
        return get_engine(name, device=device)
    device = check_device_name(device)
    if device == "cpu" or (device == "auto" and not _nvidia_device_visible()):
        try:
            return get_engine("onnxruntime", device="cpu")
        except EngineUnavailableError as e:  # installed but unusable
            logger.debug("onnxruntime not usable: %s", e)
            return get_engine(name, device=device)
    engine = get_engine(name, device=device)
    if engine.device == "cpu" and engine.name != "onnxruntime":
        try:
            return get_engine("onnxruntime", device="cpu")
        except EngineUnavailableError as e:
            logger.debug("onnxruntime not usable, predicting on %s: %s", engine.name, e)
    return engine


def _nvidia_device_visible() -> bool:
    """Whether this machine may have a usable NVIDIA GPU (its driver's device node, on Linux).

    On Linux that is ``/dev/nvidiactl``, or ``/dev/dxg`` under WSL2, where the
    Windows driver shares the GPU. Elsewhere (and with a node present) the
    answer is yes, and the engine finds out.
    """
    if sys.platform == "darwin":
        return False
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    return sys.platform != "linux" or any(os.path.exists(node) for node in _GPU_NODES)


#: Device nodes of an NVIDIA driver on Linux: native, and WSL2's GPU paravirtualisation.
_GPU_NODES = ("/dev/nvidiactl", "/dev/dxg")


def _check_engine_name(name: str, *, allow_auto: bool) -> str:
    names = (*ENGINE_NAMES, "auto") if allow_auto else ENGINE_NAMES
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in names:
        raise ConfigError(f"unknown engine {name!r}; choose one of {', '.join(names)}")
    return key


def _import_engine_module(name: str) -> Any:
    """Import an engine module; turn a missing package into EngineUnavailableError with the hint."""
    try:
        module = importlib.import_module(_ENGINE_MODULES[name])
        module.require()  # raises EngineUnavailableError naming what to install
    except EngineUnavailableError:
        raise
    except (ImportError, OSError) as e:  # OSError: a shared library of the package is missing
        raise EngineUnavailableError(
            f"the {name!r} engine needs the {_MODULES[name]!r} package, which cannot be imported ({e}). "
            f"To use it, {INSTALL_HINTS[name]}"
        ) from e
    return module


# ---------------------------------------------------------------------------------------------
# Engine-neutral model file
# ---------------------------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, as 64 lower-case hex digits.

    Args:
        path: The file.
        chunk_size: Bytes read at a time.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: str | os.PathLike[str], parts: Sequence[bytes], *, overwrite: bool = False) -> str:
    """Write bytes to a file atomically (temporary file in the same folder, then rename).

    Args:
        path: Destination.
        parts: The bytes to write, in order.
        overwrite: Replace an existing file.

    Returns:
        The SHA-256 of the bytes written.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists; pass overwrite=True to replace it")
    from ..io._files import atomic_file

    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        for part in parts:
            f.write(part)
            digest.update(part)
        f.flush()
        os.fsync(f.fileno())
    return digest.hexdigest()


def write_model_file(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    *,
    spec: UNetSpec,
    metadata: Mapping[str, Any],
    saved_by: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Write weights, spec and metadata to one model file, atomically.

    Args:
        path: Destination (``.safetensors`` by convention).
        tensors: Named arrays (the engine's state dict as numpy).
        spec: The network spec.
        metadata: JSON-serialisable metadata (training data, metrics, ...).
        saved_by: JSON-serialisable facts about the writer (engine, version).
        overwrite: Replace an existing file.

    Returns:
        The SHA-256 of the file written.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
        TypeError: ``metadata`` is not JSON-serialisable or a tensor has an
            unsupported dtype.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists; pass overwrite=True to replace it")
    try:
        meta_json = json.dumps(dict(metadata), sort_keys=True, allow_nan=False)
        saved_json = json.dumps(dict(saved_by or {}), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"model metadata must be JSON-serialisable: {e}") from e
    header: dict[str, Any] = {
        "__metadata__": {
            "format": MODEL_FORMAT,
            "format_version": _MODEL_FORMAT_VERSION,
            "spec": spec.to_json(),
            "metadata": meta_json,
            "saved_by": saved_json,
        }
    }
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        code = _DTYPE_CODES.get((arr.dtype.kind, arr.dtype.itemsize))
        if code is None:
            raise TypeError(f"tensor {name!r} has unsupported dtype {arr.dtype}")
        data = np.ascontiguousarray(arr, dtype=_DTYPES[code]).tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # align the data to 8 bytes, as safetensors does
    sha = atomic_write(path, [struct.pack("<Q", len(head)), head, *blobs], overwrite=overwrite)
    logger.info("wrote model %s (%d tensors, %d bytes, sha256 %s)", path, len(blobs), offset, sha)
    return sha


def read_model_file(
    path: str | os.PathLike[str], *, sha256: str | None = None
) -> tuple[dict[str, np.ndarray], UNetSpec, dict[str, Any], dict[str, Any]]:
    """Read and check a model file written by :func:`write_model_file`.

    The bytes are read once; the SHA-256 is computed on the very bytes parsed.

    Args:
        path: The model file.
        sha256: Expected SHA-256 (hex); when given, a mismatch is an error.

    Returns:
        ``(tensors, spec, metadata, saved_by)``.

    Raises:
        InputNotFoundError: The file does not exist (a ``FileNotFoundError`` too).
        ModelCheckError: SHA-256 mismatch, or not a valid model file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: no such model file")
    data = path.read_bytes()
    if sha256 is not None:
        expected = sha256.strip().lower()
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise ModelCheckError(
                f"{path}: SHA-256 mismatch (expected {expected}, file has {actual}); the file is "
                "damaged or not the model expected: reinstall or re-download it"
            )

    def bad(why: str) -> ModelCheckError:
        return ModelCheckError(f"{path}: not a valid deephealth_deid model file: {why}")

    if len(data) < 8:
        raise bad("too short")
    (n,) = struct.unpack("<Q", data[:8])
    if n < 2 or n > _MAX_HEADER or 8 + n > len(data):
        raise bad(f"header length {n} does not fit a file of {len(data)} bytes")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise bad(f"unreadable header ({e})") from e
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__"), dict):
        raise bad("no __metadata__ in the header")
    meta = header.pop("__metadata__")
    if meta.get("format") != MODEL_FORMAT:
        raise bad(f"format is {meta.get('format')!r}, expected {MODEL_FORMAT!r}")
    if meta.get("format_version") != _MODEL_FORMAT_VERSION:
        raise bad(
            f"format_version {meta.get('format_version')!r} is not supported (this version reads "
            f"{_MODEL_FORMAT_VERSION}); upgrade deephealth_deid"
        )
    try:
        spec = UNetSpec.from_json(meta.get("spec", ""), source=f"{path} (spec)")
        metadata = json.loads(meta.get("metadata", "{}"))
        saved_by = json.loads(meta.get("saved_by", "{}"))
    except (ConfigError, ValueError) as e:
        raise bad(str(e)) from e
    if not isinstance(metadata, dict) or not isinstance(saved_by, dict):
        raise bad("metadata is not a JSON object")
    body = memoryview(data)[8 + n :]
    tensors: dict[str, np.ndarray] = {}
    spans: list[tuple[int, int]] = []
    for name, info in header.items():
        try:
            dtype = _DTYPES[info["dtype"]]
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise bad(f"tensor {name!r} has a malformed entry {info!r}") from e
        if any(s < 0 for s in shape) or not 0 <= begin <= end <= len(body):
            raise bad(f"tensor {name!r} has offsets [{begin}, {end}] outside the data ({len(body)} bytes)")
        if (end - begin) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise bad(f"tensor {name!r}: {end - begin} bytes for shape {shape} of {info['dtype']}")
        tensors[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape).copy()
        spans.append((begin, end))
    spans.sort()
    position = 0
    for begin, end in spans:
        if begin != position:
            raise bad("tensor data overlap or leave gaps")
        position = end
    if position != len(body):
        raise bad(f"{len(body) - position} trailing bytes after the tensor data")
    return tensors, spec, metadata, saved_by


def check_weights(
    path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray], expected: Mapping[str, Sequence[int]]
) -> None:
    """Check that a model file's tensors are the ones a network needs (names, shapes, finite values).

    Args:
        path: The file (for the messages).
        tensors: What the file holds.
        expected: Name and shape of every tensor the network needs.

    Raises:
        ModelCheckError: A missing, unexpected, misshapen or non-finite tensor.
    """
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelCheckError(
            f"{path}: the weights do not fit the network spec (missing: {missing[:5]}, "
            f"unexpected: {unexpected[:5]})"
        )
    for name, shape in expected.items():
        arr = tensors[name]
        if tuple(arr.shape) != tuple(shape):
            raise ModelCheckError(
                f"{path}: tensor {name!r} has shape {tuple(arr.shape)}, the spec needs {tuple(shape)}"
            )
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ModelCheckError(f"{path}: tensor {name!r} holds NaN or infinite values")


def step_stats(spec: UNetSpec, loss: float, ce: float, dice: Sequence[float]) -> dict[str, float]:
    """What a training step returns: loss, cross-entropy, mean soft Dice and ``dice_<class>`` per class.

    Args:
        spec: The network spec (class names).
        loss: The total loss.
        ce: The cross-entropy term.
        dice: Soft Dice of each foreground class.
    """
    out = {"loss": float(loss), "ce": float(ce), "dice": float(np.mean(dice))}
    for name, value in zip(spec.class_names[1:], dice, strict=True):
        out[f"dice_{name}"] = float(value)
    return out
