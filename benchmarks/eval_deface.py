"""Evaluate a defacing model: Dice on held-out synthetic heads, landmarks on a real head, speed.

Run on demand (not in CI):

    python benchmarks/eval_deface.py [--model PATH] [--synthetic 16] [--head tests/data/heads/chris_t1.nii.gz]

1. Dice per feature of the network's labels on the grid, on held-out synthetic
   heads (generator seed 2000000: never used in training, which uses seed 0,
   nor in validation, 1000000). Then ``dd.deface`` on the same heads, checked
   on their native voxels against their full label maps
   (:func:`~deephealth_deid.deface.evaluate.check_labels`): the share of each
   feature's target changed, voxels within 6 mm of the brain changed, the
   eyeballs kept; and whether each head failing a criterion was flagged by QC.
   ``--brain-mask`` gives each head its own brain label as its brain mask.
2. For the real head and each variant (native, 1x1x5 mm, 7 mm axial, permuted
   and flipped axes, head tilted 15 degrees): the landmark criteria of
   :mod:`deephealth_deid.deface.evaluate`; then the same for five remapped
   tissue contrasts of the native head (``CONTRAST_VARIANTS``; reported, not
   part of the exit code; ``--no-contrasts`` skips them).
3. Time of ``deface`` on the native head against the time to load and save it,
   measured in this process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import deephealth_deid as dd
from deephealth_deid.data.synth_heads import SynthHeadGenerator
from deephealth_deid.deface.evaluate import (
    CONTRAST_VARIANTS,
    VARIANTS,
    check_labels,
    check_landmarks,
    load_landmarks,
    make_variant,
)
from deephealth_deid.deface.model import load_predictor
from deephealth_deid.train.config import GridConfig, TrainConfig
from deephealth_deid.train.loop import dice_per_class
from deephealth_deid.train.samples import DefaceSamples

ROOT = Path(__file__).resolve().parent.parent


def synthetic_dice(model: str | None, n: int) -> dict[str, float]:
    predictor, spacing, shape = load_predictor(model)
    # input_channels=1: on_grid gives the conformed image, and the predictor adds what its model needs.
    cfg = TrainConfig(grid=GridConfig(spacing_mm=spacing, shape=shape), input_channels=1)
    samples = DefaceSamples(cfg)
    gen = SynthHeadGenerator(seed=2_000_000)
    scores: dict[str, list[float]] = {k: [] for k in ("eyes", "nose", "mouth", "ears")}
    for i in range(n):
        x, y = samples.on_grid(*gen.sample(i))
        pred = predictor(x[0]).argmax(axis=0)
        for k, v in dice_per_class(pred, y).items():
            if not np.isnan(v):
                scores[k].append(v)
    return {k: float(np.mean(v)) if v else float("nan") for k, v in scores.items()}


def synthetic_pipeline(model: str | None, n: int, brain_mask: bool = False) -> bool:
    """``dd.deface`` on the held-out heads, checked voxel by voxel; False if a failing head is not flagged.

    With ``brain_mask``, each head's own brain label is given as its brain mask.
    """
    from deephealth_deid.data.phantom import LABELS

    gen = SynthHeadGenerator(seed=2_000_000)
    changed: dict[str, list[float]] = {}
    failed = silent = 0
    for i in range(n):
        image, labels = gen.sample(i)
        mask = labels.with_array((labels.array == LABELS["brain"]).astype(np.uint8)) if brain_mask else None
        out = dd.deface(image, model=model, brain_mask=mask)
        rep = check_labels(image, out.volume, labels)
        for k, v in rep.changed_feature.items():
            changed.setdefault(k, []).append(v)
        failed += not rep.ok
        silent += not rep.ok and not out.qc.flags
        share = " ".join(f"{k}={v:.0%}" for k, v in rep.changed_feature.items())
        print(
            f"  head {i}: {'PASS' if rep.ok else 'FAIL'} target changed: {share}; near-brain voxels "
            f"changed: {rep.changed_near_brain}; eyeballs kept: {rep.unchanged_eyeballs:.0%}; "
            f"flags: {len(out.qc.flags)}"
        )
        for f in rep.failures:
            print(f"{'':>11}- {f}")
    print(
        f"held-out synthetic heads through dd.deface (n={n}): target changed, mean "
        + ", ".join(f"{k} {np.mean(v):.0%} (min {np.min(v):.0%})" for k, v in changed.items())
        + f"; {failed} heads fail a criterion, {silent} of them without a QC flag"
    )
    return silent == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="model file (default: the shipped one)")
    parser.add_argument("--synthetic", type=int, default=16, help="held-out synthetic heads (0 to skip)")
    parser.add_argument(
        "--brain-mask",
        action="store_true",
        help="give dd.deface each synthetic head's own brain label as its brain mask",
    )
    parser.add_argument("--head", type=Path, default=ROOT / "tests/data/heads/chris_t1.nii.gz")
    parser.add_argument("--landmarks", type=Path, default=ROOT / "tests/data/heads/chris_t1_landmarks.json")
    parser.add_argument(
        "--no-contrasts",
        dest="contrasts",
        action="store_false",
        help="skip the contrast variants (the head's intensities remapped; not part of the exit code)",
    )
    args = parser.parse_args(argv)

    synthetic_ok = True
    if args.synthetic:
        d = synthetic_dice(args.model, args.synthetic)
        print(
            f"held-out synthetic heads (n={args.synthetic}): Dice "
            + ", ".join(f"{k} {v:.3f}" for k, v in d.items())
        )
        synthetic_ok = synthetic_pipeline(args.model, args.synthetic, args.brain_mask)

    vol = dd.load_volume(args.head)
    marks, thr = load_landmarks(args.landmarks)
    all_ok = synthetic_ok
    contrasts_ok = 0
    for name in VARIANTS + (CONTRAST_VARIANTS if args.contrasts else ()):
        var, lms = make_variant(vol, marks, name)
        t0 = time.perf_counter()
        out = dd.deface(var, model=args.model)
        dt = time.perf_counter() - t0
        rep = check_landmarks(var, out.volume, lms, threshold=thr)
        if name in CONTRAST_VARIANTS:
            contrasts_ok += rep.ok
        else:
            all_ok &= rep.ok
        surface = " ".join(f"{k}={v:.0%}" for k, v in rep.changed_near_surface.items())
        eyes = " ".join(f"{k}={v:.0%}" for k, v in rep.unchanged_near_eyeball.items())
        brain = sum(rep.changed_near_brain.values())
        voxel_ml = float(np.prod(var.spacing)) / 1000.0
        counts = np.bincount(out.mask.array.ravel(), minlength=5)[1:5]
        features = ("eyes", "nose", "mouth", "ears")
        removed = " ".join(f"{k}={c * voxel_ml:.0f}" for k, c in zip(features, counts, strict=True))
        print(
            f"{name:>17}: {'PASS' if rep.ok else 'FAIL'} ({dt:.1f} s) surface changed: {surface}; "
            f"eyeballs kept: {eyes}; brain-probe voxels changed: {brain}; removed ml: {removed}; "
            f"flags: {out.qc.flags}"
        )
        for f in rep.failures:
            print(f"{'':>19}- {f}")

    if args.contrasts:
        print(
            f"contrast variants: {contrasts_ok} of {len(CONTRAST_VARIANTS)} pass (not part of the exit code)"
        )

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        dd.save_volume(dd.load_volume(args.head), Path(tmp) / "copy.nii.gz")
        t_io = time.perf_counter() - t0
        t0 = time.perf_counter()
        dd.deface_file(args.head, Path(tmp) / "defaced.nii.gz", model=args.model)
        t_all = time.perf_counter() - t0
    print(f"deface_file {t_all:.2f} s; load+save alone {t_io:.2f} s; ratio {t_all / t_io:.1f}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
