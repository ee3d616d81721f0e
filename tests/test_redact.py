"""Burned-in text removal without a trained detector: fake detectors and OCR, real DICOM files.

What a user checks: the boxes found are black in the image's own terms, every
other pixel is bit-identical, repeated frames are handled once, the policy
keeps only harmless markers read with confidence and never a header value,
device rules apply to their devices only, DICOM outputs say Burned In
Annotation NO and lose their overlays, the CLI exits as the others do, and no
patient data reaches the log.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import pydicom_test_file

import deephealth_deid as dd
from deephealth_deid.cli import main as deid
from deephealth_deid.errors import ConfigError, EngineUnavailableError, ModelCheckError
from deephealth_deid.io import Image
from deephealth_deid.io.dicom_image import overlays
from deephealth_deid.text import (
    HeaderTerms,
    OcrBackend,
    OcrDetector,
    Policy,
    Region,
    RuleSet,
    blank_regions,
    fill_value,
    get_detector,
    get_ocr,
    redact_file,
    redact_text,
    write_qc_png,
)
from deephealth_deid.text import ocr as ocr_module
from deephealth_deid.text.blank import padded_box
from deephealth_deid.text.rules import EXAMPLE_RULES

# ----------------------------------------------------------------------------------------------------
# fakes and helpers


class FakeDetector:
    """Returns the same boxes on every frame and counts the frames it saw."""

    def __init__(self, boxes=()):
        self.boxes = list(boxes)
        self.calls = 0
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, frame):
        self.calls += 1
        self.shapes.append(frame.shape)
        return [Region(0, *box, score=0.9) for box in self.boxes]


class QueueOcr(OcrBackend):
    """Reads the regions of a frame in order: the n-th crop read gives the n-th reading."""

    name = "fake"

    def __init__(self, *readings: tuple[str, float]):
        self.queue = list(readings)
        self.crops = 0

    @classmethod
    def is_available(cls):
        return True

    def read(self, crop):
        self.crops += 1
        return self.queue.pop(0) if self.queue else ("", 0.0)

    def find(self, frame):
        return []


@pytest.fixture
def no_shipped_text_model(monkeypatch):
    """The shipped-model registry as it is, less any 'text' entry: the state before a text model ships."""
    from deephealth_deid import shipped

    every = shipped.shipped_models
    monkeypatch.setattr(shipped, "shipped_models", lambda: {k: v for k, v in every().items() if k != "text"})


def _testfile(name: str) -> Path:
    return pydicom_test_file(name)


def _image(photometric: str, dtype=np.uint8, frames: int = 1, rows: int = 40, cols: int = 64, seed: int = 7):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    shape = (frames, rows, cols, 3) if photometric == "RGB" else (frames, rows, cols)
    hi = 200 if photometric == "PALETTE COLOR" else int(info.max)
    arr = rng.integers(1, hi, size=shape, dtype=np.int64).astype(dtype)
    palette = None
    if photometric == "PALETTE COLOR":
        lut = rng.integers(60, 255, size=(256, 3)).astype(np.uint8)
        lut[137] = (3, 2, 1)  # the darkest entry
        palette = lut
    return Image(arr, photometric, palette=palette)


BOX = (10, 5, 30, 15)  # x0, y0, x1, y1


# ----------------------------------------------------------------------------------------------------
# blanking


@pytest.mark.parametrize(
    ("photometric", "dtype", "black"),
    [
        ("MONOCHROME2", np.uint8, 0),
        ("MONOCHROME2", np.uint16, 0),
        ("MONOCHROME1", np.uint8, 255),
        ("MONOCHROME1", np.uint16, 65535),
        ("RGB", np.uint8, (0, 0, 0)),
        ("PALETTE COLOR", np.uint8, 137),
    ],
)
def test_boxes_are_black_and_every_other_pixel_is_bit_identical(photometric, dtype, black):
    img = _image(photometric, dtype)
    before = img.frames.copy()
    res = redact_text(img, detector=FakeDetector([BOX]), ocr="none", pad_px=2)
    mask = res.mask[0]
    assert mask[5 - 2 : 15 + 2, 10 - 2 : 30 + 2].all() and mask.sum() == 24 * 14
    out = res.image.frames[0]
    assert out.dtype == before.dtype
    assert np.array_equal(out[~mask], before[0][~mask])  # outside: bit-identical
    assert (out[mask] == np.asarray(black, dtype=dtype)).all()  # inside: the image's own black
    assert np.array_equal(img.frames, before)  # the input is not modified
    assert res.image.photometric == photometric
    if photometric == "PALETTE COLOR":
        assert tuple(res.image.palette[black]) == (3, 2, 1)


def test_fill_value_follows_bits_stored_and_signed_data():
    mono1 = _image("MONOCHROME1", np.uint16)
    assert int(fill_value(mono1)) == 65535
    assert int(fill_value(mono1, bits_stored=12)) == 4095
    signed = Image(np.array([[[-1024, 50], [300, 20]]], np.int16), "MONOCHROME2")
    assert int(fill_value(signed)) == -1024  # the darkest value present, not mid-grey 0
    signed1 = Image(np.zeros((1, 2, 2), np.int16), "MONOCHROME1")
    assert int(fill_value(signed1, bits_stored=12)) == 2047


def test_palette_black_respects_palette_first():
    img = _image("PALETTE COLOR")
    img = Image(img.frames + 10, "PALETTE COLOR", palette=img.palette, palette_first=10)
    assert int(fill_value(img)) == 147


def test_no_regions_gives_the_input_back_untouched():
    img = _image("MONOCHROME2", np.uint16, frames=3)
    det = FakeDetector([])
    res = redact_text(img, detector=det, ocr="none")
    assert res.image is img  # not a copy, not re-encoded
    assert res.regions == [] and res.qc.blanked == 0 and not res.mask.any()
    assert blank_regions(img, [Region(0, *BOX, decision="keep")]) is img


def test_default_pad_grows_with_the_box():
    img = _image("MONOCHROME2", frames=1, rows=100, cols=200)
    kw = {"ocr": "none", "follow": False}  # the margin of the boxes as found (on noise)
    small = redact_text(img, detector=FakeDetector([(50, 10, 80, 20)]), **kw).mask[0]
    big = redact_text(img, detector=FakeDetector([(50, 40, 150, 80)]), **kw).mask[0]
    assert small.sum() == (30 + 2 * 2) * (10 + 2 * 2)  # at least 2 px
    assert big.sum() == (100 + 2 * 8) * (40 + 2 * 8)  # a fifth of 40 rows
    rule = Region(0, 50, 40, 150, 80, source="rules")
    assert (
        blank_regions(img, [rule]).frames[0].astype(bool).sum() == img.frames[0].size - 100 * 40
    )  # as drawn
    # A vertical string: the margin follows the line's thickness (its width), not its length.
    tall = redact_text(img, detector=FakeDetector([(10, 5, 20, 95)]), **kw).mask[0]
    assert tall.sum() == (10 + 2 * 2) * (90 + 2 * 2)
    # A box the detector says holds 30-pixel lines gets the margin of 30-pixel text.
    lines = Region(0, 50, 10, 80, 20, line_px=30)
    assert padded_box(lines, 100, 200) == (44, 4, 86, 26)
    with pytest.raises(ValueError, match="line_px"):
        Region(0, 0, 0, 5, 5, line_px=-1)


def test_repeated_frames_are_detected_once_and_every_frame_is_blanked():
    base = _image("RGB", frames=2, seed=3).frames
    frames = np.stack([base[0], base[1], base[0], base[1], base[0]])
    img = Image(frames, "RGB")
    det = FakeDetector([BOX])
    res = redact_text(img, detector=det, ocr="none", pad_px=0)
    assert det.calls == 2  # two distinct frames
    assert det.shapes == [(40, 64, 3)] * 2  # the detector sees display RGB
    assert res.qc.distinct_frames == (0, 1) and res.qc.frames == 5
    assert sorted(r.frame for r in res.regions) == [0, 1, 2, 3, 4]
    assert (res.image.frames[:, 5:15, 10:30] == 0).all()
    outside = ~res.mask
    assert np.array_equal(res.image.frames[outside], frames[outside])


def test_detector_boxes_outside_the_frame_are_clipped():
    img = _image("MONOCHROME2")
    res = redact_text(img, detector=FakeDetector([(50, 30, 100, 90), (70, 50, 90, 60)]), ocr="none", pad_px=0)
    assert [r.box for r in res.regions] == [(50, 30, 64, 40)]


# ----------------------------------------------------------------------------------------------------
# policy


HEADER = {
    "PatientName": "Lat^Anna",
    "PatientID": "12",
    "AccessionNumber": "PORTABLE7",
    "PatientBirthDate": "19700305",
    "InstitutionName": "Saint Erect Hospital",
}


def _decide(text, confidence=0.95, *, header=HEADER, policy=None):
    region = Region(0, *BOX, text=text, text_confidence=confidence)
    return (policy or Policy()).decide(region, HeaderTerms.from_header(header))


@pytest.mark.parametrize(
    "text", ["R", "L", "AP", "PORTABLE", "SUPINE", "MI 0.9", "TIS 0.4", "16cm", "5.0MHz"]
)
def test_harmless_markers_read_with_confidence_are_kept(text):
    d = _decide(text)
    assert (d.decision, d.reason) == ("keep", "harmless marker")


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("LAT", "PatientName"),  # allow-listed word, but the patient's name on this image
        ("lat", "PatientName"),
        ("12", "PatientID"),  # a scale number elsewhere, the patient ID here
        ("ID: 12", "PatientID"),
        ("PORTABLE7", "AccessionNumber"),
        ("ERECT", "InstitutionName"),
        ("1970-03-05", "PatientBirthDate"),
        ("05/03/1970", "PatientBirthDate"),
        ("3/5/70", "PatientBirthDate"),
        ("05 MAR 1970", "PatientBirthDate"),
        ("Mar 5, 1970", "PatientBirthDate"),
        ("19700305", "PatientBirthDate"),
        ("ANNA", "PatientName"),
        ("ANNA L4T", "PatientName"),  # OCR confusions are folded
    ],
)
def test_header_values_are_always_identifying(text, keyword):
    d = _decide(text)
    assert d.decision == "blank" and d.reason == f"matches {keyword}"
    assert text.lower() not in d.reason.lower()  # the reason never quotes the text


@pytest.mark.parametrize(
    "text", ["2019-05-25", "5/25/2011", "25 May 2011", "14:32", "2:56:22 PM", "MRN 0012345", "ID 1234567"]
)
def test_date_time_and_id_patterns_are_identifying(text):
    assert _decide(text, header={}).decision == "blank"


@pytest.mark.parametrize(
    "text",
    [
        "901 234 567",
        "12.345.678",
        "123-45-6789",
        "555 1234",
        "123R456",
        "999L999",
        "78F",
        "78 F",
        "45 M",
        "F 45Y",
        "45 YO",
        "67Y",
        "078Y",
        "004D",
        "M/73",
        "F, 45",
    ],
)
def test_ids_in_groups_codes_and_age_with_sex_are_never_harmless(text):
    """Short numbers and markers are harmless one by one, not as an ID in groups or an age and sex."""
    d = _decide(text, header={})
    assert d.decision == "blank", (text, d.reason)


@pytest.mark.parametrize(
    "text", ["MI 0.9", "TIS 0.4", "GN 60 DR 65", "C5-1", "0 5 10 15", "50 cm/s", "5 M/S", "3.5MHz", "2D"]
)
def test_ultrasound_parameters_and_scales_stay_harmless(text):
    assert _decide(text, header={}).decision == "keep", text


def test_markers_are_kept_only_with_keep_safe_and_confident_ocr():
    assert _decide("R").decision == "keep"
    assert _decide("R", confidence=0.5).reason == "OCR confidence below the minimum"
    assert _decide("R", policy=Policy(keep_safe=False)).decision == "blank"
    assert _decide("R", policy=Policy(min_confidence=0.99)).decision == "blank"
    assert Policy().decide(Region(0, *BOX)).reason == "no OCR text"  # not read: blank
    assert _decide("").decision == "blank"
    assert _decide("LYMPH NODE").reason == "not on the allow-list"
    assert _decide("张三 R").decision == "blank"  # unknown script: not harmless
    assert Policy().decide(Region(0, *BOX, source="rules", text="R", text_confidence=1.0)).decision == "blank"


def test_policy_from_yaml(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "keep_safe: true\nmin_confidence: 0.6\nallow_add: [Head, feet]\nallow_remove: [PORTABLE]\n"
        "identifying_patterns: ['\\bRM\\d+\\b']\n"
    )
    policy = Policy.from_yaml(path)
    assert policy.min_confidence == 0.6
    assert _decide("HEAD FEET", header={}, policy=policy).decision == "keep"
    assert _decide("PORTABLE", header={}, policy=policy).decision == "blank"
    assert _decide("R", confidence=0.7, header={}, policy=policy).decision == "keep"
    assert _decide("RM12", header={}, policy=policy).reason == "configured pattern 0 pattern"
    assert Policy.from_yaml(_write(tmp_path / "off.yaml", "keep_safe: false\n")).keep_safe is False


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ("keep_safe: maybe\n", "keep_safe"),
        ("min_confidence: 2\n", "min_confidence"),
        ("allow_add: R\n", "allow_add"),
        ("identifying_patterns: ['(unclosed']\n", "identifying_patterns[0]"),
        ("colour: red\n", "'colour'"),
        ("- a list\n", "a policy is a mapping"),
        ("keep_safe: [\n", "not valid YAML"),
    ],
)
def test_policy_yaml_errors_name_the_file_and_key(tmp_path, content, key):
    path = _write(tmp_path / "bad.yaml", content)
    with pytest.raises(ConfigError) as e:
        Policy.from_yaml(path)
    assert str(path) in str(e.value) and key in str(e.value)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_ocr_readings_drive_the_pipeline_and_kept_markers_stay_untouched():
    img = _image("MONOCHROME2", rows=60, cols=120)
    boxes = [(2, 2, 40, 12), (80, 40, 90, 52)]  # a name, an R marker
    reader = QueueOcr(("DOE JOHN", 0.97), ("R", 0.96))
    res = redact_text(
        img, detector=FakeDetector(boxes), ocr=reader, header={"PatientName": "Doe^John"}, pad_px=1
    )
    decisions = {r.box: (r.decision, r.reason) for r in res.regions}
    assert decisions[boxes[0]] == ("blank", "matches PatientName")
    assert decisions[boxes[1]] == ("keep", "harmless marker")
    assert reader.crops == 2
    assert np.array_equal(res.image.frames[0, 39:53, 79:91], img.frames[0, 39:53, 79:91])  # kept: untouched
    assert (res.image.frames[0, 1:13, 1:41] == 0).all()
    assert (res.qc.blanked, res.qc.kept, res.qc.ocr) == (1, 1, "fake")
    # without keep_safe nothing is read and everything goes
    reader.queue = [("R", 0.99)] * 2
    res = redact_text(img, detector=FakeDetector(boxes), ocr=reader, keep_safe=False)
    assert res.qc.kept == 0 and res.qc.ocr is None


# ----------------------------------------------------------------------------------------------------
# device rules


RULES = """
rules:
  - name: acme top band
    manufacturer: 'ACME( Imaging)?'
    model: 'Sono.*'
    rows: 40
    columns: 64
    boxes:
      - [0, 0, 64, 6]
  - name: any size
    modality: US
    boxes:
      - [50, 30, 200, 200]
"""


def test_rules_match_manufacturer_model_and_size(tmp_path):
    rules = RuleSet.from_yaml(_write(tmp_path / "rules.yaml", RULES))
    header = {"Manufacturer": ("acme imaging",), "ManufacturerModelName": ("SonoX 3",)}
    assert [r.box for r in rules.regions_for(header, rows=40, columns=64)] == [(0, 0, 64, 6)]
    assert rules.regions_for(header, rows=41, columns=64) == []  # another size
    assert rules.regions_for({**header, "ManufacturerModelName": "Other"}, rows=40, columns=64) == []
    assert rules.regions_for({"ManufacturerModelName": "Sono"}, rows=40, columns=64) == []  # no manufacturer
    us = rules.regions_for({"Modality": "US"}, rows=40, columns=64)
    assert [r.box for r in us] == [(50, 30, 64, 40)]  # clipped to the image
    assert us[0].source == "rules" and us[0].reason == "device rule any size"


def test_rules_are_blanked_on_every_frame_in_addition_to_the_detector(tmp_path):
    rules = RuleSet.from_yaml(_write(tmp_path / "rules.yaml", RULES))
    img = _image("MONOCHROME2", frames=2, seed=11)
    res = redact_text(
        img,
        detector=FakeDetector([BOX]),
        ocr="none",
        rules=rules,
        header={"Manufacturer": "ACME", "ManufacturerModelName": "Sono"},
        pad_px=0,
    )
    assert res.qc.from_rules == 1
    assert sorted((r.frame, r.source) for r in res.regions) == [
        (0, "net"),
        (0, "rules"),
        (1, "net"),
        (1, "rules"),
    ]
    assert (res.image.frames[:, 0:6, :] == 0).all()


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ("rules: [{name: a, manufacturer: X}]\n", "rules[0].boxes"),
        ("rules: [{name: a, manufacturer: X, boxes: [[0, 0, 10]]}]\n", "rules[0].boxes[0]"),
        ("rules: [{name: a, manufacturer: X, boxes: [[5, 0, 5, 9]]}]\n", "rules[0].boxes[0]"),
        ("rules: [{name: a, manufacturer: X, boxes: [[-1, 0, 5, 9]]}]\n", "rules[0].boxes[0]"),
        ("rules: [{name: a, manufacturer: '(', boxes: [[0, 0, 5, 9]]}]\n", "rules[0].manufacturer"),
        ("rules: [{name: a, manufacturer: X, colour: red, boxes: [[0, 0, 5, 9]]}]\n", "rules[0].colour"),
        ("rules: [{name: a, rows: 10, boxes: [[0, 0, 5, 9]]}]\n", "rows and columns"),
        ("rules: [{name: a, rows: 10, columns: 4, boxes: [[0, 0, 5, 9]]}]\n", "rules[0].boxes[0]"),
        ("rules: [{name: a, boxes: [[0, 0, 5, 9]]}]\n", "matches every image"),
        ("rules: [{manufacturer: X, boxes: [[0, 0, 5, 9]]}]\n", "rules[0].name"),
        ("rules: {name: a}\n", "'rules' must be a list"),
        ("rulez: []\n", "'rulez'"),
        ("rules: [\n", "not valid YAML"),
    ],
)
def test_malformed_rules_name_the_file_and_key(tmp_path, content, key):
    path = _write(tmp_path / "rules.yaml", content)
    with pytest.raises(ConfigError) as e:
        RuleSet.from_yaml(path)
    assert str(path) in str(e.value) and key in str(e.value)


def test_the_shipped_example_rules_fit_the_real_ultrasound_files():
    rules = RuleSet.from_yaml(EXAMPLE_RULES)
    assert len(rules.rules) == 2
    from deephealth_deid.io.dicom_image import header_values
    from deephealth_deid.text.rules import RULE_KEYWORDS

    for name, rule in (("US1_UNCR.dcm", 0), ("OBXXXX1A.dcm", 1)):
        img = dd.load_image(_testfile(name))
        header = header_values(img, RULE_KEYWORDS.values())
        assert rules.matching(header, rows=img.rows, columns=img.columns) == [rules.rules[rule]]


# ----------------------------------------------------------------------------------------------------
# real DICOM files


def _roundtrip(tmp_path, name, boxes, **options):
    src = _testfile(name)
    dst = tmp_path / f"out_{name}"
    before = dd.load_image(src)
    res = redact_file(src, dst, detector=FakeDetector(boxes), ocr="none", pad_px=2, **options)
    after = dd.load_image(dst)
    assert after.frames.shape == before.frames.shape and after.photometric == before.photometric
    mask = res.mask
    assert np.array_equal(after.frames[~mask], before.frames[~mask])  # outside: identical when re-read
    return before, after, mask, res, pydicom.dcmread(dst)


@pytest.mark.parametrize(
    ("name", "black"),
    [
        ("US1_UNCR.dcm", (0, 0, 0)),  # RGB ultrasound with names and dates
        ("OBXXXX1A.dcm", None),  # palette colour
        ("RG3_UNCR.dcm", 1023),  # MONOCHROME1, 10 bits stored in 16
        ("SC_ybr_full_422_uncompressed.dcm", (0, 0, 0)),  # YBR, decoded to RGB
        ("examples_ybr_color.dcm", (0, 0, 0)),  # 30-frame JPEG YBR ultrasound
    ],
)
def test_dicom_roundtrip(tmp_path, name, black):
    before, after, mask, res, ds = _roundtrip(tmp_path, name, [(20, 10, 60, 30)])
    assert ds.BurnedInAnnotation == "NO" and res.qc.burned_in_annotation == "NO"
    assert mask[:, 8:32, 18:62].all()
    if black is None:  # palette: the darkest entry
        lum = after.palette.astype(float) @ [0.299, 0.587, 0.114]
        black = int(np.argmin(lum)) + after.palette_first
    assert (after.frames[mask] == np.asarray(black, dtype=after.frames.dtype)).all()
    assert res.qc.frames == before.n_frames == len({r.frame for r in res.regions})
    assert ds.SOPInstanceUID != pydicom.dcmread(_testfile(name), stop_before_pixels=True).SOPInstanceUID


def test_png_comes_out_as_png_with_only_the_box_changed(tmp_path):
    src = dd.save_image(_image("RGB", rows=50, cols=70), tmp_path / "in.png")
    res = redact_file(src, tmp_path / "out.png", detector=FakeDetector([BOX]), ocr="none")
    before, after = dd.load_image(src), dd.load_image(tmp_path / "out.png")
    assert after.format == "png" and res.qc.burned_in_annotation is None
    assert np.array_equal(after.frames[~res.mask], before.frames[~res.mask])
    assert (after.frames[res.mask] == 0).all()


def test_dicom_overlays_are_removed_by_default_and_kept_on_request(tmp_path):
    name = "MR-SIEMENS-DICOM-WithOverlays.dcm"
    assert overlays(dd.load_image(_testfile(name)))  # the input has some
    _, after, _, res, ds = _roundtrip(tmp_path, name, [(0, 0, 40, 10)])
    assert overlays(after) == [] and res.qc.overlays_removed >= 1 and res.qc.ok
    assert not any(t.group == 0x6000 for t in ds.keys())  # noqa: SIM118
    (tmp_path / "kept").mkdir()
    _, after, _, res, _ = _roundtrip(tmp_path / "kept", name, [(0, 0, 40, 10)], keep_overlays=True)
    assert overlays(after) and res.qc.overlays_removed == 0
    assert not res.qc.ok and "overlay" in res.qc.flags[0]


def test_retired_curves_go_with_the_overlays(tmp_path):
    """50xx curves (graphics and their labels, drawn over the image) are annotations too."""
    ds = pydicom.dcmread(_testfile("US1_UNCR.dcm"))
    ds.add_new((0x5000, 0x0005), "US", 2)  # Curve Dimensions
    ds.add_new((0x5000, 0x0010), "US", 2)  # Number of Points
    ds.add_new((0x5000, 0x2500), "LO", "CURVE LABEL")  # Curve Label
    ds.add_new((0x5000, 0x3000), "OW", np.array([1, 2, 3, 4], np.uint16).tobytes())  # Curve Data
    src = tmp_path / "us_curve.dcm"
    ds.save_as(src)
    before = src.read_bytes()
    res = redact_file(src, tmp_path / "out.dcm", detector=FakeDetector([]), ocr="none")
    assert res.qc.overlays_removed == 1 and res.qc.ok
    assert not any(t.group == 0x5000 for t in pydicom.dcmread(tmp_path / "out.dcm").keys())  # noqa: SIM118
    kept = redact_file(src, tmp_path / "kept.dcm", detector=FakeDetector([]), ocr="none", keep_overlays=True)
    assert any(t.group == 0x5000 for t in pydicom.dcmread(tmp_path / "kept.dcm").keys())  # noqa: SIM118
    assert not kept.qc.ok and "curve" in kept.qc.flags[0]
    assert src.read_bytes() == before


@pytest.mark.parametrize("box", [(0, -10, 2, -5), (-9, 0, -2, 5), (50, 0, 60, 5), (0, 30, 5, 40)])
def test_a_box_outside_the_frame_changes_nothing(box):
    from deephealth_deid.text import blank_regions

    img = _image("MONOCHROME2", rows=20, cols=40)
    region = Region(0, *box, score=0.9)
    out = blank_regions(img, [region])
    assert np.array_equal(out.frames, img.frames)


def test_dicom_icon_thumbnails_are_removed_wherever_they_are(tmp_path):
    """An Icon Image Sequence is a small copy of the pixels, burned-in text included: it goes."""
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(_testfile("US1_UNCR.dcm"))
    thumb = np.ascontiguousarray(ds.pixel_array[::8, ::8, 0])
    icon = Dataset()
    icon.Rows, icon.Columns = thumb.shape
    icon.SamplesPerPixel, icon.PhotometricInterpretation = 1, "MONOCHROME2"
    icon.BitsAllocated, icon.BitsStored, icon.HighBit, icon.PixelRepresentation = 8, 8, 7, 0
    icon.PixelData = thumb.tobytes()
    ds.IconImageSequence = [icon]
    ref = Dataset()
    ref.ReferencedSOPInstanceUID = "1.2.3"
    ref.IconImageSequence = [icon]
    ds.ReferencedImageSequence = [ref]
    src = tmp_path / "icon.dcm"
    ds.save_as(src)
    image = dd.load_image(src)
    res = redact_text(image, detector=FakeDetector([(0, 0, 100, 40)]), ocr="none")
    dd.save_image(res.image, tmp_path / "out.dcm")
    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert "IconImageSequence" not in out
    assert "IconImageSequence" not in out.ReferencedImageSequence[0]
    assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == "1.2.3"  # the rest is kept
    assert "IconImageSequence" in image.source.dataset.ReferencedImageSequence[0]  # source untouched


def test_dicom_without_text_keeps_its_exact_pixel_data(tmp_path):
    src = _testfile("MR_small.dcm")
    dst = tmp_path / "mr.dcm"
    res = redact_file(src, dst, detector=FakeDetector([]), ocr="none")
    assert res.qc.blanked == 0
    out, orig = pydicom.dcmread(dst), pydicom.dcmread(src)
    assert out.PixelData == orig.PixelData  # byte for byte
    assert out.BurnedInAnnotation == "NO" and "BurnedInAnnotation" not in orig


def test_multiframe_dicom_with_a_repeated_frame_is_detected_once(tmp_path):
    name = "OBXXXX1A_2frame.dcm"
    img = dd.load_image(_testfile(name))
    repeated = np.array_equal(img.frames[0], img.frames[1])
    det = FakeDetector([(0, 0, 800, 60)])
    res = redact_text(img, detector=det, ocr="none")
    assert det.calls == (1 if repeated else 2)
    assert {r.frame for r in res.regions} == {0, 1}
    top = img.frames[:, :60]
    ink = top != top[:, :1, :1]  # the band's plain surround is not text: the box is fitted to the rest
    assert ink[0].any() and ink[1].any() and res.mask[:, :60][ink].all()
    assert np.array_equal(res.mask[0], res.mask[1]) or not repeated


class CountingOcr(OcrBackend):
    """Reads every crop as one harmless marker, and keeps the crops it was given."""

    name = "fake"

    def __init__(self):
        self.crops: list[np.ndarray] = []

    @classmethod
    def is_available(cls):
        return True

    def read(self, crop):
        self.crops.append(np.array(crop))
        return ("L", 0.99)

    def find(self, frame):
        return []


def test_a_cine_reads_each_distinct_text_crop_once():
    """The same text on changing anatomy is read once; a frame whose text changed is read again."""
    img = _image("MONOCHROME2", frames=6, rows=40, cols=64)
    frames = img.frames.copy()
    frames[:, 3:14, 8:34] = frames[0, 3:14, 8:34]  # the burned-in text, the same on every frame ...
    frames[4, 3:14, 8:34] = 255 - frames[0, 3:14, 8:34]  # ... but on frame 4, where it changed
    img = img.with_frames(frames)
    det = FakeDetector([(10, 5, 32, 12)])
    reader = CountingOcr()
    res = redact_text(img, detector=det, ocr=reader, follow=False)  # boxes as found, on noise
    assert det.calls == 6  # every frame differs (the anatomy), so every frame is detected
    assert len(reader.crops) == 2  # but only two different crops were read
    assert not np.array_equal(reader.crops[0], reader.crops[1])
    assert [(r.frame, r.text, r.decision) for r in res.regions] == [(i, "L", "keep") for i in range(6)]
    # Without the shared reading, the same decisions: each frame alone.
    for i in range(6):
        alone = redact_text(
            Image(frames[i : i + 1], "MONOCHROME2"),
            detector=FakeDetector(det.boxes),
            ocr=CountingOcr(),
            follow=False,
        )
        assert [(r.text, r.decision) for r in alone.regions] == [("L", "keep")]


# ----------------------------------------------------------------------------------------------------
# QC picture


def test_qc_picture_colours_boxes_and_never_prints_the_text(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    import deephealth_deid.text.qc as qc_module

    labels: list[str] = []
    real = qc_module._label
    monkeypatch.setattr(
        qc_module, "_label", lambda d, f, text, *a: (labels.append(text), real(d, f, text, *a))
    )
    img = _image("MONOCHROME2", rows=80, cols=160)
    reader = QueueOcr(("DOE JOHN", 0.97), ("R", 0.96))
    res = redact_text(
        img,
        detector=FakeDetector([(10, 30, 60, 40), (120, 60, 130, 70)]),
        ocr=reader,
        header={"PatientName": "Doe^John"},
    )
    path = write_qc_png(res, tmp_path / "qc.png")
    pic = np.asarray(PILImage.open(path))
    assert pic.shape == (80, 160, 3)
    assert sorted(labels) == ["blank 0.90 identifying", "keep 0.90 harmless"]
    assert not any("DOE" in label or "R " in label for label in labels)
    assert (pic == (230, 40, 40)).all(axis=-1).any() and (pic == (40, 200, 60)).all(axis=-1).any()


# ----------------------------------------------------------------------------------------------------
# logging


def test_no_header_value_reaches_the_log(tmp_path, caplog):
    src = tmp_path / "input.dcm"  # a neutral name: the test file's own name holds one of the values
    src.write_bytes(_testfile("RG3_UNCR.dcm").read_bytes())
    values = ["CompressedSamples", "RG3", "11RG3", "FUJI95706", "19790408", "HIGASHI", "19921225"]
    reader = QueueOcr(("CompressedSamples^RG3 11RG3", 0.99), ("1979-04-08", 0.99), ("L", 0.99))
    caplog.set_level(logging.DEBUG, logger="deephealth_deid")
    res = redact_file(
        src,
        tmp_path / "out.dcm",
        detector=FakeDetector([(0, 0, 300, 40), (0, 50, 300, 90), (1700, 1700, 1740, 1740)]),
        ocr=reader,
        qc_png=tmp_path / "qc.png",
    )
    assert res.qc.blanked == 2 and res.qc.kept == 1
    assert caplog.records  # something was logged
    for value in values:
        assert value.lower() not in caplog.text.lower()
        assert value.lower() not in json.dumps(res.qc.to_dict()).lower()
        assert value.lower() not in repr(HeaderTerms.from_header({"PatientName": value})).lower()


# ----------------------------------------------------------------------------------------------------
# detectors and OCR backends


def test_without_a_shipped_text_model_the_network_detector_says_what_to_use(no_shipped_text_model, tmp_path):
    with pytest.raises(ModelCheckError, match=r"no text-detection model is shipped yet.*--detector ocr"):
        get_detector("net")
    with pytest.raises(ModelCheckError):
        redact_text(_image("MONOCHROME2"))  # the default detector
    with pytest.raises(FileNotFoundError, match="no such text-detection model"):
        get_detector("net", model=tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="detect"):
        get_detector(object())
    with pytest.raises(ValueError, match="none"):
        get_detector("ocr", ocr="none")


def test_get_ocr_none_and_unknown():
    assert get_ocr("none") is None and get_ocr(None) is None
    with pytest.raises(ValueError, match="unknown OCR backend"):
        get_ocr("abbyy")


@pytest.fixture
def no_ocr_installed(monkeypatch):
    """Neither OCR backend's package can be found, whatever this machine has."""
    real = ocr_module._module_available
    monkeypatch.setattr(
        ocr_module,
        "_module_available",
        lambda name: False if name in ("pytesseract", "rapidocr_onnxruntime") else real(name),
    )
    _clear_ocr_caches()
    yield
    _clear_ocr_caches()


@pytest.mark.parametrize(
    ("name", "install"), [("tesseract", "tesseract-ocr"), ("rapidocr", "rapidocr_onnxruntime")]
)
def test_a_missing_ocr_backend_names_what_to_install(name, install, no_ocr_installed):
    with pytest.raises(EngineUnavailableError, match=install):
        get_ocr(name)


def test_auto_ocr_is_none_when_nothing_is_installed(no_ocr_installed):
    assert get_ocr("auto") is None
    with pytest.raises(EngineUnavailableError, match="pip install"):
        OcrDetector("auto")


def test_an_ocr_backend_that_does_not_import_counts_as_missing(monkeypatch, no_ocr_installed):
    """RapidOCR installed but broken (OpenCV without libGL): 'auto' goes on; asked by name, it says why."""
    monkeypatch.setattr(ocr_module, "_module_available", lambda name: name == "rapidocr_onnxruntime")
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # any import of it now fails
    _clear_ocr_caches()
    assert get_ocr("auto") is None
    with pytest.raises(EngineUnavailableError, match=r"does not import.*libgl1"):
        get_ocr("rapidocr")
    res = redact_text(_image("MONOCHROME2", rows=40, cols=64), detector=FakeDetector([BOX]))
    assert res.qc.ocr is None and res.qc.blanked == 1  # without OCR: blanked


@pytest.fixture
def fake_backends(monkeypatch):
    """pytesseract and rapidocr_onnxruntime stand-ins answering as their documented APIs do."""
    tess = types.ModuleType("pytesseract")
    tess.Output = types.SimpleNamespace(DICT="dict")
    tess.get_tesseract_version = lambda: "5.3.0"
    tess.calls = []

    def image_to_data(img, lang, config, output_type):
        tess.calls.append((img.size, config))
        # two words on one line, one on another, one empty row (conf -1); coordinates on the 2x image
        return {
            "text": ["", "MI", "0.9", "R"],
            "conf": ["-1", "91", 88.5, "95"],
            "left": [0, 20, 60, 300],
            "top": [0, 10, 10, 200],
            "width": [640, 30, 30, 16],
            "height": [480, 20, 20, 24],
            "block_num": [0, 1, 1, 2],
            "par_num": [0, 1, 1, 1],
            "line_num": [0, 1, 1, 1],
        }

    tess.image_to_data = image_to_data
    rapid = types.ModuleType("rapidocr_onnxruntime")

    class RapidOCR:
        def __call__(self, img, use_det=None, use_cls=None, use_rec=None):
            assert img.ndim == 3 and img.shape[-1] == 3
            if use_det is False:
                return [["TIS 0.4", "0.93"]], [0.01]
            return [[[[10.2, 4.0], [50.0, 4.0], [50.0, 20.7], [10.2, 20.7]], "AP", 0.97]], [0.1, 0.0, 0.1]

    rapid.RapidOCR = RapidOCR
    monkeypatch.setitem(sys.modules, "pytesseract", tess)
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", rapid)
    monkeypatch.setattr(ocr_module, "_module_available", lambda name: True)
    _clear_ocr_caches()
    yield tess
    _clear_ocr_caches()


def _clear_ocr_caches():
    ocr_module._tesseract_available.cache_clear()
    ocr_module._rapidocr_unusable.cache_clear()
    ocr_module._instance.cache_clear()


def test_tesseract_adapter_groups_words_into_lines(fake_backends):
    ocr = get_ocr("tesseract")
    frame = np.zeros((240, 320, 3), np.uint8)
    found = sorted(ocr.find(frame))
    # boxes come back in frame pixels (the frame was doubled for OCR)
    assert found == [((10, 5, 45, 15), "MI 0.9", 0.885), ((150, 100, 158, 112), "R", 0.95)]
    assert fake_backends.calls[-1] == ((640, 480), "--psm 11")
    assert ocr.read(frame[:12, :40]) == ("MI 0.9 R", 0.885)


def test_rapidocr_adapter_and_the_ocr_detector(fake_backends):
    assert get_ocr("auto").name == "rapidocr"  # preferred when both are installed
    ocr = get_ocr("rapidocr")
    assert ocr.read(np.zeros((12, 40), np.uint8)) == ("TIS 0.4", 0.93)
    regions = OcrDetector(ocr).detect(np.zeros((240, 320, 3), np.uint8))
    assert [(r.box, r.text, r.source) for r in regions] == [((5, 2, 25, 11), "AP", "ocr")]
    img = _image("MONOCHROME2", rows=240, cols=320)
    res = redact_text(img, detector="ocr", ocr="rapidocr")
    assert [(r.decision, r.reason) for r in res.regions] == [("keep", "harmless marker")]
    assert res.image is img


def test_real_ocr_detector_blanks_the_names_and_dates_on_a_real_ultrasound(tmp_path):
    if get_ocr("auto") is None:
        pytest.skip(
            "no OCR backend installed (pip install rapidocr_onnxruntime, or pytesseract + tesseract-ocr)"
        )
    res = redact_file(_testfile("OBXXXX1A.dcm"), tmp_path / "ob.dcm", detector="ocr")
    assert res.qc.blanked >= 3  # the institution, the study ID, the date and time
    assert res.mask[0, :60].any()


# ----------------------------------------------------------------------------------------------------
# CLI and package


def test_cli_exit_codes(tmp_path, capsys, monkeypatch, no_shipped_text_model):
    src = _testfile("US1_UNCR.dcm")
    assert deid(["redact", str(tmp_path / "missing.dcm"), str(tmp_path / "o.dcm")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert deid(["redact", str(src), str(tmp_path / "o.dcm"), "-q"]) == 1
    assert "no text-detection model is shipped yet" in capsys.readouterr().err
    assert not (tmp_path / "o.dcm").exists()
    assert deid(["redact", str(src), str(tmp_path / "o.dcm"), "--detector", "ocr", "--ocr", "none"]) == 2
    assert deid(["redact", str(src), str(tmp_path / "o.dcm"), "--detector", "tree"]) == 2

    import deephealth_deid.text.detector as detector_module

    monkeypatch.setattr(
        detector_module, "load_text_detector", lambda *a, **k: FakeDetector([(0, 0, 200, 110)])
    )
    out, qc = tmp_path / "o.dcm", tmp_path / "qc.png"
    args = ["redact", str(src), str(out), "--ocr", "none", "--qc", str(qc), "--json", "-q"]
    assert deid(args) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["blanked"] == 1 and record["burned_in_annotation"] == "NO" and record["ok"]
    assert pydicom.dcmread(out).BurnedInAnnotation == "NO" and qc.read_bytes()[:4] == b"\x89PNG"
    written = out.read_bytes()
    assert deid(args) == 1  # refuses to overwrite
    assert "--force" in capsys.readouterr().err and out.read_bytes() == written
    assert deid([*args, "--force", "--regions", str(EXAMPLE_RULES)]) == 0
    assert json.loads(capsys.readouterr().out)["from_rules"] == 2
    assert deid(["redact", str(src), str(src), "--force", "-q"]) == 1  # never the input


def test_redact_is_public_and_import_stays_light():
    assert (
        dd.redact_text is redact_text and dd.redact_file is redact_file and dd.redact_text_file is redact_file
    )
    heavy = ("pytesseract", "rapidocr_onnxruntime", "onnxruntime", "torch")
    code = f"import sys, deephealth_deid; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_region_validation():
    with pytest.raises(ValueError, match="empty"):
        Region(0, 5, 5, 5, 9)
    with pytest.raises(ValueError, match="source"):
        Region(0, 0, 0, 5, 5, source="magic")
    with pytest.raises(TypeError):
        Region(0, 0.5, 0, 5, 5)
    assert Region(0, 0, 0, 5, 5).decision == "blank"  # never kept unless a policy says so


# ----------------------------------------------------------------------------------------------------
# JPEG: blanked blocks replaced inside the source's own compressed data


@pytest.mark.parametrize(
    ("mode", "save", "mcu"),
    [
        ("L", {}, (8, 8)),
        ("RGB", {"subsampling": 0}, (8, 8)),  # 4:4:4
        ("RGB", {"subsampling": 2}, (16, 16)),  # 4:2:0
        ("RGB", {"subsampling": 1, "progressive": True}, (8, 16)),  # 4:2:2, progressive
    ],
)
def test_a_redacted_jpeg_keeps_every_pixel_outside_its_blocks(tmp_path, mode, save, mcu):
    from PIL import Image as PILImage
    from scipy import ndimage

    pytest.importorskip("jpeglib")
    rng = np.random.default_rng(3)
    pixels = (rng.random((150, 203, 3)) * 255).astype(np.uint8)  # noise: any re-encoding shows
    pixels[30:50, 40:150] = 250  # a label's plate
    if mode == "L":
        pixels = pixels[..., 0]
    src = tmp_path / "capture.jpg"
    exif = PILImage.Exif()
    exif[0x010E] = "Doe^Jane"
    PILImage.fromarray(pixels).save(src, quality=85, exif=exif, **save)
    img = dd.load_image(src)
    res = redact_text(img, detector=FakeDetector([(45, 33, 140, 47)]), ocr="none", fit=False)
    assert res.grid == mcu and dd.io.api.edit_grid(img) == mcu
    mask = res.mask[0]
    ys, xs = np.nonzero(mask)
    assert ys.min() % mcu[0] == 0 and xs.min() % mcu[1] == 0 and (ys.max() + 1) % mcu[0] == 0
    assert mask[30:50, 42:143].all()  # the padded box (a margin of 3), grown to whole blocks
    out = dd.load_image(dd.save_image(res.image, tmp_path / "out.jpg")).frames[0]
    before = img.frames[0]
    border = np.zeros_like(mask)
    if mode == "RGB" and mcu != (8, 8):  # chroma interpolated across a block's edge: one pixel each side
        square = np.ones((3, 3), bool)
        border = ndimage.binary_dilation(mask, square) & ~ndimage.binary_erosion(mask, square, border_value=1)
    outside, inside = ~mask & ~border, mask & ~border
    assert np.array_equal(out[outside], before[outside])  # not one level moved
    assert (out[inside] == 0).all()
    assert b"Doe" not in (tmp_path / "out.jpg").read_bytes()
    assert np.array_equal(out, res.image.frames[0]) or border.any()


def test_a_redacted_jpeg_is_encoded_again_without_the_block_editor(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    from deephealth_deid.io import _jpeg_blocks

    rng = np.random.default_rng(4)
    src = tmp_path / "capture.jpg"
    PILImage.fromarray((rng.random((64, 80)) * 255).astype(np.uint8)).save(src, quality=85)
    monkeypatch.setattr(_jpeg_blocks, "available", lambda: False)
    img = dd.load_image(src)
    res = redact_text(img, detector=FakeDetector([(10, 10, 30, 20)]), ocr="none", pad_px=2)
    assert res.grid is None and res.mask[0].sum() == 24 * 14  # the padded box as it is
    out = dd.load_image(dd.save_image(res.image, tmp_path / "out.jpg")).frames[0]
    assert (out[res.mask[0]] < 16).all()  # blanked, and the rest moved a little
    assert not np.array_equal(out[~res.mask[0]], img.frames[0][~res.mask[0]])


def test_a_jpeg_written_as_png_keeps_its_boxes_as_found(tmp_path):
    from PIL import Image as PILImage

    pytest.importorskip("jpeglib")
    rng = np.random.default_rng(5)
    src = tmp_path / "capture.jpg"
    PILImage.fromarray((rng.random((64, 80)) * 255).astype(np.uint8)).save(src, quality=85)
    kw = {"detector": FakeDetector([(10, 10, 30, 20)]), "ocr": "none", "pad_px": 2, "follow": False}
    as_png = redact_file(src, tmp_path / "out.png", **kw)
    as_jpeg = redact_file(src, tmp_path / "out.jpg", **kw)
    assert as_png.grid is None and as_png.mask[0].sum() == 24 * 14  # lossless: the padded box only
    assert as_jpeg.grid == (8, 8) and as_jpeg.mask[0].sum() == 24 * 16  # rows 8-22 grown to 8-24
