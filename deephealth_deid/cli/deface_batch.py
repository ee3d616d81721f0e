"""``deid deface-batch IN... -o OUT``: deface a cohort, with a report, resuming after a stop."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._batch import add_batch_arguments, list_cases, progress, summarise
from ._common import make_parser, run
from .deface import add_deface_options, deface_options


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "deface-batch",
        "Deface every head MRI found under the inputs: NIfTI files and DICOM series folders (folders are "
        "searched; a .txt file lists paths, one per line). Outputs mirror the inputs' paths under OUT, in "
        "each input's format; OUT/deface_report.jsonl gets one record per case (status, seconds, voxels "
        "removed, QC flags). The model is loaded once. A case that fails is reported and the others go on; "
        "run the same command again to resume: cases already done are skipped. Inputs are never modified. "
        "Exit code 1 if a case failed, 3 if one was flagged for review.",
    )
    add_batch_arguments(parser, "NIfTI file, DICOM series folder")
    parser.add_argument(
        "--qc",
        action="store_true",
        help="also write each case's QC picture (NAME_qc.png; it shows the face: do not share it)",
    )
    parser.add_argument(
        "--save-mask",
        action="store_true",
        help="also write each case's removal mask (NAME_mask.nii.gz; the face's shape: do not share it)",
    )
    parser.add_argument(
        "--allow-uneven",
        action="store_true",
        help="accept DICOM series with uneven slice spacing (the mean step is used, with a warning)",
    )
    add_deface_options(parser)
    return parser


def _batch(args: argparse.Namespace) -> int:
    from ..deface.batch import deface_batch, find_cases

    cases = find_cases(args.inputs, args.out_dir)
    if args.list:
        return list_cases(cases)
    summary = deface_batch(
        cases,
        args.out_dir,
        qc=args.qc,
        save_mask=args.save_mask,
        overwrite=args.force,
        on_case=progress,
        jobs=args.jobs,
        allow_uneven=args.allow_uneven,
        **deface_options(args),
    )
    return summarise(summary, "volumes")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deid deface-batch``; returns 0, 3 when a case was flagged for review, 1 when one failed."""
    return run(build_parser(), argv, _batch)
