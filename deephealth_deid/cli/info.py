"""``deid info PATH``: what a file or series holds (no patient values are printed)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._common import make_parser, run
from ._inputs import add_read_options, read_any


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "info",
        "Describe a volume or image: format, shape, voxel size, orientation, data type and value range. "
        "Patient values from headers are never printed.",
    )
    parser.add_argument("input", type=Path, help="file or DICOM series folder")
    add_read_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def describe(path: Path, args: argparse.Namespace) -> dict[str, object]:
    """The facts ``deid info`` prints, as a dict."""
    from ..io import Volume

    data = read_any(path, args)
    if isinstance(data, Volume):
        arr = data.array
        facts: dict[str, object] = {
            "kind": "volume",
            "format": data.format,
            "shape": list(data.shape),
            "spacing_mm": [round(s, 4) for s in data.spacing],
            "orientation": "".join(data.axcodes),
            "affine": np.round(data.affine, 4).tolist(),
        }
    else:
        arr = data.frames
        facts = {
            "kind": "image",
            "format": data.format,
            "frames": data.n_frames,
            "rows": data.rows,
            "columns": data.columns,
            "photometric": data.photometric,
        }
    facts["dtype"] = str(arr.dtype)
    facts["range"] = [float(arr.min()), float(arr.max())] if arr.size else []
    return facts


def _info(args: argparse.Namespace) -> int:
    facts = describe(args.input, args)
    if args.json:
        print(json.dumps(facts))
    else:
        for key, value in facts.items():
            print(f"{key:>12}: {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deid info``; returns the exit code."""
    return run(build_parser(), argv, _info)
