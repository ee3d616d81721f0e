"""Defacing a cohort: cases found under folders, outputs mirrored, a report, failures isolated, resume."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_deface_pipeline import oracle_for

import deephealth_deid as dd
from deephealth_deid.cli import main
from deephealth_deid.data.phantom import make_phantom_head
from deephealth_deid.deface.batch import REPORT_NAME, deface_batch, find_cases
from deephealth_deid.errors import InputNotFoundError, OutputError
from deephealth_deid.io.volume import Volume


@pytest.fixture(scope="module")
def phantom() -> tuple[Volume, Volume]:
    return make_phantom_head(spacing=2.0, seed=3)


@pytest.fixture()
def cohort(tmp_path: Path, phantom) -> Path:
    """site1/sub-01.nii.gz, site1/sub-02.nii, site2/sub-03/ (a DICOM series), site2/broken.nii.gz."""
    import dicom_factory as fac

    image, _ = phantom
    root = tmp_path / "cohort"
    (root / "site1").mkdir(parents=True)
    (root / "site2").mkdir()
    dd.save_volume(image, root / "site1" / "sub-01.nii.gz")
    dd.save_volume(image, root / "site1" / "sub-02.nii")
    stored = np.clip(image.array, 0, None).astype(np.uint16)
    arr = np.ascontiguousarray(np.transpose(stored, (1, 0, 2))[::-1])
    fac.write_series(
        root / "site2" / "sub-03",
        arr,
        modality="MR",
        orientation=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0),
        pixel_spacing=(2.0, 2.0),
        slice_step=2.0,
    )
    # A text file that sorts before the slices: the folder is still a series.
    (root / "site2" / "sub-03" / "00_readme.txt").write_text("exported series\n")
    (root / "site2" / "broken.nii.gz").write_bytes(b"not a volume")
    (root / ".hidden").mkdir()
    dd.save_volume(image, root / ".hidden" / "sub-99.nii.gz")
    return root


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / REPORT_NAME).read_text().splitlines()]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cases_are_found_and_named_by_their_path(cohort, tmp_path):
    cases = find_cases([cohort], tmp_path / "out")
    assert [(c.name, c.folder) for c in cases] == [
        ("site1/sub-01.nii.gz", False),
        ("site1/sub-02.nii", False),
        ("site2/broken.nii.gz", False),
        ("site2/sub-03", True),
    ]
    listing = tmp_path / "cases.txt"
    listing.write_text(f"# two cases\n{cohort / 'site1' / 'sub-02.nii'}\n\n{cohort / 'site2' / 'sub-03'}\n")
    assert [c.name for c in find_cases([listing], tmp_path / "out")] == ["site1/sub-02.nii", "site2/sub-03"]
    assert find_cases([cohort], tmp_path / "out").ignored == []  # the series' readme belongs to it
    with pytest.raises(InputNotFoundError):
        find_cases([tmp_path / "nowhere"], tmp_path / "out")
    # the output folder inside the input is never searched
    inside = cohort / "done"
    dd.save_volume(
        dd.load_volume(cohort / "site1" / "sub-01.nii.gz"), (inside.mkdir() or inside) / "x.nii.gz"
    )
    assert all(not c.name.startswith("done") for c in find_cases([cohort], inside))


def test_volumes_in_other_formats_and_unreadable_dicom_are_listed_not_passed_over(cohort, tmp_path):
    (cohort / "site1" / "sub-04.mgz").write_bytes(b"\x1f\x8b FreeSurfer volume")
    (cohort / "site1" / "sub-05.nrrd").write_bytes(b"NRRD0004")
    (cohort / "site3").mkdir()
    (cohort / "site3" / "slice1.dcm").write_bytes(b"\x00" * 200)  # named as DICOM, not DICOM
    (cohort / "site3" / "participants.tsv").write_text("id\n")  # not an image: not listed
    cases = find_cases([cohort], tmp_path / "out")
    assert "site3" not in [c.name for c in cases]
    reasons = {i.name: i.reason for i in cases.ignored}
    assert sorted(reasons) == ["site1/sub-04.mgz", "site1/sub-05.nrrd", "site3/slice1.dcm"]
    assert "convert it to NIfTI" in reasons["site1/sub-04.mgz"]
    assert "not readable as DICOM" in reasons["site3/slice1.dcm"]
    assert main(["deface-batch", str(cohort), "-o", str(tmp_path / "out"), "--list"]) == 0


def test_batch_defaces_reports_isolates_failures_and_resumes(cohort, tmp_path, phantom):
    _, labels = phantom
    before = _snapshot(cohort)
    out = tmp_path / "out"
    cases = find_cases([cohort], out)
    seen = []
    # The oracle knows the NIfTI cases' layout; on the DICOM series (another origin) it finds no eyes,
    # so that case is defaced but flagged for review, as a real case without eyes would be.
    summary = deface_batch(
        cases, out, qc=True, save_mask=True, predictor=oracle_for(labels), on_case=lambda *a: seen.append(a)
    )
    assert summary.counts == {"done": 2, "flagged": 1, "failed": 1, "skipped": 0, "ignored": 0}
    assert not summary.ok
    assert _snapshot(cohort) == before  # inputs untouched
    recs = {r["case"]: r for r in _records(out)}
    assert (
        recs["site2/broken.nii.gz"]["status"] == "failed"
        and "broken.nii.gz" in recs["site2/broken.nii.gz"]["error"]
    )
    assert [k for k, n, _ in seen] == [1, 2, 3, 4] and all(n == 4 for _, n, _ in seen)
    for name in ("site1/sub-01.nii.gz", "site1/sub-02.nii"):
        assert recs[name]["status"] == "done" and recs[name]["voxels"]["nose"] > 0
        got = dd.load_volume(out / name)
        ref = dd.deface(dd.load_volume(cohort / name), predictor=oracle_for(labels))
        assert np.array_equal(got.array, ref.volume.array)
    assert (out / "site1" / "sub-01_qc.png").stat().st_size > 0
    assert (out / "site1" / "sub-02_mask.nii.gz").stat().st_size > 0
    assert recs["site2/sub-03"]["status"] == "flagged" and recs["site2/sub-03"]["flags"]
    series = dd.load_volume(out / "site2" / "sub-03")
    assert series.shape == dd.load_volume(cohort / "site2" / "sub-03").shape
    # one slice out per slice in (the readme is not a slice)
    assert len(list((out / "site2" / "sub-03").iterdir())) == len(
        list((cohort / "site2" / "sub-03").glob("*.dcm"))
    )
    assert (out / "site2" / "sub-03_qc.png").is_file()

    # Run again: the defaced cases are skipped, the failed one is tried again, nothing is rewritten.
    stamp = (out / "site1" / "sub-01.nii.gz").stat().st_mtime_ns
    again = deface_batch(cases, out, qc=True, save_mask=True, predictor=oracle_for(labels))
    assert again.counts["skipped"] == 3 and again.counts["failed"] == 1
    assert (out / "site1" / "sub-01.nii.gz").stat().st_mtime_ns == stamp
    assert len(_records(out)) == 5

    # An output that exists without a record is never replaced without overwrite.
    (out / REPORT_NAME).unlink()
    third = deface_batch(cases[:1], out, predictor=oracle_for(labels))
    assert third.counts["failed"] == 1 and "already exists" in _records(out)[0]["error"]
    forced = deface_batch(cases[:1], out, overwrite=True, predictor=oracle_for(labels))
    assert forced.counts["done"] == 1


def test_batch_refuses_an_output_folder_inside_an_input_series(cohort):
    cases = find_cases([cohort / "site2" / "sub-03"], cohort / "site2" / "sub-03" / "out")
    with pytest.raises(OutputError, match="inside the input"):
        deface_batch(cases, cohort / "site2" / "sub-03" / "out")


def test_cli_on_the_real_head(tmp_path, chris_t1):
    """``deid deface-batch`` with the shipped model: a real head at 2 mm, then a resume that skips it."""
    pytest.importorskip(
        "torch", reason="the shipped defacing model runs on the PyTorch engine (pip install torch)"
    )
    from deephealth_deid.cli import main

    v = dd.load_volume(chris_t1)
    affine = v.affine.copy()
    affine[:3, :3] *= 2
    (tmp_path / "in").mkdir()
    dd.save_volume(
        Volume(np.ascontiguousarray(v.array[::2, ::2, ::2]), affine), tmp_path / "in" / "chris.nii.gz"
    )
    out = tmp_path / "out"
    assert main(["deface-batch", str(tmp_path / "in"), "-o", str(out), "--qc", "--device", "cpu"]) == 0
    rec = _records(out)[0]
    assert rec["case"] == "chris.nii.gz" and rec["status"] == "done" and rec["flags"] == []
    assert all(rec["voxels"][k] > 0 for k in ("eyes", "nose", "mouth", "ears"))
    assert (out / "chris_qc.png").is_file()
    assert main(["deface-batch", str(tmp_path / "in"), "-o", str(out), "--device", "cpu"]) == 0
    assert _records(out)[-1:] == [rec]  # nothing new: the case was skipped


def test_jobs_in_processes_give_the_outputs_of_one_job(cohort, tmp_path):
    """``--jobs 2``: the shipped model in two processes; the same files and records as one job."""
    pytest.importorskip(
        "torch", reason="the shipped defacing model runs on the PyTorch engine (pip install torch)"
    )
    from deephealth_deid.cli import main

    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["deface-batch", str(cohort), "-o", str(one), "--device", "cpu", "-q"]) == 1  # broken.nii.gz
    assert main(["deface-batch", str(cohort), "-o", str(two), "--device", "cpu", "-q", "--jobs", "2"]) == 1
    outputs = {k: v for k, v in _snapshot(one).items() if k != REPORT_NAME}
    assert len(outputs) > 3 and outputs == {k: v for k, v in _snapshot(two).items() if k != REPORT_NAME}

    def strip(records: list[dict]) -> dict[str, dict]:
        return {r["case"]: {k: v for k, v in r.items() if k != "seconds"} for r in records}

    assert strip(_records(one)) == strip(_records(two))
    assert strip(_records(two))["site2/broken.nii.gz"]["status"] == "failed"
    # Resume with jobs: everything finished is skipped.
    again = deface_batch(find_cases([cohort], two), two, device="cpu", jobs=2)
    assert again.counts["skipped"] == 3 and again.counts["failed"] == 1


def test_a_predictor_object_cannot_go_to_job_processes(cohort, tmp_path, phantom):
    cases = find_cases([cohort], tmp_path / "out")
    with pytest.raises(ValueError, match="jobs=1"):
        deface_batch(cases, tmp_path / "out", predictor=oracle_for(phantom[1]), jobs=2)


def _dies_on_sub02(case, volume):
    import os

    if case.name == "site1/sub-02.nii":
        os._exit(9)  # as a job killed for memory would
    return {"status": "done"}


def test_a_job_process_that_dies_stops_the_batch_with_a_clear_error(cohort, tmp_path):
    from deephealth_deid.batch import run_batch
    from deephealth_deid.errors import DeidError

    out = tmp_path / "out"
    cases = [c for c in find_cases([cohort], out) if c.name.startswith("site1")]
    with pytest.raises(DeidError, match="fewer jobs"):
        run_batch(cases, out, report_name="r.jsonl", load=_snapshot_case, process=_dies_on_sub02, jobs=2)


def _snapshot_case(case):
    return case.input.stat().st_size


def test_paths_can_be_given_instead_of_cases(cohort, tmp_path, phantom):
    out = tmp_path / "out"
    summary = deface_batch([cohort / "site1"], out, predictor=oracle_for(phantom[1]))
    assert summary.counts["done"] == 2 and sorted(r["case"] for r in _records(out)) == [
        "sub-01.nii.gz",
        "sub-02.nii",
    ]
    one = deface_batch(
        str(cohort / "site1" / "sub-01.nii.gz"), tmp_path / "one", predictor=oracle_for(phantom[1])
    )
    assert one.counts["done"] == 1
    with pytest.raises(TypeError, match="all paths"):
        deface_batch([*find_cases([cohort / "site1"], out), cohort / "site2"], out)


def test_uneven_slice_spacing_fails_a_case_unless_allowed(tmp_path, phantom, monkeypatch):
    import dicom_factory as fac

    image, labels = phantom
    stored = np.clip(image.array, 0, None).astype(np.uint16)
    n = stored.shape[2]
    z = 2.0 * np.arange(n)
    z[n // 2 :] += 0.6  # one gap 30% wider than the others
    series = tmp_path / "in" / "sub-01"
    fac.write_series(
        series,
        stored,
        modality="MR",
        pixel_spacing=(2.0, 2.0),
        positions=np.column_stack([np.zeros(n), np.zeros(n), z]),
    )
    out = tmp_path / "out"
    refused = deface_batch([tmp_path / "in"], out, predictor=oracle_for(labels))
    assert refused.counts["failed"] == 1 and "--allow-uneven" in _records(out)[0]["error"]
    allowed = deface_batch([tmp_path / "in"], out, predictor=oracle_for(labels), allow_uneven=True)
    assert allowed.counts["failed"] == 0 and allowed.counts["done"] + allowed.counts["flagged"] == 1
    assert dd.load_volume(out / "sub-01", allow_uneven=True).shape == stored.shape
    single = dd.deface_file(series, tmp_path / "single", allow_uneven=True, predictor=oracle_for(labels))
    assert single.volume.shape == stored.shape
    # From the command line the option reaches the reader: refused without it (exit 1, before any model).
    assert main(["deface", str(series), str(tmp_path / "cli"), "-q"]) == 1
    files = importlib.import_module("deephealth_deid.deface.files")  # `deface` is also the function's name
    monkeypatch.setattr(files, "deface", lambda vol, **kw: dd.deface(vol, predictor=oracle_for(labels)))
    assert main(["deface", str(series), str(tmp_path / "cli"), "-q", "--allow-uneven"]) in (0, 3)
    assert dd.load_volume(tmp_path / "cli", allow_uneven=True).shape == stored.shape
    assert (
        main(
            [
                "deface-batch",
                str(tmp_path / "in"),
                "-o",
                str(tmp_path / "cli_batch"),
                "--allow-uneven",
                "--list",
            ]
        )
        == 0
    )


def test_outputs_that_would_replace_each_other_are_refused_before_any_work(tmp_path, phantom):
    image, labels = phantom
    (tmp_path / "in").mkdir()
    dd.save_volume(image, tmp_path / "in" / "a.nii.gz")
    dd.save_volume(image, tmp_path / "in" / "a_mask.nii.gz")  # also the name of a.nii.gz's mask
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="would both write"):
        deface_batch([tmp_path / "in"], out, save_mask=True, predictor=oracle_for(labels))
    assert not out.exists()
    assert deface_batch([tmp_path / "in"], out, predictor=oracle_for(labels)).counts["done"] == 2
    with pytest.raises(TypeError, match="True or False"):
        deface_batch([tmp_path / "in"], tmp_path / "o2", qc=str(tmp_path / "private"))


def test_the_report_names_a_failure_in_one_line_without_listing_what_the_input_holds(tmp_path, phantom):
    import dicom_factory as fac

    image, labels = phantom
    stored = np.clip(image.array, 0, None).astype(np.uint16)
    folder = tmp_path / "in" / "two_series"
    fac.write_datasets(
        fac.make_series(stored[:, :, :4], series_description="A"), folder, names=["a0", "a1", "a2", "a3"]
    )
    second = fac.make_series(stored[:, :, 4:8], series_description="B Doe^Jane")
    fac.write_datasets(second, folder, names=["b0", "b1", "b2", "b3"])
    out = tmp_path / "out"
    assert deface_batch([tmp_path / "in"], out, predictor=oracle_for(labels)).counts["failed"] == 1
    error = _records(out)[0]["error"]
    assert "holds 2 series" in error and "deid info" in error
    assert second[0].SeriesInstanceUID not in error and "Doe" not in error


def test_a_case_whose_input_changed_is_not_skipped(tmp_path, phantom):
    image, labels = phantom
    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / "a.nii.gz"
    dd.save_volume(image, src)
    out = tmp_path / "out"
    assert deface_batch([tmp_path / "in"], out, predictor=oracle_for(labels)).counts["done"] == 1
    assert deface_batch([tmp_path / "in"], out, predictor=oracle_for(labels)).counts["skipped"] == 1
    os.utime(src, (0, 0))  # the same file copied elsewhere without its times: still done
    assert deface_batch([tmp_path / "in"], out, predictor=oracle_for(labels)).counts["skipped"] == 1
    dd.save_volume(image.with_array(image.array[::-1].copy()), src, overwrite=True)  # another scan, same name
    again = deface_batch([tmp_path / "in"], out, predictor=oracle_for(labels))
    # Not skipped; its earlier output is not replaced without overwrite either: the case fails, and says why.
    assert again.counts["skipped"] == 0 and again.counts["failed"] == 1
    assert "already exists" in _records(out)[-1]["error"]
    assert (
        deface_batch([tmp_path / "in"], out, predictor=oracle_for(labels), overwrite=True).counts["done"] == 1
    )
