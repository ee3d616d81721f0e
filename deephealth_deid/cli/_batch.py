"""What ``deid deface-batch`` and ``deid redact-batch`` share: inputs, progress and the closing summary."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ._common import at_least

log = logging.getLogger("deephealth_deid.cli")


def add_batch_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """Inputs, ``-o OUT``, ``--list`` and ``--force``; ``what`` names the inputs in the help."""
    parser.add_argument("inputs", type=Path, nargs="+", metavar="IN", help=f"folder, {what}, or a .txt list")
    parser.add_argument("-o", "--out-dir", type=Path, required=True, metavar="OUT", help="output folder")
    parser.add_argument("--list", action="store_true", help="list the cases found and exit")
    parser.add_argument(
        "-f", "--force", action="store_true", help="process every case again, replacing outputs"
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=at_least(1),
        default=1,
        help="cases processed at once, each in a process of its own with its own model, sharing the CPU "
        "cores (default 1). The steps around the network use one core each: on a CPU, one job per core "
        "gives more cases per second",
    )


def list_cases(cases: list[Any]) -> int:
    """Print each case's output name and input, then each file passed over and why (``--list``)."""
    for c in cases:
        print(f"{c.name}\t{c.input}")
    for i in getattr(cases, "ignored", ()):
        print(f"# ignored\t{i.input}\t{i.reason}")
    return 0


def progress(k: int, n: int, record: dict[str, Any]) -> None:
    """Log one line per finished case."""
    detail = record.get("error") or ", ".join(record.get("flags", ())) or ""
    log.info(
        "[%d/%d] %s: %s in %.1f s%s",
        k,
        n,
        record["case"],
        record["status"],
        record["seconds"],
        f" ({detail})" if detail else "",
    )


def summarise(summary: Any, unit: str) -> int:
    """Log the batch's counts and throughput; return its exit code (1 failed, 3 flagged, 0)."""
    c = summary.counts
    finished = c["done"] + c["flagged"]
    rate = f", {finished / summary.seconds:.2f} {unit}/s" if finished and summary.seconds > 0 else ""
    ignored = f", {c['ignored']} file(s) not cases (ignored)" if c.get("ignored") else ""
    log.info(
        "%d done, %d flagged for review, %d failed, %d skipped%s%s; report: %s",
        c["done"],
        c["flagged"],
        c["failed"],
        c["skipped"],
        ignored,
        rate,
        summary.report,
    )
    return int(summary.exit_code)
