"""Every kind of bad input gets a DeidError subclass naming the file, and leaves no output."""

from __future__ import annotations

import gzip
import struct

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

import deephealth_deid as dd
from deephealth_deid import errors
from deephealth_deid.cli import main as deid


def _assert_names(exc: pytest.ExceptionInfo, path) -> None:
    assert str(path) in str(exc.value)


def test_missing_path(tmp_path):
    p = tmp_path / "nope.nii.gz"
    with pytest.raises(errors.InputNotFoundError) as exc:
        dd.load_volume(p)
    _assert_names(exc, p)
    with pytest.raises(errors.InputNotFoundError):
        dd.load_image(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.nii.gz"
    p.touch()
    with pytest.raises(errors.CorruptInputError, match="empty") as exc:
        dd.load_volume(p)
    _assert_names(exc, p)


def test_truncated_nii_gz(tmp_path, chris_t1):
    p = tmp_path / "cut.nii.gz"
    p.write_bytes(chris_t1.read_bytes()[:200_000])
    with pytest.raises(errors.CorruptInputError, match=r"truncated|damaged") as exc:
        dd.load_volume(p)
    _assert_names(exc, p)


def test_truncated_uncompressed_nii(tmp_path, rng):
    src = tmp_path / "full.nii"
    nib.save(nib.Nifti1Image(rng.integers(0, 9, (20, 20, 20)).astype(np.int16), np.eye(4)), src)
    p = tmp_path / "cut.nii"
    p.write_bytes(src.read_bytes()[:5000])
    with pytest.raises(errors.CorruptInputError):
        dd.load_volume(p)


def test_text_file_named_nii(tmp_path):
    p = tmp_path / "notes.nii"
    p.write_text("patient scanned on a Tuesday\n" * 20)
    with pytest.raises(errors.UnsupportedInputError, match="not a NIfTI or DICOM") as exc:
        dd.load_volume(p)
    _assert_names(exc, p)


def test_gzip_of_text_named_nii_gz(tmp_path):
    p = tmp_path / "notes.nii.gz"
    p.write_bytes(gzip.compress(b"hello " * 500))
    with pytest.raises(errors.UnsupportedInputError):
        dd.load_volume(p)


def test_nan_and_inf_voxels(tmp_path):
    data = np.ones((4, 4, 4), np.float32)
    data[1, 2, 3] = np.nan
    data[0, 0, 0] = np.inf
    p = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), p)
    with pytest.raises(errors.InvalidDataError, match="2 voxels are NaN or infinite"):
        dd.load_volume(p)


def _raw_header(shape, datatype=4, bitpix=16) -> bytes:
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.int16)
    hdr.set_data_shape((1, 1, 1))
    block = bytearray(hdr.binaryblock)
    dims = [len(shape), *shape] + [1] * (7 - len(shape))
    block[40:56] = struct.pack("<8h", *dims)
    block[344:348] = b"n+1\x00"
    return bytes(block) + b"\x00" * 4


def test_zero_sized_axis(tmp_path):
    p = tmp_path / "zero.nii"
    p.write_bytes(_raw_header((10, 0, 10)))
    with pytest.raises(errors.InvalidDataError, match="zero-sized axis"):
        dd.load_volume(p)


def test_too_large_for_memory_is_refused_before_reading(tmp_path):
    # 32000^3 int16 voxels = 61 TiB: the header alone says so; the file is tiny.
    p = tmp_path / "huge.nii"
    p.write_bytes(_raw_header((32000, 32000, 32000)) + b"\x00" * 1000)
    with pytest.raises(errors.TooLargeError, match="GiB") as exc:
        dd.load_volume(p)
    _assert_names(exc, p)


def test_2d_image_where_a_volume_is_needed(tmp_path):
    png = tmp_path / "xray.png"
    PILImage.fromarray(np.zeros((16, 16), np.uint8)).save(png)
    with pytest.raises(errors.WrongKindError, match="load_image"):
        dd.load_volume(png)
    flat = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 1), np.int16), np.eye(4)), flat)
    with pytest.raises(errors.WrongKindError, match="2D"):
        dd.load_volume(flat)


def test_volume_where_a_2d_image_is_needed(tmp_path, chris_t1):
    with pytest.raises(errors.WrongKindError, match="load_volume"):
        dd.load_image(chris_t1)
    with pytest.raises(errors.WrongKindError, match="load_volume"):
        dd.load_image(tmp_path)


@pytest.mark.parametrize(
    "make",
    [
        lambda d: d / "nope.nii.gz",
        lambda d: (d / "empty.nii").write_bytes(b"") and d / "empty.nii",
        lambda d: (d / "t.nii").write_text("x" * 400) and d / "t.nii",
    ],
    ids=["missing", "empty", "text"],
)
def test_cli_exits_nonzero_with_message_and_no_output(tmp_path, capsys, make):
    src = make(tmp_path)
    out = tmp_path / "out.nii.gz"
    code = deid(["convert", str(src), str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "error" in err and str(src) in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "args",
    [
        ["--margin-mm", "-5"],
        ["--margin-mm", "nan"],
        ["--face-depth", "-3"],
        ["--face-depth", "15"],  # deeper than anything is ever removed (10 mm)
        ["--mode", "bogus"],
    ],
)
def test_deface_options_out_of_range_are_usage_errors(tmp_path, capsys, args, chris_t1):
    out = tmp_path / "out.nii.gz"
    assert deid(["deface", str(chris_t1), str(out), *args]) == 2
    assert "error" in capsys.readouterr().err and not out.exists()


def test_deface_and_redact_name_the_right_input_type_and_check_options_first(chris_t1):
    with pytest.raises(TypeError, match="deface_file"):
        dd.deface(str(chris_t1))
    with pytest.raises(TypeError, match="redact_file"):
        dd.redact_text(str(chris_t1))
    vol = dd.load_volume(chris_t1)
    never = lambda *a: pytest.fail("the network ran before the options were checked")  # noqa: E731
    for bad in ({"mode": "bogus"}, {"margin_mm": -1.0}, {"margin_mm": float("nan")}, {"face_depth_mm": 12.0}):
        with pytest.raises(ValueError):
            dd.deface(vol, predictor=never, **bad)
    from deephealth_deid.io.image import Image

    with pytest.raises(TypeError, match="rules must be a RuleSet"):
        dd.redact_text(Image(np.zeros((1, 8, 8), np.uint8), "MONOCHROME2"), rules={"a": 1})


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"jobs": "2"}, TypeError),
        ({"jobs": 0}, ValueError),
        ({"threads": 1.5}, TypeError),
        ({"jobs": True}, TypeError),
    ],
)
def test_batch_jobs_and_threads_are_checked_before_any_work(tmp_path, chris_t1, options, error):
    for run in (dd.deface_batch, dd.redact_batch):
        with pytest.raises(error, match=r"jobs|threads"):
            run([chris_t1], tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_same_output_and_mask_path_is_a_one_line_error(tmp_path, capsys, chris_t1):
    out = tmp_path / "o.nii.gz"
    assert deid(["deface", str(chris_t1), str(out), "--save-mask", str(out)]) == 1
    err = capsys.readouterr().err
    assert "must differ" in err and "Traceback" not in err and not out.exists()


def test_a_brain_mask_given_as_the_output_is_refused_and_left_as_it_was(tmp_path, capsys, chris_t1):
    mask = tmp_path / "brain.nii.gz"
    dd.save_volume(dd.Volume(np.ones((4, 4, 4), np.uint8), np.eye(4)), mask)
    before = mask.read_bytes()
    assert deid(["deface", str(chris_t1), str(mask), "--brain-mask", str(mask), "--force"]) == 1
    err = capsys.readouterr().err
    assert "input" in err and "Traceback" not in err and mask.read_bytes() == before


def test_an_os_error_while_writing_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import os

    src = tmp_path / "in.nii.gz"
    dd.save_volume(dd.Volume(np.zeros((4, 4, 4), np.float32), np.eye(4)), src)

    def full(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "x.nii.gz"))

    monkeypatch.setattr(os, "replace", full)
    assert deid(["convert", str(src), str(tmp_path / "x.nii.gz")]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err


def test_an_option_for_the_other_format_is_an_error_not_ignored(tmp_path, chris_t1):
    import dicom_factory as fac

    with pytest.raises(errors.UnsupportedInputError, match="--series"):
        dd.load_volume(chris_t1, series_uid="1.2.3")
    fac.write_series(tmp_path / "series", np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(errors.UnsupportedInputError, match="--volume"):
        dd.load_volume(tmp_path / "series", index=0)
    assert deid(["info", str(chris_t1), "--series", "1.2.3", "-q"]) == 1


def test_info_on_a_file_of_no_known_format_names_every_format_it_reads(tmp_path, capsys):
    fake = tmp_path / "fake.dcm"
    fake.write_text("hello")
    assert deid(["info", str(fake)]) == 1
    assert "not a NIfTI, DICOM, PNG, JPEG or TIFF file" in capsys.readouterr().err
