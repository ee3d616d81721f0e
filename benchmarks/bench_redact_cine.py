"""Redaction of a multi-frame ultrasound with OCR: each distinct crop read once, against every crop read.

An ultrasound cine carries the same burned-in text on every frame while the anatomy changes, so
every frame is detected, but most of the crops OCR reads repeat byte for byte.
``redact_text`` reads each distinct crop once (``text.ocr.read_regions``'s ``cache``); the
baseline, run in the same process on the same image, reads every crop. Reports seconds per
image, OCR reads, and whether both give the same pixels and decisions (they must).

    python benchmarks/bench_redact_cine.py [--file color3d_jpeg_baseline.dcm] [--ocr rapidocr]

Needs ``pydicom-data`` (the image) and an OCR backend (``pip install rapidocr-onnxruntime``, or
pytesseract and Debian's ``tesseract-ocr``).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

import deephealth_deid as dd
from deephealth_deid.text import ocr as ocr_module
from deephealth_deid.text import pipeline
from deephealth_deid.text.pipeline import RedactResult


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--file", default="color3d_jpeg_baseline.dcm", help="a pydicom test file")
    parser.add_argument("--ocr", default="auto", help="OCR backend (auto, rapidocr, tesseract)")
    args = parser.parse_args(argv)
    from pydicom.data import get_testdata_file

    image = dd.load_image(get_testdata_file(args.file))
    reader = ocr_module.get_ocr(args.ocr)
    if reader is None:
        print("no OCR backend installed: nothing to compare")
        return 1
    reads = [0]
    backend_read = type(reader).read

    def counted(self: object, crop: np.ndarray) -> tuple[str, float]:
        reads[0] += 1
        return backend_read(self, crop)

    type(reader).read = counted  # type: ignore[method-assign]
    try:
        return _compare(args.file, image, reader, reads)
    finally:
        type(reader).read = backend_read  # type: ignore[method-assign]


def _compare(name: str, image: Any, reader: Any, reads: list[int]) -> int:
    dd.redact_text(image, ocr=reader)  # warm-up: model load, first OCR call

    def run() -> tuple[float, int, RedactResult]:
        reads[0] = 0
        t0 = time.perf_counter()
        res = dd.redact_text(image, ocr=reader)
        return time.perf_counter() - t0, reads[0], res

    shared_s, shared_reads, shared = run()
    every_crop = ocr_module.read_regions
    pipeline.read_regions = lambda *a, cache=None, **k: every_crop(*a, **k)  # the baseline: no cache
    try:
        every_s, every_reads, baseline = run()
    finally:
        pipeline.read_regions = every_crop
    same = np.array_equal(shared.image.frames, baseline.image.frames) and [
        (r.box, r.frame, r.decision) for r in shared.regions
    ] == [(r.box, r.frame, r.decision) for r in baseline.regions]
    print(f"{name}: {image.n_frames} frames {image.rows}x{image.columns}, OCR {reader.name}")
    print(f"  every crop read:          {every_s:6.1f} s, {every_reads} OCR reads")
    print(
        f"  each distinct crop once:  {shared_s:6.1f} s, {shared_reads} OCR reads "
        f"({shared_s / every_s:.2f}x the time)"
    )
    print(f"  same pixels and decisions: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
