"""Tests of the DeepHealth dataset YAML layer, folder ingest and ``deid dataset``."""

from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from deephealth_deid.cli import main as deid_main
from deephealth_deid.cli.dataset import main as dataset_main
from deephealth_deid.data import (
    Case,
    Dataset,
    Sample,
    Split,
    build_dataset,
    check_files,
    dataset_from_cases,
    find_bids_cases,
    find_flat_cases,
    load_dataset,
    missing_files,
    save_dataset,
    split_subjects,
)
from deephealth_deid.errors import DatasetError, InputNotFoundError, OutputExistsError

# --------------------------------------------------------------------------- helpers


def write_nifti(path: Path, value: int = 0) -> Path:
    """A real, tiny NIfTI file (2x2x2 uint8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), value, np.uint8), np.eye(4)), path)
    return path


def make_bids(root: Path, subjects: int = 5, sessions: int = 2) -> Path:
    """``sub-XX/[ses-Y/]anat/`` with a T1w image and a dseg label map each."""
    for s in range(1, subjects + 1):
        sub = f"sub-{s:02d}"
        for ses in range(1, sessions + 1) if sessions else [None]:
            folder = root / sub / (f"ses-{ses}" if ses else "") / "anat"
            prefix = f"{sub}_ses-{ses}" if ses else sub
            write_nifti(folder / f"{prefix}_T1w.nii.gz", 1)
            write_nifti(folder / f"{prefix}_dseg.nii.gz", 2)
    return root


def make_oasis(root: Path, sessions: dict[int, int]) -> Path:
    """OASIS-style flat folder: ``OAS1_XXXX_MRn_t1.nii.gz`` and ``..._seg.nii.gz``."""
    for subject, n in sessions.items():
        for mr in range(1, n + 1):
            write_nifti(root / f"OAS1_{subject:04d}_MR{mr}_t1.nii.gz", 1)
            write_nifti(root / f"OAS1_{subject:04d}_MR{mr}_seg.nii.gz", 2)
    return root


OASIS_OPTIONS = {
    "image_pattern": "{id}_t1.nii.gz",
    "label_pattern": "{id}_seg.nii.gz",
    "subject_regex": r"OAS1_\d+",
}


def subjects_per_split(ds: Dataset, subject_of: dict[Path, str]) -> dict[str, set[str]]:
    return {name: {subject_of[ds.samples[i].location] for i in idx} for name, idx in ds.split.items()}


@pytest.fixture(autouse=True)
def _restore_package_logger() -> Iterator[None]:
    """The CLI attaches a handler to the package logger; keep tests independent of that."""
    logger = logging.getLogger("deephealth_deid")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.fixture
def seg_dataset(tmp_path: Path) -> tuple[Dataset, Path]:
    """A segmentation dataset of 4 real files under ``tmp_path/data``."""
    data = tmp_path / "data"
    samples = tuple(
        Sample(write_nifti(data / f"c{i}_image.nii.gz"), label=write_nifti(data / f"c{i}_label.nii.gz"))
        for i in range(4)
    )
    ds = Dataset(
        "heads", samples, description="four heads", split=Split(training=(0, 1), validation=(2,), test=(3,))
    )
    return ds, data


# --------------------------------------------------------------------------- YAML round trip and paths


def test_round_trip_segmentation(seg_dataset: tuple[Dataset, Path]) -> None:
    ds, data = seg_dataset
    out = save_dataset(ds, data / "data.yaml")
    again = load_dataset(out, check_files=True)
    assert again == ds
    # saved again elsewhere, then loaded: still the same files
    (data.parent / "elsewhere").mkdir()
    assert load_dataset(save_dataset(again, data.parent / "elsewhere" / "d.yaml")) == ds
    # paths in the file are relative to its folder
    text = out.read_text()
    assert "location: c0_image.nii.gz" in text
    assert str(data) not in text


def test_round_trip_keeps_classification_values_and_channels(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text(
        "name: pets\n"
        "description: a classification set\n"
        "classes: [cat, dog]\n"
        "features: [age, site]\n"
        "images:\n"
        "  - location: a.png\n"
        "    label: dog\n"
        "    values: {age: 3, site: north}\n"
        "  - location: [b_r.png, b_g.png]\n"
        "    label: [0, dog]\n"
        "  - location: c.png\n"
        "    label: 0\n"
        "    values: [1.5, null]\n"
        "split:\n"
        "  training: [0, 1]\n"
        "  test: [2]\n"
    )
    ds = load_dataset(tmp_path / "data.yaml")
    assert ds.task == "classification"
    assert ds.samples[0].class_labels == (1,)
    assert ds.samples[0].values == {"age": 3, "site": "north"}
    assert ds.samples[1].locations == (tmp_path / "b_r.png", tmp_path / "b_g.png")
    assert ds.samples[1].class_labels == (0, 1)
    assert ds.samples[2].values == (1.5, None)
    assert ds.split.validation == ()
    (tmp_path / "sub").mkdir()
    saved = save_dataset(ds, tmp_path / "sub" / "copy.yaml")
    assert load_dataset(saved) == ds
    raw = yaml.safe_load(saved.read_text())
    assert raw["classes"] == ["cat", "dog"]
    assert raw["images"][0]["label"] == "dog"  # class names, as ECVL writes them
    assert raw["images"][1]["location"] == ["../b_r.png", "../b_g.png"]


def test_relative_paths_resolve_against_the_yaml_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ds"
    folder.mkdir()
    other = write_nifti(tmp_path / "other" / "b.nii.gz")
    (folder / "data.yaml").write_text(
        "name: x\n"
        "images:\n"
        "  - location: img/a.nii.gz\n"
        "    label: lab/a.nii.gz\n"
        "  - location: ../other/b.nii.gz\n"
        f"  - {tmp_path / 'abs' / 'c.nii.gz'}\n"
    )
    monkeypatch.chdir(tmp_path / "other")  # the working folder must not matter
    ds = load_dataset(folder / "data.yaml")
    assert ds.samples[0].location == folder / "img" / "a.nii.gz"
    assert ds.samples[0].label == folder / "lab" / "a.nii.gz"
    assert ds.samples[1].location == other
    assert ds.samples[2].location == tmp_path / "abs" / "c.nii.gz"
    assert ds.samples[2].label is None
    assert ds.name == "x" and ds.description == ""


def test_default_name_is_the_file_stem(tmp_path: Path) -> None:
    (tmp_path / "oasis.yaml").write_text("images: [a.nii.gz]\n")
    assert load_dataset(tmp_path / "oasis.yaml").name == "oasis"


def test_written_yaml_has_only_the_keys_ecvl_reads(seg_dataset: tuple[Dataset, Path]) -> None:
    ds, data = seg_dataset
    raw = yaml.safe_load(save_dataset(ds, data / "data.yaml").read_text())
    assert list(raw) == ["name", "description", "images", "split"]  # no classes: segmentation
    assert all(set(item) == {"location", "label"} for item in raw["images"])
    assert all(isinstance(item["location"], str) for item in raw["images"])
    assert list(raw["split"]) == ["training", "validation", "test"]
    assert raw["split"] == {"training": [0, 1], "validation": [2], "test": [3]}


def test_save_refuses_to_overwrite_and_leaves_the_file(seg_dataset: tuple[Dataset, Path]) -> None:
    ds, data = seg_dataset
    target = data / "data.yaml"
    target.write_text("keep me\n")
    with pytest.raises(OutputExistsError, match="already exists"):
        save_dataset(ds, target)
    assert target.read_text() == "keep me\n"
    save_dataset(ds, target, overwrite=True)
    assert load_dataset(target) == ds
    assert [p.name for p in data.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_saved_file_is_readable_by_others_as_umask_allows(seg_dataset: tuple[Dataset, Path]) -> None:
    ds, data = seg_dataset
    umask = os.umask(0)
    os.umask(umask)
    out = save_dataset(ds, data / "data.yaml")
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


# --------------------------------------------------------------------------- missing files


def test_missing_files_are_all_listed(seg_dataset: tuple[Dataset, Path]) -> None:
    ds, data = seg_dataset
    path = save_dataset(ds, data / "data.yaml")
    gone = [data / "c0_image.nii.gz", data / "c2_label.nii.gz", data / "c3_image.nii.gz"]
    for p in gone:
        p.unlink()
    assert missing_files(ds) == gone
    with pytest.raises(DatasetError) as info:
        load_dataset(path, check_files=True)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "3 of 8 files are missing" in message
    for p in gone:
        assert str(p) in message
    assert load_dataset(path) == ds  # without check_files, loading still works
    (data / "c0_image.nii.gz").mkdir()  # a folder where a file belongs
    with pytest.raises(DatasetError, match=r"c0_image\.nii\.gz \(a folder\)"):
        load_dataset(path, check_files=True)


def test_missing_files_message_is_capped_with_a_count(tmp_path: Path) -> None:
    ds = Dataset("many", tuple(Sample(tmp_path / f"img{i:02d}.nii.gz") for i in range(30)))
    assert len(missing_files(ds)) == 30
    with pytest.raises(DatasetError) as info:
        check_files(ds)
    message = str(info.value)
    assert "30 of 30 files are missing" in message
    assert "img19.nii.gz" in message and "img20.nii.gz" not in message
    assert "... and 10 more" in message


# --------------------------------------------------------------------------- malformed YAML

BAD_FILES = [
    (
        "name: x\nimages: [a, b]\nsplit: {training: [0, 17]}\n",
        "split.training[1]: index 17 is outside the 2 images",
    ),
    ("name: x\nimagez: [a]\n", "imagez: unknown key"),
    ("name: x\n", "images: missing"),
    ("name: x\nimages: []\n", "images: the list is empty"),
    ("name: x\nimages:\n  - location: a\n    lable: b\n", "images[0].lable: unknown key"),
    ("name: x\nimages:\n  - label: b\n", "images[0].location: missing"),
    ("name: x\nimages: [a, 3]\n", "images[1]: expected a path"),
    (
        "name: x\nimages: [a, b]\nsplit: {training: [0], test: [0]}\n",
        "split.test[0]: image 0 is also in split.training",
    ),
    ("name: x\nimages: [a, b]\nsplit: {training: [1, 1]}\n", "split.training[1]: index 1 is listed twice"),
    ("name: x\nimages: [a, b]\nsplit: {val: [0]}\n", "split.val: unknown split"),
    ("name: x\nimages: [a, b]\nsplit: {training: [zero]}\n", "split.training[0]: expected an image index"),
    ("name: x\nimages: [a, b]\nsplit: {test: }\n", "split.test: expected a list of image indices"),
    ("name: x\nimages: [a, ./a]\n", "images[1]: the same image as images[0]"),
    ("name: x\nimages: [a]\nimages: [b]\n", "duplicate key 'images'"),
    (
        "name: x\nclasses: [cat]\nimages:\n  - {location: a, label: dgo}\n",
        "images[0].label: 'dgo' is not one of",
    ),
    (
        "name: x\nclasses: [cat]\nimages:\n  - {location: a, label: 4}\n",
        "images[0].label: class index 4 is outside",
    ),
    (
        "name: x\nimages:\n  - {location: a, values: {age: 3}}\n",
        "images[0].values: a mapping of values needs",
    ),
    (
        "name: x\nimages:\n  - {location: a, label: b}\n  - c\nsplit: {training: [0, 1]}\n",
        "split.training: images 1",
    ),
    ("- a\n- b\n", "the top level must be a mapping"),
    ("name: x\nimages: [a\n", "not valid YAML: line"),
    ("name: [x]\nimages: [a]\n", "name: expected a text"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES, ids=[e for _, e in BAD_FILES])
def test_malformed_dataset_names_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "data.yaml"
    path.write_text(text)
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        load_dataset(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(tmp_path / "empty.yaml")


def test_dataset_built_in_code_is_checked_too(tmp_path: Path) -> None:
    samples = (Sample(tmp_path / "a.nii.gz"), Sample(tmp_path / "b.nii.gz"))
    with pytest.raises(DatasetError, match=r"split\.validation\[0\]: image 1 is also in split\.training"):
        Dataset("x", samples, split=Split(training=(0, 1), validation=(1,)))
    with pytest.raises(DatasetError, match=r"images\[1\]: the same image as images\[0\]"):
        Dataset("x", (samples[0], Sample(tmp_path / "a.nii.gz")))
    with pytest.raises(DatasetError, match="label map or class labels, not both"):
        Sample(tmp_path / "a.nii.gz", label=tmp_path / "l.nii.gz", class_labels=(1,))


# --------------------------------------------------------------------------- BIDS


@pytest.mark.parametrize("sessions", [0, 2])
def test_bids_pairs_each_t1w_with_its_dseg(tmp_path: Path, sessions: int) -> None:
    root = make_bids(tmp_path / "bids", subjects=3, sessions=sessions)
    cases = find_bids_cases(root)
    assert len(cases) == 3 * max(sessions, 1)
    assert [c.subject for c in cases] == sorted(
        f"sub-{s:02d}" for s in range(1, 4) for _ in range(max(sessions, 1))
    )
    for c in cases:
        assert c.image.name.endswith("_T1w.nii.gz")
        assert c.label == c.image.with_name(c.image.name.replace("_T1w", "_dseg"))
        assert c.image.parent.name == "anat"
        assert c.image.name.startswith(c.subject + "_")


def test_bids_finds_labels_under_derivatives_with_desc(tmp_path: Path) -> None:
    root = tmp_path / "bids"
    write_nifti(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    write_nifti(root / "sub-02" / "ses-a" / "anat" / "sub-02_ses-a_T1w.nii")  # plain .nii too
    lab1 = write_nifti(root / "derivatives" / "faces" / "sub-01" / "anat" / "sub-01_desc-face_dseg.nii.gz")
    lab2 = write_nifti(
        root / "derivatives" / "faces" / "sub-02" / "ses-a" / "anat" / "sub-02_ses-a_dseg.nii.gz"
    )
    write_nifti(root / "derivatives" / "faces" / "sub-01" / "anat" / "sub-01_acq-x_dseg.nii.gz")  # not ours
    write_nifti(
        root / "derivatives" / "faces" / "sub-01" / "anat" / "sub-01_space-MNI152_dseg.nii.gz"
    )  # template
    cases = find_bids_cases(root)
    assert [(c.subject, c.label) for c in cases] == [("sub-01", lab1), ("sub-02", lab2)]


def test_bids_accepts_a_native_space_label_and_a_not_yet_fetched_symlink(tmp_path: Path) -> None:
    root = tmp_path / "bids"
    anat = root / "sub-01" / "anat"
    write_nifti(anat / "sub-01_T1w.nii.gz")
    label = write_nifti(anat / "sub-01_space-orig_dseg.nii.gz")
    (root / "sub-02" / "anat").mkdir(parents=True)
    (root / "sub-02" / "anat" / "sub-02_T1w.nii.gz").symlink_to(tmp_path / "annex" / "missing-content")
    (root / "sub-02" / "anat" / "sub-02_dseg.nii.gz").symlink_to(tmp_path / "annex" / "missing-label")
    cases = find_bids_cases(root)
    assert [(c.subject, c.label) for c in cases] == [
        ("sub-01", label),
        ("sub-02", cases[1].image.parent / "sub-02_dseg.nii.gz"),
    ]
    ds = dataset_from_cases(cases, name="x")
    assert missing_files(ds) == [cases[1].image, cases[1].label]  # reported, not silently dropped


def test_bids_several_candidate_labels_are_an_error_naming_them(tmp_path: Path) -> None:
    root = tmp_path / "bids"
    write_nifti(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    write_nifti(root / "sub-01" / "anat" / "sub-01_desc-aseg_dseg.nii.gz")
    write_nifti(root / "sub-01" / "anat" / "sub-01_desc-face_dseg.nii.gz")
    with pytest.raises(DatasetError, match="several label maps") as info:
        find_bids_cases(root)
    assert "sub-01_desc-aseg_dseg.nii.gz" in str(info.value) and "sub-01_desc-face_dseg.nii.gz" in str(
        info.value
    )
    (case,) = find_bids_cases(root, label_suffix="_desc-face_dseg")
    assert case.label is not None and case.label.name == "sub-01_desc-face_dseg.nii.gz"


def test_bids_custom_label_suffix(tmp_path: Path) -> None:
    root = tmp_path / "bids"
    write_nifti(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    mask = write_nifti(root / "sub-01" / "anat" / "sub-01_mask.nii.gz")
    with pytest.raises(DatasetError, match="no label map"):
        find_bids_cases(root)
    assert find_bids_cases(root, label_suffix="_mask") == [
        Case("sub-01", mask.with_name("sub-01_T1w.nii.gz"), mask)
    ]


def test_bids_unlabelled_images_error_or_warning_list_them_all(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_bids(tmp_path / "bids", subjects=4, sessions=1)
    gone = [root / f"sub-0{s}" / "ses-1" / "anat" / f"sub-0{s}_ses-1_dseg.nii.gz" for s in (1, 3)]
    for p in gone:
        p.unlink()
    with pytest.raises(DatasetError, match="2 of 4 images have no label map") as info:
        find_bids_cases(root)
    for p in gone:
        assert p.name.replace("_dseg", "_T1w") in str(info.value)
    caplog.set_level(logging.WARNING, logger="deephealth_deid")
    cases = find_bids_cases(root, require_labels=False)
    assert [c.subject for c in cases] == ["sub-02", "sub-04"]
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "sub-01_ses-1_T1w.nii.gz" in warning and "sub-03_ses-1_T1w.nii.gz" in warning


def test_not_a_bids_folder(tmp_path: Path) -> None:
    (tmp_path / "sub-01").mkdir()
    with pytest.raises(DatasetError, match="no sub-"):
        find_bids_cases(tmp_path)
    with pytest.raises(InputNotFoundError):
        find_bids_cases(tmp_path / "missing")


# --------------------------------------------------------------------------- flat


def test_flat_default_patterns(tmp_path: Path) -> None:
    for i in range(3):
        write_nifti(tmp_path / f"case{i}_image.nii.gz")
        write_nifti(tmp_path / f"case{i}_label.nii.gz")
    write_nifti(tmp_path / "notes_other.nii.gz")  # matches neither: ignored
    cases = find_flat_cases(tmp_path)
    assert [(c.subject, c.image.name, c.label.name if c.label else None) for c in cases] == [
        (f"case{i}", f"case{i}_image.nii.gz", f"case{i}_label.nii.gz") for i in range(3)
    ]


def test_flat_oasis_sessions_share_a_subject(tmp_path: Path) -> None:
    root = make_oasis(tmp_path, {1: 2, 2: 1, 7: 3})
    cases = find_flat_cases(root, **OASIS_OPTIONS)
    assert [c.subject for c in cases] == ["OAS1_0001"] * 2 + ["OAS1_0002"] + ["OAS1_0007"] * 3
    assert all(c.label == c.image.with_name(c.image.name.replace("_t1", "_seg")) for c in cases)
    # a named group picks the subject out of a longer match
    named = find_flat_cases(root, **{**OASIS_OPTIONS, "subject_regex": r"(?P<subject>OAS1_\d+)_MR\d"})
    assert [c.subject for c in named] == [c.subject for c in cases]


def test_flat_patterns_in_subfolders_and_overlapping_patterns(tmp_path: Path) -> None:
    for cid in ("a", "b"):
        write_nifti(tmp_path / "images" / f"{cid}_0000.nii.gz")
        write_nifti(tmp_path / "labels" / f"{cid}.nii.gz")
    cases = find_flat_cases(
        tmp_path, image_pattern="images/{id}_0000.nii.gz", label_pattern="labels/{id}.nii.gz"
    )
    assert [(c.subject, c.image.parent.name, c.label.parent.name if c.label else None) for c in cases] == [
        ("a", "images", "labels"),
        ("b", "images", "labels"),
    ]
    # '{id}.nii.gz' also matches the labels '{id}_seg.nii.gz': they still pair up
    other = tmp_path / "other"
    for cid in ("x", "y"):
        write_nifti(other / f"{cid}.nii.gz")
        write_nifti(other / f"{cid}_seg.nii.gz")
    cases = find_flat_cases(other, image_pattern="{id}.nii.gz", label_pattern="{id}_seg.nii.gz")
    assert [(c.image.name, c.label.name if c.label else None) for c in cases] == [
        ("x.nii.gz", "x_seg.nii.gz"),
        ("y.nii.gz", "y_seg.nii.gz"),
    ]


def test_flat_errors(tmp_path: Path) -> None:
    make_oasis(tmp_path, {1: 1})
    with pytest.raises(DatasetError, match="no files match the image pattern"):
        find_flat_cases(tmp_path)
    with pytest.raises(DatasetError, match=r"mark the part .* with \{id\}"):
        find_flat_cases(tmp_path, image_pattern="*_*_t1.nii.gz", label_pattern="{id}_seg.nii.gz")
    with pytest.raises(DatasetError, match="finds no subject in 1 of 1 ids"):
        find_flat_cases(tmp_path, **{**OASIS_OPTIONS, "subject_regex": r"ADNI_\d+"})
    with pytest.raises(DatasetError, match="not a valid regular expression"):
        find_flat_cases(tmp_path, **{**OASIS_OPTIONS, "subject_regex": "("})
    with pytest.raises(DatasetError, match="several images"):
        find_flat_cases(tmp_path, image_pattern="OAS1_{id}_*.nii.gz", label_pattern="{id}_label.nii.gz")


# --------------------------------------------------------------------------- split by subject


def test_split_never_puts_a_subject_in_two_splits(tmp_path: Path) -> None:
    root = make_oasis(tmp_path, {s: 1 + s % 3 for s in range(1, 13)})
    cases = find_flat_cases(root, **OASIS_OPTIONS)
    subject_of = {c.image: c.subject for c in cases}
    for seed in range(10):
        ds = dataset_from_cases(cases, name="oasis", seed=seed)
        per_split = subjects_per_split(ds, subject_of)
        assert per_split["training"].isdisjoint(per_split["validation"])
        assert per_split["training"].isdisjoint(per_split["test"])
        assert per_split["validation"].isdisjoint(per_split["test"])
        assert set().union(*per_split.values()) == set(subject_of.values())
        assert all(per_split[name] for name in per_split)  # none empty
        assert sorted(i for _, idx in ds.split.items() for i in idx) == list(range(len(cases)))


def test_split_is_deterministic_and_seeded() -> None:
    subjects = [f"sub-{i:02d}" for i in range(20)]
    first = split_subjects(subjects, seed=3)
    assert split_subjects(list(reversed(subjects)) + subjects[:5], seed=3) == first  # order, repeats
    assert [len(first[k]) for k in ("training", "validation", "test")] == [14, 3, 3]
    assert split_subjects(subjects, seed=4) != first


@pytest.mark.parametrize(
    "fractions", [(0.7, 0.15, 0.15), (0.1, 0.1, 0.8), (0.98, 0.01, 0.01), (0.5, 0.5, 0.0)]
)
def test_split_keeps_every_wanted_split_non_empty(fractions: tuple[float, float, float]) -> None:
    wanted = [name for name, f in zip(("training", "validation", "test"), fractions, strict=True) if f > 0]
    for n in range(1, 40):
        split = split_subjects([f"s{i}" for i in range(n)], fractions=fractions, seed=n)
        assert sorted(s for v in split.values() for s in v) == sorted(f"s{i}" for i in range(n))
        assert [name for name in wanted if split[name]] == wanted[:n]  # training first, then validation
        for name, f in zip(("training", "validation", "test"), fractions, strict=True):
            assert abs(len(split[name]) - f * n) < 3  # rounding, plus at most two subjects moved


def test_split_fractions() -> None:
    three = split_subjects(["a", "b", "c"])
    assert sorted(len(v) for v in three.values()) == [1, 1, 1]
    two = split_subjects(["a", "b"])
    assert sum(len(v) for v in two.values()) == 2 and len(two["training"]) == 1
    no_test = split_subjects([f"s{i}" for i in range(10)], fractions=(0.8, 0.2, 0.0))
    assert [len(no_test[k]) for k in ("training", "validation", "test")] == [8, 2, 0]
    with pytest.raises(DatasetError, match="add up to 1"):
        split_subjects(["a"], fractions=(0.7, 0.15, 0.5))
    with pytest.raises(DatasetError, match="give three"):
        split_subjects(["a"], fractions=(0.7, 0.3))


def test_build_ignores_filesystem_listing_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bids = make_bids(tmp_path / "bids", subjects=6, sessions=2)
    flat = make_oasis(tmp_path / "flat", {s: 2 for s in range(1, 7)})
    expected_bids = build_dataset(bids, seed=5)
    expected_flat = build_dataset(flat, seed=5, **OASIS_OPTIONS)

    real_listdir, real_iterdir, real_walk = os.listdir, Path.iterdir, os.walk

    def walk_reversed(
        top: object, *args: object, **kwargs: object
    ) -> Iterator[tuple[str, list[str], list[str]]]:
        for folder, dirs, files in real_walk(top, *args, **kwargs):  # type: ignore[call-overload]
            dirs.reverse()
            yield folder, dirs, files[::-1]

    monkeypatch.setattr(os, "listdir", lambda p=".": real_listdir(p)[::-1])
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(list(real_iterdir(self))[::-1]))
    monkeypatch.setattr(os, "walk", walk_reversed)
    assert build_dataset(bids, seed=5) == expected_bids
    assert build_dataset(flat, seed=5, **OASIS_OPTIONS) == expected_flat


def test_build_dataset_bids_keeps_sessions_together(tmp_path: Path) -> None:
    root = make_bids(tmp_path / "bids", subjects=7, sessions=2)
    ds = build_dataset(root)
    assert ds.name == "bids" and ds.task == "segmentation" and len(ds) == 14
    subject_of = {s.location: s.location.name.split("_")[0] for s in ds.samples}
    per_split = subjects_per_split(ds, subject_of)
    assert sum(len(v) for v in per_split.values()) == 7  # every subject in exactly one split
    assert {k: len(v) for k, v in per_split.items()} == {"training": 5, "validation": 1, "test": 1}
    with pytest.raises(DatasetError, match="flat layout only"):
        build_dataset(root, layout="bids", image_pattern="{id}.nii.gz")


# --------------------------------------------------------------------------- CLI


def test_cli_build_writes_the_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_bids(tmp_path / "bids", subjects=5, sessions=2)
    out = root / "data.yaml"
    assert dataset_main(["build", str(root), str(out)]) == 0
    assert f"wrote {out}: 10 images" in capsys.readouterr().out
    ds = load_dataset(out, check_files=True)
    assert len(ds) == 10 and ds.counts()["unassigned"] == 0
    raw = yaml.safe_load(out.read_text())
    assert set(raw) == {"name", "description", "images", "split"}
    assert raw["images"][0] == {
        "location": "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz",
        "label": "sub-01/ses-1/anat/sub-01_ses-1_dseg.nii.gz",
    }


def test_cli_build_flat_with_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_oasis(tmp_path / "oasis", {s: 2 for s in range(1, 11)})
    out = tmp_path / "oasis.yaml"
    argv = [
        "build",
        str(root),
        str(out),
        "--image-pattern",
        "{id}_t1.nii.gz",
        "--label-pattern",
        "{id}_seg.nii.gz",
    ]
    argv += [
        "--subject-regex",
        "OAS1_[0-9]+",
        "--split",
        "0.6",
        "0.2",
        "0.2",
        "--seed",
        "7",
        "--name",
        "oasis1",
    ]
    assert deid_main(["dataset", *argv]) == 0
    ds = load_dataset(out)
    assert ds.name == "oasis1"
    assert [len(idx) for _, idx in ds.split.items()] == [12, 4, 4]  # 6/2/2 subjects of 2 sessions
    subject_of = {s.location: s.location.name[:9] for s in ds.samples}
    per_split = subjects_per_split(ds, subject_of)
    assert sum(len(v) for v in per_split.values()) == 10
    assert yaml.safe_load(out.read_text())["images"][0]["location"] == "oasis/OAS1_0001_MR1_t1.nii.gz"


def test_cli_build_refuses_existing_output_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_bids(tmp_path / "bids", subjects=3, sessions=1)
    out = tmp_path / "data.yaml"
    out.write_text("old content\n")
    assert dataset_main(["build", str(root), str(out)]) == 1
    assert "--force" in capsys.readouterr().err
    assert out.read_text() == "old content\n"
    assert dataset_main(["build", str(root), str(out), "--force"]) == 0
    assert len(load_dataset(out)) == 3


def test_cli_build_errors_exit_1_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_bids(tmp_path / "bids", subjects=3, sessions=1)
    (root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_dseg.nii.gz").unlink()
    out = tmp_path / "data.yaml"
    assert dataset_main(["build", str(root), str(out)]) == 1
    err = capsys.readouterr().err
    assert "sub-02_ses-1_T1w.nii.gz" in err and "--allow-unlabelled" in err
    assert not out.exists()
    assert dataset_main(["build", str(root), str(out), "--allow-unlabelled", "-q"]) == 0
    assert len(load_dataset(out)) == 2
    assert dataset_main(["build", str(root), str(tmp_path / "x.yaml"), "--split", "0.5", "0.5", "0.5"]) == 1
    assert "add up to 1" in capsys.readouterr().err
    assert dataset_main(["build", str(root)]) == 2  # usage
    assert dataset_main([]) == 2


def test_cli_check_lists_every_missing_file(
    seg_dataset: tuple[Dataset, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ds, data = seg_dataset
    path = save_dataset(ds, data / "data.yaml")
    assert dataset_main(["check", str(path)]) == 0
    assert "OK: 4 images, all 8 files present" in capsys.readouterr().out
    gone = [data / "c1_label.nii.gz", data / "c3_image.nii.gz"]
    for p in gone:
        p.unlink()
    assert dataset_main(["check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [str(p) for p in gone]
    assert "2 of 8 files are missing" in captured.err


def test_cli_check_and_info_on_malformed_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.yaml"
    path.write_text("name: x\nimages: [a, b]\nsplit: {training: [0, 5]}\n")
    for command in ("check", "info"):
        assert dataset_main([command, str(path)]) == 1
        err = capsys.readouterr().err
        assert "split.training[1]: index 5 is outside the 2 images" in err
        assert err.startswith(f"deid dataset {command}: error: ")  # each subcommand names itself
    assert dataset_main(["check", str(tmp_path / "missing.yaml")]) == 1
    assert "no such dataset file" in capsys.readouterr().err


def test_cli_info_counts_per_split(
    seg_dataset: tuple[Dataset, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ds, data = seg_dataset
    path = save_dataset(ds, data / "data.yaml")
    assert dataset_main(["info", str(path)]) == 0
    fields = dict(re.split(r":\s+", line, maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert fields["name"] == "heads"
    assert fields["task"] == "segmentation"
    assert fields["images"] == "4 (4 labelled)"
    assert (fields["training"], fields["validation"], fields["test"]) == ("2", "1", "1")


# --------------------------------------------------------------------------- package


def test_importing_the_data_package_stays_light() -> None:
    code = "import sys, deephealth_deid.data, deephealth_deid.cli.dataset; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    "args",
    [
        ["-n", "0"],
        ["--spacing", "0"],
        ["--spacing", "-1"],
        ["--validation-fraction", "2"],
        ["--shape", "4", "4", "4"],
    ],
)
def test_synth_refuses_bad_values_as_usage_errors_and_writes_nothing(tmp_path, args, capsys):
    from deephealth_deid.cli import main

    assert main(["dataset", "synth", str(tmp_path / "out"), *args]) == 2
    assert "error" in capsys.readouterr().err and not (tmp_path / "out").exists()
