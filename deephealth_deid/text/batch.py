"""Redacting a collection: ``deid redact-batch IN... -o OUT`` and :func:`redact_batch`.

Every DICOM, PNG, JPEG and TIFF file found under the inputs is redacted into
the output folder at its relative path, in its own format, with the detector
and the OCR backend made once; ``OUT/redact_report.jsonl`` gets one record per
file (``status``, ``seconds``, ``frames``, regions ``detected``, ``blanked``
and ``kept``, QC ``flags``; never the text read), and a second run skips the
files already done. Finding files, the report and resuming are those of
:mod:`deephealth_deid.batch`.

Example:
    >>> from deephealth_deid.text.batch import find_cases, redact_batch  # doctest: +SKIP
    >>> cases = find_cases(["exports/"], "redacted/")  # doctest: +SKIP
    >>> redact_batch(cases, "redacted/", ocr="rapidocr").counts  # doctest: +SKIP
    {'done': 950, 'flagged': 3, 'failed': 1, 'skipped': 0, 'ignored': 2}
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import batch
from ..batch import BatchSummary, Case, Cases, check_jobs
from ..io import load_image
from .detector import get_detector
from .files import check_outputs, write_outputs
from .ocr import get_ocr
from .pipeline import redact_text

__all__ = ["REPORT_NAME", "find_cases", "redact_batch"]

#: The report's file name inside the output folder.
REPORT_NAME = "redact_report.jsonl"

PathLike = str | os.PathLike[str]


def find_cases(inputs: Iterable[PathLike], out_dir: PathLike) -> Cases:
    """The DICOM, PNG, JPEG and TIFF files under ``inputs`` (:func:`deephealth_deid.batch.find_cases`)."""
    return batch.find_cases(inputs, out_dir, kind="image")


def redact_batch(
    cases: Sequence[Case] | Iterable[PathLike],
    out_dir: PathLike,
    *,
    qc: bool = False,
    overwrite: bool = False,
    on_case: Callable[[int, int, dict[str, Any]], None] | None = None,
    detector: Any = "net",
    ocr: Any = "auto",
    model: PathLike | None = None,
    engine: str = "auto",
    device: str = "auto",
    jobs: int = 1,
    threads: int | None = None,
    **options: Any,
) -> BatchSummary:
    """Redact every case into ``out_dir``, with a report (see :func:`deephealth_deid.batch.run_batch`).

    Args:
        cases: From :func:`find_cases`, or the paths to search (files,
            folders, ``.txt`` lists), which are then passed to it.
        out_dir: The output folder (created if missing; its parent must exist).
        qc: Also write each file's QC picture beside its output (``NAME_qc.png``).
        overwrite: Redact every file again and replace existing outputs.
        on_case: Called after each file with ``(k, n, record)`` (progress).
        detector: ``'net'``, ``'ocr'`` or a detector object; made once for all files.
        ocr: OCR backend name or object; made once for all files.
        model: Text model file for ``'net'``.
        engine: Engine for ``'net'``.
        device: Device for ``'net'``.
        jobs: Files redacted at once, each job in a process of its own that
            makes its own detector and OCR backend (``detector`` and ``ocr``
            must then be names; see :func:`deephealth_deid.batch.run_batch`).
        threads: CPU threads of each job's network (default: the cores shared
            out among the jobs).
        **options: Passed to :func:`~.pipeline.redact_text` (``policy``,
            ``rules``, ``keep_safe``, ``keep_overlays``, ``pad_px``).

    Returns:
        The :class:`~deephealth_deid.batch.BatchSummary`.
    """
    if not isinstance(qc, bool):
        raise TypeError("qc is True or False: the pictures go beside each output (NAME_qc.png)")
    out = Path(out_dir)
    cases = batch.as_cases(cases, out, kind="image")
    batch.check_distinct_outputs(cases, out, ["_qc.png"] if qc else [])
    named = isinstance(detector, str) and (ocr is None or isinstance(ocr, str))
    check_jobs(jobs, threads)
    if jobs > 1 and not named:
        raise ValueError(
            "detector and OCR objects cannot be sent to job processes: give their names, or jobs=1"
        )
    if named:  # made once per process (picklable: job processes make their own)
        tools = functools.partial(
            _named_tools, detector, ocr, None if model is None else str(model), engine, device
        )
    else:
        backend = get_ocr(ocr) if isinstance(ocr, str) else ocr
        finder = get_detector(detector, ocr=backend, model=model, engine=engine, device=device)
        tools = functools.partial(_given_tools, finder, backend)
    tools()  # here first: a missing model or OCR backend fails before any file
    process = functools.partial(
        _redact_with, tools=tools, out=out, qc=qc, overwrite=overwrite, options=options
    )
    return batch.run_batch(
        cases,
        out,
        report_name=REPORT_NAME,
        load=_load,
        process=process,
        overwrite=overwrite,
        on_case=on_case,
        jobs=jobs,
        threads=threads,
    )


def _load(case: Case) -> Any:
    return load_image(case.input)


@functools.lru_cache(maxsize=2)
def _named_tools(
    detector: str, ocr: str | None, model: str | None, engine: str, device: str
) -> tuple[Any, Any]:
    """The detector and the OCR backend named, made once per process."""
    backend = get_ocr(ocr) if ocr is not None else None
    return get_detector(detector, ocr=backend, model=model, engine=engine, device=device), backend


def _given_tools(finder: Any, backend: Any) -> tuple[Any, Any]:
    return finder, backend


def _redact_with(
    case: Case,
    image: Any,
    *,
    tools: Callable[[], tuple[Any, Any]],
    out: Path,
    qc: bool,
    overwrite: bool,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Redact one case with the detector and OCR backend ``tools()`` gives."""
    finder, backend = tools()
    picture = case.extra(out, "_qc.png") if qc else None
    check_outputs(case.input, case.output(out), qc_png=picture, overwrite=overwrite)
    options = {**options, "detector": finder, "ocr": backend if backend is not None else "none"}
    result = redact_text(image, output=case.output(out), **options)
    write_outputs(result, case.output(out), qc_png=picture, overwrite=overwrite)
    q = result.qc
    return {
        "status": "done" if q.ok else "flagged",
        "frames": q.frames,
        "detected": q.detected,
        "blanked": q.blanked,
        "kept": q.kept,
        "flags": q.flags,
    }
