"""``deid redact IN OUT``: remove identifying burned-in text from a 2D image, output in the input's format."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ._common import ENGINE_CHOICES, make_parser, run

log = logging.getLogger("deephealth_deid.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "redact",
        "Blank the burned-in text that identifies the patient (names, IDs, dates) on every frame of a 2D "
        "image: X-ray, ultrasound, screen capture, multi-frame, RGB, palette or YBR. IN is a DICOM, PNG, "
        "JPEG or TIFF file; OUT is written in the same format (DICOM keeps its header, gets Burned In "
        "Annotation NO and loses its 60xx overlays). Every text region is blanked except markers an OCR "
        "backend reads confidently as harmless (L, R, AP, scale numbers, ultrasound parameters). Pixels "
        "outside the blanked boxes are unchanged. Inputs are never modified.",
    )
    parser.add_argument("input", type=Path, help="2D image: DICOM, PNG, JPEG or TIFF")
    parser.add_argument("output", type=Path, help="output file (same format as the input)")
    add_redact_options(parser)
    parser.add_argument("--qc", type=Path, metavar="QC.png", help="also write a QC picture (PNG)")
    parser.add_argument("--json", action="store_true", help="print the QC record as JSON")
    parser.add_argument("-f", "--force", action="store_true", help="replace existing outputs")
    return parser


def add_redact_options(parser: argparse.ArgumentParser) -> None:
    """The redaction options that ``deid redact`` and ``deid redact-batch`` share."""
    parser.add_argument(
        "--detector",
        choices=("net", "ocr"),
        default="net",
        help="text finder: the trained network (default) or the OCR backend's own text detection",
    )
    parser.add_argument(
        "--ocr",
        choices=("auto", "tesseract", "rapidocr", "none"),
        default="auto",
        help="OCR that reads each region to keep harmless markers (default: auto, the first installed)",
    )
    parser.add_argument(
        "--regions", type=Path, metavar="RULES.yaml", help="device rules: fixed boxes to blank"
    )
    parser.add_argument("--policy", type=Path, metavar="POLICY.yaml", help="what counts as harmless (YAML)")
    parser.add_argument(
        "--keep-safe",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep markers read as harmless (default: the policy's, on); --no-keep-safe blanks all text",
    )
    parser.add_argument(
        "--keep-overlays",
        action="store_true",
        help="keep DICOM 60xx overlays and 50xx curves (they can carry text)",
    )
    parser.add_argument(
        "--pad",
        type=int,
        metavar="PX",
        help="margin around each detected box (default: a fifth of its line, or a tenth around its "
        "ink where the text lies on a plain background)",
    )
    parser.add_argument(
        "--fit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="cut boxes on a plain background to their ink (default); --no-fit keeps the full margin",
    )
    parser.add_argument("--model", type=Path, help="text-detection model file (--detector net)")
    parser.add_argument("--engine", choices=ENGINE_CHOICES, default="auto", help="default: auto")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")


def check_redact_options(args: argparse.Namespace, prog: str) -> int | None:
    """Exit code 2 (with a message) for option combinations argparse cannot refuse; else None."""
    if args.detector == "ocr" and args.ocr == "none":
        print(f"{prog}: error: --detector ocr needs an OCR backend; drop --ocr none", file=sys.stderr)
        return 2
    if args.pad is not None and args.pad < 0:
        print(f"{prog}: error: --pad must be 0 or more", file=sys.stderr)
        return 2
    return None


def redact_options(args: argparse.Namespace) -> dict[str, object]:
    """The :func:`~deephealth_deid.text.redact_text` keyword arguments of :func:`add_redact_options`."""
    return {
        "detector": args.detector,
        "ocr": args.ocr,
        "policy": args.policy,
        "rules": args.regions,
        "keep_safe": args.keep_safe,
        "keep_overlays": args.keep_overlays,
        "pad_px": args.pad,
        "fit": args.fit,
        "model": args.model,
        "engine": args.engine,
        "device": args.device,
    }


def _redact(args: argparse.Namespace) -> int:
    from ..text import redact_file

    bad = check_redact_options(args, "deid redact")
    if bad is not None:
        return bad
    result = redact_file(
        args.input,
        args.output,
        qc_png=args.qc,
        overwrite=args.force,
        **redact_options(args),
        progress=sys.stderr.isatty() and not args.quiet,
    )
    qc = result.qc
    if args.json:
        print(json.dumps(qc.to_dict()))
    else:
        log.info("wrote %s (%d region(s) blanked, %d kept)", args.output, qc.blanked, qc.kept)
    return 0 if qc.ok else 3


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deid redact``; returns 0, or 3 when the QC flags the case for review."""
    return run(build_parser(), argv, _redact)
