"""``deid redact-batch IN... -o OUT``: redact every image under folders, with a report; resumable."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._batch import add_batch_arguments, list_cases, progress, summarise
from ._common import make_parser, run
from .redact import add_redact_options, check_redact_options, redact_options


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "redact-batch",
        "Blank the identifying burned-in text of every 2D image found under the inputs: DICOM, PNG, JPEG "
        "and TIFF files (folders are searched; a .txt file lists paths, one per line). Outputs mirror the "
        "inputs' paths under OUT, in each input's format; OUT/redact_report.jsonl gets one record per file "
        "(status, seconds, regions detected, blanked and kept, QC flags; never the text read). The detector "
        "and the OCR backend are made once. A file that fails is reported and the others go on; run the "
        "same command again to resume: files already done are skipped. Inputs are never modified. Exit "
        "code 1 if a file failed, 3 if one was flagged for review.",
    )
    add_batch_arguments(parser, "image file")
    parser.add_argument("--qc", action="store_true", help="also write each file's QC picture (NAME_qc.png)")
    add_redact_options(parser)
    return parser


def _batch(args: argparse.Namespace) -> int:
    from ..text.batch import find_cases, redact_batch

    bad = check_redact_options(args, "deid redact-batch")
    if bad is not None:
        return bad
    cases = find_cases(args.inputs, args.out_dir)
    if args.list:
        return list_cases(cases)
    summary = redact_batch(
        cases,
        args.out_dir,
        qc=args.qc,
        overwrite=args.force,
        on_case=progress,
        jobs=args.jobs,
        **redact_options(args),
    )
    return summarise(summary, "images")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deid redact-batch``; returns 0, 3 when a file was flagged for review, 1 when one failed."""
    return run(build_parser(), argv, _batch)
