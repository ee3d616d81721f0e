"""The shipped defacing model on a real head it never saw, in five variants.

``chris_t1`` (NiiVue demo, BSD-2) with hand-placed landmarks: face-surface points
that must be removed, eyeball centres that must be kept, and probes inside the
brain that must never change. The variants: native 0.88 mm, resampled to
1x1x5 mm, 7 mm axial slices, array axes permuted and flipped, and the head
tilted by 15 degrees.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import ndimage

import deephealth_deid as dd
from deephealth_deid.deface.evaluate import (
    CONTRAST_VARIANTS,
    VARIANTS,
    ball_voxels,
    check_landmarks,
    load_landmarks,
    make_variant,
)

pytest.importorskip("torch", reason="the shipped model runs on the PyTorch engine (pip install torch)")

FACE_LANDMARKS = (
    "left_eye_lid",
    "right_eye_lid",
    "nasion",
    "left_ear",
    "right_ear",
    "nose_dorsum_at_fov_edge",
)


@functools.cache
def _run(head: str, landmarks: str, variant: str):
    vol = dd.load_volume(head)
    marks, threshold = load_landmarks(landmarks)
    var, lms = make_variant(vol, marks, variant)
    out = dd.deface(var)
    return var, out, check_landmarks(var, out.volume, lms, threshold=threshold), lms, threshold


@pytest.fixture(params=VARIANTS)
def case(request, chris_t1):
    return request.param, *_run(
        str(chris_t1), str(chris_t1.parent / "chris_t1_landmarks.json"), request.param
    )


def test_brain_probes_never_change(case):
    variant, _, _out, report, *_ = case
    assert len(report.changed_near_brain) == 4
    assert report.changed_near_brain == dict.fromkeys(report.changed_near_brain, 0), variant


def test_eyeballs_are_kept(case):
    variant, _, _out, report, *_ = case
    assert len(report.unchanged_near_eyeball) == 2
    for name, kept in report.unchanged_near_eyeball.items():
        assert kept >= 0.95, f"{variant} {name}: {kept:.0%}"


@pytest.mark.parametrize("landmark", FACE_LANDMARKS)
def test_face_landmarks_are_removed(case, landmark):
    variant, _, _out, report, *_ = case
    assert landmark in report.changed_near_surface, f"{variant}: {landmark} not in the field of view"
    changed = report.changed_near_surface[landmark]
    assert changed >= 0.8, f"{variant} {landmark}: {changed:.0%} of the tissue within 5 mm changed (< 80%)"


def test_air_in_the_nasal_cavity_is_kept(case):
    """The face fill removes tissue only: the airway behind the nostrils stays as it was.

    Air voxels whose six neighbours are air too: at the cavity's walls, resampled variants
    have partial-volume voxels that are neither.
    """
    variant, before, out, _, marks, threshold = case
    cavity = next(m for m in marks if m.name == "nasal_cavity")
    ball = ball_voxels(before, cavity.xyz, 4.0)
    assert ball is not None, variant
    box, inside = ball
    air = inside & ndimage.binary_erosion(before.array < threshold, border_value=1)[box]
    assert air.sum() > 10, variant
    assert (out.volume.array[box][air] == before.array[box][air]).all(), variant


def test_qc_raises_no_flag(case):
    """Every feature the field of view holds is found, and no label reaches where the brain can be."""
    variant, _, out, _, *_ = case
    assert out.qc.ok, f"{variant}: {out.qc.flags}"


def test_only_masked_voxels_change_and_geometry_is_kept(case):
    variant, before, out, _, *_ = case
    changed = out.volume.array != before.array
    assert changed.any(), variant
    assert (out.mask.array[changed] > 0).all()
    assert out.volume.array.dtype == before.array.dtype
    assert (out.volume.affine == before.affine).all() and (out.mask.affine == before.affine).all()


@pytest.mark.parametrize("variant", ["contrast_sqrt", "contrast_t2like"])
def test_the_head_in_another_contrast_loses_its_face_and_keeps_its_brain_and_eyeballs(chris_t1, variant):
    """The head's tissue contrast remapped (a T2-like fold: dark white matter, bright fluid).

    On the T2-like head the network finds one eye and one ear only; their twins go
    because the side found is mirrored (:mod:`deephealth_deid.deface.symmetry`), and
    the case is flagged. Of the five contrasts of ``CONTRAST_VARIANTS`` these two pass
    with the shipped model (``python benchmarks/eval_deface.py`` reports all five).
    """
    assert variant in CONTRAST_VARIANTS
    _, out, report, *_ = _run(str(chris_t1), str(chris_t1.parent / "chris_t1_landmarks.json"), variant)
    assert report.ok, report.failures
    assert set(report.changed_near_surface) == set(FACE_LANDMARKS)
    assert all(f.endswith("check the mask") for f in out.qc.flags), out.qc.flags


def test_the_same_scan_stored_with_its_axes_permuted_and_flipped_loses_the_same_voxels(chris_t1):
    """Where the conformed grid sits depends on the head, not on how its array is stored."""
    args = (str(chris_t1), str(chris_t1.parent / "chris_t1_landmarks.json"))
    _, native, *_ = _run(*args, "native")
    _, stored, *_ = _run(*args, "permuted_flipped")
    # make_variant's permuted_flipped: axes (2, 0, 1), then axes 0 and 2 reversed
    back = np.transpose(np.flip(stored.mask.array, (0, 2)), np.argsort((2, 0, 1)))
    assert back.shape == native.mask.array.shape
    differ = int((back != native.mask.array).sum())
    assert differ <= 0.001 * int((native.mask.array > 0).sum()), differ  # float rounding at ties only
    assert stored.qc.voxels == pytest.approx(native.qc.voxels, abs=50)


def test_onnxruntime_and_torch_remove_the_same_voxels(chris_t1):
    """``auto`` predicts on ONNX Runtime on a CPU where it is installed: the same output as PyTorch's."""
    why = "needs onnxruntime and onnx (pip install deephealth_deid[onnx])"
    pytest.importorskip("onnxruntime", reason=why)
    pytest.importorskip("onnx", reason=why)
    from deephealth_deid.engines import get_predict_engine

    assert get_predict_engine("auto", device="cpu").name == "onnxruntime"
    assert get_predict_engine("torch", device="cpu").name == "torch"
    vol = dd.load_volume(chris_t1)
    ort = dd.deface(vol, engine="onnxruntime", device="cpu")
    torch = dd.deface(vol, engine="torch", device="cpu")
    assert np.array_equal(ort.mask.array, torch.mask.array)
    assert np.array_equal(ort.volume.array, torch.volume.array)


def test_real_head_as_a_dicom_series_through_the_cli(chris_t1, tmp_path):
    """``deid deface`` on the real head stored as an axial DICOM series: a defaced series out.

    The series holds chris_t1's voxels in the usual axial layout (rows anterior to
    posterior, columns right to left, LPS), so the landmarks apply as they are; the
    output is a new series of the same study with the header kept, and it passes the
    landmark checks the NIfTI file passes.
    """
    import dicom_factory as fac
    import pydicom

    from deephealth_deid.cli import main

    vol = dd.load_volume(chris_t1)
    s = float(vol.affine[0, 0])
    assert np.allclose(vol.affine[:3, :3], np.diag([s, s, s]))  # the layout below assumes it
    arr = np.ascontiguousarray(vol.array[::-1, ::-1, :].transpose(1, 0, 2)).astype(np.uint16)
    corner = vol.affine @ np.array([vol.shape[0] - 1, vol.shape[1] - 1, 0, 1.0])
    fac.write_series(
        tmp_path / "in",
        arr,
        modality="MR",
        pixel_spacing=(s, s),
        origin=(-corner[0], -corner[1], corner[2]),
        slice_step=s,
        extra={"PatientName": "Test^Head", "PatientID": "TEST-0001", "StudyDescription": "brain"},
    )
    series = dd.load_volume(tmp_path / "in")
    # The same world point holds the same value in both.
    for ijk in ([10, 20, 30], [100, 150, 90], [180, 250, 5]):
        back = np.linalg.inv(series.affine) @ vol.affine @ np.array([*ijk, 1.0])
        assert np.allclose(back[:3], np.round(back[:3]), atol=1e-3)
        assert series.array[tuple(np.round(back[:3]).astype(int))] == vol.array[tuple(ijk)]
    marks, threshold = load_landmarks(chris_t1.parent / "chris_t1_landmarks.json")
    code = main(["deface", str(tmp_path / "in"), str(tmp_path / "out"), "--device", "cpu"])
    assert code == 0
    out = dd.load_volume(tmp_path / "out")
    assert out.shape == series.shape and np.allclose(out.affine, series.affine)
    report = check_landmarks(series, out, marks, threshold=threshold)
    assert report.changed_near_brain and set(report.changed_near_brain.values()) == {0}
    assert min(report.unchanged_near_eyeball.values()) >= 0.95
    for name in FACE_LANDMARKS:
        assert report.changed_near_surface[name] >= 0.8, name
    src = pydicom.dcmread(next((tmp_path / "in").iterdir()))
    first = pydicom.dcmread(sorted((tmp_path / "out").iterdir())[0])
    assert first.StudyInstanceUID == src.StudyInstanceUID and first.SeriesInstanceUID != src.SeriesInstanceUID
    assert first.PatientID == src.PatientID and first.Modality == "MR"


def test_the_network_on_the_heads_box_removes_what_it_removes_on_the_whole_grid(chris_t1, monkeypatch):
    """The network runs on the head and 9 mm of air or more, not on the whole grid: under half the
    voxels on this head, and the same mask but for the network's own edge effects."""
    import importlib

    model = importlib.import_module("deephealth_deid.deface.model")
    vol = dd.load_volume(chris_t1)
    _, spacing, shape = model.load_predictor(None)
    conform = importlib.import_module("deephealth_deid.deface.conform").conform
    image, _ = conform(vol, spacing=spacing, shape=shape)
    box = model.head_box(image, spacing, multiple=16)
    assert np.prod([b.stop - b.start for b in box]) < 0.6 * image.size
    boxed = dd.deface(vol).mask.array > 0
    monkeypatch.setattr(model, "HEAD_MARGIN_MM", 1e6)
    assert model.head_box(image, spacing, multiple=16) == tuple(slice(0, n) for n in image.shape)
    whole = dd.deface(vol).mask.array > 0
    dice = 2 * (boxed & whole).sum() / (boxed.sum() + whole.sum())
    assert dice > 0.97, dice


def test_deid_deface_with_a_brain_mask_changes_nothing_near_it(tmp_path, chris_t1, capsys):
    """A user's brain mask (here a ball round the brain probes, on a coarser grid) is kept clear by 6 mm."""
    import json

    from deephealth_deid.cli import main

    head = dd.load_volume(chris_t1)
    marks, _ = load_landmarks(chris_t1.parent / "chris_t1_landmarks.json")
    centre = np.mean([m.xyz for m in marks if m.category == "brain_probe"], axis=0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = centre - 60.0
    idx = np.stack(np.meshgrid(*[np.arange(61)] * 3, indexing="ij"), -1)
    ball = np.linalg.norm(idx * 2.0 - 60.0, axis=-1) <= 55.0
    dd.save_volume(dd.Volume(ball.astype(np.uint8), affine), tmp_path / "brain.nii.gz")
    out = tmp_path / "out.nii.gz"
    code = main(["deface", str(chris_t1), str(out), "--brain-mask", str(tmp_path / "brain.nii.gz"), "--json"])
    assert code in (0, 3)
    record = json.loads(capsys.readouterr().out)
    changed = dd.load_volume(out).array != head.array
    world = (
        np.stack(np.meshgrid(*[np.arange(n) for n in head.shape], indexing="ij"), -1) @ head.affine[:3, :3].T
    )
    distance = np.linalg.norm(world + head.affine[:3, 3] - centre, axis=-1)
    assert not changed[distance <= 55.0 + 6.0 - 2.0].any()  # within 6 mm of the mask (less its 2 mm voxels)
    assert record["brain_kept"] > 0 and record["voxels"]["eyes"] > 0 and changed.any()
    # This ball reaches the eyes: the case is flagged (exit code 3), naming what the mask kept.
    assert code == 3 and any("the brain mask keeps" in f and "eyes" in f for f in record["flags"])
