"""Defacing a cohort: ``deid deface-batch IN... -o OUT`` and :func:`deface_batch`.

Every NIfTI file and DICOM series folder found under the inputs is defaced
into the output folder at its relative path, in its own format, with the
model loaded once; ``OUT/deface_report.jsonl`` gets one record per case
(``status``, ``seconds``, ``voxels`` removed per feature, QC ``flags``), and a
second run skips the cases already done. Finding cases, the report and
resuming are those of :mod:`deephealth_deid.batch`.

Example:
    >>> from deephealth_deid.deface.batch import deface_batch, find_cases  # doctest: +SKIP
    >>> cases = find_cases(["cohort/"], "defaced/")  # doctest: +SKIP
    >>> deface_batch(cases, "defaced/", qc=True).counts  # doctest: +SKIP
    {'done': 118, 'flagged': 2, 'failed': 0, 'skipped': 0, 'ignored': 0}
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import batch
from ..batch import BatchSummary, Case, Cases, check_jobs
from ..io import load_volume
from .files import check_outputs, write_outputs
from .pipeline import deface

__all__ = ["REPORT_NAME", "find_cases", "deface_batch"]

#: The report's file name inside the output folder.
REPORT_NAME = "deface_report.jsonl"

PathLike = str | os.PathLike[str]


def find_cases(inputs: Iterable[PathLike], out_dir: PathLike) -> Cases:
    """The NIfTI files and DICOM series under ``inputs`` (:func:`deephealth_deid.batch.find_cases`)."""
    return batch.find_cases(inputs, out_dir, kind="volume")


def _deface_case(
    case: Case, volume: Any, *, out: Path, qc: bool, save_mask: bool, overwrite: bool, options: dict[str, Any]
) -> dict[str, Any]:
    mask = case.extra(out, "_mask.nii.gz") if save_mask else None
    picture = case.extra(out, "_qc.png") if qc else None
    check_outputs(case.input, case.output(out), save_mask=mask, qc=picture, overwrite=overwrite)
    result = deface(volume, **options)
    write_outputs(result, volume, case.output(out), save_mask=mask, qc=picture, overwrite=overwrite)
    return {
        "status": "done" if result.qc.ok else "flagged",
        "voxels": result.qc.voxels,
        "flags": result.qc.flags,
    }


def deface_batch(
    cases: Sequence[Case] | Iterable[PathLike],
    out_dir: PathLike,
    *,
    qc: bool = False,
    save_mask: bool = False,
    overwrite: bool = False,
    on_case: Callable[[int, int, dict[str, Any]], None] | None = None,
    jobs: int = 1,
    threads: int | None = None,
    allow_uneven: bool = False,
    **options: Any,
) -> BatchSummary:
    """Deface every case into ``out_dir``, with a report (see :func:`deephealth_deid.batch.run_batch`).

    Args:
        cases: From :func:`find_cases`, or the paths to search (files,
            folders, ``.txt`` lists), which are then passed to it.
        out_dir: The output folder (created if missing; its parent must exist).
        qc: Also write each case's QC picture beside its output (``NAME_qc.png``).
        save_mask: Also write each case's removal mask beside its output
            (``NAME_mask.nii.gz``).
        overwrite: Deface every case again and replace existing outputs.
        on_case: Called after each case with ``(k, n, record)`` (progress).
        jobs: Cases defaced at once, each job in a process of its own with
            its own copy of the model (see :func:`deephealth_deid.batch.run_batch`).
            The stages around the network run on one core each, so on a CPU
            two jobs per two cores deface more volumes per second than one.
        threads: CPU threads of each job's network (default: the cores shared
            out among the jobs).
        allow_uneven: Accept DICOM series whose slice spacing varies (the
            mean step is used, with a warning); such a series fails otherwise.
        **options: Passed to :func:`~.pipeline.deface` (``mode``, ``model``,
            ``engine``, ``device``, ``margin_mm``, ``face_depth_mm``, ``predictor``).

    Returns:
        The :class:`~deephealth_deid.batch.BatchSummary`.
    """
    check_jobs(jobs, threads)
    if jobs > 1 and options.get("predictor") is not None:
        raise ValueError(
            "a predictor object cannot be sent to job processes: give model/engine/device, or jobs=1"
        )
    if not isinstance(qc, bool) or not isinstance(save_mask, bool):
        raise TypeError(
            "qc and save_mask are True or False: the files go beside each output (NAME_qc.png, "
            "NAME_mask.nii.gz); deface_file writes them to paths of your choice"
        )
    out = Path(out_dir)
    cases = batch.as_cases(cases, out, kind="volume")
    batch.check_distinct_outputs(
        cases, out, [s for s, on in (("_qc.png", qc), ("_mask.nii.gz", save_mask)) if on]
    )
    process = functools.partial(
        _deface_case, out=out, qc=qc, save_mask=save_mask, overwrite=overwrite, options=options
    )
    return batch.run_batch(
        cases,
        out,
        report_name=REPORT_NAME,
        load=functools.partial(_load, allow_uneven=allow_uneven),
        process=process,
        overwrite=overwrite,
        on_case=on_case,
        jobs=jobs,
        threads=threads,
    )


def _load(case: Case, *, allow_uneven: bool = False) -> Any:
    return load_volume(case.input, allow_uneven=allow_uneven)
