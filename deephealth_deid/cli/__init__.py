"""The ``deid`` command: one entry point, one module per subcommand.

Each subcommand module has ``main(argv: list[str] | None = None) -> int`` so it
can be called from Python and from tests. The compute engines (PyTorch, EDDL)
are imported inside the commands that need them. The console script is
:func:`console_main`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import sys
import threading
from typing import NoReturn

from .._version import __version__

__all__ = ["main", "console_main", "SUBCOMMANDS"]

#: Subcommand name -> (module, one-line summary).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "deface": (
        "deephealth_deid.cli.deface",
        "remove the face from a head MRI, output in the input's format",
    ),
    "deface-batch": (
        "deephealth_deid.cli.deface_batch",
        "deface every head MRI under folders, with a report; resumes after a stop",
    ),
    "redact": (
        "deephealth_deid.cli.redact",
        "remove identifying burned-in text from a 2D image, output in the input's format",
    ),
    "redact-batch": (
        "deephealth_deid.cli.redact_batch",
        "redact every 2D image under folders, with a report; resumes after a stop",
    ),
    "demo": ("deephealth_deid.cli.demo", "run the pipeline on a built-in example and write the results"),
    "info": ("deephealth_deid.cli.info", "describe a volume or image: format, shape, spacing, orientation"),
    "convert": (
        "deephealth_deid.cli.convert",
        "read a volume or image and write it (e.g. DICOM series to NIfTI)",
    ),
    "train": ("deephealth_deid.cli.train", "train a network from a YAML configuration (resumable)"),
    "dataset": ("deephealth_deid.cli.dataset", "build, check or describe DeepHealth YAML datasets"),
    "engines": ("deephealth_deid.cli.engines", "list the compute engines, devices and EDDL self-check"),
}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = [
        "usage: deid [--version] [--help] COMMAND [ARGS...]",
        "",
        "De-identify medical images (deephealth_deid).",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    lines += ["", "Run 'deid COMMAND --help' for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run ``deid`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"deid (deephealth_deid) {__version__}")
        return 0
    name = args[0]
    if name not in SUBCOMMANDS:
        print(f"deid: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    try:
        return int(module.main(args[1:]))
    except BrokenPipeError:
        return _reader_gone()


def console_main() -> NoReturn:
    """The ``deid`` console script: :func:`main`, then the process ends at once.

    When the command has returned, its outputs are written and closed; what is
    left is the interpreter's teardown (unloading SciPy, ONNX Runtime and the
    rest: about a quarter of a second after a defacing job, 7% of it). The log
    handlers and the standard streams are flushed and the process exits with
    the command's code; when the standard output cannot be written (a full
    disk), with 120 as Python would, and 141 when its reader went away. Where
    a thread or a worker process is still alive the interpreter ends as
    usual, so nothing can be cut short.
    """
    try:
        code = main()
    except BrokenPipeError:  # the reader went away before a command ran (deid --help | head -0)
        code = _reader_gone()
    logging.shutdown()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = code or _reader_gone()
    except OSError as exc:  # a full disk: what was printed is not all there
        with contextlib.suppress(OSError, ValueError):
            print(f"deid: could not write the standard output: {exc}", file=sys.stderr)
        code = code or 120
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    if threading.active_count() > 1 or multiprocessing.active_children():
        sys.exit(code)
    os._exit(code)


def _reader_gone() -> int:
    """The reader of the standard output went away (``deid info ... | head``): not an error of ours.

    Stdout is pointed at devnull so that no later flush raises again; the code is 141
    (128 + SIGPIPE), as a shell reports it.
    """
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141
