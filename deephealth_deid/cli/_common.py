"""What every subcommand shares: argument parsing, logging set-up and error reporting."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence

from ..errors import DeidError

__all__ = ["ENGINE_CHOICES", "at_least", "make_parser", "millimetres", "run"]

#: ``--engine`` of the commands that predict (any engine; ``deid train`` offers those that train).
ENGINE_CHOICES: tuple[str, ...] = ("auto", "torch", "eddl", "onnxruntime")

log = logging.getLogger("deephealth_deid")


def at_least(minimum: int) -> Callable[[str], int]:
    """An ``argparse`` type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def millimetres(maximum: float | None = None) -> Callable[[str], float]:
    """An ``argparse`` type: a finite distance in mm, from 0 to ``maximum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of millimetres, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (maximum is not None and value > maximum):
            limit = f"from 0 to {maximum:g}" if maximum is not None else "0 or more"
            raise argparse.ArgumentTypeError(f"must be {limit} mm, got {text}")
        return value

    return parse


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An ``argparse`` parser for ``deid PROG`` with ``--quiet`` and ``--verbose``."""
    parser = argparse.ArgumentParser(prog=f"deid {prog}", description=description)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    group.add_argument("-v", "--verbose", action="store_true", help="print debugging messages")
    return parser


def run(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    command: Callable[[argparse.Namespace], int | None],
) -> int:
    """Parse ``argv``, set up logging, run ``command`` and turn errors into exit codes.

    Exit codes: 0 success, 1 a :class:`DeidError` (message on stderr), 2 bad
    usage (argparse), 130 interrupted.
    """
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as e:  # argparse exits on --help (0) and on bad usage (2)
        return int(e.code or 0)
    prog = getattr(args, "prog", parser.prog)  # a subcommand's own name (deid dataset check)
    level = logging.ERROR if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    package_logger = logging.getLogger("deephealth_deid")
    before = package_logger.level
    _configure_logging(level)
    try:
        return int(command(args) or 0)
    except DeidError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the output piped into a command that stopped reading (| head)
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:  # the system refused: permissions, a full disk, a path that vanished
        where = f"{e.filename}: " if e.filename else ""
        print(f"{prog}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    finally:  # called from Python (a notebook, a test), -q must not silence the package afterwards
        package_logger.setLevel(before)


def _configure_logging(level: int) -> None:
    root = logging.getLogger("deephealth_deid")
    root.setLevel(level)
    if not any(getattr(h, "_deid_cli", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        handler._deid_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for h in root.handlers:
        if getattr(h, "_deid_cli", False):
            h.setLevel(level)
            h.stream = sys.stderr  # follow redirection (tests capture stderr)
