"""``deid convert IN OUT``: read a volume or image and write it, e.g. a DICOM series to NIfTI."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from ._common import make_parser, run
from ._inputs import add_read_options, read_any

log = logging.getLogger("deephealth_deid.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "convert",
        "Read a volume (NIfTI, DICOM series or Enhanced DICOM) or a 2D image (DICOM, PNG, JPEG, TIFF) "
        "and write it to OUT. A volume goes to NIfTI when OUT ends in .nii/.nii.gz, else back to its "
        "own DICOM format (a series folder, derived UIDs, headers kept). Inputs are never modified.",
    )
    parser.add_argument("input", type=Path, help="input file or DICOM series folder")
    parser.add_argument("output", type=Path, help="output file or folder")
    add_read_options(parser)
    parser.add_argument("-f", "--force", action="store_true", help="replace OUT if it exists")
    return parser


def _convert(args: argparse.Namespace) -> int:
    from ..io import Volume, save_image, save_volume

    data = read_any(args.input, args)
    if isinstance(data, Volume):
        save_volume(data, args.output, overwrite=args.force)
    else:
        save_image(data, args.output, overwrite=args.force)
    log.info("wrote %s", args.output)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deid convert``; returns the exit code."""
    return run(build_parser(), argv, _convert)
