"""The U-Net spec shared by every engine, and the padding helpers its inputs need.

A :class:`UNetSpec` is a small frozen description of a network (dimensions,
channels, widths, normalisation, upsampling). Engines build the same network
from it, layer for layer, so a model trained by one engine runs on another
through ONNX. Only operations the EDDL toolkit can run are used (see
``DESIGN.md``, "Facts about the toolkit"): convolution, batch normalisation (or
none), ReLU, max pooling, nearest or linear upsampling followed by a
convolution (never a transposed convolution) and concatenation.

The same spec type describes the 3D defacing U-Net (five outputs: background,
eyes 1, nose 2, mouth 3, ears 4; :func:`deface_unet_spec`) and the 2D
text-region detector (two outputs: background, text; :func:`text_unet_spec`).

Example:
    >>> spec = deface_unet_spec()
    >>> spec.stride
    8
    >>> UNetSpec.from_dict(spec.to_dict()) == spec
    True
    >>> padded_shape((181, 217, 181), spec.stride)
    (184, 224, 184)
    >>> text_unet_spec().stride, text_unet_spec().in_channels
    (32, 3)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = [
    "DEFACE_CLASSES",
    "TEXT_CLASSES",
    "NORMS",
    "UPSAMPLES",
    "UNetSpec",
    "deface_unet_spec",
    "text_unet_spec",
    "padding_for",
    "padded_shape",
    "pad_to_multiple",
    "crop_padding",
]

logger = logging.getLogger(__name__)

#: Output classes of the defacing network, in label order (label value = index).
DEFACE_CLASSES: tuple[str, ...] = ("background", "eyes", "nose", "mouth", "ears")
#: Output classes of the text-region detector, in label order.
TEXT_CLASSES: tuple[str, ...] = ("background", "text")
#: Normalisations a spec may ask for ("batch": Conv without bias + BatchNorm; "none": Conv with bias).
NORMS: tuple[str, ...] = ("batch", "none")
#: Upsampling modes ("linear" is bilinear in 2D and trilinear in 3D, ``align_corners=False``).
UPSAMPLES: tuple[str, ...] = ("nearest", "linear")
_UPSAMPLE_ALIASES = {"bilinear": "linear", "trilinear": "linear"}

_KIND = "unet"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class UNetSpec:
    """Description of a 2D or 3D U-Net made only of EDDL-compatible operations.

    The network, for ``L = len(widths)`` levels:

    * stem (only when ``input_stride > 1``): Conv of kernel and stride
      ``input_stride`` (no padding: each output sees its own block of input
      pixels, and every pixel is seen) -> BatchNorm -> ReLU to ``widths[0]``
      channels; the levels below then work at ``1 / input_stride`` of the
      input's resolution;
    * encoder level ``i`` (``i = 0 .. L-1``): a 2x max pooling (not on level 0),
      then ``convs_per_level`` times [Conv ``kernel_size`` ("same" zero padding)
      -> BatchNorm (if ``norm == "batch"``) -> ReLU] with ``widths[i]`` channels;
    * decoder level ``i`` (``i = L-2 .. 0``): a 2x upsampling (``upsample``
      mode) of the level below, Conv ``kernel_size`` to ``widths[i]`` channels
      -> BatchNorm -> ReLU, concatenation ``[skip, upsampled]`` on the channel
      axis, then ``convs_per_level`` times [Conv -> BatchNorm -> ReLU];
    * head: a 1x1 Conv with bias to ``classes`` channels giving logits (no
      softmax: engines apply it when asked for probabilities), upsampled
      (nearest) by ``input_stride`` back to the input's size when it is above 1.

    Convolutions followed by BatchNorm have no bias; with ``norm == "none"``
    every convolution has one.

    Attributes:
        ndim: Spatial dimensions, 3 (volumes, input ``[N, C, D, H, W]``) or 2
            (images, input ``[N, C, H, W]``).
        in_channels: Input channels.
        classes: Output channels (classes, background included).
        widths: Channels of each level, finest first; its length is the depth.
        convs_per_level: Convolutions per encoder and decoder block.
        kernel_size: Odd kernel size of the block convolutions.
        norm: ``"batch"`` or ``"none"``.
        upsample: ``"nearest"`` or ``"linear"`` (``"trilinear"`` and
            ``"bilinear"`` are accepted and stored as ``"linear"``).
        class_names: One name per output class (default ``class0``, ...).
        spacing: Voxel size in mm of the grid the network works on, one per
            spatial axis, or ``None`` where it does not matter (text images).
        name: Free-form name of the network (shown in logs and model files).
        input_stride: 1, 2 or 4: the stem's stride (see above). A 2 makes a
            2D network about 2.5 times faster on the CPU (the full-resolution
            level is the slowest) for outputs on a 2-pixel grid.
    """

    ndim: int = 3
    in_channels: int = 1
    classes: int = 5
    widths: tuple[int, ...] = (8, 16, 32, 64)
    convs_per_level: int = 2
    kernel_size: int = 3
    norm: str = "batch"
    upsample: str = "nearest"
    class_names: tuple[str, ...] = field(default=())
    spacing: tuple[float, ...] | None = None
    name: str = "unet"
    input_stride: int = 1

    def __post_init__(self) -> None:
        # Normalise sequences to tuples and aliases to their canonical names, then validate.
        set_ = object.__setattr__
        if isinstance(self.widths, Sequence) and not isinstance(self.widths, str):
            set_(self, "widths", tuple(self.widths))
        if isinstance(self.class_names, Sequence) and not isinstance(self.class_names, str):
            set_(self, "class_names", tuple(self.class_names))
        if isinstance(self.spacing, Sequence) and not isinstance(self.spacing, str):
            set_(self, "spacing", tuple(float(s) if _is_number(s) else s for s in self.spacing))
        if isinstance(self.upsample, str):
            set_(self, "upsample", _UPSAMPLE_ALIASES.get(self.upsample.lower(), self.upsample.lower()))
        if isinstance(self.norm, str):
            set_(self, "norm", self.norm.lower())
        self._validate()
        if not self.class_names:
            set_(self, "class_names", tuple(f"class{i}" for i in range(self.classes)))

    def _validate(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"invalid network spec: {key} {why}")

        if not _is_int(self.ndim) or self.ndim not in (2, 3):
            raise bad("ndim", f"must be 2 or 3, got {self.ndim!r}")
        for key in ("in_channels", "classes", "convs_per_level"):
            value = getattr(self, key)
            if not _is_int(value) or value < 1:
                raise bad(key, f"must be a positive integer, got {value!r}")
        if self.classes < 2:
            raise bad("classes", f"must be at least 2 (background and one class), got {self.classes}")
        if not _is_int(self.kernel_size) or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise bad("kernel_size", f"must be a positive odd integer, got {self.kernel_size!r}")
        if not isinstance(self.widths, tuple) or not self.widths:
            raise bad("widths", f"must be a non-empty list of positive integers, got {self.widths!r}")
        if not all(_is_int(w) and w >= 1 for w in self.widths):
            raise bad("widths", f"must hold positive integers only, got {list(self.widths)!r}")
        if len(self.widths) > 8:
            raise bad("widths", f"allows at most 8 levels (stride 128), got {len(self.widths)}")
        if self.norm not in NORMS:
            raise bad("norm", f"must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.upsample not in UPSAMPLES:
            choices = ", ".join((*UPSAMPLES, *_UPSAMPLE_ALIASES))
            raise bad("upsample", f"must be one of {choices}, got {self.upsample!r}")
        if not isinstance(self.class_names, tuple) or not all(
            isinstance(n, str) and n for n in self.class_names
        ):
            raise bad("class_names", f"must be a list of non-empty strings, got {self.class_names!r}")
        if self.class_names and len(self.class_names) != self.classes:
            raise bad("class_names", f"has {len(self.class_names)} names but classes is {self.classes}")
        if len(set(self.class_names)) != len(self.class_names):
            raise bad("class_names", f"must be unique, got {list(self.class_names)!r}")
        if self.spacing is not None:
            if not isinstance(self.spacing, tuple) or len(self.spacing) != self.ndim:
                raise bad("spacing", f"must be null or {self.ndim} numbers, got {self.spacing!r}")
            if not all(_is_number(s) and math.isfinite(s) and s > 0 for s in self.spacing):
                raise bad("spacing", f"must hold positive finite numbers, got {self.spacing!r}")
        if not isinstance(self.name, str):
            raise bad("name", f"must be a string, got {self.name!r}")
        if not _is_int(self.input_stride) or self.input_stride not in (1, 2, 4):
            raise bad("input_stride", f"must be 1, 2 or 4, got {self.input_stride!r}")

    @property
    def levels(self) -> int:
        """Number of resolution levels (``len(widths)``)."""
        return len(self.widths)

    @property
    def stride(self) -> int:
        """Total downsampling factor, ``input_stride * 2 ** (levels - 1)``.

        Every spatial size of an input must be a multiple of it; see
        :func:`pad_to_multiple`.
        """
        return self.input_stride * 2 ** (self.levels - 1)

    def check_input_shape(self, shape: Sequence[int]) -> None:
        """Raise ``ValueError`` unless ``shape`` is a valid ``[N, C, *spatial]`` input shape.

        Args:
            shape: Shape of a batch.

        Raises:
            ValueError: Wrong rank, channel count, or a spatial size that is not
                a positive multiple of :attr:`stride`.
        """
        shape = tuple(int(s) for s in shape)
        if len(shape) != self.ndim + 2:
            raise ValueError(
                f"expected a batch [N, C, {', '.join('DHW'[3 - self.ndim :])}] of rank {self.ndim + 2}, "
                f"got shape {shape}"
            )
        if shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channel(s), got {shape[1]} (shape {shape})")
        spatial = shape[2:]
        if any(s < 1 or s % self.stride for s in spatial):
            raise ValueError(
                f"spatial size {spatial} is not a multiple of the network's stride {self.stride}; "
                f"pad it first (deephealth_deid.nets.pad_to_multiple) to {padded_shape(spatial, self.stride)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-compatible dict (lists, not tuples), tagged with its kind and version."""
        out: dict[str, Any] = {"kind": _KIND, "format_version": _FORMAT_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "input_stride" and value == 1:
                continue  # networks without a stem keep the form earlier versions read
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> str:
        """The spec as a compact JSON string (keys sorted)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "network spec") -> UNetSpec:
        """Build and validate a spec from a dict such as :meth:`to_dict` returns or a YAML file holds.

        ``kind`` and ``format_version`` are optional; missing fields take their
        defaults.

        Args:
            data: The fields.
            source: What the dict came from (a file name, a YAML key), used in
                error messages.

        Returns:
            The spec.

        Raises:
            ConfigError: Not a mapping, an unknown key, the wrong kind or
                version, or an invalid value; the message names the key.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: a network spec must be a mapping, got {type(data).__name__}")
        data = dict(data)
        kind = data.pop("kind", _KIND)
        if kind != _KIND:
            raise ConfigError(f"{source}: kind must be {_KIND!r}, got {kind!r}")
        version = data.pop("format_version", _FORMAT_VERSION)
        if version != _FORMAT_VERSION:
            raise ConfigError(
                f"{source}: format_version {version!r} is not supported (this version reads "
                f"{_FORMAT_VERSION}); upgrade deephealth_deid"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        for key in ("widths", "class_names"):
            if key in data and not isinstance(data[key], (list, tuple)):
                raise ConfigError(f"{source}: invalid network spec: {key} must be a list, got {data[key]!r}")
        if data.get("spacing") is not None and not isinstance(data["spacing"], (list, tuple)):
            raise ConfigError(f"{source}: invalid network spec: spacing must be a list or null")
        try:
            return cls(**data)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from e

    @classmethod
    def from_json(cls, text: str, *, source: str = "network spec") -> UNetSpec:
        """Parse :meth:`to_json` output.

        Raises:
            ConfigError: Not valid JSON or not a valid spec.
        """
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{source}: the network spec is not valid JSON: {e}") from e
        return cls.from_dict(data, source=source)


def deface_unet_spec(**overrides: Any) -> UNetSpec:
    """The default spec of the 3D defacing U-Net: five classes in label order.

    Args:
        **overrides: Fields to change (``widths``, ``spacing``, ...).

    Returns:
        ``UNetSpec(ndim=3, in_channels=1, classes=5, class_names=DEFACE_CLASSES, ...)``.
    """
    params: dict[str, Any] = {
        "ndim": 3,
        "in_channels": 1,
        "classes": len(DEFACE_CLASSES),
        "class_names": DEFACE_CLASSES,
        "name": "deface-unet",
    }
    params.update(overrides)
    return UNetSpec(**params)


def text_unet_spec(**overrides: Any) -> UNetSpec:
    """The default spec of the 2D text-region U-Net: the displayed RGB frame in, background/text out.

    The input is the frame as a detector sees it (``(rows, columns, 3)`` uint8
    RGB, grey images repeated over the channels) scaled to 0-1 and put
    channels first (see :func:`deephealth_deid.text.network.network_input`).
    Nearest upsampling, so the EDDL engine can import the ONNX export too. A
    stem of stride 2 and one convolution per level: on the CPU about 2.5 times
    faster than full-resolution levels of two convolutions (widths 8-64), with
    text probabilities on a 2-pixel grid (boxes are padded anyway).

    Args:
        **overrides: Fields to change (``widths``, ``norm``, ...).

    Returns:
        ``UNetSpec(ndim=2, in_channels=3, classes=2, widths=(16, 32, 48, 64, 64),
        convs_per_level=1, input_stride=2, class_names=TEXT_CLASSES, name="text-unet")``.
    """
    params: dict[str, Any] = {
        "ndim": 2,
        "in_channels": 3,
        "classes": len(TEXT_CLASSES),
        "widths": (16, 32, 48, 64, 64),
        "convs_per_level": 1,
        "input_stride": 2,
        "class_names": TEXT_CLASSES,
        "upsample": "nearest",
        "spacing": None,
        "name": "text-unet",
    }
    params.update(overrides)
    return UNetSpec(**params)


def padding_for(shape: Sequence[int], multiple: int) -> tuple[tuple[int, int], ...]:
    """Padding ``(before, after)`` per axis that brings each size to the next multiple.

    The padding is split as evenly as possible, the odd voxel going after.

    Args:
        shape: Sizes of the axes to pad.
        multiple: The multiple (a network's :attr:`UNetSpec.stride`).

    Returns:
        One ``(before, after)`` pair per axis.

    Example:
        >>> padding_for((5, 8, 13), 8)
        ((1, 2), (0, 0), (1, 2))
    """
    if not _is_int(multiple) or multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
    pads = []
    for size in shape:
        if not _is_int(size) or size < 0:
            raise ValueError(f"sizes must be non-negative integers, got {tuple(shape)!r}")
        total = -int(size) % multiple
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def padded_shape(shape: Sequence[int], multiple: int) -> tuple[int, ...]:
    """Each size rounded up to a multiple of ``multiple``.

    Example:
        >>> padded_shape((5, 8, 13), 8)
        (8, 8, 16)
    """
    return tuple(int(s) + a + b for s, (a, b) in zip(shape, padding_for(shape, multiple), strict=True))


def pad_to_multiple(
    array: np.ndarray, multiple: int, *, axes: int = 3, value: float = 0.0
) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
    """Pad the trailing (spatial) axes of an array to a multiple of ``multiple``.

    Args:
        array: The array, e.g. ``[N, C, D, H, W]`` or ``[D, H, W]``; it is not modified.
        multiple: The multiple (a network's :attr:`UNetSpec.stride`).
        axes: How many trailing axes to pad (``spec.ndim`` for a batch).
        value: Constant fill value.

    Returns:
        ``(padded, padding)``: the padded array (the input itself when no
        padding is needed) and the ``(before, after)`` pairs of the padded axes,
        to pass to :func:`crop_padding`.

    Example:
        >>> x = np.ones((1, 1, 5, 8, 13), np.float32)
        >>> y, pads = pad_to_multiple(x, 8, axes=3)
        >>> y.shape, crop_padding(y, pads).shape
        ((1, 1, 8, 8, 16), (1, 1, 5, 8, 13))
    """
    if not _is_int(axes) or not 1 <= axes <= array.ndim:
        raise ValueError(f"cannot pad the last {axes!r} axes of an array of rank {array.ndim}")
    pads = padding_for(array.shape[array.ndim - axes :], multiple)
    if not any(a or b for a, b in pads):
        return array, pads
    full = [(0, 0)] * (array.ndim - axes) + list(pads)
    return np.pad(array, full, mode="constant", constant_values=value), pads


def crop_padding(array: np.ndarray, padding: Sequence[tuple[int, int]]) -> np.ndarray:
    """Undo :func:`pad_to_multiple` on the trailing axes of ``array`` (a view, not a copy).

    Args:
        array: An array whose last ``len(padding)`` axes were padded (e.g. the
            network's output ``[N, classes, *spatial]``).
        padding: The pairs :func:`pad_to_multiple` returned.

    Returns:
        The cropped view.
    """
    if len(padding) > array.ndim:
        raise ValueError(f"{len(padding)} padded axes but the array has rank {array.ndim}")
    index: list[slice] = [slice(None)] * (array.ndim - len(padding))
    for size, (before, after) in zip(array.shape[array.ndim - len(padding) :], padding, strict=True):
        index.append(slice(before, size - after))
    return array[tuple(index)]


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
