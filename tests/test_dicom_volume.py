"""DICOM volumes: series and Enhanced files, read by position and written back header-exact."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import dicom_factory as fac
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

import deephealth_deid as dd
from deephealth_deid.errors import (
    CorruptInputError,
    DecoderUnavailableError,
    InvalidDataError,
    MultipleSeriesError,
    OutputError,
    SeriesError,
    SliceGeometryError,
    TooLargeError,
    UnsupportedInputError,
    WrongKindError,
)
from deephealth_deid.io._dicom import derived_uid
from deephealth_deid.io.dicom_volume import CHANGED_ATTRIBUTES, DicomVolumeSource, read_dicom_volume

DATA_STORE = Path(__import__("data_store").__file__).parent / "data"
CHANGED_TAGS = frozenset(pydicom.datadict.tag_for_keyword(k) for k in CHANGED_ATTRIBUTES)
OBLIQUE = fac.rotation(12.0, -20.0, 35.0)
OBLIQUE_IOP = [*OBLIQUE[:, 0], *OBLIQUE[:, 1]]
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


# --------------------------------------------------------------------------- helpers


def stored_values(shape: tuple[int, int, int], dtype: type = np.int16, seed: int = 0) -> np.ndarray:
    """Random stored values covering most of a CT-like range, reproducible."""
    rng = np.random.default_rng(seed)
    lo, hi = (-1024, 3071) if np.dtype(dtype).kind == "i" else (0, 4095)
    return rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)


def shuffled_names(n: int, seed: int = 1) -> tuple[list[str], list[int]]:
    """File names and InstanceNumbers in an order unrelated to the slice positions."""
    perm = np.random.default_rng(seed).permutation(n)
    return [f"img_{p:03d}.dcm" for p in perm], [int(p) * 7 % 101 + 1 for p in perm[::-1]]


def world_lps(affine_ras: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """LPS world coordinates of voxel indices ``ijk`` (N x 3) under a RAS affine."""
    lps = LPS_TO_RAS @ affine_ras
    return ijk @ lps[:3, :3].T + lps[:3, 3]


_WORD_DTYPES = {"OW": "u2", "OL": "u4", "OF": "f4", "OD": "f8", "OV": "u8"}


def assert_same_attributes(
    src: Dataset,
    out: Dataset,
    *,
    ignore: frozenset = CHANGED_TAGS,
    where: str = "",
    byte_orders: tuple[str, str] | None = None,
) -> None:
    """Every element of ``src`` is in ``out`` with the same value (and VR), and nothing is added.

    Group 0002 and ``ignore`` (top level only) are left out; sequences are
    compared item by item, element by element. Word values (OW, OL, ...) are
    compared as numbers, so a big-endian source matches its little-endian copy.
    """
    if byte_orders is None:
        byte_orders = tuple("<" if ds.original_encoding[1] is not False else ">" for ds in (src, out))
    src_tags = {t for t in src.keys() if t.group != 2 and t not in ignore}  # noqa: SIM118 - a Dataset iterates elements
    out_tags = {t for t in out.keys() if t.group != 2 and t not in ignore}  # noqa: SIM118
    assert src_tags == out_tags, (
        f"{where}: attributes removed {sorted(map(str, src_tags - out_tags))}, "
        f"added {sorted(map(str, out_tags - src_tags))}"
    )
    for tag in sorted(src_tags):
        a, b = src[tag], out[tag]
        name = f"{where}{a.keyword or tag}"
        if a.VR == "SQ":
            assert b.VR == "SQ", name
            assert len(a.value) == len(b.value), f"{name}: number of items differs"
            for i, (x, y) in enumerate(zip(a.value, b.value, strict=True)):
                assert_same_attributes(
                    x, y, ignore=frozenset(), where=f"{name}[{i}].", byte_orders=byte_orders
                )
        elif a.VR in _WORD_DTYPES and isinstance(a.value, bytes):
            dtype = _WORD_DTYPES[a.VR]
            x = np.frombuffer(a.value, byte_orders[0] + dtype)
            y = np.frombuffer(b.value, byte_orders[1] + dtype)
            np.testing.assert_array_equal(x, y, err_msg=f"{name}: value differs")
        else:
            assert a.value == b.value, f"{name}: value differs"
            if " or " not in a.VR and a.VR != "UN":
                assert a.VR == b.VR, f"{name}: VR {a.VR} became {b.VR}"


def read_all(folder: Path) -> dict[str, Dataset]:
    return {p.name: pydicom.dcmread(p) for p in sorted(folder.iterdir())}


def dciodvfy_errors(path: Path) -> set[str]:
    """The 'Error' lines dciodvfy reports for one file."""
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False)
    return {
        line.strip() for line in (run.stdout + run.stderr).splitlines() if line.lstrip().startswith("Error")
    }


needs_dciodvfy = pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) is not on PATH"
)


def enhanced_from_real(
    name: str, tmp_path: Path, *, perm: list[int], **geometry: object
) -> tuple[Path, Dataset]:
    """A data_store Enhanced MR file given functional groups, frames placed at shuffled positions.

    Frame ``f`` is placed at slice position ``perm[f]``. The original
    ``emri_small*`` files have no functional groups (no geometry at all).
    """
    ds = pydicom.dcmread(DATA_STORE / name)
    n = int(ds.NumberOfFrames)
    iop = geometry.pop("orientation", (1, 0, 0, 0, 1, 0))
    pos = fac.slice_positions(n, orientation=iop, origin=(-20.0, 15.0, 30.0), slice_step=1.2)
    fac.add_functional_groups(ds, positions=pos[perm], orientation=iop, pixel_spacing=(0.9, 0.8), **geometry)
    out = tmp_path / f"fg_{name}"
    ds.save_as(out)
    return out, ds


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def ct_series(tmp_path: Path) -> dict:
    """Oblique CT series, int16 with per-slice rescale, files and InstanceNumbers shuffled."""
    n = 9
    values = stored_values((12, 10, n))
    names, numbers = shuffled_names(n)
    slopes = [1.0, 0.5, 2.0, 1.0, 1.25, 1.0, 0.75, 1.0, 3.0]
    intercepts = [-1024.0, -1024.0, -1000.0, -1024.0, -1024.0, 0.0, -1024.0, -1024.0, -2048.0]
    origin = (-40.5, 22.25, 17.0)
    folder = tmp_path / "ct"
    paths = fac.write_series(
        folder,
        values,
        names=names,
        modality="CT",
        orientation=OBLIQUE_IOP,
        pixel_spacing=(0.7, 0.9),
        origin=origin,
        slice_step=2.5,
        slopes=slopes,
        intercepts=intercepts,
        instance_numbers=numbers,
    )
    return {
        "folder": folder,
        "paths": paths,
        "values": values,
        "slopes": slopes,
        "intercepts": intercepts,
        "origin": np.array(origin),
        "spacing": (0.7, 0.9),
        "step": 2.5,
    }


@pytest.fixture
def mr_series(tmp_path: Path) -> dict:
    """Sagittal-ish MR series, uint16, no rescale, 12 stored bits."""
    n = 6
    values = stored_values((16, 14, n), np.uint16, seed=3)
    folder = tmp_path / "mr"
    iop = [0, 1, 0, 0, 0, -1]
    names, _ = shuffled_names(n, seed=5)
    fac.write_series(
        folder, values, names=names, modality="MR", orientation=iop, slice_step=1.1, bits_stored=12
    )
    return {"folder": folder, "values": values}


# --------------------------------------------------------------------------- reading a series


def test_slices_sorted_by_position_not_by_name_or_instance_number(ct_series: dict) -> None:
    vol = dd.load_volume(ct_series["folder"])
    values, m, b = ct_series["values"], ct_series["slopes"], ct_series["intercepts"]
    assert vol.shape == values.shape
    expected = np.stack([values[:, :, k] * m[k] + b[k] for k in range(values.shape[2])], axis=-1)
    np.testing.assert_array_equal(vol.array, expected)
    assert vol.format == "dicom-series"
    assert isinstance(vol.source, DicomVolumeSource)
    assert vol.path == ct_series["folder"]


def test_affine_places_every_voxel_at_its_dicom_position(ct_series: dict) -> None:
    vol = dd.load_volume(ct_series["folder"])
    rows, cols, n = vol.shape
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    row_cos, col_cos = OBLIQUE[:, 0], OBLIQUE[:, 1]
    for k in range(n):
        ipp = ct_series["origin"] + k * ct_series["step"] * np.cross(row_cos, col_cos)
        ijk = np.column_stack([r.ravel(), c.ravel(), np.full(r.size, k)])
        want = ipp + np.outer(r.ravel() * 0.7, col_cos) + np.outer(c.ravel() * 0.9, row_cos)
        np.testing.assert_allclose(world_lps(vol.affine, ijk), want, atol=1e-4)
    assert vol.spacing == pytest.approx((0.7, 0.9, 2.5), abs=1e-5)


def test_gantry_tilted_stack_keeps_exact_world_coordinates(tmp_path: Path) -> None:
    tilt = np.deg2rad(15.0)
    step = np.array([0.0, 3.0 * np.tan(tilt), 3.0])  # shifts along y from slice to slice
    values = stored_values((8, 9, 7))
    fac.write_series(
        tmp_path / "tilt", values, slice_step=step, origin=(-10, -20, -30), extra={"GantryDetectorTilt": "15"}
    )
    vol = dd.load_volume(tmp_path / "tilt")
    rows, cols, n = vol.shape
    ijk = np.stack(np.meshgrid(np.arange(rows), np.arange(cols), np.arange(n), indexing="ij"), -1).reshape(
        -1, 3
    )
    ipp = np.array([-10, -20, -30]) + np.outer(ijk[:, 2], step)
    want = ipp + np.outer(ijk[:, 0], [0, 1, 0]) + np.outer(ijk[:, 1], [1, 0, 0])
    np.testing.assert_allclose(world_lps(vol.affine, ijk), want, atol=1e-4)
    # The third column is the true step, not the normal times the spacing.
    np.testing.assert_allclose(LPS_TO_RAS @ vol.affine[:, 2], [*step, 0], atol=1e-6)


@pytest.mark.filterwarnings("ignore:The DICOM readers are highly experimental:UserWarning")
def test_affine_agrees_with_nibabel_dicomwrappers(ct_series: dict) -> None:
    from nibabel.nicom import dicomwrappers

    vol = dd.load_volume(ct_series["folder"])
    ours_lps = LPS_TO_RAS @ vol.affine
    datasets = [pydicom.dcmread(p) for p in ct_series["paths"]]
    # nibabel's single-slice affine: LPS, voxel axes (row, column, slice), slice axis = normal.
    normal = np.cross(OBLIQUE[:, 0], OBLIQUE[:, 1])
    first = min(datasets, key=lambda d: float(np.dot(np.asarray(d.ImagePositionPatient, float), normal)))
    nib_affine = dicomwrappers.wrapper_from_data(first).affine
    np.testing.assert_allclose(ours_lps[:3, :2], nib_affine[:3, :2], atol=1e-6)
    np.testing.assert_allclose(ours_lps[:3, 3], nib_affine[:3, 3], atol=1e-6)
    # nibabel's slice axis is column x row cosines (a proper rotation for (row, column, slice));
    # ours follows the sorted positions along row x column cosines: the same line.
    nib_normal = nib_affine[:3, 2] / np.linalg.norm(nib_affine[:3, 2])
    assert abs(float(nib_normal @ normal)) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(ours_lps[:3, 2], normal * ct_series["step"], atol=1e-4)


def test_unscaled_series_keeps_its_integer_type(mr_series: dict) -> None:
    vol = dd.load_volume(mr_series["folder"])
    assert vol.array.dtype == np.uint16
    np.testing.assert_array_equal(vol.array, mr_series["values"])
    # rows run along -z (inferior), columns along +y (posterior), slices along -x (right)
    assert vol.axcodes == ("I", "P", "R")


def test_ct_intercept_gives_float32_hounsfield_units(tmp_path: Path) -> None:
    values = stored_values((6, 6, 4))
    fac.write_series(tmp_path / "hu", values, slopes=1.0, intercepts=-1024.0)
    vol = dd.load_volume(tmp_path / "hu")
    assert vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, values.astype(np.float32) - 1024)


def test_float64_when_float32_would_not_round_trip(tmp_path: Path) -> None:
    values = stored_values((5, 5, 3), np.uint16)
    fac.write_series(tmp_path / "big", values, slopes=0.001, intercepts=-60000.0)
    vol = dd.load_volume(tmp_path / "big")
    assert vol.array.dtype == np.float64
    dd.save_volume(vol, tmp_path / "out")
    sources = {derived_uid(ds.SOPInstanceUID): ds for ds in read_all(tmp_path / "big").values()}
    for ds in read_all(tmp_path / "out").values():
        np.testing.assert_array_equal(ds.pixel_array, sources[ds.SOPInstanceUID].pixel_array)


def test_a_file_of_the_series_reads_the_whole_series(ct_series: dict) -> None:
    folder = ct_series["folder"]
    other = fac.make_series(stored_values((4, 4, 3), seed=9), series_description="another series")
    fac.write_datasets(other, folder, names=["zz_other_0.dcm", "zz_other_1.dcm", "zz_other_2.dcm"])
    from_file = dd.load_volume(ct_series["paths"][4])
    from_folder = dd.load_volume(folder, series_uid=pydicom.dcmread(ct_series["paths"][0]).SeriesInstanceUID)
    np.testing.assert_array_equal(from_file.array, from_folder.array)
    np.testing.assert_allclose(from_file.affine, from_folder.affine)
    assert len(from_file.source.files) == 9


def test_folder_search_skips_hidden_dicomdir_and_other_files(tmp_path: Path) -> None:
    values = stored_values((6, 5, 4))
    datasets = fac.make_series(values)
    fac.write_datasets(datasets[:2], tmp_path / "study" / "a")
    fac.write_datasets(datasets[2:], tmp_path / "study" / "b" / "c", names=["x.dcm", "y"])
    (tmp_path / "study" / "notes.txt").write_text("not DICOM\n")
    (tmp_path / "study" / "empty.dcm").write_bytes(b"")
    (tmp_path / "study" / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    hidden = tmp_path / "study" / ".hidden"
    fac.write_datasets(fac.make_series(values[:, :, :2], series_description="hidden"), hidden)
    sr = pydicom.dcmread(get_testdata_file("reportsi.dcm"))
    sr.save_as(tmp_path / "study" / "report.dcm")
    vol = dd.load_volume(tmp_path / "study")
    np.testing.assert_array_equal(vol.array, values)


def test_series_uid_selects_one_of_several(tmp_path: Path) -> None:
    a = fac.make_series(stored_values((5, 5, 3), seed=1), series_description="T1 Doe^Jane", series_number=3)
    b = fac.make_series(
        stored_values((5, 5, 4), seed=2), modality="MR", series_description="T2", series_number=4
    )
    fac.write_datasets(a, tmp_path / "mixed", names=["a1", "a2", "a3"])
    fac.write_datasets(b, tmp_path / "mixed", names=["b1", "b2", "b3", "b4"])
    with pytest.raises(MultipleSeriesError) as err:
        dd.load_volume(tmp_path / "mixed")
    msg = str(err.value)
    assert a[0].SeriesInstanceUID in msg and b[0].SeriesInstanceUID in msg
    assert "series 3," in msg and "series 4," in msg and "3 files" in msg and "4 files" in msg and "MR" in msg
    assert "Doe" not in msg  # the free-text description is never shown: it can hold a name
    assert "series_uid=" in msg and "--series" in msg
    vol = dd.load_volume(tmp_path / "mixed", series_uid=b[0].SeriesInstanceUID)
    assert vol.shape == (5, 5, 4)
    with pytest.raises(SeriesError, match=a[0].SeriesInstanceUID) as err:
        dd.load_volume(tmp_path / "mixed", series_uid="1.2.3.4")
    assert "1.2.3.4" in str(err.value)
    with pytest.raises(SeriesError, match="belongs to series"):
        dd.load_volume(tmp_path / "mixed" / "a1", series_uid=b[0].SeriesInstanceUID)


# --------------------------------------------------------------------------- bad series


def test_missing_slice_is_refused_and_located(tmp_path: Path) -> None:
    datasets = fac.make_series(stored_values((5, 5, 8)), slice_step=2.0)
    names = [f"s{k}.dcm" for k in range(8)]
    del datasets[5], names[5]
    fac.write_datasets(datasets, tmp_path / "gap", names=names)
    with pytest.raises(SliceGeometryError, match="missing") as err:
        dd.load_volume(tmp_path / "gap")
    assert "s4.dcm" in str(err.value) and "s6.dcm" in str(err.value)
    with pytest.raises(SliceGeometryError, match="missing"):
        dd.load_volume(tmp_path / "gap", allow_uneven=True)


def test_duplicate_positions_suggest_splitting_echoes(tmp_path: Path) -> None:
    values = stored_values((5, 5, 4))
    echo1 = fac.make_series(values, modality="MR", extra={"EchoTime": "5", "EchoNumbers": "1"})
    echo2 = fac.make_series(values, modality="MR", extra={"EchoTime": "10", "EchoNumbers": "2"})
    for k, ds in enumerate(echo2):
        ds.SOPInstanceUID = fac.uid("echo2", k)
    fac.write_datasets(echo1 + echo2, tmp_path / "echoes", names=[f"e{i}.dcm" for i in range(8)])
    with pytest.raises(SliceGeometryError) as err:
        dd.load_volume(tmp_path / "echoes")
    msg = str(err.value)
    assert "multi-echo" in msg and "EchoTime" in msg and "split" in msg


def test_uneven_spacing_is_refused_unless_allowed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    values = stored_values((5, 5, 6))
    z = np.array([0.0, 1.0, 2.0, 3.3, 4.0, 5.0])
    positions = np.column_stack([np.zeros(6), np.zeros(6), z])
    fac.write_series(tmp_path / "uneven", values, positions=positions)
    with pytest.raises(SliceGeometryError, match="uneven slice spacing") as err:
        dd.load_volume(tmp_path / "uneven")
    assert "allow_uneven=True" in str(err.value)
    with caplog.at_level(logging.WARNING, logger="deephealth_deid"):
        vol = dd.load_volume(tmp_path / "uneven", allow_uneven=True)
    assert any("uneven" in r.getMessage() and "0.3000 mm" in r.getMessage() for r in caplog.records)
    assert vol.spacing[2] == pytest.approx(1.0)  # mean step (5 mm / 5)
    np.testing.assert_array_equal(vol.array, values)


def test_small_position_jitter_is_tolerated(tmp_path: Path) -> None:
    z = np.arange(6) * 3.0 + np.array([0, 0.004, -0.005, 0.003, 0, 0.002])
    fac.write_series(
        tmp_path / "jitter",
        stored_values((4, 4, 6)),
        positions=np.column_stack([np.zeros(6), np.zeros(6), z]),
    )
    assert dd.load_volume(tmp_path / "jitter").spacing[2] == pytest.approx(3.0, abs=1e-3)


def test_positions_off_one_line_are_refused(tmp_path: Path) -> None:
    positions = np.column_stack([np.zeros(5), np.zeros(5), np.arange(5.0)])
    positions[3, 0] += 2.0
    fac.write_series(tmp_path / "bent", stored_values((4, 4, 5)), positions=positions)
    with pytest.raises(SliceGeometryError, match="not on one line"):
        dd.load_volume(tmp_path / "bent")


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("ImageOrientationPatient", [0, 1, 0, 0, 0, -1], "ImageOrientationPatient"),
        ("PixelSpacing", [0.5, 0.5], "PixelSpacing"),
    ],
)
def test_slices_of_different_geometry_are_refused(
    tmp_path: Path, attribute: str, value: list, message: str
) -> None:
    datasets = fac.make_series(stored_values((4, 4, 4)))
    setattr(datasets[2], attribute, value)
    fac.write_datasets(datasets, tmp_path / "odd")
    with pytest.raises(SeriesError, match=message):
        dd.load_volume(tmp_path / "odd")


def test_slices_of_different_size_are_refused(tmp_path: Path) -> None:
    a = fac.make_series(stored_values((4, 4, 3)))
    b = fac.make_series(stored_values((5, 4, 3)), origin=(0, 0, 3))
    for k, ds in enumerate(b):
        ds.SOPInstanceUID = fac.uid("b", k)
    fac.write_datasets(a + b, tmp_path / "sizes")
    with pytest.raises(SeriesError, match="differ in size"):
        dd.load_volume(tmp_path / "sizes")


def test_file_without_pixel_data_is_refused(tmp_path: Path) -> None:
    sr = get_testdata_file("reportsi.dcm")
    with pytest.raises(UnsupportedInputError, match="no pixel data"):
        dd.load_volume(sr)
    (tmp_path / "only_sr").mkdir()
    shutil.copy(sr, tmp_path / "only_sr" / "sr.dcm")
    with pytest.raises(UnsupportedInputError, match="no pixel data"):
        dd.load_volume(tmp_path / "only_sr")


def test_dicomdir_given_directly_is_refused() -> None:
    with pytest.raises(UnsupportedInputError, match="DICOMDIR"):
        dd.load_volume(get_testdata_file("DICOMDIR"))


def test_empty_or_foreign_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "a.txt").write_text("hello")
    with pytest.raises(UnsupportedInputError, match="no DICOM files"):
        dd.load_volume(tmp_path / "none")


@pytest.mark.parametrize("name", ["RG1_UNCI.dcm", "US1_UNCR.dcm", "OBXXXX1A_2frame.dcm", "SC_rgb.dcm"])
def test_2d_images_are_the_wrong_kind(name: str) -> None:
    with pytest.raises(WrongKindError, match="load_image"):
        dd.load_volume(DATA_STORE / name)


def test_synthetic_2d_image_is_the_wrong_kind(tmp_path: Path) -> None:
    fac.make_image(np.zeros((20, 30), np.uint16), modality="CR").save_as(
        tmp_path / "cr.dcm", enforce_file_format=True
    )
    with pytest.raises(WrongKindError, match="a 2D CR image"):
        dd.load_volume(tmp_path / "cr.dcm")
    (tmp_path / "folder").mkdir()
    shutil.copy(tmp_path / "cr.dcm", tmp_path / "folder")
    with pytest.raises(WrongKindError, match="load_image"):
        dd.load_volume(tmp_path / "folder")


def test_non_enhanced_multiframe_is_the_wrong_kind(tmp_path: Path) -> None:
    cine = fac.make_image(np.zeros((5, 16, 16), np.uint8), modality="US")
    cine.save_as(tmp_path / "cine.dcm", enforce_file_format=True)
    with pytest.raises(WrongKindError, match="multi-frame"):
        dd.load_volume(tmp_path / "cine.dcm")


def test_single_slice_is_the_wrong_kind(tmp_path: Path) -> None:
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "mr.dcm")
    with pytest.raises(WrongKindError, match="single slice"):
        dd.load_volume(tmp_path / "mr.dcm")
    with pytest.raises(WrongKindError, match="single slice"):
        dd.load_volume(tmp_path)


def test_compressed_slices_decode_like_pydicom(tmp_path: Path) -> None:
    from pydicom.uid import RLELossless

    values = stored_values((10, 12, 4))
    datasets = fac.make_series(values, slopes=1, intercepts=-1024)
    for ds in datasets:
        ds.compress(RLELossless)
    fac.write_datasets(datasets, tmp_path / "rle")
    vol = dd.load_volume(tmp_path / "rle")
    np.testing.assert_array_equal(vol.array, values - 1024.0)
    dd.save_volume(vol, tmp_path / "out")
    for ds in read_all(tmp_path / "out").values():
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    np.testing.assert_array_equal(dd.load_volume(tmp_path / "out").array, vol.array)


def test_missing_decoder_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom.pixels.decoders.base import Decoder
    from pydicom.uid import RLELossless

    datasets = fac.make_series(stored_values((6, 6, 3)))
    for ds in datasets:
        ds.compress(RLELossless)
    fac.write_datasets(datasets, tmp_path / "rle")
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(DecoderUnavailableError, match=r"RLE Lossless.*install"):
        dd.load_volume(tmp_path / "rle")


def test_transfer_syntax_without_any_decoder_is_reported(tmp_path: Path) -> None:
    from pydicom.encaps import encapsulate
    from pydicom.uid import MPEG4HP41

    datasets = fac.make_series(stored_values((6, 6, 3)))
    for ds in datasets:
        ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\0" * 60])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = MPEG4HP41
    fac.write_datasets(datasets, tmp_path / "mpeg")
    with pytest.raises(DecoderUnavailableError, match="MPEG-4"):
        dd.load_volume(tmp_path / "mpeg")


def test_truncated_pixel_data_is_corrupt(tmp_path: Path) -> None:
    paths = fac.write_series(tmp_path / "cut", stored_values((16, 16, 4)))
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) - 100])
    with pytest.raises(CorruptInputError, match=paths[2].name):
        dd.load_volume(tmp_path / "cut")


@pytest.mark.parametrize("keep", [500, 900, 1000])
def test_file_truncated_in_its_header_is_corrupt(tmp_path: Path, keep: int) -> None:
    paths = fac.write_series(tmp_path / "cut", stored_values((16, 16, 4)))
    paths[3].write_bytes(paths[3].read_bytes()[:keep])
    with pytest.raises(CorruptInputError, match=paths[3].name):
        dd.load_volume(tmp_path / "cut")


def test_nan_in_float_pixel_data_is_refused(tmp_path: Path) -> None:
    values = np.ones((4, 4, 3), np.float32)
    values[1, 2, 1] = np.nan
    fac.write_series(tmp_path / "float", values, modality="MR")
    with pytest.raises(InvalidDataError, match="NaN"):
        dd.load_volume(tmp_path / "float")
    fac.write_series(tmp_path / "finite", np.nan_to_num(values), modality="MR")
    vol = dd.load_volume(tmp_path / "finite")
    assert vol.array.dtype == np.float32
    with pytest.raises(OutputError, match="floating-point"):
        dd.save_volume(vol, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_memory_is_checked_before_pixels_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deephealth_deid.io import _files, dicom_volume

    fac.write_series(tmp_path / "s", stored_values((16, 16, 4)))
    monkeypatch.setattr(_files, "available_memory", lambda: 1000)
    monkeypatch.setattr(dicom_volume, "decode_pixels", lambda *a, **k: pytest.fail("pixels were decoded"))
    with pytest.raises(TooLargeError, match="GiB"):
        dd.load_volume(tmp_path / "s")


# --------------------------------------------------------------------------- writing a series


def test_round_trip_keeps_values_geometry_and_every_header_attribute(ct_series: dict, tmp_path: Path) -> None:
    vol = dd.load_volume(ct_series["folder"])
    out = dd.save_volume(vol, tmp_path / "out")
    again = dd.load_volume(out)
    np.testing.assert_array_equal(again.array, vol.array)
    assert again.array.dtype == vol.array.dtype
    np.testing.assert_allclose(again.affine, vol.affine, atol=1e-9)

    sources = {derived_uid(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, ct_series["paths"])}
    written = read_all(out)
    # Source file names are not reused (they may name the patient): slices are numbered in order.
    assert sorted(written) == [f"IM{k + 1:05d}.dcm" for k in range(len(sources))]
    positions = [float(written[n].ImagePositionPatient[2]) for n in sorted(written)]
    assert positions == sorted(positions) or positions == sorted(positions, reverse=True)
    study = {ds.StudyInstanceUID for ds in sources.values()}
    new_series = {ds.SeriesInstanceUID for ds in written.values()}
    assert len(new_series) == 1 and new_series.isdisjoint({ds.SeriesInstanceUID for ds in sources.values()})
    for name, ds in written.items():
        src = sources[ds.SOPInstanceUID]
        assert_same_attributes(src, ds, where=f"{name}: ")
        assert ds.StudyInstanceUID in study
        assert ds.SOPInstanceUID != src.SOPInstanceUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.ImageType[0] == "DERIVED" and list(ds.ImageType[1:]) == list(src.ImageType[1:])
        for key in (
            "BitsAllocated",
            "BitsStored",
            "HighBit",
            "PixelRepresentation",
            "PhotometricInterpretation",
        ):
            assert ds[key].value == src[key].value, key
        np.testing.assert_array_equal(ds.pixel_array, src.pixel_array)  # stored values bit-exact


def test_derived_uids_are_deterministic(ct_series: dict, tmp_path: Path) -> None:
    vol = dd.load_volume(ct_series["folder"])
    first = read_all(dd.save_volume(vol, tmp_path / "one"))
    second = read_all(dd.save_volume(dd.load_volume(ct_series["folder"]), tmp_path / "two"))
    assert {n: d.SOPInstanceUID for n, d in first.items()} == {n: d.SOPInstanceUID for n, d in second.items()}
    assert len({d.SOPInstanceUID for d in first.values()}) == len(first)
    # writing does not touch the volume's source headers: the same volume written again is identical
    third = read_all(dd.save_volume(vol, tmp_path / "three"))
    assert {n: d.SOPInstanceUID for n, d in third.items()} == {n: d.SOPInstanceUID for n, d in first.items()}
    assert {n: d.BitsStored for n, d in third.items()} == {n: d.BitsStored for n, d in first.items()}
    on_disk = {pydicom.dcmread(p).SOPInstanceUID for p in ct_series["paths"]}
    assert {h.SOPInstanceUID for h in vol.source.headers} == on_disk
    assert {str(h.ImageType[0]) for h in vol.source.headers} == {"ORIGINAL"}
    for ds in first.values():
        assert pydicom.uid.UID(ds.SOPInstanceUID).is_valid and pydicom.uid.UID(ds.SeriesInstanceUID).is_valid


def test_changed_voxels_go_back_through_each_slice_rescale(ct_series: dict, tmp_path: Path) -> None:
    vol = dd.load_volume(ct_series["folder"])
    array = vol.array.copy()
    array[2:5, 3:6, :] = 40.0  # a region set to 40 HU on every slice
    out = dd.save_volume(vol.with_array(array), tmp_path / "edited")
    again = dd.load_volume(out)
    # 40 HU where the slice's rescale can store it exactly, the nearest stored step elsewhere
    assert np.abs(again.array[2:5, 3:6, :] - 40.0).max() <= 0.5 * max(ct_series["slopes"])
    untouched = np.ones(array.shape, bool)
    untouched[2:5, 3:6, :] = False
    np.testing.assert_array_equal(again.array[untouched], vol.array[untouched])
    # stored values follow each slice's own rescale
    by_position = sorted(
        read_all(out).values(),
        key=lambda d: float(np.dot(d.ImagePositionPatient, np.cross(OBLIQUE[:, 0], OBLIQUE[:, 1]))),
    )
    for k, ds in enumerate(by_position):
        m, b = ct_series["slopes"][k], ct_series["intercepts"][k]
        assert float(ds.RescaleSlope) == m and float(ds.RescaleIntercept) == b
        stored = np.rint((40.0 - b) / m)
        assert (ds.pixel_array[2:5, 3:6] == stored).all()
        np.testing.assert_array_equal(again.array[2:5, 3:6, k], stored * m + b)


def test_out_of_range_values_are_clipped_with_a_warning(
    mr_series: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vol = dd.load_volume(mr_series["folder"])
    array = vol.array.astype(np.float32)
    array[0, 0, :] = -50.0
    array[1, 1, 2] = 1e6
    with caplog.at_level(logging.WARNING, logger="deephealth_deid"):
        out = dd.save_volume(vol.with_array(array), tmp_path / "clipped")
    assert any("clipped" in r.getMessage() for r in caplog.records)
    again = dd.load_volume(out)
    assert again.array.dtype == np.uint16
    assert (again.array[0, 0, :] == 0).all() and again.array[1, 1, 2] == 65535
    ds = next(iter(read_all(out).values()))
    assert ds.BitsStored == 16 or ds.pixel_array.max() < 2**12  # widened only where needed


def test_series_names_fall_back_when_source_names_repeat(tmp_path: Path) -> None:
    values = stored_values((4, 4, 3))
    datasets = fac.make_series(values)
    fac.write_datasets(datasets, tmp_path / "nested", names=["a/IM1", "b/IM1", "c/IM1"])
    out = dd.save_volume(dd.load_volume(tmp_path / "nested"), tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["IM00001.dcm", "IM00002.dcm", "IM00003.dcm"]
    z = [float(pydicom.dcmread(out / f"IM0000{k}.dcm").ImagePositionPatient[2]) for k in (1, 2, 3)]
    assert z == sorted(z)


def test_failed_write_leaves_nothing_behind(
    ct_series: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = dd.load_volume(ct_series["folder"])
    calls = {"n": 0}
    real = pydicom.dcmwrite

    def failing_dcmwrite(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full (simulated)")
        real(*args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmwrite", failing_dcmwrite)
    out_parent = tmp_path / "outputs"
    out_parent.mkdir()
    with pytest.raises(OSError, match="disk full"):
        dd.save_volume(vol, out_parent / "series")
    assert calls["n"] == 4  # three slices were written before the failure ...
    assert list(out_parent.iterdir()) == []  # ... and removed with their temporary folder


def test_changed_geometry_or_shape_cannot_be_written(ct_series: dict, tmp_path: Path) -> None:
    vol = dd.load_volume(ct_series["folder"])
    moved = dd.Volume(vol.array, vol.affine @ np.diag([1, 1, 2, 1]), source=vol.source, path=vol.path)
    with pytest.raises(OutputError, match="NIfTI"):
        dd.save_volume(moved, tmp_path / "moved")
    cropped = dd.Volume(vol.array[:, :, 1:], vol.affine, source=vol.source, path=vol.path)
    with pytest.raises(ValueError, match="shape"):
        dd.save_volume(cropped, tmp_path / "cropped")
    nan = vol.array.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(OutputError, match="NaN"):
        dd.save_volume(vol.with_array(nan), tmp_path / "nan")
    assert (
        not any(tmp_path.glob("moved*"))
        and not any(tmp_path.glob("cropped*"))
        and not any(tmp_path.glob("nan*"))
    )
    # ... but NIfTI output is always possible
    dd.save_volume(moved, tmp_path / "moved.nii.gz")


def test_input_series_is_left_untouched(ct_series: dict, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in ct_series["paths"]}
    vol = dd.load_volume(ct_series["folder"])
    dd.save_volume(vol.with_array(vol.array * 0), tmp_path / "zeros")
    dd.save_volume(vol, tmp_path / "same")
    assert {p: p.read_bytes() for p in ct_series["paths"]} == before
    with pytest.raises(OutputError):
        dd.save_volume(vol, ct_series["folder"] / "inside")


def test_implicit_and_big_endian_sources_round_trip(tmp_path: Path) -> None:
    from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

    values = stored_values((8, 16, 4))
    overlay = np.packbits(np.eye(8, 16, dtype=np.uint8).ravel(), bitorder="little")
    for syntax in (ImplicitVRLittleEndian, ExplicitVRBigEndian):
        order = ">" if syntax == ExplicitVRBigEndian else "<"
        folder = tmp_path / syntax.name.replace(" ", "_")
        datasets = fac.make_series(values, series_description=syntax.name)
        for k, ds in enumerate(datasets):
            ds.file_meta.TransferSyntaxUID = syntax
            # pydicom writes OW bytes as given: give them in the file's byte order
            ds.PixelData = values[:, :, k].astype(order + "i2").tobytes()
            for elem, vr, value in (
                (0x0010, "US", 8),
                (0x0011, "US", 16),
                (0x0040, "CS", "G"),
                (0x0050, "SS", [1, 1]),
                (0x0100, "US", 1),
                (0x0102, "US", 0),
                (0x3000, "OW", np.frombuffer(overlay.tobytes(), "<u2").astype(order + "u2").tobytes()),
            ):
                ds.add_new(0x60000000 | elem, vr, value)
        fac.write_datasets(datasets, folder)
        vol = dd.load_volume(folder)
        np.testing.assert_array_equal(vol.array, values)
        out = dd.save_volume(vol, tmp_path / f"out_{folder.name}")
        sources = {derived_uid(ds.SOPInstanceUID): ds for ds in read_all(folder).values()}
        for name, ds in read_all(out).items():
            assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
            assert_same_attributes(sources[ds.SOPInstanceUID], ds, where=f"{syntax.name} {name}: ")
            np.testing.assert_array_equal(ds.overlay_array(0x6000), np.eye(8, 16, dtype=np.uint8))
        np.testing.assert_array_equal(dd.load_volume(out).array, values)


# --------------------------------------------------------------------------- Enhanced files


EMRI = [
    "emri_small.dcm",
    "emri_small_RLE.dcm",
    "emri_small_big_endian.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "emri_small_jpeg_ls_lossless.dcm",
]
PERM = [3, 0, 9, 1, 7, 2, 8, 4, 6, 5]


def test_enhanced_file_without_functional_groups_is_refused() -> None:
    with pytest.raises(SeriesError, match="Functional Groups"):
        dd.load_volume(DATA_STORE / "emri_small.dcm")


@pytest.mark.parametrize("name", EMRI)
def test_enhanced_frames_placed_by_position(name: str, tmp_path: Path) -> None:
    path, _ = enhanced_from_real(name, tmp_path, perm=PERM)
    frames = pydicom.dcmread(DATA_STORE / "emri_small.dcm").pixel_array
    vol = dd.load_volume(path)
    assert vol.format == "dicom-enhanced"
    assert vol.array.dtype == np.uint16
    for f, k in enumerate(PERM):
        np.testing.assert_array_equal(vol.array[:, :, k], frames[f])
    lps = LPS_TO_RAS @ vol.affine
    np.testing.assert_allclose(lps[:3, 3], [-20.0, 15.0, 30.0], atol=1e-6)
    np.testing.assert_allclose(lps[:3, :3], [[0, 0.8, 0], [0.9, 0, 0], [0, 0, 1.2]], atol=1e-6)


@pytest.mark.parametrize(
    "name", ["emri_small.dcm", "emri_small_big_endian.dcm", "emri_small_jpeg_2k_lossless.dcm"]
)
def test_enhanced_round_trip_keeps_frame_order_and_header(name: str, tmp_path: Path) -> None:
    path, _ = enhanced_from_real(name, tmp_path, perm=PERM, slopes=2.0, intercepts=-10.0)
    vol = dd.load_volume(path)
    assert vol.array.dtype == np.float32
    out = dd.save_volume(vol, tmp_path / "out.dcm")
    assert out.is_file()
    src, written = pydicom.dcmread(path), pydicom.dcmread(out)
    assert_same_attributes(src, written)
    assert written.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert written.SOPInstanceUID != src.SOPInstanceUID and written.StudyInstanceUID == src.StudyInstanceUID
    np.testing.assert_array_equal(written.pixel_array, src.pixel_array)  # frames in their original order
    again = dd.load_volume(out)
    np.testing.assert_array_equal(again.array, vol.array)
    np.testing.assert_allclose(again.affine, vol.affine)


def test_enhanced_per_frame_rescale_and_tilt(tmp_path: Path) -> None:
    values = stored_values((8, 6, 5))
    step = np.array([0.0, 0.8, 2.0])
    order = [4, 2, 0, 3, 1]
    slopes = [1.0, 2.0, 0.5, 1.0, 4.0]
    ds = fac.make_enhanced(
        values, modality="CT", slice_step=step, frame_order=order, slopes=slopes, intercepts=-1024.0
    )
    ds.save_as(tmp_path / "ect.dcm", enforce_file_format=True)
    vol = dd.load_volume(tmp_path / "ect.dcm")
    expected = np.stack([values[:, :, k] * slopes[k] - 1024 for k in range(5)], -1)
    np.testing.assert_array_equal(vol.array, expected)
    np.testing.assert_allclose(LPS_TO_RAS @ vol.affine[:, 2], [*step, 0], atol=1e-6)
    edited = vol.array.copy()
    edited[:2] = 0.0
    out = dd.save_volume(vol.with_array(edited), tmp_path / "out.dcm")
    np.testing.assert_array_equal(dd.load_volume(out).array, edited)


def test_real_enhanced_ct(tmp_path: Path) -> None:
    path = DATA_STORE / "eCT_Supplemental.dcm"
    vol = dd.load_volume(path)
    src = pydicom.dcmread(path)
    frames = src.pixel_array
    # IOP (-1,0,0 / 0,1,0): normal is -z, so the frame at z=-149 comes first.
    z = [
        float(fg.PlanePositionSequence[0].ImagePositionPatient[2])
        for fg in src.PerFrameFunctionalGroupsSequence
    ]
    first = int(np.argmax(z))
    np.testing.assert_array_equal(vol.array[:, :, 0], frames[first].astype(np.float32) - 1024)
    lps = LPS_TO_RAS @ vol.affine
    np.testing.assert_allclose(lps[:3, 2], [0, 0, -10.0], atol=1e-6)
    np.testing.assert_allclose(lps[:3, 0], [0, 0.388672, 0], atol=1e-6)
    np.testing.assert_allclose(lps[:3, 1], [-0.388672, 0, 0], atol=1e-6)
    out = dd.save_volume(vol, tmp_path / "ect.dcm")
    written = pydicom.dcmread(out)
    assert_same_attributes(src, written)
    np.testing.assert_array_equal(written.pixel_array, frames)


def test_enhanced_with_several_stacks_is_refused(tmp_path: Path) -> None:
    values = stored_values((6, 6, 4))
    pos = fac.slice_positions(2, slice_step=3.0)
    ds = fac.make_enhanced(values, positions=np.concatenate([pos, pos]), stack_ids=["1", "1", "2", "2"])
    ds.save_as(tmp_path / "stacks.dcm", enforce_file_format=True)
    with pytest.raises(SeriesError, match="several stacks") as err:
        dd.load_volume(tmp_path / "stacks.dcm")
    assert "StackID" in str(err.value)


def test_enhanced_with_missing_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom.pixels.decoders.base import Decoder

    path, _ = enhanced_from_real("emri_small_jpeg_2k_lossless.dcm", tmp_path, perm=PERM)
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(DecoderUnavailableError, match="JPEG 2000"):
        dd.load_volume(path)


def test_segmentation_is_not_a_volume() -> None:
    with pytest.raises(UnsupportedInputError, match="Segmentation"):
        dd.load_volume(DATA_STORE / "liver.dcm")


# --------------------------------------------------------------------------- dciodvfy


@pytest.mark.dciodvfy
@needs_dciodvfy
@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_written_series_adds_no_dciodvfy_error(modality: str, tmp_path: Path) -> None:
    values = stored_values((10, 12, 4), np.int16 if modality == "CT" else np.uint16)
    paths = fac.write_series(
        tmp_path / "in",
        values,
        modality=modality,
        orientation=OBLIQUE_IOP,
        slopes=[1, 2, 1, 0.5],
        intercepts=-5.0,
    )
    vol = dd.load_volume(tmp_path / "in")
    out = dd.save_volume(vol.with_array(vol.array + 3.0), tmp_path / "out")
    by_uid = {derived_uid(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in paths}
    written = sorted(out.iterdir())
    assert len(written) == len(paths)
    for dst in written:
        src = by_uid[pydicom.dcmread(dst, stop_before_pixels=True).SOPInstanceUID]
        new = dciodvfy_errors(dst) - dciodvfy_errors(src)
        assert not new, f"{src.name}: dciodvfy errors the input did not have: {sorted(new)}"


@pytest.mark.dciodvfy
@needs_dciodvfy
def test_written_enhanced_ct_adds_no_dciodvfy_error(tmp_path: Path) -> None:
    path = DATA_STORE / "eCT_Supplemental.dcm"
    out = dd.save_volume(dd.load_volume(path), tmp_path / "out.dcm")
    new = dciodvfy_errors(out) - dciodvfy_errors(path)
    assert not new, f"dciodvfy errors the input did not have: {sorted(new)}"


@pytest.mark.dciodvfy
@needs_dciodvfy
def test_written_enhanced_mr_adds_no_dciodvfy_error(tmp_path: Path) -> None:
    """Enhanced MR keeps its ImageType: its modules tie conditions to ORIGINAL/MIXED."""
    path = enhanced_from_real("emri_small_jpeg_2k_lossless.dcm", tmp_path, perm=PERM)[0]
    out = dd.save_volume(dd.load_volume(path), tmp_path / "out.dcm")
    new = dciodvfy_errors(out) - dciodvfy_errors(path)
    assert not new, sorted(new)
    assert pydicom.dcmread(out).ImageType == pydicom.dcmread(path).ImageType


def test_output_is_independent_of_input_files_after_loading(ct_series: dict, tmp_path: Path) -> None:
    vol = dd.load_volume(ct_series["folder"])
    moved = tmp_path / "moved_away"
    os.rename(ct_series["folder"], moved)
    out = dd.save_volume(vol, tmp_path / "out")
    np.testing.assert_array_equal(dd.load_volume(out).array, vol.array)
    with pytest.raises(SeriesError):
        read_dicom_volume(moved, series_uid="9.9")


def test_one_file_of_a_series_ignores_a_damaged_file_of_another_series(tmp_path: Path) -> None:
    values = stored_values((6, 7, 3))
    paths = fac.write_series(tmp_path / "mixed", values)
    broken = tmp_path / "mixed" / "zz_broken.dcm"
    other = fac.write_series(tmp_path / "other", stored_values((6, 7, 2), seed=3))[0]
    broken.write_bytes(other.read_bytes()[:200])  # a DICOM preamble and a cut header
    vol = dd.load_volume(paths[0])
    np.testing.assert_array_equal(vol.array, values)
    with pytest.raises(CorruptInputError, match="zz_broken"):
        dd.load_volume(tmp_path / "mixed")


def test_force_replaces_an_earlier_output_series_and_never_a_folder_of_other_files(tmp_path: Path) -> None:
    values = stored_values((5, 5, 3), np.uint16)
    fac.write_series(tmp_path / "in", values)
    vol = dd.load_volume(tmp_path / "in")
    dd.save_volume(vol, tmp_path / "out")
    first = sorted(p.name for p in (tmp_path / "out").iterdir())
    dd.save_volume(vol.with_array(vol.array + 1), tmp_path / "out", overwrite=True)  # an earlier output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == first
    other = tmp_path / "results"
    (other / "sub").mkdir(parents=True)
    (other / "sub" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="other files than DICOM"):
        dd.save_volume(vol, other, overwrite=True)
    from deephealth_deid.cli import main

    assert main(["convert", str(tmp_path / "in"), str(other), "--force", "-q"]) == 1
    assert (other / "sub" / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    dd.save_volume(vol, tmp_path / "empty", overwrite=True)  # an empty folder is replaced


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = stored_values((5, 5, 3), np.uint16)
    fac.write_series(tmp_path / "in", values)
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked and real(p, mode, **kw))
    with pytest.raises(OutputError, match="cannot be written"):
        dd.save_volume(dd.load_volume(tmp_path / "in"), locked / "out.nii.gz")
