"""NIfTI reading and writing: every orientation, scaling, 4D, and header preservation."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import deephealth_deid as dd
from deephealth_deid.errors import OutputError, OutputExistsError, WrongKindError


def _stored_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _orientations() -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    perms = list(itertools.permutations(range(3)))
    flips = list(itertools.product((1, -1), repeat=3))
    return [(p, f) for p in perms for f in flips]


@pytest.mark.parametrize("perm, flips", _orientations(), ids=lambda x: "".join(map(str, x)))
def test_round_trip_is_bit_exact_in_all_48_orientations(tmp_path, rng, perm, flips):
    data = rng.integers(-2000, 2000, size=(7, 8, 9)).astype(np.int16)
    rot = np.zeros((3, 3))
    for col, (axis, sign) in enumerate(zip(perm, flips, strict=True)):
        rot[axis, col] = sign * (0.8 + 0.3 * col)
    affine = np.eye(4)
    affine[:3, :3] = rot
    affine[:3, 3] = [-40.5, 12.25, 7.0]
    src = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), src)

    vol = dd.load_volume(src)
    assert np.array_equal(vol.array, data)
    assert np.allclose(vol.affine, affine, atol=1e-5)
    assert vol.axcodes == nib.aff2axcodes(affine)
    out = dd.save_volume(vol, tmp_path / "out.nii.gz")

    assert _stored_bytes(out) == _stored_bytes(src)


def test_real_head_round_trip_keeps_every_byte(tmp_path, chris_t1):
    vol = dd.load_volume(chris_t1)
    assert vol.shape == (188, 256, 190)
    assert vol.axcodes == ("R", "A", "S")
    assert np.allclose(vol.spacing, 0.88)
    assert vol.array.dtype == np.uint8
    out = dd.save_volume(vol, tmp_path / "copy.nii.gz")
    assert _stored_bytes(out) == _stored_bytes(chris_t1)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_scaled_data_keeps_scaling_and_leaves_extensions_out(tmp_path, rng, suffix, caplog):
    raw = rng.integers(-100, 3000, size=(5, 6, 7)).astype(np.int16)
    img = nib.Nifti1Image(raw, np.diag([1.0, 2.0, 3.0, 1.0]))
    img.header.set_slope_inter(0.37, -12.5)
    # 35 bytes: nibabel pads the extension to 48 on reading and trims it on writing, which left
    # the source's data offset pointing past an empty extension (an unreadable output).
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"Doe^Jane acquisition comment 123456"))
    src = tmp_path / f"scaled{suffix}"
    nib.save(img, src)

    vol = dd.load_volume(src)
    assert np.allclose(vol.array, raw * np.float32(0.37) - 12.5)
    out = dd.save_volume(vol, tmp_path / f"out{suffix}")
    written = nib.load(out)
    assert len(written.header.extensions) == 0  # extensions can carry identifying text
    assert np.array_equal(np.asanyarray(written.dataobj.get_unscaled()), raw)
    assert "extension(s) left out" in caplog.text and "Doe" not in caplog.text

    # A change written back uses the source scaling; unchanged voxels stay bit-exact.
    changed = vol.array.copy()
    changed[0] = 0.0
    out2 = dd.save_volume(vol.with_array(changed), tmp_path / f"changed{suffix}")
    back = nib.load(out2)
    assert back.dataobj.slope == pytest.approx(0.37) and back.dataobj.inter == pytest.approx(-12.5)
    stored = np.asanyarray(back.dataobj.get_unscaled())
    assert np.array_equal(stored[1:], raw[1:])
    assert np.allclose(back.get_fdata()[0], 0.0, atol=0.37)


def test_nifti2_big_endian_float_round_trip(tmp_path, rng):
    data = rng.normal(size=(4, 5, 6)).astype(">f4")
    src = tmp_path / "n2.nii"
    nib.save(nib.Nifti2Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), src)
    vol = dd.load_volume(src)
    assert np.array_equal(vol.array, data)
    assert _stored_bytes(dd.save_volume(vol, tmp_path / "o.nii")) == src.read_bytes()


def test_qform_and_sform_codes_are_kept(tmp_path, rng):
    img = nib.Nifti1Image(rng.integers(0, 9, (4, 4, 4)).astype(np.uint8), np.diag([1.0, 1, 1, 1]))
    img.set_qform(np.diag([1.0, 1, 1, 1]), code=1)
    sform = np.diag([1.0, 1, 1, 1])
    sform[:3, 3] = [5, 6, 7]
    img.set_sform(sform, code=4)
    src = tmp_path / "codes.nii"
    nib.save(img, src)
    out = dd.save_volume(dd.load_volume(src), tmp_path / "o.nii")
    hdr = nib.load(out).header
    assert int(hdr["qform_code"]) == 1 and int(hdr["sform_code"]) == 4
    assert np.allclose(hdr.get_sform(), sform)


def test_changed_affine_is_written_to_both_forms(tmp_path, chris_t1):
    vol = dd.load_volume(chris_t1)
    moved = vol.affine.copy()
    moved[:3, 3] += [1.0, -2.0, 3.0]
    from dataclasses import replace

    out = dd.save_volume(replace(vol, affine=moved), tmp_path / "moved.nii.gz")
    back = nib.load(out)
    assert np.allclose(back.header.get_qform(), moved, atol=1e-4)
    assert np.allclose(back.header.get_sform(), moved, atol=1e-4)


def test_4d_needs_an_index(tmp_path):
    data = np.arange(3 * 4 * 5 * 6, dtype=np.float32).reshape(3, 4, 5, 6)
    src = tmp_path / "4d.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), src)
    with pytest.raises(WrongKindError, match="4D file with 6 volumes"):
        dd.load_volume(src)
    with pytest.raises(WrongKindError, match=r"outside 0\.\.5"):
        dd.load_volume(src, index=6)
    vol = dd.load_volume(src, index=2)
    assert np.array_equal(vol.array, data[..., 2])
    back = nib.load(dd.save_volume(vol, tmp_path / "vol2.nii.gz"))
    assert back.shape == (3, 4, 5)
    assert np.array_equal(back.get_fdata(), data[..., 2])


def test_volume_built_in_memory_is_written_as_nifti(tmp_path):
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    vol = dd.Volume(np.ones((3, 4, 5), dtype=bool), affine)
    back = nib.load(dd.save_volume(vol, tmp_path / "mask.nii.gz"))
    assert back.get_data_dtype() == np.uint8
    assert np.allclose(back.affine, affine)
    assert int(back.header["sform_code"]) == 1
    with pytest.raises(OutputError, match=r"\.nii"):
        dd.save_volume(vol, tmp_path / "mask.dcm")


def test_existing_output_is_refused_unless_overwrite(tmp_path, chris_t1):
    vol = dd.load_volume(chris_t1)
    dst = tmp_path / "o.nii.gz"
    dst.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        dd.save_volume(vol, dst)
    assert dst.read_bytes() == b"precious"
    dd.save_volume(vol, dst, overwrite=True)
    assert _stored_bytes(dst) == _stored_bytes(chris_t1)
    assert [p.name for p in tmp_path.iterdir()] == ["o.nii.gz"]  # no temporary left


def test_input_is_never_overwritten(tmp_path, chris_t1):
    src = tmp_path / "in.nii.gz"
    src.write_bytes(chris_t1.read_bytes())
    vol = dd.load_volume(src)
    with pytest.raises(OutputError, match="input"):
        dd.save_volume(vol, src, overwrite=True)
    assert src.read_bytes() == chris_t1.read_bytes()


def test_failed_write_leaves_nothing(tmp_path, monkeypatch, chris_t1):
    vol = dd.load_volume(chris_t1)
    from nibabel import volumeutils

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(volumeutils, "array_to_file", boom)
    with pytest.raises(OSError, match="disk full"):
        dd.save_volume(vol, tmp_path / "o.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_nan_into_an_integer_nifti_is_refused_and_nothing_is_written(tmp_path, chris_t1):
    vol = dd.load_volume(chris_t1)  # stored as uint8
    bad = vol.array.astype(np.float32)
    bad[10, 10, 10] = np.nan
    with pytest.raises(dd.errors.InvalidDataError, match="1 voxels are NaN"):
        dd.save_volume(vol.with_array(bad), tmp_path / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError, match="must be a Volume"):
        dd.save_volume(bad, tmp_path / "out.nii.gz")
