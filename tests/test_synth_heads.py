"""Synthetic labelled heads: exact, plausible labels; deterministic; randomised images."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from deephealth_deid.data.dataset import load_dataset
from deephealth_deid.data.head_templates import TEMPLATE_NAMES, load_templates
from deephealth_deid.data.phantom import LABELS
from deephealth_deid.data.synth_heads import SynthHeadGenerator, write_synth_dataset
from deephealth_deid.errors import OutputExistsError
from deephealth_deid.io import load_volume
from deephealth_deid.io.volume import Volume

EYES, NOSE, MOUTH, EARS = 1, 2, 3, 4
BRAIN, EYEBALL, SKULL = LABELS["brain"], LABELS["eyeball"], LABELS["skull"]
NO_CROP = {"none": 1.0}


def to_ras(vol: Volume) -> tuple[np.ndarray, np.ndarray]:
    """The array reoriented to RAS (exact for axis-aligned grids) and its world origin and spacing."""
    ornt = nib.orientations.io_orientation(vol.affine)
    arr = nib.orientations.apply_orientation(vol.array, ornt)
    aff = vol.affine @ nib.orientations.inv_ornt_aff(ornt, vol.shape)
    assert np.allclose(aff[:3, :3], np.diag(np.diag(aff[:3, :3]))) and np.all(np.diag(aff)[:3] > 0)
    return arr, aff


def world_points(vol: Volume, mask: np.ndarray) -> np.ndarray:
    """World (RAS mm) positions of the voxels of ``mask`` (array order of ``vol``)."""
    ijk = np.argwhere(mask)
    return ijk @ vol.affine[:3, :3].T + vol.affine[:3, 3]


@pytest.fixture(scope="module")
def geo_gen() -> SynthHeadGenerator:
    """Upright heads (no rotation), whole field of view, 2 mm, anatomical labels: for geometric checks."""
    return SynthHeadGenerator(
        shape=(112, 112, 112), spacing_mm=2.0, seed=11, rotation_deg=0.0, crops=NO_CROP, feature_margin_mm=0.0
    )


@pytest.fixture(scope="module")
def geo_samples(geo_gen: SynthHeadGenerator) -> list:
    return [geo_gen.sample_with_info(i) for i in range(6)]


def test_templates_load_with_all_classes() -> None:
    templates = load_templates()
    assert [t.name for t in templates] == list(TEMPLATE_NAMES)
    for t in templates:
        labels = set(np.unique(t.labels()).tolist())
        assert {BRAIN, EYEBALL, SKULL, LABELS["csf"], LABELS["skin"], LABELS["fat"], EYES, EARS} <= labels, (
            t.name
        )
        assert {"globe_l", "globe_r", "ear_l", "ear_r", "brain_centre"} <= set(t.landmarks)
    full = templates[TEMPLATE_NAMES.index("pydeface_mean")]
    assert {NOSE, MOUTH, LABELS["airway"]} <= set(np.unique(full.labels()).tolist())


def test_same_seed_and_index_give_the_same_sample() -> None:
    a = SynthHeadGenerator(shape=(48, 48, 48), spacing_mm=5.0, seed=5)
    b = SynthHeadGenerator(shape=(48, 48, 48), spacing_mm=5.0, seed=5)
    s1, s2 = a.sample(3), b.sample(3)
    a.sample(0)  # order does not matter
    s3 = a.sample(3)
    for x, y in ((s1, s2), (s1, s3)):
        assert np.array_equal(x[0].array, y[0].array)
        assert np.array_equal(x[1].array, y[1].array)
        assert np.array_equal(x[0].affine, y[0].affine)
    other_index = a.sample(4)
    other_seed = SynthHeadGenerator(shape=(48, 48, 48), spacing_mm=5.0, seed=6).sample(3)
    assert not np.array_equal(other_index[1].array, s1[1].array)
    assert not np.array_equal(other_seed[0].array, s1[0].array)


def test_every_feature_is_present_when_in_the_field_of_view(geo_samples: list) -> None:
    for s in geo_samples:
        if s.info["template"] == "pydeface_mean":
            assert s.info["features"] == [EYES, NOSE, MOUTH, EARS], s.info
        else:  # colin27's own field of view ends in front of the forehead and below the nose
            assert {EYES, EARS} <= set(s.info["features"]), s.info
        counts = np.bincount(s.labels.array.ravel(), minlength=12)
        assert counts[EYEBALL] > 0 and counts[BRAIN] > 0
    assert {s.info["template"] for s in geo_samples} == set(TEMPLATE_NAMES)


def test_lids_lie_in_front_of_the_globes_and_never_on_them(geo_samples: list) -> None:
    for s in geo_samples:
        lab, aff = to_ras(s.labels)
        sp = float(aff[0, 0])
        globe = lab == EYEBALL
        eyes = lab == EYES
        assert not (globe & eyes).any()
        # Two globes, left and right; each with lids in front (+y) within a few mm.
        comps, n = ndi.label(globe)
        assert n == 2, s.info
        dist_mm = ndi.distance_transform_edt(~globe) * sp
        # Lids and periorbital skin: within a few mm of a globe (the head may be scaled up to 1.1).
        assert np.median(dist_mm[eyes]) <= 7.5 and np.percentile(dist_mm[eyes], 95) <= 11.0, s.info
        for k in (1, 2):
            g = np.argwhere(comps == k)
            gc = g.mean(0)
            near = np.argwhere(eyes & (ndi.distance_transform_edt(comps != k) * sp <= 10.0))
            assert len(near) > 0, s.info
            assert near[:, 1].mean() > gc[1] + 2.0, "lids must be anterior to the globe"
        # A globe is never relabelled: its voxels are a solid, convex-ish ball.
        assert ndi.binary_fill_holes(globe).sum() == globe.sum()


def test_ears_lie_lateral_to_the_skull(geo_samples: list) -> None:
    for s in geo_samples:
        lab, _ = to_ras(s.labels)
        ears = np.argwhere(lab == EARS)
        skull = lab == SKULL
        mid = np.argwhere(lab == EYEBALL)[:, 0].mean()
        lateral = 0
        for i, j, k in ears:
            row = np.nonzero(skull[:, j, k])[0]
            if len(row) == 0 or (i > mid and i > row.max()) or (i < mid and i < row.min()):
                lateral += 1
        assert lateral / len(ears) > 0.9, s.info
        # Both sides.
        assert (ears[:, 0] > mid).any() and (ears[:, 0] < mid).any()


def test_nose_is_anterior_and_midline_and_mouth_below_it(geo_samples: list) -> None:
    seen = 0
    for s in geo_samples:
        lab, aff = to_ras(s.labels)
        sp = float(aff[0, 0])
        if not (lab == NOSE).any() or not (lab == MOUTH).any():
            continue
        seen += 1
        nose, mouth = np.argwhere(lab == NOSE), np.argwhere(lab == MOUTH)
        globes, brain = np.argwhere(lab == EYEBALL), np.argwhere(lab == BRAIN)
        mid = globes[:, 0].mean()
        # Each eye moves on its own (eye spacing, asymmetry), so the midline is only known to a few mm.
        assert abs(nose[:, 0].mean() - mid) * sp < 8.0, "nose on the midline"
        assert abs(mouth[:, 0].mean() - mid) * sp < 8.0, "mouth on the midline"
        assert abs(mouth[:, 0].mean() - nose[:, 0].mean()) * sp < 5.0, "mouth under the nose"
        assert nose[:, 1].max() > globes[:, 1].max() + 5, "nose tip in front of the eyes"
        assert nose[:, 1].mean() > brain[:, 1].max(), "nose in front of the brain"
        assert mouth[:, 2].mean() < nose[:, 2].mean() - 10 / sp, "mouth below the nose"
        assert nose[:, 2].mean() < globes[:, 2].mean(), "nose below the eyes"
    assert seen >= 2


def test_removal_targets_grow_the_features_over_soft_tissue_only() -> None:
    kw = {"shape": (112, 112, 112), "spacing_mm": 2.0, "seed": 11, "crops": NO_CROP}
    for i in range(3):
        anat = SynthHeadGenerator(feature_margin_mm=0.0, **kw).sample(i)[1].array
        grown = SynthHeadGenerator(**kw).sample(i)[1].array  # default: 5 mm margin, 10 mm deep at most
        changed = anat != grown
        # Every anatomical feature voxel keeps its label; only skin and fat/muscle become features.
        feats = (anat >= 1) & (anat <= 4)
        assert np.array_equal(anat[feats], grown[feats])
        assert set(np.unique(anat[changed]).tolist()) <= {LABELS["skin"], LABELS["fat"]}
        assert set(np.unique(grown[changed]).tolist()) <= {EYES, NOSE, MOUTH, EARS}
        for f in (EYES, EARS):
            assert (grown == f).sum() > 1.3 * (anat == f).sum(), f"feature {f} should be thicker"
        # Within the margin of the feature it grew from, and no deeper than 10 mm under the skin.
        for f in (EYES, NOSE, MOUTH, EARS):
            new = changed & (grown == f)
            if not new.any():
                continue
            d = ndi.distance_transform_edt(anat != f, sampling=2.0)
            assert d[new].max() <= 5.0 + 1e-6
        inside = ndi.binary_fill_holes(anat != 0)
        depth = ndi.distance_transform_edt(inside, sampling=2.0)
        assert depth[changed].max() <= 10.0 + 1e-6


def test_brain_is_never_near_a_feature() -> None:
    gen = SynthHeadGenerator(shape=(112, 112, 112), spacing_mm=2.0, seed=23)
    for i in range(5):
        s = gen.sample_with_info(i)
        lab = s.labels.array
        brain = lab == BRAIN
        feats = (lab >= 1) & (lab <= 4)
        assert brain.any() and feats.any()
        dist_mm = ndi.distance_transform_edt(~brain, sampling=s.labels.spacing)
        assert dist_mm[feats].min() >= 5.0, s.info


def test_orientation_changes_keep_world_geometry() -> None:
    kw = {"shape": (64, 64, 64), "spacing_mm": 3.5, "seed": 2}
    plain = SynthHeadGenerator(random_orientation=False, **kw)
    turned = SynthHeadGenerator(random_orientation=True, **kw)
    n_other = 0
    for i in range(4):
        a, b = plain.sample_with_info(i), turned.sample_with_info(i)
        assert a.labels.axcodes == ("R", "A", "S")
        if b.labels.axcodes != ("R", "A", "S"):
            n_other += 1
        assert np.array_equal(b.image.affine, b.labels.affine)
        # Same voxel centres in the world, so reorienting gives back the same labels.
        back, aff = to_ras(b.labels)
        assert np.allclose(aff, a.labels.affine)
        assert np.mean(back == a.labels.array) > 0.999
        for f in (EYES, EARS, BRAIN):
            pa, pb = world_points(a.labels, a.labels.array == f), world_points(b.labels, b.labels.array == f)
            assert np.allclose(pa.mean(0), pb.mean(0), atol=0.5)
    assert n_other >= 3


def test_field_of_view_crops_sometimes_remove_the_mouth() -> None:
    kw = {"shape": (48, 48, 48), "spacing_mm": 5.0, "seed": 4, "templates": ["pydeface_mean"]}
    cut = SynthHeadGenerator(crops={"mouth": 1.0}, **kw)
    whole = SynthHeadGenerator(crops=NO_CROP, **kw)
    for i in range(4):
        c, w = cut.sample_with_info(i), whole.sample_with_info(i)
        assert MOUTH in w.info["features"] and MOUTH not in c.info["features"], c.info
        assert EYES in c.info["features"]
        # Outside the field of view the image is empty and the labels background.
        lost = (w.labels.array > 0) & (c.labels.array == 0)
        assert lost.any() and np.all(c.image.array[lost] == 0)
    default = SynthHeadGenerator(shape=(40, 40, 40), spacing_mm=6.0, seed=9, templates=["pydeface_mean"])
    crops = [default.sample_with_info(i).info for i in range(40)]
    assert any(MOUTH not in inf["features"] for inf in crops)
    assert any(MOUTH in inf["features"] for inf in crops)
    assert {inf["crop"] for inf in crops} >= {"none", "mouth", "chin", "nose", "top"}


def test_contrast_is_randomised_between_samples() -> None:
    gen = SynthHeadGenerator(shape=(48, 48, 48), spacing_mm=5.0, seed=8, crops=NO_CROP)
    orders = set()
    ratios = []
    for i in range(10):
        s = gen.sample_with_info(i)
        img, lab = s.image.array, s.labels.array
        med = {k: float(np.median(img[lab == k])) for k in (BRAIN, LABELS["csf"], LABELS["fat"], SKULL)}
        orders.add(tuple(sorted(med, key=med.get)))
        ratios.append(med[BRAIN] / max(med[LABELS["csf"]], 1e-6))
    assert len(orders) >= 4, orders
    assert min(ratios) < 0.8 and max(ratios) > 1.5, "CSF darker than brain in some, brighter in others"


def test_degradation_never_changes_the_labels() -> None:
    kw = {"shape": (48, 48, 48), "spacing_mm": 2.5, "seed": 3}
    thick = SynthHeadGenerator(thick_slice_probability=1.0, **kw)
    clean = SynthHeadGenerator(thick_slice_probability=0.0, degrade=False, **kw)
    for i in range(3):
        a, b = thick.sample_with_info(i), clean.sample_with_info(i)
        assert np.array_equal(a.labels.array, b.labels.array)
        assert a.info["slice_mm"] is not None and 2.5 < a.info["slice_mm"] <= 7.5
        assert not np.array_equal(a.image.array, b.image.array)


def test_target_only_keeps_the_features_and_nothing_else() -> None:
    kw = {"shape": (48, 48, 48), "spacing_mm": 5.0, "seed": 1}
    full = SynthHeadGenerator(**kw).sample(0)[1].array
    target = SynthHeadGenerator(target_only=True, **kw).sample(0)[1].array
    assert set(np.unique(target).tolist()) <= {0, 1, 2, 3, 4}
    assert np.array_equal(target, np.where(full <= 4, full, 0))


def test_write_synth_dataset(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    yaml_path = write_synth_dataset(
        out, n=3, seed=7, shape=(32, 32, 32), spacing_mm=6.0, validation_fraction=0.34
    )
    ds = load_dataset(yaml_path, check_files=True)
    assert len(ds) == 3 and ds.counts()["validation"] == 1 and ds.counts()["training"] == 2
    first = ds.samples[0]
    image, labels = load_volume(first.location), load_volume(first.label)
    expected_image, expected_labels = SynthHeadGenerator(
        shape=(32, 32, 32), spacing_mm=6.0, seed=7, target_only=True
    ).sample(0)
    assert np.allclose(image.affine, expected_image.affine)
    assert np.array_equal(np.asarray(labels.array), expected_labels.array)
    assert np.allclose(np.asarray(image.array), expected_image.array, rtol=1e-5)
    with pytest.raises(OutputExistsError):
        write_synth_dataset(out, n=3, seed=7, shape=(32, 32, 32), spacing_mm=6.0)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="template"):
        SynthHeadGenerator(templates=["nope"])
    with pytest.raises(ValueError, match="crops"):
        SynthHeadGenerator(crops={"sideways": 1.0})
    with pytest.raises(ValueError, match="spacing"):
        SynthHeadGenerator(spacing_mm=0.0)


def test_cli_dataset_synth_writes_a_checked_dataset(tmp_path: Path) -> None:
    from deephealth_deid.cli import main as deid

    out = tmp_path / "synth"
    assert (
        deid(["dataset", "synth", str(out), "-n", "2", "--shape", "32", "32", "32", "--spacing", "6", "-q"])
        == 0
    )
    ds = load_dataset(out / "dataset.yaml", check_files=True)
    assert len(ds) == 2 and all(s.label is not None for s in ds.samples)
    assert deid(["dataset", "synth", str(out), "-n", "2", "--shape", "32", "32", "32", "-q"]) == 1  # exists
