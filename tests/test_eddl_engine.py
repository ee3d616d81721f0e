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
    "2d": (text_unet_spec(widths=(4, 8, 8)), (2, 3, 12, 20)),
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
