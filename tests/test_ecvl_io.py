"""ECVL (pyecvl) and the built-in readers give identical arrays and spacing.

Runs where pyecvl can be imported (ECVL from the DeepHealth conda channel or a
source build); skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys

import dicom_factory as fac
import nibabel as nib
import numpy as np
import pytest

import deephealth_deid as dd
from deephealth_deid.errors import EngineUnavailableError, UnsupportedInputError
from deephealth_deid.io import ecvl as ecvl_io

needs_ecvl = pytest.mark.skipif(
    not ecvl_io.is_available(), reason="pyecvl cannot be imported (ECVL is not installed here)"
)


@pytest.mark.ecvl
@needs_ecvl
def test_nifti_through_ecvl_is_identical(tmp_path, chris_t1):
    plain = tmp_path / "chris.nii"
    with gzip.open(chris_t1) as f, open(plain, "wb") as g:
        shutil.copyfileobj(f, g)
    builtin = dd.load_volume(plain)
    via_ecvl = dd.load_volume(plain, reader="ecvl")
    assert np.array_equal(via_ecvl.array, builtin.array)
    assert via_ecvl.array.dtype == builtin.array.dtype
    assert via_ecvl.spacing == builtin.spacing
    assert np.array_equal(via_ecvl.affine, builtin.affine)


@pytest.mark.ecvl
@needs_ecvl
def test_scaled_nifti_through_ecvl_is_identical(tmp_path, rng):
    raw = rng.integers(0, 3000, size=(9, 10, 11)).astype(np.int16)
    img = nib.Nifti1Image(raw, np.diag([0.9, 1.1, 2.5, 1.0]))
    img.header.set_slope_inter(0.5, -20)
    nib.save(img, tmp_path / "s.nii")
    builtin = dd.load_volume(tmp_path / "s.nii")
    via_ecvl = dd.load_volume(tmp_path / "s.nii", reader="ecvl")
    assert np.array_equal(via_ecvl.array, builtin.array)
    assert np.allclose(via_ecvl.spacing, (0.9, 1.1, 2.5))


@pytest.mark.ecvl
@needs_ecvl
@pytest.mark.parametrize("modality, intercept", [("CT", -1024), ("MR", None)])
def test_dicom_series_through_ecvl_is_identical(tmp_path, rng, modality, intercept):
    stored = rng.integers(0, 2000, size=(12, 14, 6)).astype(np.int16 if modality == "CT" else np.uint16)
    fac.write_series(
        tmp_path / "s",
        stored,
        modality=modality,
        orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
        pixel_spacing=(0.7, 0.8),
        slice_step=2.5,
        intercepts=intercept,
    )
    builtin = dd.load_volume(tmp_path / "s")
    via_ecvl = dd.load_volume(tmp_path / "s", reader="ecvl")
    assert np.array_equal(via_ecvl.array, builtin.array)
    assert via_ecvl.spacing == builtin.spacing


@pytest.mark.ecvl
@needs_ecvl
def test_what_ecvl_cannot_read_faithfully_is_refused(tmp_path, rng, chris_t1):
    with pytest.raises(UnsupportedInputError, match="reader='builtin'"):
        dd.load_volume(chris_t1, reader="ecvl")  # ECVL's own gzip decoder fails on this stream
    stored = rng.integers(0, 2000, size=(8, 8, 4)).astype(np.int16)
    fac.write_series(tmp_path / "frac", stored, slopes=0.5)
    with pytest.raises(UnsupportedInputError, match="fractional"):
        dd.load_volume(tmp_path / "frac", reader="ecvl")


def test_missing_ecvl_names_what_to_install(tmp_path, chris_t1):
    code = (
        "import sys; sys.modules['pyecvl'] = None; sys.modules['pyecvl.ecvl'] = None\n"
        "import deephealth_deid as dd\n"
        "from deephealth_deid.errors import EngineUnavailableError\n"
        "try:\n"
        f"    dd.load_volume({str(chris_t1)!r}, reader='ecvl')\n"
        "except EngineUnavailableError as e:\n"
        "    print('MESSAGE', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "MESSAGE" in out.stdout and "pyecvl" in out.stdout and "reader='builtin'" in out.stdout
    assert issubclass(EngineUnavailableError, dd.DeidError)


@pytest.mark.ecvl
@needs_ecvl
@pytest.mark.parametrize(
    ("name", "photometric"),
    [("MR_small.dcm", "MONOCHROME2"), ("RG3_UNCR.dcm", "MONOCHROME1"), ("US1_UNCR.dcm", "RGB")],
)
def test_dicom_image_through_ecvl_is_identical(name, photometric):
    from conftest import pydicom_test_file

    path = pydicom_test_file(name)
    builtin = dd.load_image(path)
    via_ecvl = dd.load_image(path, reader="ecvl")
    assert via_ecvl.photometric == builtin.photometric == photometric
    assert via_ecvl.frames.dtype == builtin.frames.dtype
    assert np.array_equal(via_ecvl.frames, builtin.frames)


@pytest.mark.ecvl
@needs_ecvl
@pytest.mark.parametrize("mode", ["L", "I;16", "RGB"])
def test_raster_image_through_ecvl_is_identical(tmp_path, rng, mode):
    from PIL import Image as PILImage

    if mode == "RGB":
        pixels = rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)
    elif mode == "L":
        pixels = rng.integers(0, 256, (30, 41), dtype=np.uint8)
    else:
        pixels = rng.integers(0, 65536, (30, 41), dtype=np.uint16)
    path = tmp_path / "image.png"
    PILImage.fromarray(pixels).save(path)
    via_ecvl = dd.load_image(path, reader="ecvl")
    assert np.array_equal(via_ecvl.frames[0], pixels) and via_ecvl.frames.dtype == pixels.dtype


@pytest.mark.ecvl
@needs_ecvl
def test_images_ecvl_cannot_read_faithfully_are_refused():
    from conftest import pydicom_test_file

    path = pydicom_test_file("OBXXXX1A.dcm")  # PALETTE COLOR
    with pytest.raises(UnsupportedInputError, match="reader='builtin'"):
        dd.load_image(path, reader="ecvl")
    # RescaleSlope 3.77: ECVL gives rescaled values, which would be written back as stored values.
    with pytest.raises(UnsupportedInputError, match="rescaled"):
        dd.load_image(pydicom_test_file("MR2_UNCR.dcm"), reader="ecvl")
    with pytest.raises(ValueError, match="reader"):
        dd.load_image(path, reader="itk")
