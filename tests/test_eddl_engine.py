"""The EDDL engine: self-check, parity with PyTorch and the numpy reference, one model file.

Every test here needs ``pyeddl`` (the EDDL library and its bindings) and skips
with the reason where it does not import. The numpy reference
(:mod:`deephealth_deid.engines.reference`) runs everywhere and is checked
against PyTorch here too.
"""

from __future__ import annotations

import numpy as np
import pytest

from deephealth_deid.engines.reference import random_weights, unet_forward, weight_shapes
from deephealth_deid.nets import UNetSpec, deface_unet_spec, text_unet_spec

SPECS = {
    "3d": (deface_unet_spec(widths=(4, 8, 16), in_channels=2), (2, 2, 8, 12, 16)),
    "2d": (text_unet_spec(widths=(4, 8, 8), input_stride=1, convs_per_level=2), (2, 3, 12, 20)),
    # With a stem (kernel = stride = 2, no padding) and logits upsampled back at the end.
    "2d-stem": (text_unet_spec(widths=(4, 8, 8), input_stride=2), (2, 3, 16, 24)),
    "3d-stem": (deface_unet_spec(widths=(4, 8), input_stride=2), (1, 1, 8, 12, 4)),
}


def _eddl_import_error() -> str | None:
    try:
        import pyeddl.eddl  # noqa: F401
    except Exception as e:  # a broken build counts as not importable
        return f"{type(e).__name__}: {e}"
    return None


_WHY = _eddl_import_error()
needs_eddl = pytest.mark.skipif(_WHY is not None, reason=f"pyeddl does not import here ({_WHY})")


@pytest.fixture(scope="module")
def eddl_engine():
    from deephealth_deid.engines import get_engine

    return get_engine("eddl", device="cpu")


@pytest.mark.parametrize("key", sorted(SPECS))
def test_numpy_reference_matches_pytorch(key):
    torch = pytest.importorskip("torch")
    from deephealth_deid.engines.torch_engine import UNet

    spec, shape = SPECS[key]
    net = UNet(spec).eval()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == weight_shapes(spec)
    weights = random_weights(spec, seed=3)
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    want = unet_forward(spec, weights, x)
    assert np.max(np.abs(got - want)) < 1e-4 * max(1.0, np.abs(want).max())


@pytest.mark.eddl
@needs_eddl
def test_self_check_reports_defects_and_passes_the_whole_network(eddl_engine):
    from deephealth_deid.engines.eddl_engine import self_check

    check = self_check("cpu")
    assert check.ok, check
    assert check.unet_error < 1e-4
    # The defects of EDDL v1.1b's CPU service are measured, not assumed: each flag
    # must agree with what a probe network computes (see the module docstring).
    assert isinstance(check.conv3d_bias, bool) and isinstance(check.batchnorm_5d, bool)
    assert eddl_engine.check is check


@pytest.mark.eddl
@needs_eddl
@pytest.mark.parametrize("key", sorted(SPECS))
def test_eddl_logits_match_the_reference(eddl_engine, key):
    spec, shape = SPECS[key]
    weights = random_weights(spec, seed=5)
    model = eddl_engine.build(spec, seed=0)
    model.load_state_dict(weights)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    got = eddl_engine.predict(model, x)
    want = unet_forward(spec, weights, x)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) < 1e-4 * max(1.0, np.abs(want).max())


@pytest.mark.eddl
@needs_eddl
def test_built_networks_kept_are_bounded(eddl_engine, monkeypatch):
    """EDDL's CPU buffers take GBs: a volume model keeps one network, an image model a few up to a budget."""
    from deephealth_deid.engines import eddl_engine as module

    def shapes(key, n):
        spec, shape = SPECS[key]
        return [(*shape[1:-1], shape[-1] + k * spec.stride) for k in range(n)]  # larger by a stride

    def run(key, sizes):
        spec, _ = SPECS[key]
        model = eddl_engine.build(spec)
        model.load_state_dict(random_weights(spec, seed=2))
        rng = np.random.default_rng(0)
        kept, first = [], None
        for size in sizes:
            x = rng.standard_normal((1, *size)).astype(np.float32)
            out = eddl_engine.predict(model, x, probabilities=True)
            first = (x, out) if first is None else first
            kept.append(len(model._nets))
        # The first shape again: rebuilt where it was let go, the same probabilities.
        np.testing.assert_allclose(
            eddl_engine.predict(model, first[0], probabilities=True), first[1], atol=1e-6
        )
        return kept

    assert run("3d", shapes("3d", 4)) == [1, 1, 1, 1]
    assert run("2d", shapes("2d", 6)) == [1, 2, 3, 4, 4, 4]
    # An image model's networks are kept only while their pixels fit the budget.
    two = sum(int(np.prod(s[1:])) for s in shapes("2d", 2))
    monkeypatch.setitem(module._KEPT_ELEMENTS, 2, two)
    assert run("2d", shapes("2d", 4)) == [1, 2, 1, 1]


@pytest.mark.eddl
@needs_eddl
def test_the_text_detector_on_eddl_predicts_in_1024_tiles():
    """A 2048 x 2048 frame whole would take 11.6 GB of EDDL's CPU buffers; 1024 tiles about 3 GB."""
    from deephealth_deid.text.detector import EDDL_TILE, load_text_detector

    assert EDDL_TILE == 1024
    assert load_text_detector(engine="eddl", device="cpu").tile == 1024
    assert load_text_detector(engine="eddl", device="cpu", tile=512).tile == 512
    assert load_text_detector(engine="torch", device="cpu").tile == 2048


@pytest.mark.eddl
@needs_eddl
def test_eddl_pads_sizes_that_are_not_a_multiple_of_the_stride(eddl_engine):
    spec, _ = SPECS["2d"]
    weights = random_weights(spec, seed=6)
    model = eddl_engine.build(spec)
    model.load_state_dict(weights)
    x = np.random.default_rng(3).standard_normal((1, 3, 10, 13)).astype(np.float32)
    got = eddl_engine.predict(model, x, probabilities=True)
    assert got.shape == (1, 2, 10, 13)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.eddl
@needs_eddl
@pytest.mark.parametrize("key", sorted(SPECS))
def test_one_model_file_for_both_engines(eddl_engine, tmp_path, key):
    """A file saved by PyTorch runs on EDDL, and one saved by EDDL runs on PyTorch, with the same logits."""
    pytest.importorskip("torch")
    from deephealth_deid.engines import get_engine

    torch_engine = get_engine("torch", device="cpu")
    spec, shape = SPECS[key]
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    model = torch_engine.build(spec, seed=2)
    model.load_state_dict({k: __import__("torch").from_numpy(v) for k, v in random_weights(spec, 8).items()})
    torch_engine.save(model, spec, tmp_path / "t.safetensors", metadata={"k": 1})
    on_eddl, spec2, meta = eddl_engine.load(tmp_path / "t.safetensors")
    assert spec2 == spec and meta == {"k": 1}
    a = torch_engine.predict(model, x)
    b = eddl_engine.predict(on_eddl, x)
    assert np.max(np.abs(a - b)) < 1e-4 * max(1.0, np.abs(a).max())
    eddl_engine.save(on_eddl, spec, tmp_path / "e.safetensors", metadata={"k": 2})
    back, _, meta = torch_engine.load(tmp_path / "e.safetensors")
    assert meta == {"k": 2}
    assert np.max(np.abs(torch_engine.predict(back, x) - a)) < 1e-5 * max(1.0, np.abs(a).max())


@pytest.mark.eddl
@needs_eddl
def test_eddl_training_lowers_the_loss_and_saves_a_file_torch_reads(eddl_engine, tmp_path):
    spec = UNetSpec(ndim=3, in_channels=1, classes=2, widths=(4, 8))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 8, 8, 8)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    model = eddl_engine.build(spec, seed=1)
    opt = eddl_engine.optimizer(model, lr=0.01, weight_decay=0.0)
    losses = [eddl_engine.train_step(model, opt, x, y)["loss"] for _ in range(30)]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    probs = eddl_engine.predict(model.eval(), x, probabilities=True)
    assert ((probs[:, 1] > 0.5) == (y == 1)).mean() > 0.9
    eddl_engine.save(model, spec, tmp_path / "m.safetensors", metadata={})
    if pytest.importorskip("torch"):
        from deephealth_deid.engines import get_engine

        torch_engine = get_engine("torch", device="cpu")
        back, _, _ = torch_engine.load(tmp_path / "m.safetensors")
        np.testing.assert_allclose(torch_engine.predict(back, x, probabilities=True), probs, atol=1e-4)


@pytest.mark.eddl
@needs_eddl
def test_eddl_refuses_what_it_cannot_run(eddl_engine):
    from deephealth_deid.errors import ModelCheckError

    with pytest.raises(ModelCheckError, match="nearest"):
        eddl_engine.build(UNetSpec(ndim=2, in_channels=1, classes=2, widths=(4, 8), upsample="linear"))
    with pytest.raises(ValueError, match="NaN"):
        spec, shape = SPECS["2d"]
        eddl_engine.predict(eddl_engine.build(spec), np.full(shape, np.nan, np.float32))


@pytest.mark.eddl
@needs_eddl
@pytest.mark.parametrize("key", sorted(SPECS))
def test_onnx_export_imports_into_eddl(eddl_engine, key):
    """EDDL's own ONNX importer reads the exported graph; it matches wherever EDDL's layers are right.

    The imported 3D network uses EDDL's 5D BatchNorm as is, so on a build with
    that defect its logits are wrong: that is why the engine builds networks
    from the spec instead of importing ONNX.
    """
    pytest.importorskip("onnx")
    from pyeddl import eddl
    from pyeddl.tensor import Tensor

    from deephealth_deid.engines.eddl_engine import _computing_service, _quiet
    from deephealth_deid.engines.onnx_graph import checked_onnx, with_input_shape

    spec, shape = SPECS[key]
    weights = random_weights(spec, seed=9)
    proto = checked_onnx(spec, weights)
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    with _quiet():
        net = eddl.import_net_from_onnx_string(with_input_shape(proto, shape).SerializeToString())
        eddl.build(net, eddl.sgd(0.0), ["mse"], ["mse"], _computing_service("cpu"), False)
        eddl.set_mode(net, 0)
        eddl.forward(net, [Tensor.fromarray(x)])
        got = np.array(eddl.getOutput(net.lout[0]).getdata())
    want = unet_forward(spec, weights, x)
    error = np.max(np.abs(got - want)) / max(1.0, np.abs(want).max())
    if spec.ndim == 3 and not eddl_engine.check.batchnorm_5d:
        assert error > 1e-3  # the defect shows; the engine's own build is exact (tests above)
    else:
        assert error < 1e-4


@pytest.mark.eddl
@needs_eddl
def test_redact_on_eddl_blanks_what_torch_blanks(eddl_engine):
    """The shipped text detector on a real ultrasound: the same regions and pixels on both engines."""
    pytest.importorskip("torch")
    from conftest import pydicom_test_file

    import deephealth_deid as dd

    image = dd.load_image(pydicom_test_file("US1_UNCR.dcm"))
    on_torch = dd.redact_text(image, ocr="none", engine="torch", device="cpu")
    on_eddl = dd.redact_text(image, ocr="none", engine="eddl", device="cpu")
    assert on_eddl.qc.detected == on_torch.qc.detected >= 5  # the header band, parameters, scale
    assert [r.box for r in on_eddl.regions] == [r.box for r in on_torch.regions]
    assert np.array_equal(on_eddl.image.frames, on_torch.image.frames)


@pytest.mark.eddl
@needs_eddl
def test_deface_on_eddl_gives_the_mask_torch_gives(eddl_engine, tmp_path, chris_t1):
    """The shipped defacing weights on a 4 mm grid (EDDL's CPU 3D convolution is slow), run on the
    real head by both engines: the same mask and the same output voxels."""
    pytest.importorskip("torch")
    import deephealth_deid as dd
    from deephealth_deid.engines import get_engine
    from deephealth_deid.shipped import shipped_model

    torch_engine = get_engine("torch", device="cpu")
    model, spec, meta = torch_engine.load(shipped_model("deface").path)
    path = tmp_path / "coarse.safetensors"
    grid = {"spacing_mm": 4.0, "shape": [56, 64, 64]}
    torch_engine.save(model, spec, path, metadata={**meta, "grid": grid})
    volume = dd.load_volume(chris_t1)
    on_torch = dd.deface(volume, model=str(path), engine="torch", device="cpu")
    on_eddl = dd.deface(volume, model=str(path), engine="eddl", device="cpu")
    assert on_torch.mask.array.any()
    assert np.array_equal(on_eddl.mask.array, on_torch.mask.array)
    assert np.array_equal(on_eddl.volume.array, on_torch.volume.array)


@pytest.mark.eddl
@needs_eddl
@pytest.mark.parametrize("task", ["deface", "text"])
def test_deid_train_on_eddl(eddl_engine, tmp_path, task):
    """`deid train CONFIG --engine eddl` trains, validates, checkpoints and resumes, for both networks."""
    import json

    from train_configs import TINY_DEFACE, write_config

    from deephealth_deid.cli import main as cli_main

    if task == "deface":
        base = TINY_DEFACE
    else:
        base = {
            "task": "text", "engine": "torch", "device": "cpu", "seed": 1, "threads": 1,
            "widths": [4, 8], "input_channels": 3,
            "data": {"synthetic": True, "validation_size": 1, "patch": [64, 64], "patches_per_head": 1,
                     "text_options": {"size_range": [96, 128]}},
            "optim": {"iterations": 4, "batch_size": 1, "lr": 0.01, "class_weights": [1.0, 5.0]},
            "validate_every": 2, "checkpoint_every": 2, "out_dir": "run",
        }  # fmt: skip
    path = write_config(tmp_path, base, "train.yaml")
    assert cli_main(["train", str(path), "--engine", "eddl"]) == 0
    run = tmp_path / "run"
    assert json.loads((run / "state.json").read_text())["iteration"] == 4
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines if "validation_dice" in r] == [2, 4]
    assert cli_main(["train", str(path), "--engine", "eddl", "--iterations", "6"]) == 0
    assert json.loads((run / "state.json").read_text())["iteration"] == 6
    from deephealth_deid.engines.registry import read_model_file

    _, _, _, saved_by = read_model_file(run / "model.safetensors")
    assert saved_by["engine"] == "eddl"


@pytest.mark.eddl
@needs_eddl
def test_self_check_refuses_networks_a_defective_build_computes_wrongly(eddl_engine, monkeypatch):
    """Without its workarounds the engine's U-Net hits the defects, and the self-check refuses it."""
    from deephealth_deid.engines import eddl_engine as module
    from deephealth_deid.errors import EngineUnavailableError

    if eddl_engine.check.batchnorm_5d and eddl_engine.check.conv3d_bias:
        pytest.skip("this EDDL build has neither CPU defect: nothing to refuse")
    monkeypatch.setattr(module, "_WORKAROUND", False)
    monkeypatch.setattr(module, "_CHECKS", {})
    with pytest.raises(EngineUnavailableError, match="computes the U-Net wrongly") as info:
        module.EddlEngine(device="cpu")
    assert "--engine torch" in str(info.value) and "BatchNorm ignores the depth axis" in str(info.value)


@pytest.mark.eddl
@needs_eddl
def test_asking_eddl_for_a_gpu_it_lacks_is_an_error_not_a_fallback():
    from pyeddl.tensor import Tensor

    from deephealth_deid.engines import get_engine
    from deephealth_deid.errors import EngineUnavailableError

    if Tensor.is_hardware_supported("cuda"):
        pytest.skip("this EDDL build supports CUDA")
    with pytest.raises(EngineUnavailableError, match="--device cpu"):
        get_engine("eddl", device="cuda")
    assert get_engine("eddl", device="auto").device == "cpu"


@pytest.mark.eddl
@needs_eddl
def test_eddl_exports_the_onnx_graph_onnxruntime_runs(eddl_engine, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec, shape = SPECS["3d"]
    weights = random_weights(spec, seed=12)
    model = eddl_engine.build(spec)
    model.load_state_dict(weights)
    path = tmp_path / "m.onnx"
    eddl_engine.export_onnx(model, spec, path)
    x = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    want = eddl_engine.predict(model, x)
    assert np.max(np.abs(got - want)) < 1e-4 * max(1.0, np.abs(want).max())
