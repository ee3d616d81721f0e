"""``deid deface IN OUT``: remove the face from a head MRI, output in the input's format."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from ._common import ENGINE_CHOICES, make_parser, millimetres, run
from ._inputs import add_read_options

log = logging.getLogger("deephealth_deid.cli")

#: ``deface``'s ``max_depth_mm``: the face fill goes no deeper.
MAX_DEPTH_MM = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "deface",
        "Remove the identifying facial features (eye lids, nose, lips, ears) from a head MRI. IN is a NIfTI "
        "file, a DICOM series folder (or one of its files) or an Enhanced DICOM file; OUT is written in the "
        "same format (a folder for a DICOM series) with its header kept. Nothing deeper than 10 mm under the "
        "skin (13 mm for the nose and mouth below the eyes) is changed, which keeps the brain and the "
        "eyeball centres; air inside the head is never changed. Inputs are never modified.",
    )
    parser.add_argument("input", type=Path, help="head MRI: NIfTI file, DICOM series folder or file")
    parser.add_argument("output", type=Path, help="output file (.nii/.nii.gz) or folder (DICOM series)")
    parser.add_argument(
        "--save-mask",
        type=Path,
        metavar="MASK",
        help="also write the removal mask (NIfTI; the shape of the face: do not share it)",
    )
    parser.add_argument(
        "--qc",
        type=Path,
        metavar="QC.png",
        help="also write a QC picture (PNG; it shows the face: do not share it)",
    )
    parser.add_argument(
        "--brain-mask",
        type=Path,
        metavar="MASK",
        help="a brain mask of this head (NIfTI or DICOM, any voxel above 0 is brain, placed by its header): "
        "nothing within 6 mm of it is changed",
    )
    add_deface_options(parser)
    add_read_options(parser)
    parser.add_argument("--json", action="store_true", help="print the QC record as JSON")
    parser.add_argument("-f", "--force", action="store_true", help="replace existing outputs")
    return parser


def add_deface_options(parser: argparse.ArgumentParser) -> None:
    """The defacing options that ``deid deface`` and ``deid deface-batch`` share."""
    parser.add_argument("--mode", choices=("zero", "noise", "blur"), default="zero", help="default: zero")
    parser.add_argument(
        "--margin-mm", type=millimetres(), default=3.0, help="grow the mask by this much (default 3)"
    )
    parser.add_argument(
        "--face-depth",
        type=millimetres(MAX_DEPTH_MM),
        default=10.0,
        metavar="MM",
        help="also remove the skin between the eyes, nose and mouth, and around each ear, to this depth "
        "(default 10; 0: the labelled features only)",
    )
    parser.add_argument("--model", type=Path, help="model file (default: the shipped defacing model)")
    parser.add_argument("--engine", choices=ENGINE_CHOICES, default="auto", help="default: auto")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")


def deface_options(args: argparse.Namespace) -> dict[str, object]:
    """The :func:`~deephealth_deid.deface.deface` keyword arguments of :func:`add_deface_options`."""
    return {
        "mode": args.mode,
        "margin_mm": args.margin_mm,
        "face_depth_mm": args.face_depth,
        "model": args.model,
        "engine": args.engine,
        "device": args.device,
    }


def _deface(args: argparse.Namespace) -> int:
    from ..deface import deface_file

    result = deface_file(
        args.input,
        args.output,
        save_mask=args.save_mask,
        qc=args.qc,
        overwrite=args.force,
        index=args.volume,
        series_uid=args.series,
        allow_uneven=args.allow_uneven,
        brain_mask=args.brain_mask,
        **deface_options(args),
    )
    qc = result.qc
    if args.json:
        record = {"voxels": qc.voxels, "expected": qc.expected, "flags": qc.flags, "ok": qc.ok}
        if args.brain_mask is not None:
            record["brain_kept"] = qc.brain_kept
        print(json.dumps(record))
    else:
        log.info("wrote %s (removed voxels: %s)", args.output, qc.voxels)
    return 0 if qc.ok else 3


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deid deface``; returns 0, or 3 when the QC flags the case for review."""
    return run(build_parser(), argv, _deface)
