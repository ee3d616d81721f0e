"""Running one job over a cohort: find the cases, process each, keep a report, resume after a stop.

``deid deface-batch`` (:mod:`deephealth_deid.deface.batch`) and ``deid
redact-batch`` (:mod:`deephealth_deid.text.batch`) share this: studies that
share tens of thousands of files need the model loaded once, the next case
read while the current one is processed, one case that fails reported while
the rest go on, and a run that was stopped going on where it left.

* Cases (:func:`find_cases`), found under the input folders, given directly,
  or listed in a ``.txt`` file (one path per line, ``#`` comments; relative to
  the list's folder). For volumes: every NIfTI file (by its name: a damaged
  one fails in the report rather than being left out) and every folder holding
  DICOM files (one series). For images: every DICOM, PNG, JPEG or TIFF file
  (by its content). Hidden files and folders, ``DICOMDIR`` index files and the
  output folder are never searched. Files under an input folder that look like
  what the job reads but are not cases (for images: every other file, empty,
  damaged or of another format; for volumes: other volume formats such as
  ``.mgz``, DICOM-named files with no readable DICOM beside them, 2D images)
  are listed in :attr:`Cases.ignored`, with the reason, and get a record
  ``{"ignored": path, "reason": ...}`` in the report, once: nothing is left out
  unsaid.
* Outputs mirror the inputs' paths under the output folder, relative to the
  folder each case was found in (for a list, to the listed paths' common
  folder): ``IN/site1/sub-01.nii.gz`` -> ``OUT/site1/sub-01.nii.gz``, the DICOM
  series ``IN/site1/sub-02/`` -> the folder ``OUT/site1/sub-02/``. Extra files
  (a QC picture, a mask) go beside the output (``sub-01_qc.png``).
* Report: one JSON record per case, appended as it ends, in the output
  folder: ``case`` (the relative path), ``status`` (``done``; ``flagged``: done
  but the QC asks for a look; ``failed``: nothing written, with ``error``),
  ``seconds``, and what the job adds (counts, QC flags). No header value is
  ever written there; an error from outside this package is reported by its
  type only, since its message could quote one.
* Resume: a case whose last record says ``done`` or ``flagged`` and whose
  output exists is skipped; ``overwrite=True`` does every case again. An output
  that exists without a record (someone else's file, or a stop between writing
  and reporting) is never replaced without ``overwrite``: the case fails with
  that reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DeidError, InputNotFoundError, OutputError
from .io._sniff import sniff
from .io.nifti import NIFTI_SUFFIXES
from .io.raster import RASTER_SUFFIXES

__all__ = [
    "Case",
    "Cases",
    "Ignored",
    "BatchSummary",
    "find_cases",
    "as_cases",
    "check_distinct_outputs",
    "check_jobs",
    "run_batch",
    "DONE",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: Statuses of a case that is finished: skipped when the batch runs again.
DONE = ("done", "flagged")

_IMAGE_KINDS = ("dicom", "png", "jpeg", "tiff")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima", ".dc3")
_KNOWN_SUFFIXES = (*NIFTI_SUFFIXES, *_DICOM_SUFFIXES, *RASTER_SUFFIXES)
#: Volume formats read by other tools, not by this package: reported, never silently passed over.
_OTHER_VOLUME_SUFFIXES = (
    ".mgz",
    ".mgh",
    ".nrrd",
    ".nhdr",
    ".mha",
    ".mhd",
    ".hdr",
    ".img",
    ".nii.bz2",
    ".mnc",
)


@dataclass(frozen=True)
class Case:
    """One input to process.

    Attributes:
        input: A file, or a DICOM series folder.
        name: Its path relative to where it was found (``site1/sub-01.nii.gz``):
            the output's path under the output folder.
        folder: Whether the input is a DICOM series folder (the output is a folder).
    """

    input: Path
    name: str
    folder: bool = False

    def output(self, out_dir: Path) -> Path:
        """The output under ``out_dir``."""
        return out_dir / self.name

    def fingerprint(self) -> str:
        """A digest of the input's size and first bytes (of every file, for a folder).

        Another scan under the same name changes it; a copy of the same
        files (moved to another disk, times not kept) does not. The first
        64 KiB of a file (4 KiB of each file of a series: its header, with
        the instance's UID) are read, never the whole input.
        """
        files = (
            [p for p in sorted(self.input.iterdir()) if p.is_file() and not p.name.startswith(".")]
            if self.folder
            else [self.input]
        )
        head = 4096 if self.folder else 65536
        h = hashlib.blake2b(digest_size=12)
        for p in files:
            with open(p, "rb") as f:
                h.update(f"{p.name}:{os.fstat(f.fileno()).st_size}:".encode())
                h.update(f.read(head))
        return f"{len(files)}:{h.hexdigest()}"

    def extra(self, out_dir: Path, suffix: str) -> Path:
        """A file beside the output: its name without its suffix, then ``suffix`` (``_qc.png``)."""
        out = self.output(out_dir)
        stem = out.name
        if not self.folder:
            # Only a known suffix goes: DICOM files are often named by their UID (1.2.840...320).
            lower = stem.lower()
            cut = next((s for s in _KNOWN_SUFFIXES if lower.endswith(s)), "")
            stem = stem[: len(stem) - len(cut)]
        return out.with_name(stem + suffix)


@dataclass(frozen=True)
class Ignored:
    """A file under an input folder that is not a case, and why (``reason`` names no header value)."""

    input: Path
    name: str
    reason: str


class Cases(list[Case]):
    """The cases found (a list), with :attr:`ignored`: the files passed over, and why."""

    def __init__(self, cases: Iterable[Case] = (), ignored: Iterable[Ignored] = ()) -> None:
        super().__init__(cases)
        self.ignored: list[Ignored] = list(ignored)


@dataclass
class BatchSummary:
    """What a batch did: the count of cases per status, the report's path, the time it took."""

    report: Path
    counts: dict[str, int] = field(
        default_factory=lambda: {"done": 0, "flagged": 0, "failed": 0, "skipped": 0, "ignored": 0}
    )
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No case failed or was flagged."""
        return self.counts["failed"] == 0 and self.counts["flagged"] == 0

    @property
    def exit_code(self) -> int:
        """1 when a case failed, else 3 when one was flagged for review, else 0."""
        return 1 if self.counts["failed"] else 3 if self.counts["flagged"] else 0


def _is_nifti_name(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _kind(path: Path) -> str:
    try:
        return sniff(path) if path.stat().st_size > 0 else "empty"
    except (DeidError, OSError):
        return "unknown"


def _holds_dicom(files: Sequence[Path]) -> bool:
    """Whether a folder holds a DICOM series: any of its files that are not NIfTI is DICOM.

    Every file is looked at until one is (a series folder may also hold a text file that sorts
    first, such as a README).
    """
    return any(_kind(f) == "dicom" for f in sorted(files) if not _is_nifti_name(f))


def _walk(root: Path, out_dir: Path, kind: str) -> Cases:
    """The cases under the folder ``root``, named relative to it, and the files passed over."""
    found = Cases()
    skip = out_dir.resolve()
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() != skip)
        # DICOMDIR: a media index, no pixels.
        paths = [here / f for f in sorted(files) if not f.startswith(".") and f.upper() != "DICOMDIR"]
        if kind == "volume":
            found += [Case(p, p.relative_to(root).as_posix()) for p in paths if _is_nifti_name(p)]
            if _holds_dicom(paths):
                rel = here.relative_to(root).as_posix()
                found.append(Case(here, root.name if rel == "." else rel, folder=True))
            else:
                found.ignored += [
                    Ignored(p, p.relative_to(root).as_posix(), why)
                    for p in paths
                    if not _is_nifti_name(p) and (why := _not_a_volume(p))
                ]
        else:
            for p in paths:
                k = _kind(p)
                if k in _IMAGE_KINDS:
                    found.append(Case(p, p.relative_to(root).as_posix()))
                else:
                    found.ignored.append(Ignored(p, p.relative_to(root).as_posix(), _not_an_image(k)))
    return found


def _not_a_volume(path: Path) -> str:
    """Why a file in a folder without DICOM is passed over, when it looks like an image; else ''."""
    name = path.name.lower()
    if name.endswith(_OTHER_VOLUME_SUFFIXES):
        return "a volume format deid does not read: convert it to NIfTI (nibabel, mri_convert, dcm2niix)"
    kind = _kind(path)
    if name.endswith(_DICOM_SUFFIXES):
        return "an empty file" if kind == "empty" else "named as DICOM but not readable as DICOM (damaged?)"
    if kind in ("png", "jpeg", "tiff"):
        return "a 2D image: deid redact-batch removes text from these"
    return ""


def _not_an_image(kind: str) -> str:
    if kind == "empty":
        return "an empty file"
    if kind == "nifti":
        return "a NIfTI volume: deid deface-batch defaces these"
    return "not a DICOM, PNG, JPEG or TIFF file (another format, or damaged)"


def _listed(list_file: Path) -> list[Path]:
    lines = list_file.read_text(encoding="utf-8").splitlines()
    paths = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [Path(p) if Path(p).is_absolute() else list_file.parent / p for p in paths]


def find_cases(inputs: Iterable[PathLike], out_dir: PathLike, *, kind: str = "volume") -> Cases:
    """The cases to process, found under ``inputs``.

    Args:
        inputs: Folders (searched), files or DICOM series folders, or ``.txt``
            files listing such paths (relative to the list's folder).
        out_dir: The output folder: never searched.
        kind: ``'volume'`` (NIfTI files and DICOM series folders) or
            ``'image'`` (DICOM, PNG, JPEG and TIFF files).

    Returns:
        The cases, in the order found (folders sorted), each once; their
        ``ignored`` attribute lists the files under the input folders passed
        over (see the module's notes).

    Raises:
        InputNotFoundError: An input, or a listed path, does not exist.
        OutputError: Two cases would write the same output.
    """
    if kind not in ("volume", "image"):
        raise ValueError(f"kind must be 'volume' or 'image', got {kind!r}")
    out = Path(out_dir)
    cases: list[Case] = []
    ignored: list[Ignored] = []
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
                resolved = [q.resolve() for q in listed]
                common = Path(os.path.commonpath(resolved))
                base = common if common.is_dir() and common not in resolved else common.parent
                for q, r in zip(listed, resolved, strict=True):
                    cases.append(Case(q, r.relative_to(base).as_posix(), folder=q.is_dir()))
        elif p.is_file():
            cases.append(Case(p, p.name))
        else:
            found = _walk(p, out, kind)
            if not found:
                what = "NIfTI file or DICOM series" if kind == "volume" else "DICOM, PNG, JPEG or TIFF file"
                log.warning("%s: no %s found", p, what)
            cases.extend(found)
            ignored.extend(found.ignored)
    unique: dict[Path, Case] = {}
    for c in cases:
        unique.setdefault(c.input.resolve(), c)
    names: dict[str, Case] = {}
    for c in unique.values():
        if c.name in names:
            raise OutputError(
                f"{names[c.name].input} and {c.input} would both be written to {out / c.name}; "
                "process them in separate runs or give their common parent folder"
            )
        names[c.name] = c
    once: dict[Path, Ignored] = {}
    for i in ignored:
        once.setdefault(i.input.resolve(), i)
    ignored = list(once.values())
    if ignored:
        log.warning(
            "%d file(s) under the input folders are not cases and are left out (listed, with the reason, "
            "by --list and in the report), e.g. %s: %s",
            len(ignored),
            ignored[0].name,
            ignored[0].reason,
        )
    return Cases(unique.values(), ignored)


def _done_before(case: Case, previous: tuple[str, str | None] | None, out: Path) -> bool:
    """Whether ``case`` was done by an earlier run, from the same input, and its output is still there."""
    if previous is None or previous[0] not in DONE or not case.output(out).exists():
        return False
    if previous[1] is None:  # a report written before inputs were fingerprinted
        return True
    try:
        same = previous[1] == case.fingerprint()
    except OSError:  # unreadable now: processing it says why
        return False
    if not same:
        log.info("%s: the input changed since it was processed; processing it again", case.name)
    return same


def _read_report(report: Path) -> tuple[dict[str, tuple[str, str | None]], set[str]]:
    """An existing report's last status and input fingerprint of each case, and the files passed over."""
    status: dict[str, tuple[str, str | None]] = {}
    ignored: set[str] = set()
    if not report.is_file():
        return status, ignored
    with open(report, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
                if "ignored" in rec:
                    ignored.add(str(rec["ignored"]))
                else:
                    status[str(rec["case"])] = (str(rec["status"]), rec.get("input"))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a stop
    return status, ignored


def _check_out_dir(cases: Sequence[Case], out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; give an output folder")
    if not out.parent.resolve().is_dir():
        raise OutputError(f"{out}: the folder {out.parent} does not exist; create it first")
    target = out.resolve()
    for c in cases:
        src = c.input.resolve()
        if target == src or (src.is_dir() and src in target.parents):
            raise OutputError(
                f"{out}: the output folder would lie inside the input {c.input}; choose another output folder"
            )


def as_cases(cases: Iterable[Case | PathLike] | PathLike, out_dir: PathLike, *, kind: str) -> Sequence[Case]:
    """``cases`` as they are when they are :class:`Case` objects; paths are searched with :func:`find_cases`.

    Raises:
        TypeError: Cases and paths are mixed, or an item is neither.
    """
    if isinstance(cases, Cases):
        return cases
    items: list[Any] = [cases] if isinstance(cases, (str, os.PathLike)) else list(cases)
    if all(isinstance(c, Case) for c in items):
        return items
    if all(isinstance(c, (str, os.PathLike)) for c in items):
        return find_cases(items, out_dir, kind=kind)
    raise TypeError(
        "cases must be all Case objects (from find_cases) or all paths (files, folders or .txt lists)"
    )


def check_distinct_outputs(cases: Sequence[Case], out_dir: PathLike, extras: Sequence[str] = ()) -> None:
    """Refuse cases whose outputs, or the files written beside them (``extras``: ``_qc.png``), collide.

    ``a.nii.gz`` with ``--save-mask`` writes ``a_mask.nii.gz``, which is also the
    output of an input named ``a_mask.nii.gz``: one would replace the other.

    Raises:
        OutputError: Two cases would write one path.
    """
    out = Path(out_dir)
    seen: dict[str, Case] = {}
    for c in cases:
        for path in (c.output(out), *(c.extra(out, suffix) for suffix in extras)):
            key = os.path.normcase(str(path))
            if key in seen and seen[key] is not c:
                raise OutputError(
                    f"{seen[key].input} and {c.input} would both write {path}; rename one of them, "
                    "or process them in separate runs"
                )
            seen[key] = c


def check_jobs(jobs: object, threads: object) -> None:
    """Refuse ``jobs`` / ``threads`` that are not whole numbers of at least 1 (``threads`` may be None).

    Raises:
        TypeError: Not a whole number (e.g. the string ``"2"``).
        ValueError: Below 1.
    """
    for name, value in (("jobs", jobs), ("threads", threads)):
        if name == "threads" and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be a whole number (at least 1), got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value!r}")


def run_batch(
    cases: Sequence[Case],
    out_dir: PathLike,
    *,
    report_name: str,
    load: Callable[[Case], Any],
    process: Callable[[Case, Any], dict[str, Any]],
    overwrite: bool = False,
    on_case: Callable[[int, int, dict[str, Any]], None] | None = None,
    jobs: int = 1,
    threads: int | None = None,
) -> BatchSummary:
    """Process every case into ``out_dir``, with a report; see the module's notes.

    Args:
        cases: From :func:`find_cases`.
        out_dir: The output folder (created if missing; its parent must exist).
        report_name: The report's file name in ``out_dir``.
        load: Reads a case's input (run in a second thread, one case ahead).
        process: Processes a case and writes its outputs (their folder
            exists); returns the record's fields, at least ``status``
            (``done`` or ``flagged``). It raises to fail the case.
        overwrite: Process every case again and replace existing outputs.
        on_case: Called after each case with ``(k, n, record)`` (progress).
        jobs: Cases processed at once, each job in a process of its own
            (``load`` and ``process`` must then be picklable: module-level
            functions, or partials of them with plain options). Records are
            written as cases end, so their order may differ from the cases'.
        threads: CPU threads of each job's network engine (default: the
            cores shared out among the jobs).

    Returns:
        The :class:`BatchSummary`.

    Raises:
        DeidError: A job's process stopped (killed, out of memory); the cases
            finished are in the report, and running again resumes.
    """
    check_jobs(jobs, threads)
    out = Path(out_dir)
    _check_out_dir(cases, out)
    out.mkdir(exist_ok=True)
    report = out / report_name
    summary = BatchSummary(report)
    previous, listed = _read_report(report)
    if overwrite:
        previous = {}
    start = time.perf_counter()
    todo = [c for c in cases if not _done_before(c, previous.get(c.name), out)]
    summary.counts["skipped"] = len(cases) - len(todo)
    passed_over = getattr(cases, "ignored", [])
    summary.counts["ignored"] = len(passed_over)
    if summary.counts["skipped"]:
        log.info("%d case(s) already done in %s: skipped", summary.counts["skipped"], report)
    if jobs > 1 and len(todo) > 1:
        records = _in_processes(todo, out, load, process, jobs=jobs, threads=threads)
    else:
        records = _in_order(todo, out, load, process)
    with open(report, "a", encoding="utf-8") as rep:
        for i in passed_over:
            if i.name not in listed:  # once per report, not once per run (--force included)
                rep.write(json.dumps({"ignored": i.name, "reason": i.reason}) + "\n")
        rep.flush()
        for k, record in enumerate(records, start=1):
            summary.counts[record["status"]] += 1
            rep.write(json.dumps(record) + "\n")
            rep.flush()
            if on_case is not None:
                on_case(k, len(todo), record)
    summary.seconds = time.perf_counter() - start
    return summary


Records = Iterator[dict[str, Any]]


def _attempt(
    case: Case, out: Path, load: Callable[[], Any], process: Callable[[Case, Any], dict[str, Any]]
) -> dict[str, Any]:
    """The record of one case: ``load()`` it and process it, a failure reported, never raised."""
    t0 = time.perf_counter()
    record: dict[str, Any] = {"case": case.name}
    with contextlib.suppress(OSError):  # a missing input fails below, with its own message
        record["input"] = case.fingerprint()
    try:
        case.output(out).parent.mkdir(parents=True, exist_ok=True)
        record.update(process(case, load()))
    except (DeidError, OSError) as e:
        # The first line only: what follows lists what the input holds (series UIDs), which a
        # report that may be shared does not need; the command on the one case shows it.
        first, *more = str(e).splitlines() or [type(e).__name__]
        record.update(
            status="failed", error=first + (" (run deid info on this case for the details)" if more else "")
        )
    except Exception as e:  # one bad case must not stop a cohort
        log.debug("%s failed", case.input, exc_info=True)
        record.update(
            status="failed", error=f"{type(e).__name__}; process this case alone with -v for details"
        )
    record["seconds"] = round(time.perf_counter() - t0, 2)
    return record


def _in_order(
    todo: Sequence[Case], out: Path, load: Callable[[Case], Any], process: Callable[..., dict[str, Any]]
) -> Records:
    """One case after the other; one thread reads the next case meanwhile (two in memory at most)."""
    with ThreadPoolExecutor(1) as reader:
        ahead: Future[Any] | None = reader.submit(load, todo[0]) if todo else None
        for k, c in enumerate(todo, start=1):
            current = ahead
            assert current is not None
            # Queued behind this case's read: the reader starts it when that one is done.
            ahead = reader.submit(load, todo[k]) if k < len(todo) else None
            yield _attempt(c, out, current.result, process)


def _in_processes(
    todo: Sequence[Case],
    out: Path,
    load: Callable[[Case], Any],
    process: Callable[..., dict[str, Any]],
    *,
    jobs: int,
    threads: int | None,
) -> Records:
    """Cases in ``jobs`` processes at once, records in the order they end."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    per_job = threads or max(1, (os.cpu_count() or 1) // jobs)
    pool = ProcessPoolExecutor(
        min(jobs, len(todo)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_job,
        initargs=(per_job,),
    )
    try:
        futures = [pool.submit(_job, c, out, load, process) for c in todo]
        for future in as_completed(futures):
            try:
                yield future.result()
            except BrokenProcessPool as e:
                raise DeidError(
                    f"a job's process stopped ({e}); it may have run out of memory. The cases finished "
                    "are in the report: run the same command again, with fewer jobs, to go on"
                ) from e
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _start_job(threads: int) -> None:
    """Set up a job's process: its engines' CPU threads."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by PyTorch when it is imported
    from .engines import get_engine
    from .errors import EngineUnavailableError

    with contextlib.suppress(EngineUnavailableError):
        get_engine("onnxruntime", device="cpu").set_threads(threads)


def _job(
    case: Case, out: Path, load: Callable[[Case], Any], process: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    return _attempt(case, out, lambda: load(case), process)
