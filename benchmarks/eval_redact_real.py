"""Redaction of real images from pydicom's test data, checked by OCR before and after.

For each file: redact it with the shipped (or given) text model, read the input and the output
with RapidOCR, and count the strings the policy calls identifying (a match with the file's own
header values, or a date/time/ID pattern) that OCR reads in the input and still reads in the
output (any such string in the output counts, whole or a fragment). Also
checks that pixels outside the blanked boxes are identical, and that a text-free image comes
out bit-identical. Strings are never printed (they can be patient data): only counts and the
reasons (attribute or pattern names).

Then false positives on real anatomy without text: 60 slices of the real head
``tests/data/heads/chris_t1.nii.gz`` (3 orientations x 4 positions x 64-512 px, none of
them seen in training: the text generator's head panels come from other heads), and
pydicom's CT_small: how many get any region, and the mean share of each image blanked.

    python benchmarks/eval_redact_real.py [--model runs/text/model.safetensors]
    python benchmarks/eval_redact_real.py --other presidio=OUT   # OUT from run_presidio.py

Needs ``pydicom-data`` and ``rapidocr-onnxruntime``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from real_test_files import FILES, TEXT_FREE

import deephealth_deid as dd
from deephealth_deid.io.dicom_image import header_values
from deephealth_deid.text.evaluate import anatomy_frames, blanked_share, identifying_read
from deephealth_deid.text.ocr import get_ocr
from deephealth_deid.text.pipeline import display_frame
from deephealth_deid.text.policy import IDENTIFYING_KEYWORDS, HeaderTerms, Policy

HEAD = Path(__file__).resolve().parent.parent / "tests" / "data" / "heads" / "chris_t1.nii.gz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="text model file (default: the shipped one)")
    parser.add_argument(
        "--other",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also check another tool's outputs of the same files, written under DIR by their names "
        "(with DIR/times.json: seconds or error per file; see run_presidio.py); repeatable",
    )
    args = parser.parse_args(argv)
    others = []
    for item in args.other:
        label, sep, folder = item.partition("=")
        if not sep or not Path(folder).is_dir():
            parser.error(f"--other {item!r}: expected NAME=DIR with an existing folder")
        others.append((label, Path(folder)))
    from pydicom.data import get_testdata_file

    ocr = get_ocr("rapidocr")
    policy = Policy()
    ok = True
    dd.redact_text(dd.load_image(get_testdata_file(TEXT_FREE)), model=args.model, ocr="none")  # load once
    for name in FILES:
        path = get_testdata_file(name)
        if path is None:
            print(f"{name}: not in pydicom's test data here")
            continue
        image = dd.load_image(path)
        t0 = time.perf_counter()
        res = dd.redact_text(image, model=args.model, ocr="none")
        seconds = time.perf_counter() - t0
        terms = HeaderTerms.from_header(header_values(image, IDENTIFYING_KEYWORDS))
        before = after = 0
        left: list[str] = []
        for f in res.qc.distinct_frames[:3]:
            before += len(identifying_read(ocr, display_frame(image, f), terms, policy))
            remaining = identifying_read(ocr, display_frame(res.image, f), terms, policy)
            after += len(remaining)
            left += remaining
        outside = ~res.mask
        same = bool(np.array_equal(res.image.frames[outside], image.frames[outside]))
        ok &= after == 0 and same
        print(
            f"{name:>32}: {image.photometric:>13} {image.frames.shape}, regions {res.qc.detected}, "
            f"blanked {res.qc.blanked}; identifying strings read by OCR before {before}, still read "
            f"after {after} {sorted(set(left)) or ''}; pixels outside boxes identical: {same}; "
            f"share of the image blanked {res.mask.mean():.2%}; {seconds:.2f} s"
        )
    image = dd.load_image(get_testdata_file(TEXT_FREE))
    res = dd.redact_text(image, model=args.model, ocr="none")
    identical = res.image is image or np.array_equal(res.image.frames, image.frames)
    ok &= identical
    print(f"{TEXT_FREE:>32}: regions {res.qc.detected}; bit-identical: {identical}")

    from deephealth_deid.text.detector import load_text_detector

    detector = load_text_detector(args.model)
    slices = anatomy_frames(dd.load_volume(HEAD))
    hit, share = blanked_share(detector, slices)
    print(
        f"{'chris_t1 slices (no text)':>32}: {hit} of {len(slices)} with a region; "
        f"mean share blanked {share:.1%}"
    )
    ct = display_frame(dd.load_image(get_testdata_file("CT_small.dcm")), 0)
    hit, share = blanked_share(detector, [ct])
    print(f"{'CT_small.dcm (no text)':>32}: regions {hit}; share blanked {share:.1%}")
    for label, folder in others:
        _check_other(label, folder, ocr, policy)
    return 0 if ok else 1


def _check_other(label: str, folder: Path, ocr: object, policy: Policy) -> None:
    """Another tool's outputs: identifying strings OCR still reads, the share of pixels changed."""
    import json

    from pydicom.data import get_testdata_file

    times_file = folder / "times.json"
    times = json.loads(times_file.read_text(encoding="utf-8")) if times_file.is_file() else {}
    print(f"{label}:")
    for name in (*FILES, TEXT_FREE):
        done = times.get(name, {})
        if not (folder / name).is_file():
            print(f"{name:>32}: no output ({done.get('error', 'not found')})")
            continue
        image, other = dd.load_image(get_testdata_file(name)), dd.load_image(folder / name)
        frames = min(3, image.frames.shape[0], other.frames.shape[0])
        terms = HeaderTerms.from_header(header_values(image, IDENTIFYING_KEYWORDS))
        after = sum(len(identifying_read(ocr, display_frame(other, f), terms, policy)) for f in range(frames))
        same_shape = other.frames.shape == image.frames.shape
        changed = (
            (other.frames != image.frames).reshape(*image.frames.shape[:3], -1).any(-1)
            if same_shape
            else None
        )
        print(
            f"{name:>32}: identifying strings still read after {after}; "
            + (
                f"share of the image changed {changed.mean():.2%}"
                if changed is not None
                else "frames reshaped"
            )
            + (f"; {done['seconds']} s" if "seconds" in done else "")
        )


if __name__ == "__main__":
    sys.exit(main())
