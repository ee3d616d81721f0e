"""``deid train``: configuration checks, a short real run on synthetic heads, resume, and the loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from train_configs import TINY_DEFACE
from train_configs import write_config as _write_config

from deephealth_deid.errors import ConfigError
from deephealth_deid.train import load_config

ROOT = Path(__file__).resolve().parent.parent

TINY = TINY_DEFACE


def write_config(folder: Path, **changes: object) -> Path:
    return _write_config(folder, TINY, "train.yaml", **changes)


def test_shipped_training_config_loads() -> None:
    cfg = load_config(ROOT / "training" / "deface.yaml")
    assert cfg.task == "deface" and cfg.input_channels == 2
    assert Path(cfg.out_dir).is_absolute() and Path(cfg.out_dir).parts[-2:] == ("runs", "deface")


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"input_channels": 3}, "input_channels"),
        ({"widths": [4, 8, 16, 32]}, "grid.shape"),  # 44 is not a multiple of 8
        ({"data": {"patch": [16, 16, 15]}}, "data.patch"),
        ({"optim": {"batch_size": 0}}, "optim"),
        ({"data": {"synthetic_options": [1, 2]}}, "data.synthetic_options"),
        ({"nonsense": 1}, "nonsense"),
        ({"optim": {"lr_steps": [[100, -1.0]]}}, "optim.lr_steps"),
        ({"optim": {"lr_steps": [100]}}, "optim.lr_steps"),
        ({"deterministic": "yes"}, "deterministic"),
        ({"engine": "eddl", "deterministic": True}, "deterministic"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, changes: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write_config(tmp_path, **changes))


def test_unknown_generator_option_is_a_config_error(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from deephealth_deid.train.samples import DefaceSamples

    cfg = load_config(write_config(tmp_path, data={"synthetic_options": {"colour": "blue"}}))
    with pytest.raises(ConfigError, match="synthetic_options"):
        DefaceSamples(cfg)


def test_samples_are_two_channel_patches_with_feature_labels(tmp_path: Path) -> None:
    from deephealth_deid.train.samples import DefaceSamples

    samples = DefaceSamples(load_config(write_config(tmp_path)))
    x, y = samples.training(0)
    assert x.shape == (2, 16, 16, 16) and x.dtype == np.float32
    assert y.shape == (16, 16, 16) and y.dtype == np.int64
    assert set(np.unique(y).tolist()) <= {0, 1, 2, 3, 4}
    # Channel 1 is the depth under the skin: 0 in the air, growing inwards, never negative.
    assert x[1].min() >= 0.0 and x[1].max() <= 2.0
    ((vx, vy),) = samples.validation()["synthetic"]
    assert vx.shape == (2, 40, 44, 44) and vy.shape == (40, 44, 44)
    # Same index, same sample (seeded).
    x2, y2 = DefaceSamples(load_config(write_config(tmp_path))).training(0)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_train_writes_a_loadable_model_and_resumes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from deephealth_deid.cli import main as cli_main
    from deephealth_deid.deface.model import load_predictor

    path = write_config(tmp_path)
    assert cli_main(["train", str(path)]) == 0
    run = tmp_path / "run"
    assert {"model.safetensors", "last.safetensors", "optimizer.pt", "state.json", "metrics.jsonl"} <= {
        p.name for p in run.iterdir()
    }
    assert json.loads((run / "state.json").read_text())["iteration"] == 4
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in lines if "validation_dice" in r]
    assert [r["iteration"] for r in validations] == [2, 4]
    assert set(validations[0]["validation_dice"]) == {"eyes", "nose", "mouth", "ears"}

    # Resume: asking for 6 iterations continues from 4 instead of starting again.
    assert cli_main(["train", str(path), "--iterations", "6"]) == 0
    assert json.loads((run / "state.json").read_text())["iteration"] == 6
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines if "validation_dice" in r] == [2, 4, 6]

    # The model is a defacing model with a two-channel input that the pipeline can use.
    predictor, spacing, shape = load_predictor(run / "model.safetensors", engine="torch", device="cpu")
    assert spacing == 6.0 and shape == (40, 44, 44)
    probs = predictor(np.zeros(shape, np.float32))
    assert probs.shape == (5, *shape) and np.allclose(probs.sum(axis=0), 1.0, atol=1e-4)


def test_dice_term_ignores_classes_absent_from_the_batch() -> None:
    torch = pytest.importorskip("torch")
    from deephealth_deid.engines.torch_engine import dice_ce_loss

    target = torch.zeros((1, 6, 6, 6), dtype=torch.long)
    target[0, 1:3, 1:3, 1:3] = 1  # only class 1 present
    base = torch.zeros((1, 5, 6, 6, 6))
    base[:, 1][target == 1] = 4.0
    spread = base.clone()
    spread[:, 3] += 1.0  # some probability on the absent class 3 everywhere
    loss_b, parts_b = dice_ce_loss(spread, target)
    ce_b = torch.nn.functional.cross_entropy(spread, target)
    # The loss is CE + (1 - Dice of class 1) alone: class 3's (near-zero) Dice does not count.
    assert torch.isclose(loss_b, ce_b + (1 - parts_b["dice"][0]))
    assert parts_b["dice"][2] < 0.01  # it is near zero, yet does not add 1 to the loss


def test_learning_rate_steps_follow_the_iteration(tmp_path: Path) -> None:
    from deephealth_deid.train.loop import learning_rate

    cfg = load_config(write_config(tmp_path, optim={"lr": 0.01, "lr_steps": [[20, 0.001], [10, 0.005]]}))
    rates = [learning_rate(cfg, i) for i in (0, 9, 10, 19, 20, 1000)]
    assert rates == [0.01, 0.01, 0.005, 0.005, 0.001, 0.001]


class _FailsAt:
    """A sample source whose sample 3 cannot be drawn (as a damaged dataset file would)."""

    def training(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index == 3:
            raise OSError("sample 3: damaged file")
        return np.full((1, 2), index, np.float32), np.zeros(2, np.int64)


def test_runs_given_to_workers_never_split_a_head() -> None:
    from deephealth_deid.train.feed import _runs, run_length

    # batch 1, 4 patches per head: heads start every 4 iterations; batch 4, 2 per head: every one.
    assert run_length(1, 4) == 4 and run_length(4, 2) == 1 and run_length(2, 4) == 2
    for start, stop, length, least in [(0, 20, 4, 2), (6, 31, 4, 2), (5, 9, 1, 3), (3, 4, 2, 2)]:
        runs = list(_runs(start, stop, length, least))
        covered = [i for first, count in runs for i in range(first, first + count)]
        assert covered == list(range(start, stop))
        # Every run but the last ends on a head boundary (a multiple of length).
        assert all((first + count) % length == 0 for first, count in runs[:-1])


def test_worker_processes_draw_the_batches_of_the_thread(tmp_path: Path) -> None:
    import functools

    from deephealth_deid.train.feed import batches
    from deephealth_deid.train.samples import DefaceSamples

    cfg = load_config(write_config(tmp_path, optim={"batch_size": 1}))  # 2 patches per head
    samples = DefaceSamples(cfg)
    # From iteration 1, inside a head, as a resumed run starts.
    threaded = list(batches(samples, 1, 6, 1))
    make = functools.partial(DefaceSamples, cfg)
    spawned = list(batches(samples, 1, 6, 1, workers=2, make_samples=make, patches_per_head=2))
    assert [i for i, _ in spawned] == [i for i, _ in threaded] == [1, 2, 3, 4, 5]
    for (_, (x, y)), (_, (x2, y2)) in zip(threaded, spawned, strict=True):
        assert np.array_equal(x, x2) and np.array_equal(y, y2)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_error_drawing_a_sample_stops_training_at_that_batch(workers: int) -> None:
    from deephealth_deid.train.feed import batches

    got = []
    with pytest.raises(OSError, match="sample 3"):
        for i, _batch in batches(_FailsAt(), 0, 8, 1, workers=workers, make_samples=_FailsAt):
            got.append(i)
    assert got == [0, 1, 2]


def test_training_with_worker_processes_matches_the_thread(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from deephealth_deid.cli import main as cli_main

    path = write_config(tmp_path)
    ten = ["--iterations", "10"]  # the loss is logged every 10 iterations
    assert cli_main(["train", str(path), *ten, "--out-dir", str(tmp_path / "t")]) == 0
    assert cli_main(["train", str(path), *ten, "--out-dir", str(tmp_path / "w"), "--workers", "2"]) == 0

    def logged(run: str) -> list[dict]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in lines]

    # Same batches, same seed, one thread: the same training, loss for loss.
    assert any("loss" in r for r in logged("t")) and logged("t") == logged("w")


@pytest.mark.parametrize("args", [["--workers", "-1"], ["--batch-size", "0"], ["--iterations", "x"]])
def test_bad_training_overrides_are_refused(tmp_path: Path, args: list[str], capsys) -> None:
    from deephealth_deid.cli import main as cli_main

    assert cli_main(["train", str(write_config(tmp_path)), *args]) == 2
    assert f"argument {args[0]}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("task", ["deface", "text"])
def test_shipped_configurations_describe_the_shipped_networks(task: str) -> None:
    """``--init shipped`` fine-tunes the shipped model with its own training file."""
    pytest.importorskip("torch")
    from deephealth_deid.engines import get_engine
    from deephealth_deid.train.loop import TASKS, _initial_weights

    cfg = load_config(ROOT / "training" / f"{task}.yaml", init="shipped")
    spec, _, _ = TASKS[task](cfg)
    model = _initial_weights(get_engine("torch", device="cpu"), spec, cfg.init, task)
    assert model.training


def test_init_starts_from_a_model_and_refuses_another_network(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    from deephealth_deid.cli import main as cli_main
    from deephealth_deid.engines import get_engine

    path = write_config(tmp_path)
    assert cli_main(["train", str(path), "--out-dir", str(tmp_path / "a")]) == 0
    first = tmp_path / "a" / "last.safetensors"
    # A learning rate too small to move a weight: the run ends where it started.
    args = ["--init", str(first), "--lr", "1e-12", "--iterations", "2", "--out-dir", str(tmp_path / "b")]
    assert cli_main(["train", str(path), *args]) == 0
    engine = get_engine("torch", device="cpu")
    a, _, _ = engine.load(first)
    b, _, _ = engine.load(tmp_path / "b" / "last.safetensors")
    weights = [(k, v) for k, v in a.state_dict().items() if "running" not in k and "num_batches" not in k]
    assert all(np.allclose(v.numpy(), b.state_dict()[k].numpy(), atol=1e-6) for k, v in weights)

    other = _write_config(tmp_path, TINY, "other.yaml", widths=[4, 8, 16])
    from deephealth_deid.train import train

    with pytest.raises(ConfigError, match=r"init: .* differs .* widths"):
        train(load_config(other, init=str(first), out_dir=str(tmp_path / "c")))
    capsys.readouterr()
    assert cli_main(["train", str(path), "--init", str(tmp_path / "missing.safetensors")]) == 1
    assert "--init: no such model file" in capsys.readouterr().err  # the option, not the YAML file
    assert cli_main(["train", str(path), "--init", str(tmp_path)]) == 1
    assert "--init: a folder, not a model file" in capsys.readouterr().err


class _KillsItsWorker:
    """A sample source whose worker process dies at sample 2 (as one killed for memory would)."""

    def training(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index == 2:
            import os

            os._exit(9)
        return np.zeros((1, 2), np.float32), np.zeros(2, np.int64)


def test_a_worker_process_that_dies_is_a_clear_error() -> None:
    from deephealth_deid.errors import DeidError
    from deephealth_deid.train.feed import batches

    with pytest.raises(DeidError, match="fewer workers"):
        for _ in batches(_KillsItsWorker(), 0, 6, 1, workers=1, make_samples=_KillsItsWorker):
            pass


def test_gpu_training_script_stops_at_once_without_a_gpu(tmp_path: Path) -> None:
    """``training/train_gpu.sh`` checks the GPU before training, and names what is wrong."""
    import shutil
    import subprocess
    import sys

    torch = pytest.importorskip("torch", reason="the script trains with PyTorch (pip install torch)")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: the script would start training")
    if shutil.which("bash") is None:
        pytest.skip("the script needs bash")
    script = Path(__file__).resolve().parents[1] / "training" / "train_gpu.sh"
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)}
    run = subprocess.run(
        ["bash", str(script), str(tmp_path / "out"), "1", "deface"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "sees no CUDA GPU" in run.stderr
    assert not (tmp_path / "out" / "deface").exists()  # no training was started


def test_a_deterministic_run_repeats_and_leaves_torch_as_it_was(tmp_path: Path) -> None:
    """``deterministic: true`` (for GPUs) trains as the default on a CPU, and is undone after the run."""
    torch = pytest.importorskip("torch")
    from deephealth_deid.cli import main as cli_main

    def losses(run: str) -> list[dict]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in lines]

    ten = ["--iterations", "10"]  # the loss is logged every 10 iterations
    assert cli_main(["train", str(write_config(tmp_path)), *ten, "--out-dir", str(tmp_path / "a")]) == 0
    path = write_config(tmp_path, deterministic=True)
    torch.manual_seed(12345)  # whatever the caller's state, the run is seeded by the file
    assert cli_main(["train", str(path), *ten, "--out-dir", str(tmp_path / "b")]) == 0
    assert any("loss" in r for r in losses("a")) and losses("a") == losses("b")
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.fixture(scope="module")
def labelled_dataset(tmp_path_factory) -> Path:
    """Three synthetic heads written as a DeepHealth dataset (images and feature labels), as a user's."""
    from deephealth_deid.data.synth_heads import write_synth_dataset

    folder = tmp_path_factory.mktemp("cohort")
    return write_synth_dataset(folder, n=3, spacing_mm=4.0, shape=(48, 48, 48), validation_fraction=0.34)


def _from_dataset(tmp_path: Path, dataset: Path, **changes: object) -> Path:
    data = {**TINY["data"], "synthetic": False, "datasets": [str(dataset)], "validation_size": 0, **changes}
    return write_config(tmp_path, data=data, optim={**TINY["optim"], "iterations": 2})


def test_training_on_a_users_dataset_and_its_checks(tmp_path: Path, labelled_dataset: Path, capsys) -> None:
    pytest.importorskip("torch")
    import yaml

    from deephealth_deid.cli import main as cli_main
    from deephealth_deid.data.dataset import load_dataset

    assert cli_main(["train", str(_from_dataset(tmp_path, labelled_dataset))]) == 0
    assert json.loads((tmp_path / "run" / "state.json").read_text())["iteration"] == 2
    assert "no validation (the last weights)" in capsys.readouterr().err
    # Rerunning the finished run trains nothing and says so.
    assert cli_main(["train", str(_from_dataset(tmp_path, labelled_dataset))]) == 0
    err = capsys.readouterr().err
    assert "already reached iteration 2 of 2" in err and "after 2 iterations" in err
    # Validation on the dataset's own validation split (never trained on), beside synthetic heads.
    mixed = _from_dataset(
        tmp_path, labelled_dataset, synthetic=True, synthetic_fraction=0.5, validation_size=1
    )
    assert cli_main(["train", str(mixed), "--out-dir", str(tmp_path / "r1")]) == 0
    lines = (tmp_path / "r1" / "metrics.jsonl").read_text().splitlines()
    validation = [json.loads(line) for line in lines if "validation_dice" in line][-1]
    assert set(validation["sets"]) == {"synthetic", "datasets"}
    assert "best validation mean Dice" in capsys.readouterr().err
    from deephealth_deid.train.samples import DefaceSamples

    held_out = [Path(s.label) for s in load_dataset(labelled_dataset).split_samples("validation")]
    samples = DefaceSamples(load_config(mixed))
    assert [p for _, p in samples._val_pairs] == held_out and held_out
    assert not set(held_out) & {p for _, p in samples._pairs}
    # Listed datasets with every head synthetic: they would never be used.
    mixed = write_config(tmp_path, data={**TINY["data"], "datasets": [str(labelled_dataset)]})
    with pytest.raises(ConfigError, match="synthetic_fraction"):
        load_config(mixed)
    # An empty training split next to held-out ones: never trained on the held-out subjects.
    raw = yaml.safe_load(labelled_dataset.read_text())
    raw["split"]["training"] = []
    leaky = labelled_dataset.parent / "leaky.yaml"
    leaky.write_text(yaml.safe_dump(raw))
    assert cli_main(["train", str(_from_dataset(tmp_path, leaky)), "--out-dir", str(tmp_path / "r2")]) == 1
    assert "training split is empty" in capsys.readouterr().err
    # A tissue map (1 grey matter, 2 white matter, ...) where feature labels belong.
    ds = load_dataset(labelled_dataset)
    label = Path(ds.samples[0].label)
    import deephealth_deid as dd

    vol = dd.load_volume(label)
    tissue = labelled_dataset.parent / "tissue.nii.gz"
    dd.save_volume(
        vol.with_array(np.where(np.arange(vol.array.size).reshape(vol.shape) % 3 == 0, 1, 2)), tissue
    )
    raw = yaml.safe_load(labelled_dataset.read_text())
    for image in raw["images"]:
        image["label"] = "tissue.nii.gz"
    wrong = labelled_dataset.parent / "tissue.yaml"
    wrong.write_text(yaml.safe_dump(raw))
    assert cli_main(["train", str(_from_dataset(tmp_path, wrong)), "--out-dir", str(tmp_path / "r3")]) == 1
    assert "tissue or parcellation" in capsys.readouterr().err


def test_dataset_images_are_read_once_and_kept_on_the_grid_within_the_cache_budget(
    tmp_path: Path, labelled_dataset: Path, monkeypatch
) -> None:
    from deephealth_deid.train.samples import DefaceSamples

    reads: list[Path] = []
    load = DefaceSamples._load_pair

    def counting(self, image_path, label_path):
        reads.append(image_path)
        return load(self, image_path, label_path)

    monkeypatch.setattr(DefaceSamples, "_load_pair", counting)
    kept = DefaceSamples(load_config(_from_dataset(tmp_path, labelled_dataset)))
    n_pairs = len(kept._pairs)
    draws = [kept.training(i) for i in range(12)]
    assert n_pairs >= 2 and len(reads) <= n_pairs  # each image read once, however often drawn
    assert kept._store.used <= 1024 * 2**20 and len(kept._store._items) == len(set(reads))
    reads.clear()
    uncached = DefaceSamples(load_config(_from_dataset(tmp_path, labelled_dataset, cache_mb=0)))
    for i, (x, y) in enumerate(draws):  # the same samples as reading every time
        x2, y2 = uncached.training(i)
        assert np.array_equal(x, x2) and np.array_equal(y, y2)
    heads = len({i // uncached.config.data.patches_per_head for i in range(12)})
    assert len(reads) == heads and heads > n_pairs and uncached._store.used == 0  # one read per head drawn
    with pytest.raises(ConfigError, match="cache_mb"):
        load_config(_from_dataset(tmp_path, labelled_dataset, cache_mb=-1))


def test_the_store_keeps_the_most_recent_values_within_its_budget() -> None:
    from deephealth_deid.train.samples import _Store

    made: list[int] = []

    def make(k: int):
        made.append(k)
        return (np.zeros(100, np.uint8), np.zeros(50, np.uint8))  # 150 bytes

    store = _Store(400)  # room for two
    for k in (0, 1, 0, 2, 0, 1):
        store.get(k, lambda k=k: make(k))
    assert made == [0, 1, 2, 1]  # 1 went first when 2 came (0 had been drawn since)
    assert store.used == 300 and list(store._items) == [0, 1]
    big = _Store(100)  # a value larger than the budget is returned, not kept
    assert big.get(5, lambda: make(5))[0].size == 100 and big.used == 0


def test_label_maps_that_do_not_lie_on_their_images_are_refused(labelled_dataset: Path) -> None:
    from dataclasses import replace

    import deephealth_deid as dd
    from deephealth_deid.data.dataset import load_dataset
    from deephealth_deid.errors import DatasetError
    from deephealth_deid.train.samples import check_label_grid

    sample = load_dataset(labelled_dataset).samples[0]
    image, labels = dd.load_volume(sample.location), dd.load_volume(sample.label)
    check_label_grid(image, labels, "ok")  # the written pair
    # Saved without the image's header (identity affine), cropped on the same affine, shifted away.
    with pytest.raises(DatasetError, match="another affine"):
        check_label_grid(image, replace(labels, affine=np.eye(4)), "eye")
    with pytest.raises(DatasetError, match="differs from its image"):
        check_label_grid(image, replace(labels, array=labels.array[:40, :40, :40]), "crop")
    far = labels.affine.copy()
    far[:3, 3] += 500.0
    with pytest.raises(DatasetError, match="outside its image's field of view"):
        check_label_grid(image, replace(labels, array=labels.array[:47], affine=far), "far")
    # Labels on another grid that covers the image are fine (read through their own header).
    finer = labels.affine.copy()
    finer[:3, :3] /= 2.0
    check_label_grid(
        image,
        replace(labels, array=labels.array.repeat(2, 0).repeat(2, 1).repeat(2, 2), affine=finer),
        "finer",
    )


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"validate_every": 0}, "validate_every"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
        ({"optim": {"lr": -1}}, "optim.lr"),
        ({"threads": -2}, "threads"),
        ({"optim": {"class_weights": [-1, 1, 1, 1, 1]}}, "optim.class_weights"),
        ({"data": {"patch": ["16", 16, 16]}}, "data.patch"),
        ({"optim": {"lr_steps": [[1, "a"]]}}, "optim.lr_steps"),
        ({"data": {"datasets": [123]}}, "data.datasets"),
        ({"time_budget_min": "5"}, "time_budget_min"),
        ({"time_budget_min": -3}, "time_budget_min"),
        ({"seed": 1.5}, "seed"),
        ({"optim": {"iterations": 2.5}}, "optim.iterations"),
    ],
)
def test_bad_training_values_are_config_errors_naming_the_key(
    tmp_path: Path, changes: dict, key: str
) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write_config(tmp_path, **changes))


def test_resuming_with_another_network_is_refused_before_the_run_folder_changes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from deephealth_deid.cli import main as cli_main
    from deephealth_deid.train import train

    assert cli_main(["train", str(write_config(tmp_path))]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    wider = write_config(tmp_path, widths=[4, 8, 16], grid={"spacing_mm": 6.0, "shape": [40, 48, 48]})
    with pytest.raises(ConfigError, match="widths"):
        train(load_config(wider))
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == before
