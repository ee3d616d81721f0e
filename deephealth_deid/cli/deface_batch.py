"""``deid deface-batch IN... -o OUT``: deface a cohort, with a report, resuming after a stop."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import make_parser, run
from .deface import add_deface_options, deface_options

log = logging.getLogger("deephealth_deid.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "deface-batch",
        "Deface every head MRI found under the inputs: NIfTI files and DICOM series folders (folders are "
        "searched; a .txt file lists paths, one per line). Outputs mirror the inputs' paths under OUT, in "
        "each input's format; OUT/deface_report.jsonl gets one record per case (status, seconds, voxels "
        "removed, QC flags). The model is loaded once. A case that fails is reported and the others go on; "
        "run the same command again to resume: cases already defaced are skipped. Inputs are never modified.",
    )
    parser.add_argument(
        "inputs", type=Path, nargs="+", metavar="IN", help="folder, NIfTI file, series folder or list"
    )
    parser.add_argument("-o", "--out-dir", type=Path, required=True, metavar="OUT", help="output folder")
    parser.add_argument("--qc", action="store_true", help="also write each case's QC picture (NAME_qc.png)")
    parser.add_argument(
        "--save-mask", action="store_true", help="also write each case's removal mask (NAME_mask.nii.gz)"
    )
    add_deface_options(parser)
    parser.add_argument("--list", action="store_true", help="list the cases found and exit")
    parser.add_argument(
        "-f", "--force", action="store_true", help="deface every case again, replacing outputs"
    )
    return parser


def _batch(args: argparse.Namespace) -> int:
    from ..deface.batch import deface_batch, find_cases

    cases = find_cases(args.inputs, args.out_dir)
    if args.list:
        for c in cases:
            print(f"{c.name}\t{c.input}")
        return 0
    log.info("%d case(s) found", len(cases))

    def progress(k: int, n: int, record: dict[str, Any]) -> None:
        status = record["status"]
        detail = record.get("error") or ", ".join(record.get("flags", ())) or ""
        log.info(
            "[%d/%d] %s: %s in %.1f s%s",
            k,
            n,
            record["case"],
            status,
            record["seconds"],
            f" ({detail})" if detail else "",
        )

    summary = deface_batch(
        cases,
        args.out_dir,
        qc=args.qc,
        save_mask=args.save_mask,
        overwrite=args.force,
        on_case=progress,
        **deface_options(args),
    )
    c = summary.counts
    done = c["defaced"] + c["flagged"]
    rate = f", {done / summary.seconds:.2f} volumes/s" if done and summary.seconds > 0 else ""
    log.info(
        "%d defaced, %d flagged for review, %d failed, %d skipped%s; report: %s",
        c["defaced"],
        c["flagged"],
        c["failed"],
        c["skipped"],
        rate,
        summary.report,
    )
    return 1 if c["failed"] else 3 if c["flagged"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deid deface-batch``; returns 0, 3 when a case was flagged for review, 1 when one failed."""
    return run(build_parser(), argv, _batch)
