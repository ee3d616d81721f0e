"""Network specs, the engine registry and the PyTorch engine: build, train, predict, save, load, ONNX."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deephealth_deid.engines import (
    INSTALL_HINTS,
    available_engines,
    file_sha256,
    get_engine,
    read_model_file,
    registry,
    write_model_file,
)
from deephealth_deid.errors import ConfigError, EngineUnavailableError, ModelCheckError, OutputExistsError
from deephealth_deid.nets import (
    DEFACE_CLASSES,
    UNetSpec,
    crop_padding,
    deface_unet_spec,
    pad_to_multiple,
    padded_shape,
    padding_for,
)

TINY_3D = deface_unet_spec(widths=(4, 8, 16))  # stride 4
TINY_2D = UNetSpec(ndim=2, in_channels=1, classes=2, widths=(4, 8, 16, 16), upsample="bilinear")  # stride 8
# A stem of stride 2 (the text detector's layout): stride 2 * 4 = 8.
TINY_STEM = UNetSpec(ndim=2, in_channels=1, classes=2, widths=(4, 8, 8), input_stride=2)


@pytest.fixture(scope="module")
def torch_engine():
    """The PyTorch engine on the CPU, one thread (skips where torch is not installed).

    One thread keeps these tiny networks quick on a shared 2-core machine, where
    two spinning threads are several times slower than one.
    """
    torch = pytest.importorskip("torch", reason="the PyTorch engine needs torch (pip install torch)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield get_engine("torch", device="cpu")
    torch.set_num_threads(threads)


def _randomise_batchnorm(model) -> None:
    """Give BatchNorm non-trivial statistics so that exports and reloads are really tested."""
    import torch

    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(n, generator=gen) - 0.5)


def _dice(pred: np.ndarray, true: np.ndarray) -> float:
    return float(2 * np.sum(pred & true) / max(np.sum(pred) + np.sum(true), 1))


# --------------------------------------------------------------------------------------------
# Specs and padding
# --------------------------------------------------------------------------------------------


def test_deface_spec_has_the_five_feature_classes_in_label_order():
    spec = deface_unet_spec()
    assert spec.ndim == 3 and spec.in_channels == 1 and spec.classes == 5
    assert spec.class_names == DEFACE_CLASSES == ("background", "eyes", "nose", "mouth", "ears")
    assert spec.stride == 2 ** (len(spec.widths) - 1)


@pytest.mark.parametrize(
    "spec", [deface_unet_spec(spacing=[1.5, 1.5, 1.5]), TINY_2D, TINY_STEM], ids=["3d", "2d", "2d-stem"]
)
def test_spec_round_trips_through_dict_and_json(spec):
    data = spec.to_dict()
    assert data["kind"] == "unet" and isinstance(data["widths"], list)
    assert json.loads(json.dumps(data)) == data  # plain JSON types only
    assert UNetSpec.from_dict(data) == spec
    assert UNetSpec.from_json(spec.to_json()) == spec
    assert hash(UNetSpec.from_dict(data)) == hash(spec)  # frozen: usable as a key


def test_spec_normalises_aliases_and_lists():
    spec = UNetSpec(ndim=3, widths=[4, 8], upsample="Trilinear", norm="BATCH", spacing=[1, 1, 2])
    assert spec.widths == (4, 8) and spec.upsample == "linear" and spec.norm == "batch"
    assert spec.spacing == (1.0, 1.0, 2.0) and spec.stride == 2
    assert spec.class_names == ("class0", "class1", "class2", "class3", "class4")


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"ndim": 4}, "ndim"),
        ({"ndim": True}, "ndim"),
        ({"classes": 1}, "classes"),
        ({"in_channels": 0}, "in_channels"),
        ({"widths": []}, "widths"),
        ({"widths": [8, 0]}, "widths"),
        ({"widths": [8, 16.5]}, "widths"),
        ({"widths": "8,16"}, "widths"),
        ({"kernel_size": 2}, "kernel_size"),
        ({"norm": "group"}, "norm"),
        ({"norm": "instance"}, "norm"),
        ({"upsample": "transposed"}, "upsample"),
        ({"class_names": ["a", "b"]}, "class_names"),
        ({"spacing": [1.0, 1.0]}, "spacing"),
        ({"spacing": [1.0, -1.0, 1.0]}, "spacing"),
        ({"convs_per_level": 0}, "convs_per_level"),
        ({"input_stride": 3}, "input_stride"),
        ({"input_stride": 0}, "input_stride"),
        ({"dropout": 0.5}, "dropout"),
        ({"kind": "resnet"}, "kind"),
        ({"format_version": 99}, "format_version"),
    ],
)
def test_invalid_spec_is_a_config_error_naming_the_key(changes, key):
    data = {**deface_unet_spec().to_dict(), **changes}
    with pytest.raises(ConfigError, match=key) as info:
        UNetSpec.from_dict(data, source="deface.yaml")
    assert "deface.yaml" in str(info.value)


def test_spec_from_non_mapping_and_bad_json():
    with pytest.raises(ConfigError, match="mapping"):
        UNetSpec.from_dict([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="JSON"):
        UNetSpec.from_json("{not json")


def test_padding_helpers_round_trip_on_odd_sizes():
    assert padding_for((5, 8, 13), 8) == ((1, 2), (0, 0), (1, 2))
    assert padded_shape((181, 217, 181), 16) == (192, 224, 192)
    x = np.arange(2 * 1 * 5 * 6 * 7, dtype=np.float32).reshape(2, 1, 5, 6, 7)
    padded, pads = pad_to_multiple(x, 4, axes=3)
    assert padded.shape == (2, 1, 8, 8, 8)
    assert np.array_equal(crop_padding(padded, pads), x)
    assert pad_to_multiple(padded, 4, axes=3)[0] is padded  # nothing to do: no copy
    with pytest.raises(ValueError, match="multiple"):
        padding_for((4,), 0)


def test_check_input_shape_explains_what_is_wrong():
    spec = TINY_3D
    with pytest.raises(ValueError, match="rank 5"):
        spec.check_input_shape((1, 8, 8, 8))
    with pytest.raises(ValueError, match="1 input channel"):
        spec.check_input_shape((1, 2, 8, 8, 8))
    with pytest.raises(ValueError, match="pad_to_multiple"):
        spec.check_input_shape((1, 1, 8, 9, 8))
    spec.check_input_shape((2, 1, 8, 12, 4))


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_importing_engines_and_nets_imports_no_engine():
    code = (
        "import sys, deephealth_deid.engines, deephealth_deid.nets; "
        "from deephealth_deid.engines import available_engines; available_engines(); "
        "print([m for m in ('torch', 'pyeddl', 'onnx', 'onnxruntime') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_auto_picks_torch_where_it_is_installed(torch_engine):
    assert available_engines()[0] == "torch"
    engine = get_engine("auto", device="cpu")
    assert engine.name == "torch" and engine.device == "cpu"
    assert get_engine(" Torch ", device="CPU").name == "torch"


def test_eddl_engine_missing_names_what_to_install():
    # Hide pyeddl in a child process: the user without it must be told what to install.
    code = (
        "import sys; sys.modules['pyeddl'] = None; sys.modules['pyeddl.eddl'] = None\n"
        "from deephealth_deid.engines import eddl_engine, get_engine\n"
        "from deephealth_deid.errors import EngineUnavailableError\n"
        "assert not eddl_engine.is_available()\n"
        "try:\n    get_engine('eddl', device='cpu')\n"
        "except EngineUnavailableError as e:\n    print(isinstance(e, ImportError), e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("True ")  # callers may catch it as an ImportError too
    assert "pip install pyeddl" in out.stdout and "conda" in out.stdout and "--engine torch" in out.stdout


def _message_without(module: str, engine: str) -> str:
    """The error a user gets from get_engine(engine) when ``module`` cannot be imported (child process)."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from deephealth_deid.engines import get_engine\n"
        "from deephealth_deid.errors import EngineUnavailableError\n"
        f"try:\n    get_engine({engine!r}, device='cpu')\n"
        "except EngineUnavailableError as e:\n    print(e)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_missing_torch_names_what_to_install():
    # Hide torch in a child process: the user without torch must be told to install it.
    out = _message_without("torch", "torch")
    assert "pip install torch" in out and "torch==2.13.0" in out


def test_no_engine_at_all_lists_both_install_routes(monkeypatch):
    monkeypatch.setattr(registry, "is_available", lambda name: False)
    with pytest.raises(EngineUnavailableError) as info:
        get_engine("auto")
    message = str(info.value)
    assert all(INSTALL_HINTS[name] in message for name in ("torch", "eddl", "onnxruntime"))


@pytest.mark.parametrize(("name", "device"), [("tensorflow", "cpu"), ("torch", "tpu"), ("torch", "cuda:x")])
def test_unknown_engine_or_device_is_a_config_error(name, device):
    with pytest.raises(ConfigError):
        get_engine(name, device=device)


def test_cuda_without_cuda_is_a_clear_error_not_a_fallback(torch_engine):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    with pytest.raises(EngineUnavailableError, match="--device cpu"):
        get_engine("torch", device="cuda")
    assert get_engine("torch", device="auto").device == "cpu"


# --------------------------------------------------------------------------------------------
# PyTorch engine
# --------------------------------------------------------------------------------------------


def test_stem_multiplies_the_stride_and_is_left_out_of_files_without_one():
    assert TINY_STEM.stride == 8 and UNetSpec(ndim=2, widths=(4, 8), input_stride=4).stride == 8
    assert TINY_STEM.to_dict()["input_stride"] == 2
    # Networks without a stem serialise as before, so earlier versions still read their files.
    assert "input_stride" not in TINY_2D.to_dict()


@pytest.mark.parametrize(
    ("spec", "shape"),
    [(TINY_3D, (2, 1, 13, 10, 7)), (TINY_2D, (3, 1, 37, 21)), (TINY_STEM, (2, 1, 37, 21))],
    ids=["3d", "2d", "2d-stem"],
)
def test_output_shape_matches_odd_inputs(torch_engine, spec, shape):
    model = torch_engine.build(spec, seed=0)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    x.flags.writeable = False  # read-only input: must work and stay untouched
    before = x.copy()
    logits = torch_engine.predict(model, x, batch_size=2)
    assert logits.shape == (shape[0], spec.classes, *shape[2:]) and logits.dtype == np.float32
    assert np.array_equal(x, before)
    assert model.training  # mode restored
    probs = torch_engine.predict(model, x, probabilities=True)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="stride"):
        torch_engine.predict(model, x, pad=False)
    padded, pads = pad_to_multiple(x, spec.stride, axes=spec.ndim)
    np.testing.assert_array_equal(
        crop_padding(torch_engine.predict(model, padded, pad=False), pads).shape, logits.shape
    )


def test_network_uses_only_eddl_compatible_layers(torch_engine):
    import torch

    model = torch_engine.build(deface_unet_spec(), seed=0)
    allowed = (
        torch.nn.Conv3d,
        torch.nn.BatchNorm3d,
        torch.nn.MaxPool3d,
        torch.nn.Upsample,
        torch.nn.ModuleList,
        torch.nn.Sequential,
    )
    for name, module in model.named_modules():
        if name and not list(module.children()):  # leaves only
            assert isinstance(module, allowed), f"{name}: {type(module).__name__}"
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    # A conv followed by BatchNorm has no bias (EDDL's CPU Conv3D ignores biases); only the head has one.
    assert [m.bias is not None for m in convs].count(True) == 1


def test_tiny_network_learns_a_bright_cube(torch_engine):
    """A few dozen CPU steps must teach a tiny net 'bright cube = class 1' (Dice > 0.9 on a new case)."""
    from deephealth_deid.engines.torch_engine import seed_everything

    seed_everything(0)
    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(0, 0.3, size=(n, 1, 16, 16, 16)).astype(np.float32)
        y = np.zeros((n, 16, 16, 16), np.int64)
        for i in range(n):
            a, b, c = rng.integers(2, 9, size=3)
            s = int(rng.integers(4, 7))
            y[i, a : a + s, b : b + s, c : c + s] = 1
            x[i, 0][y[i] == 1] += 2.0
        return x, y

    spec = UNetSpec(ndim=3, classes=2, widths=(4, 8), class_names=("background", "cube"))
    model = torch_engine.build(spec, seed=0)
    optimizer = torch_engine.optimizer(model, lr=0.03)
    x, y = sample(4)
    for _ in range(50):
        stats = torch_engine.train_step(model, optimizer, x, y, class_weights=[1.0, 3.0])
    assert set(stats) == {"loss", "ce", "dice", "dice_cube"}
    xt, yt = sample(2)
    pred = torch_engine.predict(model, xt).argmax(axis=1)
    assert _dice(pred == 1, yt == 1) > 0.9


def test_train_step_rejects_bad_labels(torch_engine):
    model = torch_engine.build(TINY_3D, seed=0)
    optimizer = torch_engine.optimizer(model)
    x = np.zeros((1, 1, 4, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        torch_engine.train_step(model, optimizer, x, np.full((1, 4, 4, 4), 5))
    with pytest.raises(ValueError, match="integers"):
        torch_engine.train_step(model, optimizer, x, np.zeros((1, 4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="class_weights"):
        torch_engine.train_step(model, optimizer, x, np.zeros((1, 4, 4, 4), int), class_weights=[1, 2])


@pytest.fixture
def saved_model(torch_engine, tmp_path):
    model = torch_engine.build(TINY_3D, seed=3)
    _randomise_batchnorm(model)
    metadata = {"trained_on": "synthetic heads", "dice": {"eyes": 0.93}, "steps": 12}
    path = tmp_path / "deface.safetensors"
    sha = torch_engine.save(model, TINY_3D, path, metadata=metadata)
    return model, path, sha, metadata


def test_save_load_gives_identical_predictions_and_metadata(torch_engine, saved_model):
    model, path, sha, metadata = saved_model
    assert sha == file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded, spec, meta = torch_engine.load(path, sha256=sha.upper())
    assert spec == TINY_3D and meta == metadata and not loaded.training
    x = np.random.default_rng(1).normal(size=(2, 1, 9, 12, 6)).astype(np.float32)
    assert np.array_equal(torch_engine.predict(model, x), torch_engine.predict(loaded, x))


def test_model_file_is_plain_safetensors_without_pickle(saved_model):
    _, path, _, metadata = saved_model
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    assert header["__metadata__"]["format"] == "deephealth_deid.model"
    assert UNetSpec.from_json(header["__metadata__"]["spec"]) == TINY_3D
    assert json.loads(header["__metadata__"]["metadata"]) == metadata
    tensors, spec, meta, saved_by = read_model_file(path)  # numpy only
    assert spec == TINY_3D and meta == metadata and saved_by["engine"] == "torch"
    assert tensors["head.weight"].shape == (5, 4, 1, 1, 1)
    safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="safetensors is not installed")
    other = safetensors_numpy.load_file(str(path))
    assert other.keys() == tensors.keys()
    assert all(np.array_equal(other[k], tensors[k]) for k in tensors)


def test_tampered_model_is_caught_by_its_sha256(torch_engine, saved_model, tmp_path):
    _, path, sha, _ = saved_model
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of one weight
    bad = tmp_path / "tampered.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelCheckError, match="SHA-256 mismatch") as info:
        torch_engine.load(bad, sha256=sha)
    assert str(bad) in str(info.value)
    torch_engine.load(path, sha256=sha)  # the original passes


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_model_file_is_a_model_check_error(torch_engine, saved_model, tmp_path, damage):
    _, path, _, _ = saved_model
    data = path.read_bytes()
    content = {"truncate": data[: len(data) // 2], "garbage": b"\x10\x00" + data[2:], "empty": b""}[damage]
    bad = tmp_path / f"{damage}.safetensors"
    bad.write_bytes(content)
    with pytest.raises(ModelCheckError, match=str(bad.name)):
        torch_engine.load(bad)


def test_weights_that_do_not_fit_the_spec_are_refused(torch_engine, saved_model, tmp_path):
    _, path, _, _ = saved_model
    tensors, spec, meta, _ = read_model_file(path)
    del tensors["head.bias"]
    bad = tmp_path / "missing.safetensors"
    write_model_file(bad, tensors, spec=spec, metadata=meta)
    with pytest.raises(ModelCheckError, match=r"head\.bias"):
        torch_engine.load(bad)


def test_save_refuses_to_overwrite_unless_told(torch_engine, saved_model):
    model, path, sha, metadata = saved_model
    with pytest.raises(OutputExistsError, match="overwrite"):
        torch_engine.save(model, TINY_3D, path, metadata=metadata)
    assert file_sha256(path) == sha
    torch_engine.save(model, TINY_3D, path, metadata={"v": 2}, overwrite=True)
    assert torch_engine.load(path)[2] == {"v": 2}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    with pytest.raises(TypeError, match="JSON"):
        torch_engine.save(model, TINY_3D, path, metadata={"bad": object()}, overwrite=True)


# --------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx():
    return pytest.importorskip("onnx", reason="ONNX export tests need the onnx package (pip install onnx)")


@pytest.mark.parametrize("spec", [TINY_3D, TINY_2D, TINY_STEM], ids=["3d-nearest", "2d-linear", "2d-stem"])
def test_onnx_export_is_eddl_readable(torch_engine, onnx, tmp_path, spec):
    from deephealth_deid.engines.torch_engine import ONNX_OPS, onnx_problems

    model = torch_engine.build(spec, seed=0)
    _randomise_batchnorm(model)
    path = tmp_path / "net.onnx"
    sha = torch_engine.export_onnx(model, spec, path)
    assert sha == file_sha256(path)
    proto = onnx.load(str(path))
    ops = [node.op_type for node in proto.graph.node]
    assert set(ops) <= ONNX_OPS and "ConvTranspose" not in ops and "Constant" not in ops
    assert "Softmax" not in ops and onnx_problems(proto) == []
    assert proto.opset_import[0].version == 11
    initializers = {t.name for t in proto.graph.initializer}
    assert set(model.state_dict()) - initializers == {
        k for k in model.state_dict() if k.endswith("num_batches_tracked")
    }
    # BatchNorm is kept as it is (not folded into the convolutions), so EDDL can train on from it.
    units = sum(1 for k in model.state_dict() if k.endswith(".conv.weight"))
    assert ops.count("BatchNormalization") == units and ops.count("Conv") == units + 1
    for node in proto.graph.node:
        if node.op_type == "Resize":
            assert node.input[1] in initializers and node.input[2] in initializers
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 1, *["D", "H", "W"][3 - spec.ndim :]]
    props = {p.key: p.value for p in proto.metadata_props}
    assert UNetSpec.from_json(props["deephealth_deid.spec"]) == spec


def test_onnx_problems_flags_what_eddl_cannot_import(onnx):
    from onnx import TensorProto, helper

    from deephealth_deid.engines.torch_engine import onnx_problems

    nodes = [
        helper.make_node("Constant", [], ["w"], value=helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])),
        helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    problems = onnx_problems(helper.make_model(graph))
    assert any("Constant" in p for p in problems) and any("ConvTranspose" in p for p in problems)


@pytest.mark.parametrize(
    ("spec", "opset"),
    [(TINY_3D, 11), (TINY_2D, 13), (TINY_STEM, 11)],
    ids=["3d-nearest-11", "2d-linear-13", "2d-stem-11"],
)
def test_onnxruntime_matches_torch(torch_engine, onnx, tmp_path, spec, opset):
    ort = pytest.importorskip(
        "onnxruntime", reason="the parity test needs onnxruntime (pip install onnxruntime)"
    )
    model = torch_engine.build(spec, seed=1)
    _randomise_batchnorm(model)
    path = tmp_path / "net.onnx"
    torch_engine.export_onnx(model, spec, path, opset=opset)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    # two different sizes through the same file: the spatial axes are dynamic
    for spatial in [(13, 10, 7), (8, 20, 4)] if spec.ndim == 3 else [(37, 21), (16, 64)]:
        x = rng.normal(size=(2, 1, *spatial)).astype(np.float32)
        padded, pads = pad_to_multiple(x, spec.stride, axes=spec.ndim)
        ours = torch_engine.predict(model, x)
        theirs = crop_padding(session.run(["logits"], {"input": padded})[0], pads)
        np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=0)


def test_export_without_onnx_says_what_to_install(torch_engine, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    model = torch_engine.build(TINY_2D, seed=0)
    with pytest.raises(ImportError, match="pip install onnx"):
        torch_engine.export_onnx(model, TINY_2D, tmp_path / "x.onnx")
    assert not Path(tmp_path / "x.onnx").exists()


# --------------------------------------------------------------------------------------------
# Threads and seeds
# --------------------------------------------------------------------------------------------


def test_seeded_builds_are_identical_and_leave_the_global_rng_alone(torch_engine):
    import torch

    from deephealth_deid.engines.torch_engine import set_threads

    state = torch.random.get_rng_state()
    a = torch_engine.build(TINY_2D, seed=5).state_dict()
    b = torch_engine.build(TINY_2D, seed=5).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(torch.random.get_rng_state(), state)
    threads = torch.get_num_threads()
    try:
        set_threads(2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ValueError):
        set_threads(0)


def test_deid_engines_lists_every_engine_as_json(capsys):
    from deephealth_deid.cli import main as cli_main

    assert cli_main(["engines", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert set(facts) == {"torch", "eddl", "onnxruntime"}
    if facts["onnxruntime"]["usable"]:
        assert facts["onnxruntime"]["trains"] is False
        assert "CPUExecutionProvider" in facts["onnxruntime"]["providers"]
    assert facts["torch"]["usable"] is True and facts["torch"]["device"] == "cpu"
    eddl = facts["eddl"]
    if eddl["usable"]:
        assert eddl["networks_correct"] is True and isinstance(eddl["defects"], list)
    else:
        assert "pip install pyeddl" in eddl["why"]


def test_prediction_folds_batchnorm_without_touching_the_model(torch_engine):
    """Inference runs on a copy with BatchNorm folded in: same logits, made again after training."""
    import torch

    model = torch_engine.build(TINY_2D, seed=4)
    _randomise_batchnorm(model)
    x = np.random.default_rng(5).normal(size=(2, 1, 32, 24)).astype(np.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = torch_engine.predict(model, x)
    model.eval()
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    model.train()
    np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, np.abs(want).max()))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    # A training step changes the weights: the next prediction follows them.
    optimizer = torch_engine.optimizer(model, lr=0.05)
    labels = (x[:, 0] > 0).astype(np.int64)
    torch_engine.train_step(model, optimizer, x, labels)
    model.eval()
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    model.train()
    np.testing.assert_allclose(torch_engine.predict(model, x), want, atol=1e-4 * max(1.0, np.abs(want).max()))


# --------------------------------------------------------------------------------------------
# The ONNX Runtime engine
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ort_engine():
    pytest.importorskip(
        "onnxruntime", reason="the onnxruntime engine needs onnxruntime (pip install onnxruntime)"
    )
    pytest.importorskip("onnx", reason="the onnxruntime engine needs onnx (pip install onnx)")
    return get_engine("onnxruntime", device="cpu")


@pytest.mark.parametrize("spec", [TINY_3D, TINY_2D, TINY_STEM], ids=["3d-nearest", "2d-linear", "2d-stem"])
def test_onnxruntime_engine_reads_the_model_file_and_predicts_as_torch(
    torch_engine, ort_engine, tmp_path, spec
):
    model = torch_engine.build(spec, seed=4)
    _randomise_batchnorm(model)
    path = tmp_path / "net.safetensors"
    sha = torch_engine.save(model, spec, path, metadata={"task": "test"})
    loaded, loaded_spec, meta = ort_engine.load(path, sha256=sha)
    assert loaded_spec == spec and meta == {"task": "test"}
    rng = np.random.default_rng(5)
    for spatial in [(13, 10, 7), (8, 20, 4)] if spec.ndim == 3 else [(37, 21), (16, 64)]:
        x = rng.normal(size=(3, 1, *spatial)).astype(np.float32)
        ours = ort_engine.predict(loaded, x, batch_size=2)
        np.testing.assert_allclose(ours, torch_engine.predict(model, x), atol=1e-4, rtol=0)
        p = ort_engine.predict(loaded, x, probabilities=True)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(p, torch_engine.predict(model, x, probabilities=True), atol=1e-5)
    # The file it writes back is the same model, for every engine.
    again = tmp_path / "again.safetensors"
    ort_engine.save(loaded, spec, again, metadata=meta)
    model2, _, _ = torch_engine.load(again)
    x = rng.normal(size=(1, 1, *([8] * spec.ndim))).astype(np.float32)
    assert np.array_equal(torch_engine.predict(model, x), torch_engine.predict(model2, x))


def test_onnxruntime_engine_upsamples_a_stem_networks_output_after_the_softmax(ort_engine):
    """Its session ends at the head (half size); repeating after the softmax gives the export's numbers."""
    import onnxruntime as ort

    from deephealth_deid.engines.onnx_graph import spec_to_onnx

    model = ort_engine.build(TINY_STEM, seed=3)
    x = np.random.default_rng(2).normal(size=(2, 1, 37, 22)).astype(np.float32)
    session = model.session(["CPUExecutionProvider"])
    padded = np.zeros((2, 1, 40, 24), np.float32)  # the stride is 8: 37 x 22 padded at the ends
    padded[:, :, 1:38, 1:23] = x
    assert session.run(None, {"input": padded})[0].shape == (2, TINY_STEM.classes, 20, 12)
    export = ort.InferenceSession(spec_to_onnx(TINY_STEM, model.weights).SerializeToString())
    full = export.run(None, {"input": padded})[0][:, :, 1:38, 1:23]
    assert full.shape == (2, TINY_STEM.classes, 37, 22)
    assert np.array_equal(ort_engine.predict(model, x, batch_size=2), full)
    want = np.exp(full - full.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ort_engine.predict(model, x, probabilities=True), want, rtol=0, atol=1e-6)


def test_onnxruntime_engine_does_not_train_and_says_what_to_use(ort_engine):
    model = ort_engine.build(TINY_2D, seed=0)
    with pytest.raises(EngineUnavailableError, match="--engine torch"):
        ort_engine.optimizer(model)
    with pytest.raises(EngineUnavailableError, match="trained models only"):
        ort_engine.train_step(model, None, np.zeros((1, 1, 8, 8), np.float32), np.zeros((1, 8, 8), np.int64))
    with pytest.raises(ValueError, match="NaN"):
        ort_engine.predict(model, np.full((1, 1, 8, 8), np.nan, np.float32))
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(EngineUnavailableError, match="no CUDA provider"):
            get_engine("onnxruntime", device="cuda")


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider':UserWarning")
def test_a_cuda_provider_that_does_not_start_is_not_hidden(ort_engine, monkeypatch, caplog):
    """ONNX Runtime runs on the CPU, without an error, when its CUDA provider fails to start."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider: the fallback is simulated on CPU-only builds")
    # A CPU-only build that says it has the provider starts a session on the CPU only, as a GPU
    # build does when the CUDA or cuDNN libraries are missing.
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)
    x = np.random.default_rng(0).normal(size=(1, 1, 16, 16)).astype(np.float32)
    asked = get_engine("onnxruntime", device="cuda")
    assert asked.device == "cuda:0"
    model = asked.build(TINY_2D, seed=1)
    with pytest.raises(EngineUnavailableError, match=r"did not start on cuda:0.*--device cpu"):
        asked.predict(model, x)
    auto = get_engine("onnxruntime", device="auto")
    assert auto.device == "cuda:0"
    with caplog.at_level(logging.WARNING, logger="deephealth_deid"):
        got = auto.predict(model, x)
    assert auto.device == "cpu" and any("predicting on the CPU" in r.getMessage() for r in caplog.records)
    assert np.array_equal(got, ort_engine.predict(model, x))


def test_missing_onnxruntime_names_what_to_install():
    out = _message_without("onnxruntime", "onnxruntime")
    assert "pip install deephealth_deid[onnx]" in out and "--engine torch" in out


@pytest.mark.parametrize(
    ("nodes", "visible", "want"),
    [
        ((), None, False),
        (("/dev/nvidiactl",), None, True),
        (("/dev/dxg",), None, True),  # WSL2: the Windows driver's GPU
        (("/dev/nvidiactl",), "-1", False),
        (("/dev/dxg",), "", False),
    ],
)
def test_auto_device_looks_for_a_gpu_where_linux_and_wsl2_show_one(monkeypatch, nodes, visible, want):
    import os

    monkeypatch.setattr(registry.sys, "platform", "linux")
    real_exists = os.path.exists
    monkeypatch.setattr(
        registry.os.path, "exists", lambda p: p in nodes if str(p).startswith("/dev/") else real_exists(p)
    )
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert registry._nvidia_device_visible() is want


@pytest.mark.parametrize(
    ("gpu_node", "visible", "want"),
    [
        (False, None, 0),
        (True, None, 1),
        (True, "0,1", 2),
        (True, "1,-1,0", 1),
        (True, "-1", 0),
        (True, "", 0),
    ],
)
def test_a_gpu_build_of_eddl_counts_only_the_gpus_the_machine_shows(monkeypatch, gpu_node, visible, want):
    """A GPU build of EDDL says it supports CUDA on any machine; where no GPU is visible it has none."""
    import types

    from deephealth_deid.engines import eddl_engine

    tensor = types.SimpleNamespace(is_hardware_supported=lambda what: what in ("cuda", "cudnn"))
    monkeypatch.setitem(sys.modules, "pyeddl", types.ModuleType("pyeddl"))
    monkeypatch.setitem(sys.modules, "pyeddl.tensor", types.SimpleNamespace(Tensor=tensor))
    monkeypatch.setattr(eddl_engine, "_nvidia_device_visible", lambda: gpu_node)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert eddl_engine._gpu_count() == want
    assert eddl_engine.resolve_device("auto") == ("cuda:0" if want else "cpu")


def test_eddl_failing_on_its_device_is_an_engine_error_naming_the_way_out(monkeypatch):
    from deephealth_deid.engines import eddl_engine

    def fails(device):
        raise RuntimeError("[CUDA ERROR]: no CUDA-capable device is detected")

    monkeypatch.setattr(eddl_engine, "resolve_device", lambda device: "cuda:0")
    monkeypatch.setattr(eddl_engine, "self_check", fails)
    with pytest.raises(
        EngineUnavailableError, match=r"could not run a small network on cuda:0.*--device cpu"
    ):
        eddl_engine.EddlEngine(device="auto")
