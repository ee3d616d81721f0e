"""The defacing pipeline around the network, with a perfect predictor on the phantom.

These tests pin down what the pipeline guarantees whatever the network says:
conform and map back keep geometry in any orientation, only mask voxels
change, the guard keeps deep tissue (brain) bit-identical, and the result is
written in the input's format.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import deephealth_deid as dd
from deephealth_deid.data.phantom import LABELS, make_phantom_head
from deephealth_deid.deface.conform import Grid, _sample, _world_aligned, conform
from deephealth_deid.deface.pipeline import deface
from deephealth_deid.io.volume import Volume


@pytest.fixture(scope="module")
def phantom() -> tuple[Volume, Volume]:
    return make_phantom_head(spacing=2.0, seed=3)


def oracle_for(labels: Volume, *, extra: np.ndarray | None = None, extra_label: int = 1):
    """A predictor that returns the phantom's true features (one-hot) on whatever grid it is given."""
    feat = np.where(labels.array <= 4, labels.array, 0).astype(np.uint8)
    if extra is not None:
        feat = np.where(extra, extra_label, feat).astype(np.uint8)
    seen: dict[str, Grid] = {}

    def predictor(image: np.ndarray, grid: Grid) -> np.ndarray:
        lab = _sample(feat, labels.affine, grid, order=0, cval=0)
        return np.eye(5, dtype=np.float32)[lab].transpose(3, 0, 1, 2)

    predictor.seen = seen  # type: ignore[attr-defined]
    return predictor


def reorient(vol: Volume, perm: tuple[int, int, int], flips: tuple[bool, bool, bool]) -> Volume:
    """The same head with its array axes permuted and flipped (world geometry unchanged)."""
    arr = np.transpose(vol.array, perm)
    aff = vol.affine[:, [*perm, 3]].copy()
    for axis, flip in enumerate(flips):
        if flip:
            arr = np.flip(arr, axis)
            aff[:3, 3] += aff[:3, axis] * (arr.shape[axis] - 1)
            aff[:3, axis] *= -1
    return Volume(np.ascontiguousarray(arr), aff)


@pytest.mark.parametrize(
    "perm, flips",
    [((0, 1, 2), (False, False, False)), ((2, 0, 1), (True, False, True)), ((1, 2, 0), (False, True, False))],
)
def test_features_removed_brain_and_internal_structures_bit_identical(phantom, perm, flips):
    image, labels = (reorient(v, perm, flips) for v in phantom)
    out = deface(image, predictor=oracle_for(labels))
    changed = out.volume.array != image.array
    lab = labels.array
    for value, name in ((1, "eyes"), (2, "nose"), (3, "mouth"), (4, "ears")):
        assert (out.mask.array[lab == value] > 0).mean() > 0.9, name
        assert out.qc.voxels[name] > 0
    for name in ("brain", "csf", "airway"):
        assert not changed[lab == LABELS[name]].any(), name
    # nothing outside the mask changes, and the mask keeps the input geometry
    assert not changed[out.mask.array == 0].any()
    assert np.array_equal(out.mask.affine, image.affine)
    assert out.volume.array.dtype == image.array.dtype
    assert out.qc.ok, out.qc.flags


@pytest.mark.parametrize("as_label", [1, 2], ids=["as-eyes", "as-nose"])
def test_guard_keeps_the_brain_even_when_the_network_marks_it(phantom, as_label):
    image, labels = phantom
    brain = labels.array == LABELS["brain"]
    out = deface(image, predictor=oracle_for(labels, extra=brain, extra_label=as_label))
    changed = out.volume.array != image.array
    assert not changed[brain].any()
    assert out.qc.guard_clipped > 0 and out.qc.deep_predicted > 0
    assert any("where the brain can begin" in f for f in out.qc.flags)


@pytest.mark.parametrize("grid", ["same", "reoriented", "coarser"])
def test_a_brain_mask_keeps_everything_within_6_mm_of_the_brain_even_past_the_guard(phantom, grid):
    image, labels = phantom
    brain = labels.array == LABELS["brain"]
    # The network marks the brain as nose, and the guard is opened to 40 mm: only the mask keeps it.
    predictor = oracle_for(labels, extra=brain, extra_label=2)
    near = ndimage.distance_transform_edt(~brain, sampling=image.spacing) <= 6.0
    opened = deface(image, predictor=predictor, max_depth_mm=40.0, face_depth_mm=0.0)
    assert (opened.volume.array != image.array)[near].any()  # without a mask the brain goes
    mask = Volume(brain.astype(np.uint8), image.affine)
    if grid == "reoriented":
        mask = reorient(mask, (2, 0, 1), (True, False, True))
    elif grid == "coarser":  # a 4 mm mask of the same brain, placed by its affine
        aff = image.affine.copy()
        aff[:3, :3] *= 2
        shape = tuple(n // 2 for n in image.shape)
        mask = Volume(_sample(brain.astype(np.uint8), image.affine, Grid(shape, aff), order=0, cval=0), aff)
    out = deface(image, predictor=predictor, max_depth_mm=40.0, face_depth_mm=0.0, brain_mask=mask)
    changed = out.volume.array != image.array
    kept = near if grid != "coarser" else ndimage.binary_erosion(near, iterations=2)  # 4 mm voxels' edges
    assert not changed[kept].any()
    assert out.qc.brain_kept > 0 and changed.any()  # the features still go
    assert (out.mask.array[changed] > 0).all()
    assert any("the brain mask keeps" in f and "nose" in f for f in out.qc.flags)  # the brain, labelled nose
    clean = deface(image, predictor=oracle_for(labels), face_depth_mm=0.0, brain_mask=mask)
    assert not any("brain mask" in f for f in clean.qc.flags)  # a brain mask keeps none of a true face


def test_a_brain_mask_that_cannot_keep_this_brain_is_refused(phantom):
    image, labels = phantom
    brain = (labels.array == LABELS["brain"]).astype(np.uint8)
    predictor = oracle_for(labels)
    with pytest.raises(ValueError, match="no voxel"):
        deface(image, predictor=predictor, brain_mask=Volume(np.zeros_like(brain), image.affine))
    away = image.affine.copy()
    away[:3, 3] += 1000.0  # another image's mask, or a header that does not place it here
    with pytest.raises(ValueError, match="outside the head's field of view"):
        deface(image, predictor=predictor, brain_mask=Volume(brain, away))
    with pytest.raises(TypeError, match="Volume"):
        deface(image, predictor=predictor, brain_mask=brain)


def test_missing_feature_is_flagged(phantom):
    image, labels = phantom
    no_nose = Volume(np.where(labels.array == 2, 0, labels.array), labels.affine)
    out = deface(image, predictor=oracle_for(no_nose))
    assert out.qc.expected["nose"] and out.qc.voxels["nose"] == 0
    assert "expected nose not found although in the field of view" in out.qc.flags


def _yawed(vol: Volume, degrees: float) -> Volume:
    """The same voxels in a world turned by ``degrees`` about the vertical axis through the array's centre."""
    t = np.deg2rad(degrees)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    centre = vol.affine[:3, :3] @ (np.array(vol.shape) - 1) / 2 + vol.affine[:3, 3]
    move = rot.copy()
    move[:3, 3] = centre - rot[:3, :3] @ centre
    return Volume(vol.array, move @ vol.affine)


@pytest.mark.parametrize("yaw", [0.0, 12.0], ids=["straight", "turned-12deg"])
def test_an_eye_and_an_ear_found_on_one_side_only_are_mirrored_to_the_other(phantom, yaw):
    """The network finds one eye, and one ear on the other side: both twins go all the same, flagged."""
    image, labels = (_yawed(v, yaw) for v in phantom)
    lab = labels.array
    comps_eyes, _ = ndimage.label(lab == 1)
    comps_ears, _ = ndimage.label(lab == 4)
    missing = (comps_eyes == 1) | (comps_ears == 2)  # one eye on one side, one ear on the other
    assert missing.any() and (lab[missing] > 0).all()
    seen = Volume(np.where(missing, 0, lab), labels.affine)
    out = deface(image, predictor=oracle_for(seen), face_depth_mm=0)
    for value in (1, 4):
        twin = missing & (lab == value)
        assert (out.mask.array[twin] > 0).mean() > 0.8, value
    assert sum("found on one side only" in f for f in out.qc.flags) == 2, out.qc.flags
    assert not (out.volume.array != image.array)[lab == LABELS["brain"]].any()
    # The mirror image lands on the twin, not anywhere on its side: little beyond its margin.
    assert (out.mask.array == 1).sum() < 4 * (lab == 1).sum()


def test_an_ear_whose_twin_the_field_of_view_cuts_off_is_not_mirrored(phantom):
    """The scan ends beside the head on one side, without its ear: nothing is mirrored or flagged."""
    image, labels = phantom
    ears = np.argwhere(labels.array == 4)
    cut = int(ears[:, 0].min()) + 12  # past one ear, far from the other and from the eyes
    assert (labels.array[cut:] == 4).any() and not (labels.array[cut:][:8] == 4).any()

    def crop(vol: Volume) -> Volume:
        affine = vol.affine.copy()
        affine[:3, 3] += affine[:3, 0] * cut
        return Volume(np.ascontiguousarray(vol.array[cut:]), affine)

    image, labels = crop(image), crop(labels)
    out = deface(image, predictor=oracle_for(labels), face_depth_mm=0)
    assert not any("one side only" in f for f in out.qc.flags), out.qc.flags
    assert (out.mask.array[labels.array == 4] > 0).mean() > 0.9


@pytest.mark.parametrize("joined", [False, True], ids=["apart", "joined-across-the-nose"])
def test_a_pair_found_on_both_sides_is_left_as_the_network_said(phantom, joined):
    """Two eyes, even labelled as one component across the nose, are not mirrored."""
    image, labels = phantom
    from deephealth_deid.deface.conform import conform, grid_depth
    from deephealth_deid.deface.symmetry import complete_pairs

    if joined:
        eyes = np.argwhere(labels.array == 1)
        lo, hi = eyes.min(axis=0), eyes.max(axis=0)
        mid = (lo + hi) // 2
        bridge = np.zeros(labels.shape, bool)
        bridge[lo[0] : hi[0] + 1, mid[1] - 1 : mid[1] + 2, mid[2] - 1 : mid[2] + 2] = True
        labels = Volume(np.where(bridge, 1, labels.array), labels.affine)
        assert ndimage.label(labels.array == 1)[1] == 1
    grid_image, grid = conform(image, spacing=3.0, shape=(64, 80, 80))
    probs = oracle_for(labels)(grid_image, grid)
    out, notes = complete_pairs(probs, grid_depth(grid_image, 3.0) > 0, 3.0)
    assert out is probs and notes == []


@pytest.mark.parametrize(("yaw", "roll"), [(0.0, 0.0), (10.0, 0.0), (-17.0, 8.0), (3.0, -20.0)])
def test_the_mid_sagittal_plane_of_a_turned_head_is_found(yaw, roll):
    """An ellipsoid head with a nose, turned in the world: the plane found is its plane of symmetry."""
    from deephealth_deid.deface.symmetry import midsagittal_plane

    spacing, centre = 3.0, np.array([38.0, 48.0, 50.0])
    a, b = np.deg2rad(yaw), np.deg2rad(roll)
    turn_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    turn_y = np.array([[np.cos(b), 0, -np.sin(b)], [0, 1, 0], [np.sin(b), 0, np.cos(b)]])
    rot = turn_z @ turn_y
    p = (np.indices((80, 96, 96)).reshape(3, -1).T - centre) @ rot  # head coordinates of each voxel
    head = ((p[:, 0] / 25) ** 2 + (p[:, 1] / 32) ** 2 + (p[:, 2] / 30) ** 2 <= 1) | (
        (np.abs(p[:, 0]) < 4) & (p[:, 1] > 28) & (p[:, 1] < 36) & (np.abs(p[:, 2]) < 6)
    )
    normal, offset = midsagittal_plane(head.reshape(80, 96, 96), spacing)
    true_normal = rot[:, 0]
    assert np.degrees(np.arccos(min(1.0, abs(normal @ true_normal)))) < 1.5
    assert abs(offset - normal @ centre * spacing) < 1.5  # mm


@pytest.mark.parametrize(
    ("face_bottom", "back_bottom", "nose", "mouth"),
    [(5, 5, True, True), (25, 5, True, False), (36, 36, False, False)],
    ids=["whole-head", "fov-cut-above-the-mouth-tilted", "fov-cut-above-the-nose"],
)
def test_nose_and_mouth_are_expected_from_the_face_below_the_eyes(face_bottom, back_bottom, nose, mouth):
    """The face's own extent below the eyes decides, not the back of a tilted head reaching lower."""
    from deephealth_deid.deface.conform import Grid
    from deephealth_deid.deface.pipeline import _expected_features

    s = 3.0
    image = np.zeros((60, 70, 60), np.float32)  # RAS grid: axis 1 anterior, axis 2 superior
    image[5:55, 5:40, back_bottom:55] = 1.0  # back of the head (and neck)
    image[5:55, 40:65, face_bottom:55] = 1.0  # the face: the 75 mm in front
    probs = np.zeros((5, *image.shape), np.float32)
    probs[1, 20:25, 60:64, 40:43] = probs[1, 35:40, 60:64, 40:43] = 1.0  # eyes, k 41: 123 mm up
    expected = _expected_features(probs, image, Grid(image.shape, np.diag([s, s, s, 1.0])))
    assert (expected["nose"], expected["mouth"]) == (nose, mouth)
    assert expected["eyes"]


@pytest.mark.parametrize("mode", ["zero", "noise", "blur"])
def test_modes_change_only_the_mask(phantom, mode):
    image, labels = phantom
    out = deface(image, predictor=oracle_for(labels), mode=mode)
    m = out.mask.array > 0
    assert np.array_equal(out.volume.array[~m], image.array[~m])
    assert (out.volume.array[m] != image.array[m]).mean() > 0.9
    assert image.array[m].mean() > 3 * abs(float(out.volume.array[m].mean())) or mode == "blur"


@pytest.mark.parametrize("mode", ["zero", "noise", "blur"])
def test_new_values_depend_on_nothing_inside_the_mask(mode):
    """Two faces differing only inside the mask come out identical: nothing removed leaks back."""
    from deephealth_deid.deface.apply import apply_mask

    rng = np.random.default_rng(3)
    a = rng.integers(0, 50, size=(30, 30, 30)).astype(np.int16)
    a[5:25, 5:25, 5:25] += 400
    mask = np.zeros(a.shape, bool)
    mask[5:25, 20:25, 8:22] = True  # a shell of the "face"
    b = a.copy()
    b[mask] = rng.integers(0, 4000, size=int(mask.sum()))
    air = a[a < 50]
    out_a = apply_mask(a, mask, mode=mode, air=air, spacing=(1.0, 1.0, 1.0), seed=1)
    out_b = apply_mask(b, mask, mode=mode, air=air, spacing=(1.0, 1.0, 1.0), seed=1)
    assert np.array_equal(out_a, out_b)
    assert np.array_equal(out_a[~mask], a[~mask])


def test_deface_never_modifies_its_input(phantom):
    image, labels = phantom
    before = image.array.copy()
    deface(image, predictor=oracle_for(labels))
    assert np.array_equal(image.array, before)


def test_result_saves_in_the_input_format(phantom, tmp_path):
    image, labels = phantom
    src = dd.save_volume(image, tmp_path / "head.nii.gz")
    vol = dd.load_volume(src)
    out = deface(vol, predictor=oracle_for(labels))
    dst = dd.save_volume(out.volume, tmp_path / "defaced.nii.gz")
    back = dd.load_volume(dst)
    assert np.array_equal(back.array, out.volume.array)
    assert np.allclose(back.affine, vol.affine)


def test_deface_file_writes_volume_mask_and_qc_and_refuses_overwrite(phantom, tmp_path):
    image, labels = phantom
    src = dd.save_volume(image, tmp_path / "head.nii.gz")
    dst, mask, qc = tmp_path / "out.nii.gz", tmp_path / "mask.nii.gz", tmp_path / "qc.png"
    result = dd.deface_file(src, dst, save_mask=mask, qc=qc, predictor=oracle_for(labels))
    assert np.array_equal(dd.load_volume(dst).array, result.volume.array)
    assert np.array_equal(dd.load_volume(mask).array, result.mask.array)
    assert set(np.unique(result.mask.array)) == {0, 1, 2, 3, 4}
    assert qc.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = dst.read_bytes()
    with pytest.raises(dd.errors.OutputExistsError):
        dd.deface_file(src, dst, predictor=oracle_for(labels))
    assert dst.read_bytes() == before
    with pytest.raises(dd.errors.OutputError, match="input"):
        dd.deface_file(src, src, overwrite=True, predictor=oracle_for(labels))


def test_dicom_series_in_dicom_series_out(phantom, tmp_path):
    import dicom_factory as fac
    import pydicom

    image, labels = phantom
    stored = np.clip(image.array, 0, None).astype(np.uint16)
    # the phantom is RAS; a DICOM series of axial slices stores it as rows = -y (anterior first), cols = x
    arr = np.ascontiguousarray(np.transpose(stored, (1, 0, 2))[::-1])
    fac.write_series(
        tmp_path / "in",
        arr,
        modality="MR",
        orientation=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0),
        pixel_spacing=(2.0, 2.0),
        slice_step=2.0,
    )
    vol = dd.load_volume(tmp_path / "in")
    assert vol.axcodes[2] == "S"
    lab_vol = Volume(
        np.ascontiguousarray(np.transpose(labels.array, (1, 0, 2))[::-1]).astype(np.uint8), vol.affine
    )
    out = dd.deface_file(tmp_path / "in", tmp_path / "out", predictor=oracle_for(lab_vol))
    written = sorted((tmp_path / "out").iterdir())
    assert len(written) == arr.shape[2]
    back = dd.load_volume(tmp_path / "out")
    assert np.array_equal(back.array, out.volume.array)
    assert np.allclose(back.affine, vol.affine)
    changed = back.array != vol.array
    assert not changed[out.mask.array == 0].any()
    assert changed.sum() > 0.8 * (out.mask.array > 0).sum() > 0
    src0 = pydicom.dcmread(next((tmp_path / "in").iterdir()))
    out0 = pydicom.dcmread(written[0])
    assert out0.StudyInstanceUID == src0.StudyInstanceUID and out0.SeriesInstanceUID != src0.SeriesInstanceUID


def test_face_fill_removes_the_nose_the_network_missed(phantom):
    """Eyes and mouth found, nose not: the skin between them, the nose's included, still goes."""
    image, labels = phantom
    lab = labels.array
    no_nose = Volume(np.where(lab == 2, 0, lab), labels.affine)
    out = deface(image, predictor=oracle_for(no_nose))
    changed = out.volume.array != image.array
    assert changed[lab == 2].mean() > 0.8
    for name in ("brain", "airway"):
        assert not changed[lab == LABELS[name]].any(), name
    assert not changed[out.mask.array == 0].any()
    # Without the fill only the labelled features (grown by the margin) change: most of the nose stays.
    bare = deface(image, predictor=oracle_for(no_nose), face_depth_mm=0)
    assert (bare.volume.array != image.array)[lab == 2].mean() < 0.5
    assert (bare.mask.array > 0).sum() < (out.mask.array > 0).sum()


def test_face_depth_is_checked(phantom):
    image, labels = phantom
    with pytest.raises(ValueError, match="face_depth_mm"):
        deface(image, predictor=oracle_for(labels), face_depth_mm=12.0)


def test_ear_fill_removes_the_whole_pinna_from_part_of_it(phantom):
    """The network labels the upper half of each ear only: the fill, seen from the side, takes more.

    The phantom's pinnae are 60 mm tall: the fill reaches 10 mm below the labelled half.
    """
    image, labels = phantom
    lab = labels.array
    ear = lab == 4
    k = np.nonzero(ear)[2]
    half = np.where(ear & (np.arange(lab.shape[2])[None, None, :] < np.median(k)), 0, lab)
    out = deface(image, predictor=oracle_for(Volume(half, labels.affine)))
    changed = out.volume.array != image.array
    assert changed[ear].mean() > 0.75
    assert not changed[lab == LABELS["brain"]].any()
    bare = deface(image, predictor=oracle_for(Volume(half, labels.affine)), face_depth_mm=0)
    assert (bare.volume.array != image.array)[ear].mean() < changed[ear].mean() - 0.2


def test_head_mask_fills_holes_as_scipy_does_in_3d_and_slice_by_slice():
    """The one-labelling hole fill equals scipy's binary_fill_holes, whole and per slice."""
    from scipy import ndimage

    from deephealth_deid.deface.postprocess import holes as _holes

    rng = np.random.default_rng(5)
    for density in (0.3, 0.55, 0.7):
        mask = ndimage.binary_opening(rng.random((23, 31, 17)) < density)
        assert np.array_equal(mask | _holes(mask, (0, 1, 2)), ndimage.binary_fill_holes(mask))
        for axis in range(3):
            moved = np.moveaxis(mask, axis, 0)
            ref = np.stack([ndimage.binary_fill_holes(s) for s in moved])
            got = mask | _holes(mask, tuple(a for a in range(3) if a != axis))
            assert np.array_equal(np.moveaxis(got, axis, 0), ref)


@pytest.mark.parametrize("mode", ["constant", "nearest"])
def test_axis_aligned_resampling_equals_scipy(mode):
    """The separable trilinear path gives scipy's affine_transform values, axes permuted, flipped, scaled."""
    from scipy import ndimage

    from deephealth_deid.deface.conform import affine_linear

    rng = np.random.default_rng(11)
    for _ in range(40):
        src = rng.random(tuple(rng.integers(2, 9, 3))).astype(np.float32)
        m = np.eye(4)
        m[:3, :3] = 0
        perm, signs = rng.permutation(3), rng.choice([-1.0, 1.0], 3)
        for i in range(3):  # upsampling: the separable path is the one taken
            m[i, perm[i]] = signs[i] * rng.choice([0.25, 0.3, 0.5])
        m[:3, 3] = rng.integers(-3, 10, 3) + rng.choice([0.0, 0.5, 0.37], 3)
        shape = tuple(int(n) for n in rng.integers(8, 30, 3))
        want = ndimage.affine_transform(
            src, m[:3, :3], offset=m[:3, 3], output_shape=shape, order=1, mode=mode, cval=-7.0
        )
        np.testing.assert_allclose(affine_linear(src, m, shape, mode=mode, cval=-7.0), want, atol=1e-5)
    # Direction cosines with rounding noise (as DICOM headers give them): the noise, which moves
    # no sample by a thousandth of a voxel, is dropped and the same separable path taken.
    noisy = m + np.pad(np.where(m[:3, :3] == 0, rng.normal(0, 1e-7, (3, 3)), 0.0), ((0, 1), (0, 1)))
    np.testing.assert_array_equal(
        affine_linear(src, noisy, shape, mode=mode, cval=-7.0),
        affine_linear(src, m, shape, mode=mode, cval=-7.0),
    )
    # Any other map (a rotation) goes to scipy's general routine: the same values again.
    c, s = np.cos(0.3), np.sin(0.3)
    m = np.array([[c, -s, 0, 2.0], [s, c, 0, -1.0], [0, 0, 0.5, 0.5], [0, 0, 0, 1]])
    want = ndimage.affine_transform(
        src, m[:3, :3], offset=m[:3, 3], output_shape=(9, 9, 9), order=1, mode=mode
    )
    np.testing.assert_allclose(affine_linear(src, m, (9, 9, 9), mode=mode), want, atol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_conforming_does_not_depend_on_how_the_array_is_stored(seed):
    """The voxels sampled, the grid and the intensities are those of the scan, not of its storage."""
    rng = np.random.default_rng(seed)
    image, _ = make_phantom_head(spacing=1.0, seed=seed)
    array = image.array[:, :, : 100 + seed]  # odd and even sizes
    affine = np.diag([*(0.6 + 0.5 * rng.random(3)), 1.0])
    affine[:3, 3] = rng.uniform(-120, 120, 3)
    perm = tuple(rng.permutation(3))
    flips = rng.random(3) < 0.5
    stored = np.transpose(array, perm)
    aff = affine[:, [*perm, 3]].copy()
    for axis in range(3):
        if flips[axis]:
            stored = np.flip(stored, axis)
            aff[:3, 3] += aff[:3, axis] * (stored.shape[axis] - 1)
            aff[:3, axis] *= -1

    def world(shape, aff):
        """World positions of the voxels ``_world_aligned`` keeps, rounded to a micrometre."""
        axes = [np.arange(n)[s] for n, s in zip(shape, _world_aligned(aff, (2, 2, 2)), strict=True)]
        ijk = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        return {tuple(p) for p in np.round(ijk @ aff[:3, :3].T + aff[:3, 3], 3)}

    assert world(stored.shape, aff) == world(array.shape, affine)
    one, grid_one = conform(Volume(np.ascontiguousarray(array), affine), spacing=3.0, shape=(48, 56, 56))
    two, grid_two = conform(Volume(np.ascontiguousarray(stored), aff), spacing=3.0, shape=(48, 56, 56))
    assert np.allclose(grid_one.affine, grid_two.affine, atol=1e-6)
    assert np.allclose(one, two, atol=1e-5)


def test_the_voxels_sampled_are_the_same_from_either_end_of_an_axis_even_at_ties():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        s = float(rng.choice([0.9375, 0.5, 1.0, 0.7, 1.2, 0.3, 1 / 3]))
        n = int(rng.integers(64, 300))
        origin = (int(rng.integers(-300, 300)) + float(rng.choice([0.75, 0.25, 0.5, 0.0, rng.random()]))) * s
        forward = np.diag([s, 1.0, 1.0, 1.0])
        forward[0, 3] = origin
        backward = forward.copy()
        backward[0, 0], backward[0, 3] = -s, origin + (n - 1) * s  # the same axis stored reversed
        kept = []
        for aff in (forward, backward):
            idx = np.arange(n)[_world_aligned(aff, (2, 1, 1))[0]]
            kept.append(set(np.round((aff[0, 3] + idx * aff[0, 0]) * 1e6).astype(np.int64)))
        assert kept[0] == kept[1], (s, n, origin)


@pytest.mark.parametrize("seed", range(20))
def test_the_heads_box_holds_the_head_and_its_margin_on_an_even_offset(seed):
    import importlib

    model = importlib.import_module("deephealth_deid.deface.model")
    rng = np.random.default_rng(seed)
    shape = (80, 96, 96)
    image = np.zeros(shape, np.float32)
    lo = [int(rng.integers(0, n - 8)) for n in shape]
    hi = [int(rng.integers(a + 6, n + 1)) for a, n in zip(lo, shape, strict=True)]
    image[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = 1.0
    box = model.head_box(image, 3.0, multiple=16, margin_mm=12.0)  # 4 voxels
    for b, a, z, n in zip(box, lo, hi, shape, strict=True):
        assert b.start >= 0 and b.stop <= n
        assert (b.stop - b.start) % 16 == 0 or (b.start, b.stop) == (0, n)
        assert b.start % 2 == 0
        assert b.start <= max(0, a - 4) and b.stop >= min(n, z + 4)  # the head and 12 mm of air
    assert model.head_box(np.zeros(shape, np.float32), 3.0, multiple=16) == tuple(slice(0, n) for n in shape)


@pytest.mark.parametrize("seed", range(6))
def test_depth_under_the_skin_is_worked_out_in_the_heads_box_as_on_the_whole_array(seed):
    from deephealth_deid.deface.postprocess import surface_depth

    rng = np.random.default_rng(seed)
    shape = (40, 48, 44)
    spacing = (1.0, 1.5, 3.0) if seed % 2 else (3.0, 3.0, 3.0)
    head = ndimage.gaussian_filter(rng.random(shape), 3) > 0.5  # blobs, some at the array's edge
    head[rng.integers(0, 40), :, :] &= seed % 3 == 0  # a cut through the head
    # The whole array: closed by a box 3 mm each way (padded so the edge stays open), holes
    # filled, distance to the nearest voxel outside.
    r = np.maximum(1, np.round(3.0 / np.asarray(spacing)).astype(int))
    padded = np.pad(head, [(int(k), int(k)) for k in r])
    closed = ndimage.binary_closing(padded, structure=np.ones(tuple(2 * r + 1), bool))
    filled = ndimage.binary_fill_holes(closed[tuple(slice(int(k), -int(k)) for k in r)] | head)
    expected = ndimage.distance_transform_edt(filled, sampling=spacing).astype(np.float32)
    np.testing.assert_array_equal(surface_depth(head, spacing), expected)
    assert not surface_depth(np.zeros(shape, bool), spacing).any()


@pytest.mark.parametrize("seed", range(30))
def test_the_outline_of_a_feature_is_qhulls_convex_hull(seed):
    """The fill's outline (a monotone chain) has Qhull's edges: lattice points, collinear runs, repeats."""
    from scipy.spatial import ConvexHull, QhullError

    from deephealth_deid.deface.postprocess import convex_outline

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    kind = seed % 3
    if kind == 0:  # voxel centres seen through a rotated affine, with repeats
        pts = rng.integers(0, 12, size=(n, 2)).astype(float) @ np.array([[0.8, 0.6], [-0.6, 0.8]]) * 0.9
    elif kind == 1:  # points on a line, now and then one off it
        t = rng.random(n)
        pts = np.stack([t, 2 * t + 1], axis=1)
        if seed % 2:
            pts[0] += (0.0, 0.5)
    else:
        pts = rng.normal(size=(n, 2)) * (30, 5)
    ours = convex_outline(pts)
    try:
        hull = ConvexHull(pts)
    except (QhullError, ValueError):
        assert ours is None
        return
    assert ours is not None
    normals, offsets = ours
    edges = np.round(np.column_stack([normals, offsets]), 9)
    expected = np.round(hull.equations, 9)
    assert sorted(map(tuple, edges)) == sorted(map(tuple, expected))


@pytest.mark.parametrize(
    ("columns", "max_voxels"),
    [
        ([[3, 0, 0], [0, 3, 0], [0, 0, 3]], None),
        ([[0.8, 0, 0], [0, 0, -1.2], [0, 4.0, 0]], None),  # anisotropic, axes swapped
        ([[3, 0, 0], [0, 3, 1.5], [0, 0, 3]], None),  # sheared (gantry tilt): the k-d tree
        ([[1, 0, 0], [0, 1, 0], [0, 0, 2]], 0),  # a box too large to transform: the k-d tree
    ],
)
def test_the_fill_labels_each_voxel_after_a_nearest_feature_voxel_in_mm(columns, max_voxels, monkeypatch):
    from deephealth_deid.deface import postprocess

    if max_voxels is not None:
        monkeypatch.setattr(postprocess, "_MAX_TRANSFORM_VOXELS", max_voxels)
    rng = np.random.default_rng(0)
    affine = np.eye(4)
    affine[:3, :3] = columns
    feature = np.unique(rng.integers(0, 20, size=(60, 3)), axis=0)
    points = rng.integers(-5, 25, size=(300, 3))
    found = postprocess._nearest(feature, points, affine)
    ras = lambda v: v @ affine[:3, :3].T  # noqa: E731
    best = np.linalg.norm(ras(points)[:, None] - ras(feature)[None], axis=2).min(axis=1)
    np.testing.assert_allclose(np.linalg.norm(ras(points) - ras(found), axis=1), best, rtol=1e-9, atol=1e-9)
    assert (feature[:, None] == found[None]).all(axis=2).any(axis=0).all()  # each is a feature voxel


def _ball(shape: tuple[int, int, int], centre, radius: float) -> np.ndarray:
    idx = np.indices(shape).transpose(1, 2, 3, 0)
    return np.linalg.norm(idx - np.asarray(centre, dtype=float), axis=-1) <= radius


def test_the_guard_measures_depth_from_the_skin_not_from_air_reaching_into_the_head():
    """A cavity open to the air by a nostril-like channel, and a field of view that cuts the head."""
    from deephealth_deid.deface.postprocess import OUT_OF_REACH_MM, guard_depth, surface_depth

    shape, spacing = (60, 60, 60), (3.0, 3.0, 3.0)
    head = _ball(shape, (30, 30, 30), 25)  # a head 150 mm across
    cavity = _ball(shape, (30, 30, 30), 4)
    channel = np.zeros(shape, bool)
    channel[28:33, 28:33, 30:] = True  # 15 mm wide, from the cavity out through the skin
    head &= ~(cavity | channel)
    seen = np.ones(shape, bool)
    wall = ndimage.binary_dilation(cavity) & head  # tissue lining the cavity, 75 mm under the skin
    assert surface_depth(head, spacing)[wall].max() <= 6.0  # the cavity's air passes for the outside
    guarded = guard_depth(head, seen, spacing)
    assert (guarded[wall] == OUT_OF_REACH_MM).all()
    # The skin away from the channel keeps its depth.
    skin = head & ~ndimage.binary_erosion(head)
    far = skin & ~ndimage.binary_dilation(channel, iterations=8)
    assert np.allclose(guarded[far], surface_depth(head, spacing)[far])
    # A field of view that ends across the head: the cut is not skin.
    cut = _ball(shape, (30, 30, 30), 25)
    seen = np.ones(shape, bool)
    seen[:, :, :30] = False
    cut_face = cut[:, :, 30] & ~ndimage.binary_erosion(cut)[:, :, 30]
    inner = cut[:, :, 30] & ~ndimage.binary_dilation(cut_face, iterations=6)
    depth = guard_depth(cut & seen, seen, spacing)[:, :, 30]
    assert depth[inner].min() >= 18.0  # measured from the imaged air around, not from the cut


def test_the_nose_and_mouth_below_the_eyes_go_deeper_than_the_guard_and_nothing_else_does():
    from deephealth_deid.deface.postprocess import (
        BELOW_EYES_MM,
        LOWER_FACE_EXTRA_MM,
        grow_and_guard,
        lower_face,
    )

    shape, spacing = (20, 20, 40), (1.0, 1.0, 1.0)
    affine = np.diag([1.0, 1.0, -1.0, 1.0])  # the third axis runs downwards (voxel k at height -k)
    affine[2, 3] = 10.0
    labels = np.zeros(shape, np.uint8)
    labels[2:4, :, 10] = 1  # eyes at height 0
    low = lower_face(labels, affine)
    height = 10.0 - np.arange(40)
    assert (low[0, 0] == (height < -BELOW_EYES_MM)).all()
    assert not lower_face(np.where(labels == 1, 2, labels), affine).any()  # no eyes: nowhere
    # A column of one label from the skin down, with the depth growing 1 mm per voxel along axis 0.
    depth = np.broadcast_to(np.arange(20, dtype=np.float32)[:, None, None] + 1, shape).copy()
    for value, k in ((2, 30), (3, 35), (2, 12), (1, 30), (4, 30)):
        column = np.zeros(shape, np.uint8)
        column[:, 5, k] = value
        kept, _ = grow_and_guard(column, depth, spacing, margin_mm=0, max_depth_mm=10.0, lower=low)
        deepest = depth[kept > 0].max()
        below = height[k] < -BELOW_EYES_MM
        assert deepest == (10.0 + LOWER_FACE_EXTRA_MM if below and value in (2, 3) else 10.0), (value, k)
        plain, _ = grow_and_guard(column, depth, spacing, margin_mm=0, max_depth_mm=10.0)
        assert depth[plain > 0].max() == 10.0


def test_check_labels_counts_what_changed_of_each_target_near_the_brain_and_in_the_eyeballs():
    from deephealth_deid.deface.evaluate import check_labels

    shape = (40, 40, 40)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    lab = np.zeros(shape, np.uint8)
    lab[5:15, 5:15, 5:15] = LABELS["brain"]
    lab[30:34, 30:34, 30:34] = 1  # eyes: 64 voxels
    lab[20:24, 30:34, 30:34] = LABELS["eyeball"]
    before = Volume(np.ones(shape, np.float32), affine)
    after = before.array.copy()
    after[30:32, 30:34, 30:34] = 0  # half the eyes' target
    after[16, 10, 10] = 0  # 2 mm from the brain
    after[20, 30:34, 30:34] = 0  # a quarter of the eyeball
    rep = check_labels(before, Volume(after, affine), Volume(lab, affine))
    assert rep.changed_feature == {"eyes": 0.5}
    assert rep.changed_near_brain == 1
    assert rep.unchanged_eyeballs == 0.75
    assert len(rep.failures) == 3 and not rep.ok
    with pytest.raises(ValueError, match="grid"):
        check_labels(before, Volume(after, affine), Volume(lab, np.diag([1.0, 1.0, 1.0, 1.0])))
