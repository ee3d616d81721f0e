"""Training fed through ECVL: the same arrays as the built-in reader, and a run that completes.

Needs ``pyecvl`` (skips with the reason elsewhere). The dataset is a small
DeepHealth YAML dataset of synthetic heads written by ``deid dataset synth``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from train_configs import TINY_DEFACE, write_config

from deephealth_deid.errors import ConfigError
from deephealth_deid.train import load_config


def _ecvl_import_error() -> str | None:
    try:
        import pyecvl.ecvl  # noqa: F401
    except Exception as e:  # a broken build counts as not importable
        return f"{type(e).__name__}: {e}"
    return None


def _eddl_import_error() -> str | None:
    try:
        import pyeddl.tensor  # noqa: F401
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


_WHY = _ecvl_import_error()
needs_ecvl = pytest.mark.skipif(_WHY is not None, reason=f"pyecvl does not import here ({_WHY})")
_WHY_EDDL = _eddl_import_error()
needs_eddl_tensors = pytest.mark.skipif(
    _WHY_EDDL is not None, reason=f"DLDataset hands EDDL tensors; pyeddl does not import ({_WHY_EDDL})"
)

# Dataset heads only, no validation heads, three steps.
BASE = {
    **TINY_DEFACE,
    "data": {"synthetic": False, "validation_size": 0, "patch": [16, 16, 16], "patches_per_head": 1},
    "optim": {"iterations": 3, "batch_size": 1, "lr": 0.01},
    "validate_every": 100,
    "checkpoint_every": 100,
}


@pytest.fixture(scope="module")
def heads_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deephealth_deid.cli import main as cli_main

    out = tmp_path_factory.mktemp("ecvl") / "heads"
    args = ["dataset", "synth", str(out), "-n", "3", "--spacing", "6", "--shape", "40", "44", "44"]
    assert cli_main([*args, "--validation-fraction", "0.34"]) == 0
    return out / "dataset.yaml"


def test_reader_must_be_builtin_or_ecvl(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.reader"):
        load_config(write_config(tmp_path, BASE, data={"datasets": ["x.yaml"], "reader": "itk"}))


@pytest.mark.ecvl
@needs_ecvl
def test_ecvl_and_builtin_readers_give_the_same_training_samples(tmp_path: Path, heads_dataset: Path) -> None:
    from deephealth_deid.train.samples import DefaceSamples

    data = {"datasets": [str(heads_dataset)]}
    builtin = DefaceSamples(load_config(write_config(tmp_path, BASE, "a.yaml", data=data)))
    ecvl = DefaceSamples(load_config(write_config(tmp_path, BASE, "b.yaml", data={**data, "reader": "ecvl"})))
    for index in range(3):
        (xa, ya), (xb, yb) = builtin.training(index), ecvl.training(index)
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)


@pytest.mark.ecvl
@pytest.mark.eddl
@needs_ecvl
@needs_eddl_tensors
def test_ecvl_dldataset_reads_the_arrays_our_loader_reads(heads_dataset: Path) -> None:
    """ECVL's own DLDataset on our YAML gives, sample by sample, the arrays load_volume gives."""
    import pyecvl.ecvl as ecvl

    from deephealth_deid.data.dataset import load_dataset
    from deephealth_deid.io import load_volume

    ds = load_dataset(heads_dataset)
    training = ds.split_samples("training")

    def nothing() -> object:
        return ecvl.SequentialAugmentationContainer([])

    augs = ecvl.DatasetAugmentations([nothing(), nothing(), nothing()])
    d = ecvl.DLDataset(str(heads_dataset), 1, augs, ecvl.ColorType.none, ecvl.ColorType.none, num_workers=1)
    d.SetSplit(ecvl.SplitType.training)
    d.ResetBatch(ecvl.SplitType.training, False)
    d.Start()
    try:
        for _ in range(len(training)):
            samples, x, y = d.GetBatch()
            (sample,) = samples
            image = load_volume(str(sample.location_[0])).array
            label = load_volume(str(sample.label_path_)).array
            # ECVL hands a batch of volumes over as [sample, z, y, x]
            assert np.array_equal(np.array(x)[0], image.transpose(2, 1, 0).astype(np.float32))
            assert np.array_equal(np.array(y)[0], label.transpose(2, 1, 0).astype(np.float32))
    finally:
        d.Stop()


@pytest.mark.ecvl
@needs_ecvl
def test_training_runs_on_ecvl_read_data(tmp_path: Path, heads_dataset: Path) -> None:
    pytest.importorskip("torch")
    from deephealth_deid.cli import main as cli_main

    path = write_config(tmp_path, BASE, data={"datasets": [str(heads_dataset)], "reader": "ecvl"})
    assert cli_main(["train", str(path)]) == 0
    assert json.loads((tmp_path / "run" / "state.json").read_text())["iteration"] == 3


def test_ecvl_augmentations_need_the_ecvl_reader(tmp_path: Path) -> None:
    data = {"datasets": ["x.yaml"], "ecvl_augmentations": "AugMirror p=1"}
    with pytest.raises(ConfigError, match=r"data\.ecvl_augmentations"):
        load_config(write_config(tmp_path, BASE, data=data))


MIRROR = "SequentialAugmentationContainer\n    AugMirror p=1\n    AugGammaContrast gamma=[0.5,1.5]\nend"


@pytest.mark.ecvl
@needs_ecvl
def test_ecvl_augments_image_and_labels_together(heads_dataset: Path) -> None:
    from deephealth_deid.data.dataset import load_dataset
    from deephealth_deid.io import load_volume
    from deephealth_deid.train.ecvl_augment import augment_pair

    sample = load_dataset(heads_dataset).split_samples("training")[0]
    image = load_volume(sample.location, reader="ecvl")
    labels = load_volume(sample.label, reader="ecvl")
    aug_image, aug_labels = augment_pair(image, labels, MIRROR, seed=4)
    # The mirror moves both; the contrast changes the image only; geometry and label values stay.
    assert np.array_equal(aug_labels.array, labels.array[::-1])
    assert not np.array_equal(aug_image.array, image.array[::-1])
    assert np.array_equal(aug_image.array > 0, image.array[::-1] > 0)
    assert np.array_equal(aug_image.affine, image.affine)
    again, _ = augment_pair(image, labels, MIRROR, seed=4)
    assert np.array_equal(again.array, aug_image.array)  # seeded


@pytest.mark.ecvl
@needs_ecvl
def test_training_runs_with_ecvl_augmentations(tmp_path: Path, heads_dataset: Path) -> None:
    pytest.importorskip("torch")
    from deephealth_deid.cli import main as cli_main

    data = {"datasets": [str(heads_dataset)], "reader": "ecvl", "ecvl_augmentations": MIRROR}
    assert cli_main(["train", str(write_config(tmp_path, BASE, data=data))]) == 0
    assert json.loads((tmp_path / "run" / "state.json").read_text())["iteration"] == 3
    bad = {**data, "ecvl_augmentations": "AugNoSuchThing p=1"}
    assert cli_main(["train", str(write_config(tmp_path, BASE, "bad.yaml", data=bad))]) == 1
