"""The shipped text detector on real images from pydicom's test data (pydicom-data)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import pydicom_test_file

import deephealth_deid as dd

pytest.importorskip("torch", reason="the shipped text model runs on the PyTorch engine (pip install torch)")
pytest.importorskip("pydicom.data")

#: Real images with burned-in text: (file, photometric).
WITH_TEXT = {
    "US1_UNCR.dcm": "RGB",
    "OBXXXX1A.dcm": "PALETTE COLOR",
    "gdcm-US-ALOKA-16.dcm": "PALETTE COLOR",
    "JPGLosslessP14SV1_1s_1f_8b.dcm": "MONOCHROME2",
}


def _file(name: str) -> str:
    return str(pydicom_test_file(name))


@pytest.mark.parametrize("name", sorted(WITH_TEXT))
def test_text_is_found_and_only_its_boxes_change(name, tmp_path):
    src = _file(name)
    image = dd.load_image(src)
    assert image.photometric == WITH_TEXT[name]
    res = dd.redact_text(image, ocr="none")  # no OCR: every detected region is blanked
    assert res.qc.detected >= 1 and res.qc.blanked == len(res.regions)
    outside = ~res.mask
    assert np.array_equal(res.image.frames[outside], image.frames[outside])
    import warnings

    import pydicom

    out = tmp_path / "out.dcm"
    with warnings.catch_warnings():  # values pydicom finds invalid come from the input, kept as they are
        warnings.simplefilter("ignore", UserWarning)
        dd.save_image(res.image, out)
        back = dd.load_image(out)
        assert np.array_equal(back.frames[outside], image.frames[outside])
        assert pydicom.dcmread(out).BurnedInAnnotation == "NO"


#: Real images whose identifying strings (names, IDs, dates: the policy's reasons) RapidOCR reads.
OCR_CHECKED = ("US1_UNCR.dcm", "OBXXXX1A.dcm", "gdcm-US-ALOKA-16.dcm", "color3d_jpeg_baseline.dcm")


@pytest.fixture(scope="module")
def rapidocr():
    from deephealth_deid.text.ocr import RapidOcr, get_ocr

    if not RapidOcr.is_available():
        pytest.skip(f"RapidOCR reads the outputs, and it {RapidOcr.why_unavailable()}; {RapidOcr.install}")
    return get_ocr("rapidocr")


@pytest.mark.parametrize("ocr", ["none", "rapidocr"])
@pytest.mark.parametrize("name", OCR_CHECKED)
def test_ocr_reads_no_identifying_string_after_redaction(name, ocr, rapidocr):
    """OCR reads names, IDs or dates on the input, and none on the output: with and without OCR in the policy.

    With OCR, the regions it reads as harmless markers are kept; a misreading
    must never keep an identifying string. The cine is checked on its first
    three frames. Only reasons are compared, never the text (patient data).
    """
    from deephealth_deid.io.dicom_image import header_values
    from deephealth_deid.io.image import Image
    from deephealth_deid.text.evaluate import identifying_read
    from deephealth_deid.text.pipeline import display_frame
    from deephealth_deid.text.policy import IDENTIFYING_KEYWORDS, HeaderTerms

    image = dd.load_image(_file(name))
    header = header_values(image, IDENTIFYING_KEYWORDS)
    if image.n_frames > 3:
        image = Image(
            image.frames[:3], image.photometric, palette=image.palette, palette_first=image.palette_first
        )
    res = dd.redact_text(image, ocr=ocr, header=header)
    terms = HeaderTerms.from_header(header)
    before = [
        r for f in range(image.n_frames) for r in identifying_read(rapidocr, display_frame(image, f), terms)
    ]
    after = [
        r
        for f in range(image.n_frames)
        for r in identifying_read(rapidocr, display_frame(res.image, f), terms)
    ]
    assert before, "the input should hold identifying strings OCR reads"
    assert after == []
    outside = ~res.mask
    assert np.array_equal(res.image.frames[outside], image.frames[outside])


def test_ultrasound_header_band_is_blanked():
    """US1_UNCR's header band (rows 0-104: names, dates, the device's text) is blanked.

    Its bright pixels on the black band are the burned-in characters (and a few
    marks): at least 99% of them lie in the blanked boxes.
    """
    image = dd.load_image(_file("US1_UNCR.dcm"))
    res = dd.redact_text(image, ocr="none")
    bright = image.frames[0, :105].mean(axis=-1) > 128
    assert bright.sum() > 1000
    assert res.mask[0, :105][bright].mean() >= 0.99


def test_real_anatomy_without_text_is_mostly_left_alone(chris_t1):
    """Text-free frames of a real head never seen in training: little of them is blanked.

    60 frames (3 orientations x 4 positions x 64-512 px, see ``text.evaluate``); the
    shipped model blanks 1.4% of a frame on average (8.7% without keeping unsure regions
    only beside sure ones, 60% with the previous model, trained without real anatomy).
    A regression guard at 3%.
    """
    from deephealth_deid.text.detector import load_text_detector
    from deephealth_deid.text.evaluate import anatomy_frames, blanked_share

    frames = anatomy_frames(dd.load_volume(chris_t1))
    hit, share = blanked_share(load_text_detector(device="cpu"), frames)
    assert len(frames) == 60 and share <= 0.03, f"{hit} frames with regions, {share:.1%} blanked"


def test_radiograph_r_marker_is_kept_even_without_ocr():
    """RG3_UNCR's only lettering is its R marker, a lead letter imaged with the patient: it stays.

    Without OCR every region found is blanked; the network is unsure of this grey, blurred
    letter (its regions score 0.2-0.4) and finds nothing sure beside it, so nothing is
    blanked and the marker's pixels are unchanged.
    """
    image = dd.load_image(_file("RG3_UNCR.dcm"))
    assert image.photometric == "MONOCHROME1"
    res = dd.redact_text(image, ocr="none")
    # The (mirrored) R marker's ink spans x 1149..1218, y 1391..1472 of this 1760 x 1760 radiograph.
    marker = (slice(None), slice(1391, 1472), slice(1149, 1218))
    assert image.frames[marker].std() > 50  # the marker is there, with its contrast
    assert np.array_equal(res.image.frames[marker], image.frames[marker])


def test_text_free_image_is_bit_identical():
    image = dd.load_image(_file("MR_small.dcm"))
    res = dd.redact_text(image, ocr="none")
    assert res.qc.detected == 0 and np.array_equal(res.image.frames, image.frames)


def test_onnxruntime_blanks_the_same_pixels_and_is_what_auto_uses_on_a_cpu():
    """The text network on ONNX Runtime (``auto``'s pick on a CPU where it is installed) and on PyTorch."""
    why = "needs onnxruntime and onnx (pip install deephealth_deid[onnx])"
    pytest.importorskip("onnxruntime", reason=why)
    pytest.importorskip("onnx", reason=why)
    from deephealth_deid.text.detector import load_text_detector

    assert load_text_detector(engine="auto", device="cpu").engine.name == "onnxruntime"
    image = dd.load_image(_file("US1_UNCR.dcm"))
    ort = dd.redact_text(image, ocr="none", engine="onnxruntime", device="cpu")
    torch = dd.redact_text(image, ocr="none", engine="torch", device="cpu")
    assert [r.box for r in ort.regions] == [r.box for r in torch.regions]
    assert np.array_equal(ort.image.frames, torch.image.frames)
