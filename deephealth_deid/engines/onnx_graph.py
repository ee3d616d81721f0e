"""The ONNX graph of a U-Net, written from its spec and weights (no engine needed).

:func:`spec_to_onnx` writes the graph every engine exports (PyTorch's
:meth:`~deephealth_deid.engines.torch_engine.TorchEngine.export_onnx` and the
EDDL engine's), and :func:`onnx_problems` lists what in an ONNX model EDDL
v1.1b's importer cannot read. Needs only the ``onnx`` package.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import ModelCheckError
from ..nets import UNetSpec

__all__ = ["ONNX_OPS", "checked_onnx", "onnx_problems", "spec_to_onnx", "with_input_shape"]

#: ONNX operators an exported network may contain (all of them importable by EDDL v1.1b).
ONNX_OPS: frozenset[str] = frozenset({"Conv", "BatchNormalization", "Relu", "MaxPool", "Resize", "Concat"})
_ONNX_OPSETS = range(11, 18)
_BN_EPS = 1e-5
_BN_MOMENTUM = 0.1  # PyTorch's convention; ONNX's momentum is 1 - this


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise ImportError("ONNX export needs the onnx package: pip install onnx") from e
    return onnx


def spec_to_onnx(
    spec: UNetSpec,
    weights: Mapping[str, np.ndarray],
    *,
    opset: int = 11,
    output_upsampling: bool = True,
) -> Any:
    """Write the ONNX graph of a U-Net from its spec and its weights (no tracing, no torch needed).

    Args:
        spec: The network spec.
        weights: State-dict tensors as numpy arrays (names as in :class:`UNet`).
        opset: ONNX opset, 11 to 17.
        output_upsampling: With ``False``, a network with a stem
            (``input_stride > 1``) ends at its head, its logits at
            ``1 / input_stride`` of the input's size, without the nearest
            upsampling back to it: a caller that takes the softmax first and
            then repeats each value (ONNX Runtime's engine) gets the same
            numbers for a quarter of the work. Exports keep it.

    Returns:
        An ``onnx.ModelProto`` (see :meth:`TorchEngine.export_onnx` for its content).

    Raises:
        ImportError: The ``onnx`` package is missing.
        ValueError: An unsupported opset.
        KeyError: A weight the spec needs is missing.
    """
    _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    if opset not in _ONNX_OPSETS:
        raise ValueError(f"opset must be in {_ONNX_OPSETS.start}..{_ONNX_OPSETS.stop - 1}, got {opset}")
    nd, k = spec.ndim, spec.kernel_size
    nodes: list[Any] = []
    inits: dict[str, np.ndarray] = {}

    def init(name: str, value: np.ndarray) -> str:
        inits[name] = value
        return name

    def weight(name: str) -> str:
        return init(name, np.asarray(weights[name], dtype=np.float32))

    def conv_unit(prefix: str, x: str, kernel: int, stride: int = 1) -> str:
        inputs = [x, weight(f"{prefix}.conv.weight")]
        if spec.norm == "none":
            inputs.append(weight(f"{prefix}.conv.bias"))
        y = f"{prefix}.conv"
        nodes.append(
            helper.make_node(
                "Conv",
                inputs,
                [y],
                name=y,
                kernel_shape=[kernel] * nd,
                pads=[kernel // 2 if stride == 1 else 0] * (2 * nd),
                strides=[stride] * nd,
                dilations=[1] * nd,
                group=1,
            )
        )
        if spec.norm == "batch":
            bn_inputs = [y] + [
                weight(f"{prefix}.bn.{p}") for p in ("weight", "bias", "running_mean", "running_var")
            ]
            y = f"{prefix}.bn"
            nodes.append(
                helper.make_node(
                    "BatchNormalization", bn_inputs, [y], name=y, epsilon=_BN_EPS, momentum=1 - _BN_MOMENTUM
                )
            )
        nodes.append(helper.make_node("Relu", [y], [f"{prefix}.relu"], name=f"{prefix}.relu"))
        return f"{prefix}.relu"

    def block(prefix: str, x: str) -> str:
        for i in range(spec.convs_per_level):
            x = conv_unit(f"{prefix}.{i}", x, k)
        return x

    rank = nd + 2
    roi = init("upsample.roi", np.array([0.0] * rank + [1.0] * rank, dtype=np.float32))
    scales = init("upsample.scales", np.array([1.0, 1.0] + [2.0] * nd, dtype=np.float32))
    if spec.upsample == "nearest":
        resize_attrs = {
            "mode": "nearest",
            "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "floor",
        }
    else:
        resize_attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}

    x = "input"
    if spec.input_stride > 1:
        x = conv_unit("stem", x, spec.input_stride, spec.input_stride)
    skips = []
    for level in range(spec.levels):
        if level:
            pooled = f"pool.{level}"
            nodes.append(
                helper.make_node(
                    "MaxPool",
                    [x],
                    [pooled],
                    name=pooled,
                    kernel_shape=[2] * nd,
                    strides=[2] * nd,
                    pads=[0] * (2 * nd),
                )
            )
            x = pooled
        x = block(f"enc.{level}", x)
        skips.append(x)
    for level in reversed(range(spec.levels - 1)):
        resized = f"upsample.{level}"
        nodes.append(helper.make_node("Resize", [x, roi, scales], [resized], name=resized, **resize_attrs))
        x = conv_unit(f"up.{level}", resized, k)
        joined = f"concat.{level}"
        nodes.append(helper.make_node("Concat", [skips[level], x], [joined], name=joined, axis=1))
        x = block(f"dec.{level}", joined)
    nodes.append(
        helper.make_node(
            "Conv",
            [x, weight("head.weight"), weight("head.bias")],
            ["head" if spec.input_stride > 1 and output_upsampling else "logits"],
            name="head",
            kernel_shape=[1] * nd,
            pads=[0] * (2 * nd),
            strides=[1] * nd,
            dilations=[1] * nd,
            group=1,
        )
    )
    if spec.input_stride > 1 and output_upsampling:
        factor = float(spec.input_stride)
        out_scales = init("output.scales", np.array([1.0, 1.0] + [factor] * nd, dtype=np.float32))
        nodes.append(
            helper.make_node(
                "Resize",
                ["head", roi, out_scales],
                ["logits"],
                name="output.upsample",
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
        )
    axes = ["D", "H", "W"][3 - nd :]
    out_axes = axes if spec.input_stride == 1 or output_upsampling else [f"{a}_head" for a in axes]
    graph = helper.make_graph(
        nodes,
        spec.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", spec.in_channels, *axes])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", spec.classes, *out_axes])],
        initializer=[numpy_helper.from_array(v, name=n) for n, v in inits.items()],
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="deephealth_deid",
        producer_version=__version__,
        doc_string=f"{spec.name}: {spec.ndim}D U-Net, logits of classes {', '.join(spec.class_names)}",
    )
    proto.ir_version = min(proto.ir_version, 8)  # readable by older runtimes and EDDL's protobuf
    helper.set_model_props(
        proto, {"deephealth_deid.spec": spec.to_json(), "deephealth_deid.output": "logits"}
    )
    return proto


def onnx_problems(proto: Any) -> list[str]:
    """What in an ONNX model the EDDL v1.1b importer (or this library's rules) cannot take.

    Checks: every operator is in :data:`ONNX_OPS` (so no ConvTranspose, no
    Softmax, no Constant nodes); Resize reads its ``roi`` and ``scales`` from
    initializers; every weight of Conv and BatchNormalization is an initializer.

    Args:
        proto: An ``onnx.ModelProto``.

    Returns:
        One line per problem; empty when the model is fine.
    """
    problems = []
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    for node in graph.node:
        if node.op_type not in ONNX_OPS:
            problems.append(f"node {node.name!r} is a {node.op_type}, which is not allowed")
            continue
        params = {"Resize": node.input[1:3], "Conv": node.input[1:], "BatchNormalization": node.input[1:]}
        for name in params.get(node.op_type, []):
            if name and name not in initializers:
                problems.append(f"input {name!r} of {node.op_type} {node.name!r} is not an initializer")
    return problems


def checked_onnx(spec: UNetSpec, weights: Mapping[str, np.ndarray], *, opset: int = 11) -> Any:
    """:func:`spec_to_onnx`, then the ONNX checker and :func:`onnx_problems`.

    Raises:
        ImportError: The ``onnx`` package is missing.
        ModelCheckError: The graph fails the checker or EDDL's constraints (a bug).
    """
    onnx = _import_onnx()
    proto = spec_to_onnx(spec, weights, opset=opset)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ModelCheckError(f"the exported ONNX graph is invalid: {e}") from e
    problems = onnx_problems(proto)
    if problems:
        raise ModelCheckError("the exported ONNX graph breaks EDDL's constraints: " + "; ".join(problems))
    return proto


def with_input_shape(proto: Any, shape: tuple[int, ...]) -> Any:
    """A copy of an exported model with fixed input and output sizes (EDDL's importer needs them).

    Args:
        proto: A model from :func:`spec_to_onnx` (dynamic batch and spatial axes).
        shape: The input shape ``(N, in_channels, *spatial)``.
    """
    out = type(proto)()
    out.CopyFrom(proto)
    inp, logits = out.graph.input[0], out.graph.output[0]
    dims_in = inp.type.tensor_type.shape.dim
    dims_out = logits.type.tensor_type.shape.dim
    if len(dims_in) != len(shape) or (dims_in[1].dim_value and dims_in[1].dim_value != shape[1]):
        raise ValueError(f"input shape {shape} does not fit the model's input ({len(dims_in)} axes)")
    for i, size in enumerate(shape):
        dims_in[i].ClearField("dim_param")
        dims_in[i].dim_value = int(size)
        if i != 1:
            dims_out[i].ClearField("dim_param")
            dims_out[i].dim_value = int(size)
    return out
