"""Text detection: our network against RapidOCR's and Tesseract's detectors, same images, same run.

Held-out synthetic images (generator seed 3000000, fonts never used in training) at 512 x 512
and 2048 x 2048. Ours runs on ONNX Runtime (what ``deid redact`` picks on a CPU where it is
installed) and on PyTorch; times are given as ratios to the first. For each detector: seconds
per image, recall of identifying strings at least 8 px high (a string counts when every one of
its ink pixels lies in a detected box, padded as ``deid redact`` pads it:
``text.blank.padded_box``, after fitting the boxes that lie on a plain background to their ink as
it does: ``text.fit``; the same rules for every detector, not timed), and the share of the
blanked area that is not text. The true string boxes, fitted and padded the same way, give the
least share of blanked area outside text that a detector's boxes can reach: the margin alone.

    python benchmarks/bench_text.py [--model runs/text/model.safetensors] [--n 10] [--threads 2]
    python benchmarks/bench_text.py --seed 4000000 --n 20 --sizes 512 --only-ours   # another held-out set
    python benchmarks/bench_text.py --no-fit     # boxes with the full margin everywhere (deid redact --pad)
    python benchmarks/bench_text.py --no-follow  # our boxes as the network found them (not followed)

RapidOCR (``pip install rapidocr-onnxruntime``) and Tesseract (``pytesseract`` + Debian
``tesseract-ocr``) are run when installed and reported as missing otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from deephealth_deid.data.synth_text import SynthTextGenerator, ink_mask, to_image
from deephealth_deid.text.blank import padded_box
from deephealth_deid.text.fit import fit_regions
from deephealth_deid.text.follow import follow_regions
from deephealth_deid.text.pipeline import display_frame
from deephealth_deid.text.regions import Region

Regions = list[Region]


def score(sample: Any, regions: Regions, shape: tuple[int, int]) -> tuple[int, int, float]:
    """(identifying strings >= 8 px found whole, how many there are, blanked area outside text)."""
    covered = np.zeros(shape, bool)
    for r in regions:
        x0, y0, x1, y1 = padded_box(r, *shape)  # as deid redact pads a region
        covered[y0:y1, x0:x1] = True
    found = total = 0
    for k, box in enumerate(sample.boxes, start=1):
        if box.category != "identifying" or box.height_px < 8:
            continue
        total += 1
        ink = sample.instance == k
        found += bool(ink.any() and covered[ink].all())
    text = np.zeros(shape, bool)
    for b in sample.boxes:
        x0, y0, x1, y1 = b.box
        text[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = True
    text |= ink_mask(sample)
    outside = float((covered & ~text).sum() / max(covered.sum(), 1))
    return found, total, outside


def fitted(regions: Regions, stored: np.ndarray | None) -> Regions:
    """``regions`` fitted to their ink on the frame's stored values, as deid redact does (None: not)."""
    return regions if stored is None else fit_regions(regions, stored)


def true_regions(sample: Any) -> Regions:
    """Every string's own box, its line thickness its shorter side: a perfect detector's regions."""
    return [Region(0, *b.box) for b in sample.boxes]


def ours(
    model: str | None,
    engine: str,
    threads: int,
    threshold: float | None = None,
    grow_threshold: float | None = None,
) -> Callable[[np.ndarray], Regions] | None:
    from deephealth_deid.engines import get_engine
    from deephealth_deid.errors import EngineUnavailableError
    from deephealth_deid.text.detector import load_text_detector

    try:
        get_engine(engine, device="cpu").set_threads(threads)
    except EngineUnavailableError:
        return None
    given = {"threshold": threshold, "grow_threshold": grow_threshold}
    options = {k: v for k, v in given.items() if v is not None}
    det = load_text_detector(model, engine=engine, device="cpu", **options)
    return det.detect


def rapidocr() -> Callable[[np.ndarray], Regions] | None:
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        return None
    engine = RapidOCR()

    def detect(frame: np.ndarray) -> Regions:
        result, _ = engine(frame, use_det=True, use_cls=False, use_rec=False)
        out = []
        for quad in result or []:
            q = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
            lo, hi = np.maximum(q.min(axis=0), 0), q.max(axis=0)
            out.append(Region(0, int(lo[0]), int(lo[1]), int(hi[0]) + 1, int(hi[1]) + 1, source="ocr"))
        return out

    return detect


def tesseract() -> Callable[[np.ndarray], Regions] | None:
    from deephealth_deid.text.ocr import TesseractOcr

    if not TesseractOcr.is_available():
        return None
    ocr = TesseractOcr()
    return lambda frame: [Region(0, *box, source="ocr") for box, _text, _conf in ocr.find(frame)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="text model file (default: the shipped one)")
    parser.add_argument(
        "--threshold", type=float, help="text probability threshold (default: the model file's, else 0.5)"
    )
    parser.add_argument(
        "--grow-threshold",
        type=float,
        help="probability text blobs grow to (default: the model file's, else none)",
    )
    parser.add_argument("--n", type=int, default=10, help="images per size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=3_000_000, help="generator seed of the held-out images")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048], help="image sides")
    parser.add_argument("--only-ours", action="store_true", help="skip RapidOCR and Tesseract")
    parser.add_argument("--no-fit", action="store_true", help="do not fit boxes to their ink")
    parser.add_argument(
        "--no-follow", action="store_true", help="do not follow our boxes along their lines (text.follow)"
    )
    args = parser.parse_args(argv)
    detectors = {
        f"ours, {engine}": ours(args.model, engine, args.threads, args.threshold, args.grow_threshold)
        for engine in ("onnxruntime", "torch")
    }
    if not args.only_ours:
        detectors |= {"rapidocr-det": rapidocr(), "tesseract": tesseract()}
    for size in args.sizes:
        gen = SynthTextGenerator(seed=args.seed, size_range=(size, size), fonts="heldout")
        samples = [gen.sample(i) for i in range(args.n)]
        images = [to_image(s) for s in samples]
        frames = [display_frame(img, 0) for img in images]
        # What deid redact blanks: boxes on a plain background fitted to their stored values.
        stored = [None if args.no_fit else img.frames[0] for img in images]
        floor = np.mean(
            [
                score(s, fitted(true_regions(s), v), s.instance.shape)[2]
                for s, v in zip(samples, stored, strict=True)
            ]
        )
        print(
            f"{size}x{size} the true string boxes, {'padded' if args.no_fit else 'fitted and padded'} as "
            f"deid redact does: blanked area "
            f"outside text {floor:.1%} (the least any detector's boxes can reach)"
        )
        base = None
        for name, det in detectors.items():
            if det is None:
                print(f"{size}x{size} {name:>17}: not installed")
                continue
            det(frames[0])  # warm-up (model load, first allocation)
            found = total = 0
            outside, seconds = [], 0.0
            for s, f, v, img in zip(samples, frames, stored, images, strict=True):
                t0 = time.perf_counter()
                regions = det(f)
                if not args.no_follow:  # as deid redact does (it changes the network's regions only)
                    regions = follow_regions(regions, img.frames[0])
                seconds += time.perf_counter() - t0
                a, b, c = score(s, fitted(regions, v), f.shape[:2])
                found, total = found + a, total + b
                outside.append(c)
            per = seconds / len(frames)
            base = per if base is None else base
            print(
                f"{size}x{size} {name:>17}: {per:.2f} s/image ({per / base:.2f}x ours), recall of "
                f"identifying strings >= 8 px {found}/{total} = {found / max(total, 1):.3f}, "
                f"blanked area outside text {np.mean(outside):.1%}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
