"""Redacting a collection: image files found under folders, outputs mirrored, a report, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from test_redact import FakeDetector

import deephealth_deid as dd
from deephealth_deid.cli import main
from deephealth_deid.errors import OutputError
from deephealth_deid.text import Region
from deephealth_deid.text.batch import REPORT_NAME, find_cases, redact_batch
from deephealth_deid.text.blank import padded_box

BOX = (4, 4, 40, 16)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """us/a.png (RGB), us/b.png (grey), xr/c.dcm (a single-frame MR DICOM), junk and hidden files."""
    import dicom_factory as fac

    root = tmp_path / "exports"
    (root / "us").mkdir(parents=True)
    (root / "xr").mkdir()
    rng = np.random.default_rng(0)
    PILImage.fromarray(rng.integers(0, 200, (60, 80, 3), dtype=np.uint8)).save(root / "us" / "a.png")
    PILImage.fromarray(rng.integers(0, 200, (50, 70), dtype=np.uint8)).save(root / "us" / "b.png")
    fac.write_series(
        root / "xr", rng.integers(0, 900, (48, 64, 1), dtype=np.uint16), modality="MR", names=["c.dcm"]
    )
    (root / "xr" / "notes.txt.bak").write_text("not an image")
    (root / ".cache").mkdir()
    PILImage.fromarray(np.zeros((8, 8), np.uint8)).save(root / ".cache" / "thumb.png")
    return root


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / REPORT_NAME).read_text().splitlines()]


def test_images_are_found_by_content(folder, tmp_path):
    assert [c.name for c in find_cases([folder], tmp_path / "out")] == ["us/a.png", "us/b.png", "xr/c.dcm"]


def test_files_that_are_not_images_are_listed_with_the_reason(folder, tmp_path):
    (folder / "xr" / "e.dcm").write_bytes(b"")
    (folder / "us" / "f.jpg").write_bytes(b"GIF89a not really")  # another format under an image name
    dd.save_volume(dd.Volume(np.zeros((4, 4, 4), np.int16), np.eye(4)), folder / "us" / "g.nii.gz")
    cases = find_cases([folder], tmp_path / "out")
    assert [c.name for c in cases] == ["us/a.png", "us/b.png", "xr/c.dcm"]
    reasons = {i.name: i.reason for i in cases.ignored}
    assert sorted(reasons) == ["us/f.jpg", "us/g.nii.gz", "xr/e.dcm", "xr/notes.txt.bak"]
    assert "empty" in reasons["xr/e.dcm"] and "deface-batch" in reasons["us/g.nii.gz"]
    assert "not a DICOM, PNG, JPEG or TIFF" in reasons["us/f.jpg"] == reasons["xr/notes.txt.bak"]
    twice = find_cases([folder, folder / "xr"], tmp_path / "out")  # a folder and one inside it
    assert len(twice) == 3 and len(twice.ignored) == 4


def test_batch_blanks_the_boxes_only_reports_and_resumes(folder, tmp_path):
    out = tmp_path / "out"
    cases = find_cases([folder], out)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    summary = redact_batch(cases, out, qc=True, detector=FakeDetector([BOX]), ocr="none")
    assert summary.counts == {"done": 3, "flagged": 0, "failed": 0, "skipped": 0, "ignored": 1}
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before  # inputs untouched
    for c in cases:
        src, res = dd.load_image(c.input), dd.load_image(out / c.name)
        inside = np.zeros(src.frames.shape[1:3], bool)
        x0, y0, x1, y1 = padded_box(Region(0, *BOX), *inside.shape)  # as redaction pads a box
        inside[y0:y1, x0:x1] = True
        assert np.array_equal(res.frames[:, ~inside], src.frames[:, ~inside])
        assert not np.array_equal(res.frames[:, inside], src.frames[:, inside])
        assert c.extra(out, "_qc.png").is_file()
    recs = _records(out)
    assert recs[0] == {"ignored": "xr/notes.txt.bak", "reason": recs[0]["reason"]} and recs[0]["reason"]
    # The folder itself, instead of the cases found in it: the same outputs.
    by_path = redact_batch([folder], tmp_path / "by_path", detector=FakeDetector([BOX]), ocr="none")
    assert by_path.counts["done"] == 3
    assert all((tmp_path / "by_path" / c.name).read_bytes() == (out / c.name).read_bytes() for c in cases)
    assert [r["case"] for r in recs[1:]] == ["us/a.png", "us/b.png", "xr/c.dcm"]
    assert all(r["detected"] == 1 and r["blanked"] == 1 and r["kept"] == 0 for r in recs[1:])
    again = redact_batch(cases, out, detector=FakeDetector([BOX]), ocr="none")
    assert again.counts["skipped"] == 3 and len(_records(out)) == 4  # the ignored file once per report
    forced = redact_batch(cases, out, detector=FakeDetector([BOX]), ocr="none", overwrite=True)
    assert forced.counts["done"] == 3 and len(_records(out)) == 7  # once, even with --force


def test_an_ignored_file_named_like_a_case_elsewhere_never_changes_the_cases_status(tmp_path):
    """r1/a.png is an image, r2/a.png an empty file: both are a.png relative to their folder."""
    (tmp_path / "r1").mkdir()
    (tmp_path / "r2").mkdir()
    PILImage.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "r1" / "a.png")
    (tmp_path / "r2" / "a.png").write_bytes(b"")
    out = tmp_path / "out"
    for run in range(3):
        cases = find_cases([tmp_path / "r1", tmp_path / "r2"], out)
        assert [c.name for c in cases] == ["a.png"] and [i.name for i in cases.ignored] == ["a.png"]
        summary = redact_batch(cases, out, detector=FakeDetector([BOX]), ocr="none")
        finished = summary.counts["done"] + summary.counts["flagged"]
        assert (finished, summary.counts["skipped"]) == ((1, 0) if run == 0 else (0, 1)), run


def test_a_damaged_file_fails_alone(folder, tmp_path):
    good = (folder / "xr" / "c.dcm").read_bytes()
    (folder / "xr" / "d.dcm").write_bytes(good[: len(good) // 2])  # a DICOM cut in the middle of its pixels
    out = tmp_path / "out"
    summary = redact_batch(find_cases([folder], out), out, detector=FakeDetector([BOX]), ocr="none")
    assert summary.counts["done"] == 3 and summary.counts["failed"] == 1
    failed = [r for r in _records(out) if r.get("status") == "failed"]
    assert [r["case"] for r in failed] == ["xr/d.dcm"] and failed[0]["error"]
    assert not (out / "xr" / "d.dcm").exists()


def test_cli_with_the_ocr_detector_off_is_refused(folder, tmp_path, capsys):
    assert (
        main(["redact-batch", str(folder), "-o", str(tmp_path / "out"), "--detector", "ocr", "--ocr", "none"])
        == 2
    )
    assert "needs an OCR backend" in capsys.readouterr().err


def test_cli_lists_the_cases(folder, tmp_path, capsys):
    assert main(["redact-batch", str(folder), "-o", str(tmp_path / "out"), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines[:3]] == ["us/a.png", "us/b.png", "xr/c.dcm"]
    assert lines[3].startswith("# ignored\t") and "notes.txt.bak" in lines[3] and len(lines) == 4
    assert not (tmp_path / "out").exists()


def test_extra_files_keep_a_uid_name_whole(tmp_path):
    """A DICOM file named by its UID has no suffix to drop: two such files get two QC pictures."""
    from deephealth_deid.batch import Case

    out = tmp_path / "out"
    a, b = Case(Path("1.2.840.10008.5.320"), "1.2.840.10008.5.320"), Case(Path("x"), "1.2.840.10008.5.321")
    assert a.extra(out, "_qc.png") != b.extra(out, "_qc.png")
    assert a.extra(out, "_qc.png").name == "1.2.840.10008.5.320_qc.png"
    assert (
        Case(Path("s.nii.gz"), "site/s.nii.gz").extra(out, "_mask.nii.gz") == out / "site" / "s_mask.nii.gz"
    )
    assert Case(Path("us.DCM"), "us.DCM").extra(out, "_qc.png").name == "us_qc.png"


def test_jobs_in_processes_give_the_outputs_of_one_job(folder, tmp_path):
    """Two jobs, each making the shipped detector itself: the same files and records as one."""
    pytest.importorskip(
        "torch", reason="the shipped text model runs on the PyTorch engine (pip install torch)"
    )
    one, two = tmp_path / "one", tmp_path / "two"
    a = redact_batch(find_cases([folder], one), one, detector="net", ocr="none", device="cpu")
    b = redact_batch(find_cases([folder], two), two, detector="net", ocr="none", device="cpu", jobs=2)
    assert a.counts == b.counts and a.counts["done"] + a.counts["flagged"] == 3

    def files(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in root.rglob("*")
            if p.is_file() and p.name != REPORT_NAME
        }

    assert files(one) == files(two)

    def records(out: Path) -> list[tuple]:
        return sorted(
            (r["case"], r["status"], r["detected"], r["blanked"]) for r in _records(out) if "case" in r
        )

    assert records(one) == records(two)


def test_detector_objects_cannot_go_to_job_processes(folder, tmp_path):
    with pytest.raises(ValueError, match="jobs=1"):
        redact_batch(
            find_cases([folder], tmp_path / "o"), tmp_path / "o", detector=FakeDetector([BOX]), jobs=2
        )


def test_a_qc_picture_that_would_replace_another_output_is_refused(tmp_path):
    (tmp_path / "in").mkdir()
    PILImage.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "in" / "x.png")
    PILImage.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "in" / "x_qc.png")
    with pytest.raises(OutputError, match="would both write"):
        redact_batch([tmp_path / "in"], tmp_path / "out", qc=True, detector=FakeDetector([BOX]), ocr="none")
    assert not (tmp_path / "out").exists()
    with pytest.raises(TypeError, match="True or False"):
        redact_batch(
            [tmp_path / "in"], tmp_path / "out", qc="pictures", detector=FakeDetector([BOX]), ocr="none"
        )
