"""A numpy forward pass of the U-Net, the yardstick engines are checked against.

Slow and exact (float64): for the tiny networks of the engines' start-up
self-checks and for tests, never for real images. It reads the same weights
(names as in the model file) and follows the spec exactly as
:class:`deephealth_deid.nets.UNetSpec` describes it, in evaluation mode
(BatchNorm with its running statistics).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..nets import UNetSpec

__all__ = ["unet_forward", "random_weights"]

BN_EPS = 1e-5


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1) -> np.ndarray:
    """Convolution (cross-correlation) of ``x [N, C, *S]`` with ``w [K, C, *k]``.

    ``stride`` 1: 'same' zero padding; above 1: no padding (the stem).
    """
    nd = x.ndim - 2
    k = w.shape[2:]
    pads = [(0, 0), (0, 0)] + [(s // 2, s // 2) if stride == 1 else (0, 0) for s in k]
    xp = np.pad(x, pads)
    windows = np.lib.stride_tricks.sliding_window_view(xp, k, axis=tuple(range(2, 2 + nd)))
    windows = windows[(slice(None), slice(None), *(slice(None, None, stride),) * nd)]
    # windows: [N, C, *S, *k] -> contract C and k with w [K, C, *k]
    letters = "defg"[:nd]
    kl = "hijk"[:nd]
    out = np.einsum(f"nc{letters}{kl},oc{kl}->no{letters}", windows, w, optimize=True)
    if b is not None:
        out = out + b.reshape((1, -1) + (1,) * nd)
    return out


def _bn(x: np.ndarray, weights: Mapping[str, np.ndarray], prefix: str) -> np.ndarray:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    g, b, m, v = (
        np.asarray(weights[f"{prefix}.{p}"], np.float64).reshape(shape)
        for p in ("weight", "bias", "running_mean", "running_var")
    )
    return (x - m) / np.sqrt(v + BN_EPS) * g + b


def _unit(
    spec: UNetSpec, weights: Mapping[str, np.ndarray], prefix: str, x: np.ndarray, stride: int = 1
) -> np.ndarray:
    w = np.asarray(weights[f"{prefix}.conv.weight"], np.float64)
    bias = weights.get(f"{prefix}.conv.bias") if spec.norm == "none" else None
    x = _conv(x, w, None if bias is None else np.asarray(bias, np.float64), stride)
    if spec.norm == "batch":
        x = _bn(x, weights, f"{prefix}.bn")
    return np.maximum(x, 0.0)


def _pool(x: np.ndarray) -> np.ndarray:
    nd = x.ndim - 2
    shape = list(x.shape[:2])
    for s in x.shape[2:]:
        shape += [s // 2, 2]
    return x.reshape(shape).max(axis=tuple(3 + 2 * i for i in range(nd)))


def _upsample(x: np.ndarray, factor: int = 2) -> np.ndarray:
    for axis in range(2, x.ndim):
        x = np.repeat(x, factor, axis=axis)
    return x


def unet_forward(spec: UNetSpec, weights: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits ``[N, classes, *spatial]`` of ``x [N, in_channels, *spatial]`` (float64).

    Args:
        spec: The network spec (nearest upsampling only).
        weights: Tensors named as in the model file.
        x: Input; spatial sizes multiples of ``spec.stride``.

    Raises:
        ValueError: Linear upsampling (not implemented here) or a bad input shape.
    """
    if spec.upsample != "nearest":
        raise ValueError("the numpy reference implements nearest upsampling only")
    spec.check_input_shape(x.shape)
    x = np.asarray(x, np.float64)
    if spec.input_stride > 1:
        x = _unit(spec, weights, "stem", x, spec.input_stride)
    skips = []
    for level in range(spec.levels):
        if level:
            x = _pool(x)
        for i in range(spec.convs_per_level):
            x = _unit(spec, weights, f"enc.{level}.{i}", x)
        skips.append(x)
    for level in reversed(range(spec.levels - 1)):
        x = _unit(spec, weights, f"up.{level}", _upsample(x))
        x = np.concatenate([skips[level], x], axis=1)
        for i in range(spec.convs_per_level):
            x = _unit(spec, weights, f"dec.{level}.{i}", x)
    w = np.asarray(weights["head.weight"], np.float64)
    logits = _conv(x, w, np.asarray(weights["head.bias"], np.float64))
    return _upsample(logits, spec.input_stride) if spec.input_stride > 1 else logits


def weight_shapes(spec: UNetSpec) -> dict[str, tuple[int, ...]]:
    """Name and shape of every tensor of a model file for ``spec`` (the model file's layout)."""
    k = (spec.kernel_size,) * spec.ndim
    shapes: dict[str, tuple[int, ...]] = {}

    def unit(prefix: str, cin: int, cout: int, kernel: tuple[int, ...] = k) -> None:
        shapes[f"{prefix}.conv.weight"] = (cout, cin, *kernel)
        if spec.norm == "none":
            shapes[f"{prefix}.conv.bias"] = (cout,)
        else:
            for p in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{prefix}.bn.{p}"] = (cout,)
            shapes[f"{prefix}.bn.num_batches_tracked"] = ()

    w = spec.widths
    first = spec.in_channels
    if spec.input_stride > 1:
        unit("stem", spec.in_channels, w[0], (spec.input_stride,) * spec.ndim)
        first = w[0]
    for level in range(spec.levels):
        for i in range(spec.convs_per_level):
            cin = (first if level == 0 else w[level - 1]) if i == 0 else w[level]
            unit(f"enc.{level}.{i}", cin, w[level])
    for level in range(spec.levels - 1):
        unit(f"up.{level}", w[level + 1], w[level])
        for i in range(spec.convs_per_level):
            unit(f"dec.{level}.{i}", 2 * w[level] if i == 0 else w[level], w[level])
    shapes["head.weight"] = (spec.classes, w[0], *(1,) * spec.ndim)
    shapes["head.bias"] = (spec.classes,)
    return shapes


def random_weights(spec: UNetSpec, seed: int = 0, *, trained_like: bool = True) -> dict[str, np.ndarray]:
    """Weights for ``spec`` in the model file's layout, He-normal convolutions.

    Args:
        spec: The network spec.
        seed: Seed of the draw.
        trained_like: Give BatchNorm non-trivial statistics and affine terms
            (as after training), so a check sees every term; otherwise the
            initial values (ones, zeros).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, shape in weight_shapes(spec).items():
        if name.endswith("num_batches_tracked"):
            out[name] = np.zeros((), np.int64)
        elif name.endswith(".weight") and len(shape) > 1:
            fan_in = int(np.prod(shape[1:]))
            out[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        elif not trained_like:
            ones = name.endswith(("bn.weight", "running_var"))
            out[name] = np.full(shape, 1.0 if ones else 0.0, np.float32)
        elif name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif name.endswith("bn.weight"):
            out[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:  # biases, running means
            out[name] = (rng.standard_normal(shape) * 0.3).astype(np.float32)
    return out
