"""2D image input/output: DICOM (every photometric and compression), PNG, JPEG, TIFF.

Real files come from pydicom's own test files and the pydicom-data package; the
truth for decoded values is pydicom's own decoding. Most tests go through the
public ``load_image`` / ``save_image``.
"""

from __future__ import annotations

import functools
import logging
import struct
import subprocess
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

import deephealth_deid as dd
from deephealth_deid import errors
from deephealth_deid.io._dicom import CHANGED_ATTRIBUTES
from deephealth_deid.io.dicom_image import DicomSource, overlays, remove_overlays
from deephealth_deid.io.image import Image
from deephealth_deid.io.raster import RasterSource

pydicom_data = pytest.importorskip("pydicom.data")

#: gdcm-US-ALOKA-16 has a CS value with a slash, which pydicom warns about when it is read.
ALOKA_WARNING = "ignore:Invalid value for VR CS:UserWarning"
ALOKA_FILTER = pytest.mark.filterwarnings(ALOKA_WARNING)
#: color3d_jpeg_baseline is 120 JPEG frames (110 MB decoded): seconds per read.
SLOW = pytest.mark.slow


def td(name: str) -> Path:
    """A pydicom test file (from pydicom itself or pydicom-data), never downloaded."""
    path = pydicom_data.get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install pydicom-data)")
    return Path(path)


@functools.lru_cache(maxsize=8)
def _load(name: str) -> Image:
    return dd.load_image(td(name))


def pydicom_frames(path: Path, **options) -> np.ndarray:
    """pydicom's own decoding, with the frame axis always first."""
    from pydicom.pixels import pixel_array
    from pydicom.uid import ImplicitVRLittleEndian

    ds = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in ds.file_meta:  # OT-PAL-8-face: no file meta, implicit VR
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    arr = pixel_array(ds, **options)
    single = int(ds.get("NumberOfFrames", 1) or 1) == 1
    arr = arr[None] if single else arr
    return arr.astype(arr.dtype.newbyteorder("="))


def _flat(ds, prefix: tuple = ()) -> dict[tuple, tuple]:
    """Every element (sequences flattened), keyed by its tag path, except group lengths."""
    out: dict[tuple, tuple] = {}
    for elem in ds:
        if elem.tag.element == 0:
            continue  # group lengths are retired and never written by pydicom
        key = (*prefix, int(elem.tag))
        if elem.VR == "SQ":
            out[key] = ("SQ", len(elem.value))
            for i, item in enumerate(elem.value):
                out.update(_flat(item, (*key, i)))
        else:
            value = bytes(elem.value) if isinstance(elem.value, (bytes, bytearray)) else elem.value
            out[key] = (elem.VR, value)
    return out


def _changed_elements(src: Path, out: Path) -> list[str]:
    """Tags that differ between two files, leaving out CHANGED_ATTRIBUTES (top level) and group 0002.

    Icon Image Sequences (thumbnails of the old pixels) must be gone from the output, at any depth:
    asserted here, and then left out of the comparison.
    """
    from pydicom.datadict import keyword_for_tag
    from pydicom.tag import Tag

    icon = 0x00880200
    fa = {k: v for k, v in _flat(pydicom.dcmread(src, force=True)).items() if icon not in k}
    fb = _flat(pydicom.dcmread(out))
    assert not [k for k in fb if icon in k], "an Icon Image Sequence was written"
    changed = []
    for key in sorted(set(fa) | set(fb)):
        keyword = keyword_for_tag(key[0])
        if keyword not in CHANGED_ATTRIBUTES and fa.get(key) != fb.get(key):
            changed.append(f"{Tag(key[0])} {keyword}")  # tag and keyword only, never a value
    return changed


# ----------------------------------------------------------------------------------------------------
# reading DICOM: values equal pydicom's own decoding

DECODE_CASES = [
    # name, photometric read, frames, dtype
    ("US1_UNCR.dcm", "RGB", 1, np.uint8),
    ("US1_J2KR.dcm", "RGB", 1, np.uint8),
    ("US1_J2KI.dcm", "RGB", 1, np.uint8),
    ("OBXXXX1A.dcm", "PALETTE COLOR", 1, np.uint8),
    ("OBXXXX1A_rle.dcm", "PALETTE COLOR", 1, np.uint8),
    ("OBXXXX1A_2frame.dcm", "PALETTE COLOR", 2, np.uint8),
    ("OBXXXX1A_rle_2frame.dcm", "PALETTE COLOR", 2, np.uint8),
    pytest.param("gdcm-US-ALOKA-16.dcm", "PALETTE COLOR", 1, np.uint16, marks=ALOKA_FILTER),
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", "MONOCHROME2", 1, np.uint8),
    pytest.param("color3d_jpeg_baseline.dcm", "RGB", 120, np.uint8, marks=SLOW),
    ("examples_ybr_color.dcm", "RGB", 30, np.uint8),
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", "RGB", 1, np.uint8),
    ("RG3_UNCR.dcm", "MONOCHROME1", 1, np.uint16),
    ("RG3_J2KR.dcm", "MONOCHROME1", 1, np.uint16),
    ("SC_ybr_full_uncompressed.dcm", "RGB", 1, np.uint8),
    ("SC_ybr_full_422_uncompressed.dcm", "RGB", 1, np.uint8),
    ("OT-PAL-8-face.dcm", "PALETTE COLOR", 1, np.uint8),
    ("MR_small.dcm", "MONOCHROME2", 1, np.int16),
    ("MR_small_RLE.dcm", "MONOCHROME2", 1, np.int16),
    ("MR_small_bigendian.dcm", "MONOCHROME2", 1, np.int16),
    ("MR-SIEMENS-DICOM-WithOverlays.dcm", "MONOCHROME2", 1, np.uint16),
    ("SC_rgb_16bit_2frame.dcm", "RGB", 2, np.uint16),
    ("SC_rgb_rle_2frame.dcm", "RGB", 2, np.uint8),
    ("color-pl.dcm", "RGB", 1, np.uint8),
]


@pytest.mark.parametrize(("name", "photometric", "n_frames", "dtype"), DECODE_CASES)
def test_dicom_read_matches_pydicom(name, photometric, n_frames, dtype):
    path = td(name)
    img = _load(name)
    want = pydicom_frames(path)
    assert img.photometric == photometric
    assert img.n_frames == n_frames
    assert img.frames.dtype == dtype
    np.testing.assert_array_equal(img.frames, want)
    assert isinstance(img.source, DicomSource)
    assert img.format == "dicom"
    assert img.path == path
    assert (
        img.source.photometric
        == pydicom.dcmread(path, stop_before_pixels=True, force=True).PhotometricInterpretation
    )


@pytest.mark.parametrize("name", ["SC_ybr_full_uncompressed.dcm", "SC_ybr_full_422_uncompressed.dcm"])
def test_ybr_is_converted_to_rgb(name):
    from pydicom.pixels import convert_color_space

    img = _load(name)
    ybr = pydicom_frames(td(name), as_rgb=False)
    assert img.photometric == "RGB"
    assert img.source.photometric.startswith("YBR_FULL")
    np.testing.assert_array_equal(img.frames, convert_color_space(ybr, "YBR_FULL", "RGB"))
    assert not np.array_equal(img.frames, ybr)


@pytest.mark.parametrize(
    ("compressed", "uncompressed"),
    [
        ("US1_J2KR.dcm", "US1_UNCR.dcm"),
        ("RG3_J2KR.dcm", "RG3_UNCR.dcm"),
        ("RG1_J2KR.dcm", "RG1_UNCR.dcm"),
        ("MR2_J2KR.dcm", "MR2_UNCR.dcm"),
        ("OBXXXX1A_rle.dcm", "OBXXXX1A.dcm"),
        ("OBXXXX1A_rle_2frame.dcm", "OBXXXX1A_2frame.dcm"),
        ("OBXXXX1A_expb_2frame.dcm", "OBXXXX1A_2frame.dcm"),
        ("SC_rgb_rle_2frame.dcm", "SC_rgb_2frame.dcm"),
        ("MR_small_RLE.dcm", "MR_small.dcm"),
        ("MR_small_jp2klossless.dcm", "MR_small.dcm"),
        ("MR_small_bigendian.dcm", "MR_small.dcm"),
        pytest.param(
            "gdcm-US-ALOKA-16_big.dcm",
            "gdcm-US-ALOKA-16.dcm",
            marks=ALOKA_FILTER,
        ),
    ],
)
def test_lossless_variants_equal_the_uncompressed_original(compressed, uncompressed):
    a, b = _load(compressed), _load(uncompressed)
    assert a.photometric == b.photometric
    assert a.frames.dtype == b.frames.dtype
    np.testing.assert_array_equal(a.frames, b.frames)
    if b.palette is not None:  # also big endian vs little endian, segmented or not
        assert a.palette.dtype == b.palette.dtype
        np.testing.assert_array_equal(a.palette, b.palette)
        assert a.palette_first == b.palette_first


@pytest.mark.parametrize(
    "name",
    [
        "OBXXXX1A.dcm",
        "OT-PAL-8-face.dcm",
        pytest.param("gdcm-US-ALOKA-16.dcm", marks=ALOKA_FILTER),
    ],
)
def test_palette_maps_like_pydicom(name):
    from pydicom.pixels import apply_color_lut

    img = _load(name)
    ds = pydicom.dcmread(td(name), force=True)
    want = apply_color_lut(img.frames, ds)[..., :3]
    idx = np.clip(img.frames.astype(np.int64) - img.palette_first, 0, len(img.palette) - 1)
    np.testing.assert_array_equal(img.palette[idx], want)
    assert img.palette.shape[1] == 3
    assert img.to_rgb().shape == (*img.frames.shape, 3)


@ALOKA_FILTER
def test_segmented_16bit_palette():
    img = dd.load_image(td("gdcm-US-ALOKA-16.dcm"))
    ds = pydicom.dcmread(td("gdcm-US-ALOKA-16.dcm"), stop_before_pixels=True)
    assert "SegmentedRedPaletteColorLookupTableData" in ds
    assert img.palette.shape == (65536, 3)
    assert img.palette.dtype == np.uint16


# ----------------------------------------------------------------------------------------------------
# writing DICOM

ROUND_TRIP = [
    "US1_UNCR.dcm",
    "US1_J2KR.dcm",
    "OBXXXX1A.dcm",
    "OBXXXX1A_rle_2frame.dcm",
    pytest.param("gdcm-US-ALOKA-16.dcm", marks=ALOKA_FILTER),
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    pytest.param("color3d_jpeg_baseline.dcm", marks=SLOW),
    "examples_ybr_color.dcm",
    "RG3_UNCR.dcm",
    "RG3_J2KR.dcm",
    "SC_ybr_full_uncompressed.dcm",
    "OT-PAL-8-face.dcm",
    "MR_small.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "SC_rgb_16bit_2frame.dcm",
    "color-pl.dcm",
    "mlut_18.dcm",
]


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_dicom_round_trip(name, tmp_path):
    from pydicom.uid import ExplicitVRLittleEndian

    src = td(name)
    img = _load(name)
    out = dd.save_image(img, tmp_path / "out.dcm")
    back = dd.load_image(out)
    assert back.photometric == img.photometric
    assert back.frames.dtype == img.frames.dtype
    np.testing.assert_array_equal(back.frames, img.frames)
    if img.palette is not None:
        np.testing.assert_array_equal(back.palette, img.palette)
        assert back.palette_first == img.palette_first

    ds0 = pydicom.dcmread(src, force=True)
    ds = pydicom.dcmread(out)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPInstanceUID != ds0.SOPInstanceUID
    assert ds.SeriesInstanceUID != ds0.SeriesInstanceUID
    assert ds.StudyInstanceUID == ds0.StudyInstanceUID
    assert ds.SOPClassUID == ds0.SOPClassUID
    assert ds.get("NumberOfFrames") == ds0.get("NumberOfFrames")
    assert ds.PhotometricInterpretation == (
        "RGB" if ds0.PhotometricInterpretation.startswith("YBR") else ds0.PhotometricInterpretation
    )
    if ds.SamplesPerPixel == 3:
        assert ds.PlanarConfiguration == ds0.get("PlanarConfiguration", 0)
    assert ds.BitsStored == ds0.BitsStored
    assert _changed_elements(src, out) == []


@pytest.mark.parametrize(
    "name",
    [
        "US1_UNCR.dcm",
        "RG3_UNCR.dcm",
        "OBXXXX1A_2frame.dcm",
        "MR_small.dcm",
        "MR_small_implicit.dcm",
        "MR-SIEMENS-DICOM-WithOverlays.dcm",
        "mlut_18.dcm",  # signed 12 of 16 bits: the unused bits are not sign-extended in the source
        "color-pl.dcm",  # planar configuration 1
        "SC_rgb_small_odd.dcm",  # odd length, padded
        "SC_rgb_32bit_2frame.dcm",
    ],
)
def test_unchanged_uncompressed_pixel_data_is_byte_identical(name, tmp_path):
    out = dd.save_image(_load(name), tmp_path / "out.dcm")
    assert pydicom.dcmread(out).PixelData == pydicom.dcmread(td(name)).PixelData


@pytest.mark.parametrize(
    ("big", "little"),
    [
        ("OBXXXX1A_expb_2frame.dcm", "OBXXXX1A_2frame.dcm"),
        pytest.param("gdcm-US-ALOKA-16_big.dcm", "gdcm-US-ALOKA-16.dcm", marks=ALOKA_FILTER),
        ("MR_small_bigendian.dcm", "MR_small.dcm"),
    ],
)
def test_big_endian_source_is_written_little_endian(big, little, tmp_path):
    from pydicom.uid import ExplicitVRLittleEndian

    out = dd.save_image(_load(big), tmp_path / "out.dcm")
    assert pydicom.dcmread(out, stop_before_pixels=True).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    back, ref = dd.load_image(out), _load(little)
    np.testing.assert_array_equal(back.frames, ref.frames)
    if ref.palette is not None:  # the LUT words were swapped, not copied
        np.testing.assert_array_equal(back.palette, ref.palette)


def test_write_is_deterministic_and_leaves_the_source_alone(tmp_path):
    img = _load("US1_J2KR.dcm")
    before = (img.source.dataset.SOPInstanceUID, img.source.dataset.file_meta.TransferSyntaxUID)
    frames = img.frames.copy()
    a = dd.save_image(img, tmp_path / "a.dcm")
    b = dd.save_image(img, tmp_path / "b.dcm")
    assert a.read_bytes() == b.read_bytes()
    assert (img.source.dataset.SOPInstanceUID, img.source.dataset.file_meta.TransferSyntaxUID) == before
    np.testing.assert_array_equal(img.frames, frames)
    assert "PixelData" in img.source.dataset


def test_redacted_frames_are_written_and_other_pixels_keep_their_bits(tmp_path):
    name = "mlut_18.dcm"  # signed 12-bit in 16: raw words differ from the sign-extended values
    raw0 = np.frombuffer(pydicom.dcmread(td(name)).PixelData, dtype="<i2").reshape(512, 512)
    img = _load(name)
    frames = img.frames.copy()
    frames[0, 10:40, 20:200] = 0
    out = dd.save_image(img.with_frames(frames), tmp_path / "out.dcm")
    back = dd.load_image(out)
    np.testing.assert_array_equal(back.frames, frames)
    raw = np.frombuffer(pydicom.dcmread(out).PixelData, dtype="<i2").reshape(512, 512)
    outside = np.ones(raw.shape, bool)
    outside[10:40, 20:200] = False
    np.testing.assert_array_equal(raw[outside], raw0[outside])
    assert np.all(raw[~outside] == 0)
    assert pydicom.dcmread(out).BitsStored == 12


def test_values_beyond_bits_stored_widen_it(tmp_path):
    img = _load("RG3_UNCR.dcm")  # 10 of 16 bits stored
    frames = img.frames.copy()
    frames[0, :5, :5] = 5000
    out = dd.save_image(img.with_frames(frames), tmp_path / "out.dcm")
    ds = pydicom.dcmread(out)
    assert (ds.BitsStored, ds.HighBit) == (16, 15)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    np.testing.assert_array_equal(dd.load_image(out).frames, frames)


@pytest.mark.parametrize(
    ("name", "n_frames"),
    [("examples_ybr_color.dcm", 30), pytest.param("color3d_jpeg_baseline.dcm", 120, marks=SLOW)],
)
def test_ybr_jpeg_multiframe_written_as_rgb(name, n_frames, tmp_path):
    img = _load(name)
    assert pydicom.dcmread(td(name), stop_before_pixels=True).PhotometricInterpretation == "YBR_FULL_422"
    frames = img.frames.copy()
    frames[:, :30, :200] = 0  # a redacted banner on every frame
    out = dd.save_image(img.with_frames(frames), tmp_path / "out.dcm")
    ds = pydicom.dcmread(out, stop_before_pixels=True)
    assert ds.PhotometricInterpretation == "RGB"
    assert ds.PlanarConfiguration == 0
    assert ds.NumberOfFrames == n_frames
    assert ds.LossyImageCompression == "01"  # decoded from lossy JPEG: must keep saying so
    np.testing.assert_array_equal(dd.load_image(out).frames, frames)


@pytest.fixture
def multiframe_16bit(tmp_path) -> Path:
    """A 3-frame 16-bit MONOCHROME2 (12 bits stored) with garbage in some unused high bits."""
    ds = pydicom.dcmread(td("MR_small.dcm"))
    rng = np.random.default_rng(7)
    values = rng.integers(0, 4096, (3, ds.Rows, ds.Columns), dtype=np.uint16)
    words = values.copy()
    words[:, :4, :] |= 0xA000  # bits above Bits Stored, which readers ignore
    ds.PixelRepresentation = 0
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.NumberOfFrames = 3
    ds.PixelData = words.astype("<u2").tobytes()
    path = tmp_path / "multiframe16.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_multiframe_16bit(multiframe_16bit, tmp_path):
    img = dd.load_image(multiframe_16bit)
    assert img.n_frames == 3
    assert img.frames.dtype == np.uint16
    assert int(img.frames.max()) < 4096  # the unused bits are masked on reading
    np.testing.assert_array_equal(img.frames, pydicom_frames(multiframe_16bit))
    out = dd.save_image(img, tmp_path / "out.dcm")
    assert pydicom.dcmread(out).PixelData == pydicom.dcmread(multiframe_16bit).PixelData
    assert pydicom.dcmread(out).NumberOfFrames == 3


def test_overlays_kept_by_default_and_removed_on_request(tmp_path):
    name = "MR-SIEMENS-DICOM-WithOverlays.dcm"
    img = _load(name)
    found = overlays(img)
    assert [o.group for o in found] == [0x6000]
    assert (found[0].rows, found[0].columns) == (484, 484)
    assert not found[0].in_pixel_data

    kept = dd.save_image(img, tmp_path / "kept.dcm")
    ds = pydicom.dcmread(kept)
    src = pydicom.dcmread(td(name))
    assert ds[0x6000, 0x3000].value == src[0x6000, 0x3000].value
    np.testing.assert_array_equal(ds.overlay_array(0x6000), src.overlay_array(0x6000))

    clean = remove_overlays(img)
    assert overlays(clean) == []
    assert overlays(img) == found  # the input image is not changed
    assert clean.frames is img.frames
    out = dd.save_image(clean, tmp_path / "clean.dcm")
    ds = pydicom.dcmread(out)
    assert not [t for t in ds.keys() if 0x6000 <= t.group <= 0x60FF]  # noqa: SIM118
    np.testing.assert_array_equal(dd.load_image(out).frames, img.frames)
    changed = _changed_elements(td(name), out)
    assert changed and all(c.startswith("(60") for c in changed)


def test_raster_images_have_no_overlays():
    img = Image(np.zeros((1, 4, 4), np.uint8))
    assert overlays(img) == []
    assert remove_overlays(img) is img


def _dciodvfy_errors(path: Path, tool: str) -> set[str]:
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120, check=False)
    return {line.strip() for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")}


@pytest.mark.dciodvfy
@pytest.mark.parametrize(
    "name",
    [
        "US1_UNCR.dcm",
        "US1_J2KR.dcm",
        "US1_J2KI.dcm",
        "OBXXXX1A_rle.dcm",
        "OBXXXX1A_expb_2frame.dcm",
        pytest.param("gdcm-US-ALOKA-16_big.dcm", marks=ALOKA_FILTER),
        "JPGLosslessP14SV1_1s_1f_8b.dcm",
        pytest.param("color3d_jpeg_baseline.dcm", marks=SLOW),
        "examples_ybr_color.dcm",
        "RG3_J2KR.dcm",
        "SC_ybr_full_uncompressed.dcm",
        "OT-PAL-8-face.dcm",
        "MR_small.dcm",
        "MR-SIEMENS-DICOM-WithOverlays.dcm",
        "SC_rgb_16bit_2frame.dcm",
        "color-pl.dcm",
    ],
)
def test_written_file_passes_dciodvfy(name, tmp_path):
    from conftest import require_tool

    tool = require_tool("dciodvfy")
    img = _load(name)
    frames = img.frames.copy()
    frames[:, :8, :16] = 0  # a redaction
    outputs = [
        dd.save_image(img, tmp_path / "same.dcm"),
        dd.save_image(remove_overlays(img.with_frames(frames)), tmp_path / "redacted.dcm"),
    ]
    before = _dciodvfy_errors(td(name), tool)
    for out in outputs:
        new = _dciodvfy_errors(out, tool) - before
        assert not new, f"{out.name}: dciodvfy errors the input did not have: {sorted(new)}"


# ----------------------------------------------------------------------------------------------------
# DICOM writer refusals


def test_dicom_image_is_not_written_under_another_format_s_name(tmp_path):
    img = _load("MR_small.dcm")
    for suffix in (".png", ".jpg", ".tif", ".nii.gz", ".txt"):
        with pytest.raises(errors.OutputError, match="written as DICOM"):
            dd.save_image(img, tmp_path / f"out{suffix}")
    assert list(tmp_path.iterdir()) == []
    from deephealth_deid.cli import main

    src = tmp_path / "in" / "MR_small.dcm"  # alone in its folder: the folder is not read as a series
    src.parent.mkdir()
    src.write_bytes(td("MR_small.dcm").read_bytes())
    assert main(["convert", str(src), str(tmp_path / "mr.nii.gz"), "-q"]) == 1
    assert main(["redact", str(src), str(tmp_path / "mr.nii.gz"), "-q"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["in"]
    for name in ("out.dcm", "out", "1.2.840.10008.99.7"):  # a file named by its UID too
        dd.save_image(img, tmp_path / name)


def test_frames_that_do_not_fit_are_refused_and_nothing_is_left(tmp_path):
    img = _load("OBXXXX1A.dcm")  # 8-bit
    bad = img.with_frames(img.frames.astype(np.int32) + 300)
    with pytest.raises(errors.OutputError, match="do not fit"):
        dd.save_image(bad, tmp_path / "out.dcm")
    rgb = Image(np.zeros((1, img.rows, img.columns, 3), np.uint8), "RGB", source=img.source)
    with pytest.raises(errors.OutputError):
        dd.save_image(rgb, tmp_path / "out.dcm")
    assert list(tmp_path.iterdir()) == []


def test_frames_of_another_integer_type_are_stored_as_the_source_type(tmp_path):
    img = _load("MR_small.dcm")
    out = dd.save_image(img.with_frames(img.frames.astype(np.int64)), tmp_path / "out.dcm")
    back = dd.load_image(out)
    assert back.frames.dtype == np.int16
    np.testing.assert_array_equal(back.frames, img.frames)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    img = _load("MR_small.dcm")

    def broken_save(self, filename, **kwargs):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", broken_save)
    with pytest.raises(OSError, match="disk full"):
        dd.save_image(img, tmp_path / "out.dcm")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------------
# bad inputs


def test_nifti_is_a_volume(tmp_path):
    p = tmp_path / "head.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.eye(4)), p)
    with pytest.raises(errors.WrongKindError, match="load_volume") as exc:
        dd.load_image(p)
    assert str(p) in str(exc.value)


@pytest.mark.parametrize("name", ["emri_small.dcm", "emri_small_RLE.dcm", "eCT_Supplemental.dcm"])
def test_enhanced_volume_is_refused(name):
    with pytest.raises(errors.WrongKindError, match=r"slices of a volume.*use load_volume"):
        dd.load_image(td(name))


@pytest.mark.parametrize(
    "name",
    [
        "rtdose.dcm",
        "rtdose_rle.dcm",
        pytest.param(  # a damaged header, which pydicom warns about
            "rtdose_1frame.dcm",
            marks=[
                pytest.mark.filterwarnings("ignore:Expected explicit VR"),
                pytest.mark.filterwarnings("ignore:Invalid value for VR IS"),
            ],
        ),
    ],
)
def test_rt_dose_is_neither_an_image_nor_a_volume(name, tmp_path):
    """A dose grid's planes are numbers: redacting "text" in them would change the dose."""
    with pytest.raises(errors.WrongKindError, match=r"RT Dose.*dose grid"):
        dd.load_image(td(name))
    if "1frame" not in name:  # (one frame is read as a slice of its folder's series)
        with pytest.raises(errors.UnsupportedInputError, match="RT Dose"):
            dd.load_volume(td(name))
    from deephealth_deid.cli import main

    assert main(["redact", str(td(name)), str(tmp_path / "out.dcm"), "-q"]) == 1
    assert not (tmp_path / "out.dcm").exists()


def test_dicom_without_pixel_data(tmp_path):
    with pytest.raises(errors.UnsupportedInputError, match="no pixel data"):
        dd.load_image(td("rtplan.dcm"))


def test_one_bit_segmentation_is_refused():
    with pytest.raises(errors.UnsupportedInputError, match="1-bit"):
        dd.load_image(td("liver_1frame.dcm"))


def test_empty_file(tmp_path):
    p = tmp_path / "empty.dcm"
    p.touch()
    with pytest.raises(errors.CorruptInputError, match="empty"):
        dd.load_image(p)


@pytest.mark.parametrize(
    ("name", "keep"), [("US1_UNCR.dcm", 0.5), ("US1_J2KR.dcm", 0.5), ("OBXXXX1A_rle.dcm", 0.6)]
)
def test_truncated_dicom(name, keep, tmp_path):
    data = td(name).read_bytes()
    p = tmp_path / "cut.dcm"
    p.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(errors.CorruptInputError, match=r"truncated|cannot be decoded") as exc:
        dd.load_image(p)
    assert str(p) in str(exc.value)


def test_pydicom_truncated_example():
    with pytest.raises(errors.CorruptInputError, match="cannot be decoded"):
        dd.load_image(td("MR_truncated.dcm"))


def test_missing_decoder(monkeypatch):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000Lossless

    decoder = get_decoder(JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.0")})
    with pytest.raises(errors.DecoderUnavailableError, match="pylibjpeg-openjpeg") as exc:
        dd.load_image(td("US1_J2KR.dcm"))
    assert "US1_J2KR.dcm" in str(exc.value)


def test_too_large_for_memory(monkeypatch):
    import deephealth_deid.io._files as files

    path = td("US1_J2KR.dcm")
    monkeypatch.setattr(files, "available_memory", lambda: path.stat().st_size + 1000)
    with pytest.raises(errors.TooLargeError, match="decoded pixel data"):
        dd.load_image(path)


def test_text_file_is_unsupported(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("not an image\n" * 10)
    with pytest.raises(errors.UnsupportedInputError):
        dd.load_image(p)


# ----------------------------------------------------------------------------------------------------
# PNG, TIFF, JPEG


def _synthetic(kind: str, rng: np.random.Generator, n_frames: int = 1) -> Image:
    shape = (n_frames, 21, 34)
    if kind == "grey8":
        return Image(rng.integers(0, 256, shape, dtype=np.uint8))
    if kind == "grey16":
        return Image(rng.integers(0, 65536, shape, dtype=np.uint16))
    if kind == "rgb8":
        return Image(rng.integers(0, 256, (*shape, 3), dtype=np.uint8), "RGB")
    if kind == "rgb16":
        return Image(rng.integers(0, 65536, (*shape, 3), dtype=np.uint16), "RGB")
    if kind == "mono1":
        return Image(rng.integers(0, 1024, shape, dtype=np.uint16), "MONOCHROME1")
    if kind == "palette":
        palette = rng.integers(0, 256, (9, 3), dtype=np.uint8)
        return Image(rng.integers(0, 9, shape, dtype=np.uint8), "PALETTE COLOR", palette=palette)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["grey8", "grey16", "rgb8", "palette"])
def test_png_round_trip_is_bit_exact(kind, rng, tmp_path):
    img = _synthetic(kind, rng)
    p = dd.save_image(img, tmp_path / "a.png")
    back = dd.load_image(p)
    assert back.format == "png"
    assert isinstance(back.source, RasterSource)
    assert back.photometric == img.photometric
    assert back.frames.dtype == img.frames.dtype
    np.testing.assert_array_equal(back.frames, img.frames)
    if img.palette is not None:
        np.testing.assert_array_equal(back.palette, img.palette)
    again = dd.load_image(dd.save_image(back, tmp_path / "b.png"))
    np.testing.assert_array_equal(again.frames, img.frames)


@pytest.mark.parametrize("kind", ["grey8", "grey16", "rgb8", "rgb16", "mono1", "palette"])
@pytest.mark.parametrize("n_frames", [1, 3])
def test_tiff_round_trip_is_bit_exact(kind, n_frames, rng, tmp_path):
    img = _synthetic(kind, rng, n_frames)
    p = dd.save_image(img, tmp_path / "a.tif")
    back = dd.load_image(p)
    assert back.format == "tiff"
    assert back.photometric == img.photometric
    assert back.frames.dtype == img.frames.dtype
    np.testing.assert_array_equal(back.frames, img.frames)
    if img.palette is not None:  # TIFF colour maps are 16-bit with 2**bits entries
        np.testing.assert_array_equal(back.palette[: len(img.palette)], img.palette.astype(np.uint16) * 257)
    again = dd.load_image(dd.save_image(back, tmp_path / "b.tiff"))
    np.testing.assert_array_equal(again.frames, img.frames)
    if back.palette is not None:
        np.testing.assert_array_equal(again.palette, back.palette)


def test_compressed_tiff_stays_compressed(rng, tmp_path):
    import tifffile

    data = rng.integers(0, 4096, (2, 16, 16), dtype=np.uint16)
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, data, compression="zlib", photometric="minisblack")
    img = dd.load_image(src)
    np.testing.assert_array_equal(img.frames, data)
    out = dd.save_image(img, tmp_path / "out.tif")
    with tifffile.TiffFile(out) as tf:
        assert tf.pages[0].compression.name in ("ADOBE_DEFLATE", "DEFLATE")
    np.testing.assert_array_equal(dd.load_image(out).frames, data)


def test_float_tiff_is_refused(tmp_path):
    import tifffile

    p = tmp_path / "f.tif"
    tifffile.imwrite(p, np.zeros((8, 8), np.float32))
    with pytest.raises(errors.UnsupportedInputError, match="float32"):
        dd.load_image(p)


def test_png_cannot_hold_everything(rng, tmp_path):
    with pytest.raises(errors.OutputError, match=r"\.tif"):
        dd.save_image(_synthetic("rgb16", rng), tmp_path / "a.png")
    with pytest.raises(errors.OutputError, match=r"\.tif"):
        dd.save_image(_synthetic("grey8", rng, 3), tmp_path / "b.png")
    with pytest.raises(errors.OutputError, match=r"\.tif"):
        dd.save_image(Image(np.full((1, 4, 4), -5, np.int16)), tmp_path / "c.png")
    assert list(tmp_path.iterdir()) == []


def test_monochrome1_png_is_written_inverted(rng, tmp_path, caplog):
    img = Image(rng.integers(0, 256, (1, 8, 8), dtype=np.uint8), "MONOCHROME1")
    with caplog.at_level(logging.WARNING, logger="deephealth_deid.io.raster"):
        back = dd.load_image(dd.save_image(img, tmp_path / "a.png"))
    assert "MONOCHROME1" in caplog.text
    assert back.photometric == "MONOCHROME2"
    np.testing.assert_array_equal(back.frames, 255 - img.frames)
    np.testing.assert_array_equal(back.to_rgb(), img.to_rgb())


def test_unknown_suffix(rng, tmp_path):
    with pytest.raises(errors.OutputError, match="unknown output suffix"):
        dd.save_image(_synthetic("grey8", rng), tmp_path / "a.bmp")
    assert list(tmp_path.iterdir()) == []


def _smooth_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)


def test_jpeg_read_and_rewrite(tmp_path):
    rgb = _smooth_rgb()
    src = tmp_path / "in.jpg"
    PILImage.fromarray(rgb).save(src, quality=90)
    img = dd.load_image(src)
    assert img.format == "jpeg"
    assert img.photometric == "RGB"
    assert img.frames.shape == (1, *rgb.shape)
    np.testing.assert_array_equal(img.frames[0], np.asarray(PILImage.open(src)))
    # a JPEG source may be written as JPEG (with its own tables), and losslessly as PNG
    jpg = dd.load_image(dd.save_image(img, tmp_path / "out.jpeg"))
    assert np.abs(jpg.frames.astype(int) - img.frames.astype(int)).mean() < 2
    png = dd.load_image(dd.save_image(img, tmp_path / "out.png"))
    np.testing.assert_array_equal(png.frames, img.frames)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_an_unchanged_jpeg_is_written_bit_identical_without_its_metadata(tmp_path, mode):
    """Nothing blanked: the source's own JPEG data, so not a pixel changes; EXIF and comments go."""
    pixels = _smooth_rgb() if mode == "RGB" else _smooth_rgb()[..., 0]
    src = tmp_path / "in.jpg"
    exif = PILImage.Exif()
    exif[0x010E] = "Doe^Jane 1234567"  # ImageDescription
    PILImage.fromarray(pixels).save(src, quality=90, exif=exif, comment=b"MRN 7654321")
    img = dd.load_image(src)
    out = dd.save_image(img, tmp_path / "out.jpg")
    again = dd.load_image(out)
    np.testing.assert_array_equal(again.frames, img.frames)
    data = out.read_bytes()
    assert b"Doe" not in data and b"7654321" not in data and b"Exif" not in data
    with PILImage.open(out) as im:
        assert "exif" not in im.info and "comment" not in im.info
    # A source file replaced since it was read is never written in the image's place.
    PILImage.fromarray(255 - pixels).save(src, quality=90)
    kept = dd.load_image(dd.save_image(img, tmp_path / "after_replace.jpg"))
    assert np.abs(kept.frames.astype(int) - img.frames.astype(int)).mean() < 2
    # A changed image is encoded again, with the source's tables.
    changed = img.frames.copy()
    changed[0, :8, :8] = 0
    redone = dd.load_image(dd.save_image(img.with_frames(changed), tmp_path / "changed.jpg"))
    assert (redone.frames[0, :8, :8] < 8).all() and b"Doe" not in (tmp_path / "changed.jpg").read_bytes()


def test_grey_jpeg(tmp_path):
    src = tmp_path / "in.jpg"
    PILImage.fromarray(_smooth_rgb()[..., 0]).save(src)
    img = dd.load_image(src)
    assert img.photometric == "MONOCHROME2"
    assert img.frames.dtype == np.uint8


@pytest.mark.parametrize("kind", ["grey8", "rgb8", "palette"])
def test_jpeg_write_refused_for_a_non_jpeg_source(kind, rng, tmp_path):
    img = dd.load_image(dd.save_image(_synthetic(kind, rng), tmp_path / "in.png"))
    for suffix in (".jpg", ".jpeg"):
        with pytest.raises(errors.OutputError, match=r"lossy.*\.png or \.tif"):
            dd.save_image(img, tmp_path / f"out{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_rgba_png_drops_alpha_with_a_warning(rng, tmp_path, caplog):
    rgba = rng.integers(0, 256, (10, 12, 4), dtype=np.uint8)
    p = tmp_path / "rgba.png"
    PILImage.fromarray(rgba).save(p)
    with caplog.at_level(logging.WARNING, logger="deephealth_deid.io.raster"):
        img = dd.load_image(p)
    assert "alpha" in caplog.text
    assert img.photometric == "RGB"
    np.testing.assert_array_equal(img.frames[0], rgba[..., :3])


def test_opaque_rgba_png_drops_alpha_silently(rng, tmp_path, caplog):
    rgba = rng.integers(0, 256, (10, 12, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    p = tmp_path / "rgba.png"
    PILImage.fromarray(rgba).save(p)
    with caplog.at_level(logging.WARNING, logger="deephealth_deid.io.raster"):
        img = dd.load_image(p)
    assert caplog.text == ""
    np.testing.assert_array_equal(img.frames[0], rgba[..., :3])


def test_palette_png_is_read_as_palette(rng, tmp_path):
    idx = rng.integers(0, 5, (10, 12), dtype=np.uint8)
    palette = [10, 20, 30, 200, 0, 0, 0, 255, 0, 5, 5, 5, 250, 250, 250]
    im = PILImage.fromarray(idx)
    im.putpalette(palette)
    p = tmp_path / "p.png"
    im.save(p)
    img = dd.load_image(p)
    assert img.photometric == "PALETTE COLOR"
    np.testing.assert_array_equal(img.frames[0], idx)
    np.testing.assert_array_equal(img.palette[:5], np.reshape(palette, (5, 3)))
    np.testing.assert_array_equal(img.to_rgb()[0], np.reshape(palette, (5, 3))[idx])


def test_one_bit_png_is_read_as_8bit(rng, tmp_path):
    bits = rng.integers(0, 2, (10, 12)).astype(bool)
    p = tmp_path / "b.png"
    PILImage.fromarray(bits).save(p)
    img = dd.load_image(p)
    assert img.photometric == "MONOCHROME2"
    np.testing.assert_array_equal(img.frames[0], bits.astype(np.uint8) * 255)


def _png_bytes(width: int, height: int, bit_depth: int, colour: int, rows: bytes) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_16bit_colour_png_is_refused(tmp_path):
    row = b"\x00" + bytes(4 * 6)  # filter byte, 4 pixels of 16-bit RGB
    p = tmp_path / "rgb48.png"
    p.write_bytes(_png_bytes(4, 3, 16, 2, row * 3))
    with pytest.raises(errors.UnsupportedInputError, match=r"16-bit RGB PNG.*TIFF"):
        dd.load_image(p)


def test_truncated_png(rng, tmp_path):
    full = tmp_path / "full.png"
    PILImage.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full)
    p = tmp_path / "cut.png"
    p.write_bytes(full.read_bytes()[:3000])
    with pytest.raises(errors.CorruptInputError, match=r"truncated|damaged") as exc:
        dd.load_image(p)
    assert str(p) in str(exc.value)


def test_truncated_tiff(rng, tmp_path):
    import tifffile

    full = tmp_path / "full.tif"
    tifffile.imwrite(full, rng.integers(0, 256, (3, 64, 64), dtype=np.uint8), photometric="minisblack")
    p = tmp_path / "cut.tif"
    p.write_bytes(full.read_bytes()[:5000])
    with pytest.raises(errors.CorruptInputError):
        dd.load_image(p)


def test_dicom_without_preamble_named_by_its_uid_is_found(tmp_path):
    """Exports that drop the preamble and name files by SOP Instance UID are still DICOM."""
    from deephealth_deid.io._sniff import sniff

    raw = td("MR_small.dcm").read_bytes()
    assert raw[128:132] == b"DICM"
    path = tmp_path / "1.2.840.113619.2.55.3.4"
    path.write_bytes(raw[132:])  # no preamble, no "DICM"
    assert sniff(path) == "dicom"
    assert dd.load_image(path).frames.shape[1:3] == (64, 64)
    other = tmp_path / "notes.1"
    other.write_text("not an image")
    assert sniff(other) == "unknown"
