"""Options shared by the subcommands that read volumes or images."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UnsupportedInputError, WrongKindError
from ..io import Image, Volume, load_image, load_volume

__all__ = ["add_read_options", "read_any"]


def add_read_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--volume``, ``--series`` and ``--allow-uneven``."""
    parser.add_argument("--volume", type=int, metavar="N", help="volume index of a 4D NIfTI file (0-based)")
    parser.add_argument("--series", metavar="UID", help="SeriesInstanceUID to read from a folder of several")
    parser.add_argument(
        "--allow-uneven",
        action="store_true",
        help="accept a DICOM series with uneven slice spacing (the mean step is used, with a warning)",
    )


def read_any(path: Path, args: argparse.Namespace) -> Volume | Image:
    """Read ``path`` as a volume, or as a 2D image when it is one."""
    from ..io._files import check_input_file
    from ..io._sniff import sniff

    if sniff(check_input_file(path)) == "unknown":
        raise UnsupportedInputError(
            f"{path}: not a NIfTI, DICOM, PNG, JPEG or TIFF file (unrecognised content; damaged, or "
            "another format)"
        )
    try:
        return load_volume(path, index=args.volume, series_uid=args.series, allow_uneven=args.allow_uneven)
    except WrongKindError as volume_error:
        try:
            return load_image(path)
        except WrongKindError:
            raise volume_error from None
