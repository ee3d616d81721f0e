"""Defacing a cohort: find the cases under folders, deface each, keep a report, resume after a stop.

``deid deface-batch IN... -o OUT`` (and :func:`deface_batch`) is the job of a
study that shares tens of thousands of scans: the model is loaded once, the
next case is read while the current one is predicted, one case that fails is
reported and the rest go on, and a run that was stopped goes on where it left.

* Cases (:func:`find_cases`): every NIfTI file (by its name: a damaged one
  fails in the report rather than being left out), and every folder holding
  DICOM files (one series), found under the input folders; NIfTI files and DICOM
  series folders given directly; or the paths listed in a ``.txt`` file (one
  per line, ``#`` comments). Hidden files and folders, and the output folder,
  are never searched.
* Outputs mirror the inputs' paths under the output folder, relative to the
  folder each case was found in (for a list, to the listed paths' common
  folder): ``IN/site1/sub-01.nii.gz`` -> ``OUT/site1/sub-01.nii.gz``, the
  DICOM series ``IN/site1/sub-02/`` -> the folder ``OUT/site1/sub-02/``. The
  mask and QC picture, when asked for, go beside the output
  (``sub-01_mask.nii.gz``, ``sub-01_qc.png``).
* Report: ``OUT/deface_report.jsonl``, one JSON record per case as it ends:
  ``case`` (the relative path), ``status`` (``defaced``, ``flagged``: defaced
  but the QC asks for a look, ``failed``: nothing written, with ``error``),
  ``seconds``, ``voxels`` removed per feature and the QC ``flags``. No header
  value is ever written there.
* Resume: a case whose last record says ``defaced`` or ``flagged`` and whose
  output exists is skipped; ``overwrite=True`` does every case again. An output
  that exists without a record (someone else's file, or a stop between writing
  and reporting) is never replaced without ``overwrite``: the case fails with
  that reason.

Example:
    >>> from deephealth_deid.deface.batch import deface_batch, find_cases  # doctest: +SKIP
    >>> cases = find_cases(["cohort/"], "defaced/")  # doctest: +SKIP
    >>> summary = deface_batch(cases, "defaced/", qc=True)  # doctest: +SKIP
    >>> summary.counts  # doctest: +SKIP
    {'defaced': 118, 'flagged': 2, 'failed': 0, 'skipped': 0}
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DeidError, InputNotFoundError, OutputError
from ..io import load_volume
from ..io._sniff import sniff
from .files import check_outputs, write_outputs
from .pipeline import deface

__all__ = ["Case", "BatchSummary", "REPORT_NAME", "find_cases", "deface_batch"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: The report's file name inside the output folder.
REPORT_NAME = "deface_report.jsonl"

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class Case:
    """One volume to deface.

    Attributes:
        input: A NIfTI file or a DICOM series folder.
        name: Its path relative to where it was found (``site1/sub-01.nii.gz``);
            the output's path under the output folder.
        dicom: Whether the input is a DICOM series folder (the output is a folder).
    """

    input: Path
    name: str
    dicom: bool

    def output(self, out_dir: Path) -> Path:
        """The defaced output under ``out_dir``."""
        return out_dir / self.name

    def extra(self, out_dir: Path, kind: str) -> Path:
        """The ``mask`` (NIfTI) or ``qc`` (PNG) file beside the output."""
        out = self.output(out_dir)
        stem = out.name
        for suffix in _NIFTI_SUFFIXES[::-1]:
            if not self.dicom and stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        return out.with_name(f"{stem}_mask.nii.gz" if kind == "mask" else f"{stem}_qc.png")


@dataclass
class BatchSummary:
    """What a batch did: the count of cases per status, and the report's path."""

    report: Path
    counts: dict[str, int] = field(
        default_factory=lambda: {"defaced": 0, "flagged": 0, "failed": 0, "skipped": 0}
    )
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No case failed or was flagged."""
        return self.counts["failed"] == 0 and self.counts["flagged"] == 0


def _is_nifti_name(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI_SUFFIXES)


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _holds_dicom(files: Sequence[Path]) -> bool:
    """Whether a folder's files are a DICOM series (judged by its first file that is not NIfTI)."""
    for f in sorted(files):
        if not _is_nifti_name(f) and f.stat().st_size > 0:
            try:
                return sniff(f) == "dicom"
            except DeidError:
                return False
    return False


def _walk(root: Path, out_dir: Path) -> list[Case]:
    """The cases under the folder ``root``, named relative to it."""
    cases = []
    skip = out_dir.resolve()
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not _hidden(d) and (here / d).resolve() != skip)
        paths = [here / f for f in sorted(files) if not _hidden(f)]
        for p in paths:
            if _is_nifti_name(p):  # by name: a damaged file is a case that fails, not one left out
                cases.append(Case(p, p.relative_to(root).as_posix(), False))
        if _holds_dicom(paths):
            rel = here.relative_to(root).as_posix()
            cases.append(Case(here, root.name if rel == "." else rel, True))
    return cases


def _listed(list_file: Path) -> list[Path]:
    lines = list_file.read_text(encoding="utf-8").splitlines()
    paths = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [(list_file.parent / p) if not Path(p).is_absolute() else Path(p) for p in paths]


def find_cases(inputs: Iterable[PathLike], out_dir: PathLike) -> list[Case]:
    """The cases to deface: NIfTI files and DICOM series folders, found under ``inputs``.

    Args:
        inputs: Folders (searched), NIfTI files, DICOM series folders, or
            ``.txt`` files listing such paths (relative to the list's folder).
        out_dir: The output folder: never searched.

    Returns:
        The cases, in the order found (folders sorted), each once.

    Raises:
        InputNotFoundError: An input does not exist.
        OutputError: Two cases would write the same output.
    """
    out = Path(out_dir)
    cases: list[Case] = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise InputNotFoundError(f"{p}: no such file or folder; check the path")
        if p.is_file() and p.suffix.lower() == ".txt":
            listed = _listed(p)
            missing = [q for q in listed if not q.exists()]
            if missing:
                raise InputNotFoundError(
                    f"{p}: {len(missing)} listed path(s) do not exist, e.g. {missing[0]}"
                )
            if listed:
                common = Path(os.path.commonpath([q.resolve() for q in listed]))
                base = (
                    common
                    if common.is_dir() and common not in {q.resolve() for q in listed}
                    else common.parent
                )
                for q in listed:
                    name = q.resolve().relative_to(base).as_posix()
                    cases.append(Case(q, name, q.is_dir()))
        elif p.is_file():
            cases.append(Case(p, p.name, False))
        else:
            found = _walk(p, out)
            if not found:
                log.warning("%s: no NIfTI file or DICOM series found", p)
            cases.extend(found)
    seen: dict[Path, Case] = {}
    unique = []
    for c in cases:
        key = c.input.resolve()
        if key not in seen:
            seen[key] = c
            unique.append(c)
    names: dict[str, Case] = {}
    for c in unique:
        if c.name in names:
            raise OutputError(
                f"{names[c.name].input} and {c.input} would both be written to {out / c.name}; "
                "deface them in separate runs or give their common parent folder"
            )
        names[c.name] = c
    return unique


def _done(report: Path) -> dict[str, str]:
    """The last status of each case in an existing report."""
    status: dict[str, str] = {}
    if not report.is_file():
        return status
    with open(report, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
                status[str(rec["case"])] = str(rec["status"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a stop
    return status


def deface_batch(
    cases: Sequence[Case],
    out_dir: PathLike,
    *,
    qc: bool = False,
    save_mask: bool = False,
    overwrite: bool = False,
    on_case: Callable[[int, int, dict[str, Any]], None] | None = None,
    **options: Any,
) -> BatchSummary:
    """Deface every case into ``out_dir``, with a report; see the module's notes.

    Args:
        cases: From :func:`find_cases`.
        out_dir: The output folder (created if missing; its parent must exist).
        qc: Also write each case's QC picture beside its output.
        save_mask: Also write each case's removal mask beside its output.
        overwrite: Deface every case again and replace existing outputs.
        on_case: Called after each case with ``(k, n, record)`` (progress).
        **options: Passed to :func:`~.pipeline.deface` (``mode``, ``model``,
            ``engine``, ``device``, ``margin_mm``, ``face_depth_mm``).

    Returns:
        The :class:`BatchSummary`.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; give an output folder")
    if not out.parent.resolve().is_dir():
        raise OutputError(f"{out}: the folder {out.parent} does not exist; create it first")
    for c in cases:
        src = c.input.resolve()
        target = out.resolve()
        if target == src or (src.is_dir() and src in target.parents):
            raise OutputError(
                f"{out}: the output folder would lie inside the input {c.input}; choose another output folder"
            )
    out.mkdir(exist_ok=True)
    report = out / REPORT_NAME
    summary = BatchSummary(report)
    previous = {} if overwrite else _done(report)
    start = time.perf_counter()
    todo: list[Case] = []
    for c in cases:
        if previous.get(c.name) in ("defaced", "flagged") and c.output(out).exists():
            summary.counts["skipped"] += 1
        else:
            todo.append(c)
    if summary.counts["skipped"]:
        log.info("%d case(s) already defaced in %s: skipped", summary.counts["skipped"], report)

    def load(c: Case) -> Any:
        return load_volume(c.input)

    with open(report, "a", encoding="utf-8") as rep, ThreadPoolExecutor(1) as reader:
        ahead: Future[Any] | None = reader.submit(load, todo[0]) if todo else None
        for k, c in enumerate(todo, start=1):
            current, ahead = ahead, None
            t0 = time.perf_counter()
            record: dict[str, Any] = {"case": c.name}
            mask = c.extra(out, "mask") if save_mask else None
            picture = c.extra(out, "qc") if qc else None
            try:
                c.output(out).parent.mkdir(parents=True, exist_ok=True)
                check_outputs(c.input, c.output(out), save_mask=mask, qc=picture, overwrite=overwrite)
                assert current is not None
                volume = current.result()
                if k < len(todo):  # read the next case while this one is defaced
                    ahead = reader.submit(load, todo[k])
                result = deface(volume, **options)
                write_outputs(result, volume, c.output(out), save_mask=mask, qc=picture, overwrite=overwrite)
                record.update(
                    status="defaced" if result.qc.ok else "flagged",
                    voxels=result.qc.voxels,
                    flags=result.qc.flags,
                )
            except (DeidError, OSError) as e:
                record.update(status="failed", error=str(e))
            except Exception as e:  # one bad case must not stop a cohort
                # Only the type: a third-party message could quote a header value.
                log.debug("%s failed", c.input, exc_info=True)
                record.update(
                    status="failed",
                    error=f"{type(e).__name__}; run 'deid deface' on this case with -v for the details",
                )
            finally:
                if ahead is None and k < len(todo):
                    ahead = reader.submit(load, todo[k])
            record["seconds"] = round(time.perf_counter() - t0, 2)
            summary.counts[record["status"]] += 1
            rep.write(json.dumps(record) + "\n")
            rep.flush()
            if on_case is not None:
                on_case(k, len(todo), record)
    summary.seconds = time.perf_counter() - start
    return summary
