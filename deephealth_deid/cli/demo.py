"""``deid demo [OUT_DIR]``: deface the built-in example head and write every output."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from ._common import ENGINE_CHOICES, make_parser, run

log = logging.getLogger("deephealth_deid.cli")

#: The example: a T1-like synthetic head (pydeface mean-head anatomy), whole face in view, 1.5 mm.
EXAMPLE = {"seed": 20261127, "index": 0, "spacing_mm": 1.5, "shape": (128, 160, 160)}


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "demo",
        "Write the built-in example head (a synthetic T1 head with every facial feature in view) to OUT_DIR "
        "as NIfTI with its label map, deface it with the shipped model, and write the defaced head, the "
        "removal mask, a QC picture and the QC record.",
    )
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=Path("deid_demo"), help="default: ./deid_demo"
    )
    parser.add_argument("--engine", choices=ENGINE_CHOICES, default="auto", help="default: auto")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("-f", "--force", action="store_true", help="replace files in OUT_DIR")
    return parser


def example_head() -> tuple:
    """The example head and its labels (a fixed sample of the synthetic generator)."""
    from ..data.synth_heads import SynthHeadGenerator

    gen = SynthHeadGenerator(
        seed=EXAMPLE["seed"],
        spacing_mm=EXAMPLE["spacing_mm"],
        shape=EXAMPLE["shape"],
        random_orientation=False,
        rotation_deg=0,
        contrasts={"t1": 1.0},
        crops={"none": 1.0},
        thick_slice_probability=0.0,
        templates=("pydeface_mean",),
    )
    return gen.sample(EXAMPLE["index"])


def _demo(args: argparse.Namespace) -> int:
    from ..deface import deface_file
    from ..io import save_volume
    from ..io._files import atomic_file, check_output

    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "head": out / "head.nii.gz",
        "labels": out / "head_labels.nii.gz",
        "defaced": out / "head_defaced.nii.gz",
        "mask": out / "head_mask.nii.gz",
        "qc": out / "qc.png",
        "record": out / "qc.json",
    }
    for p in paths.values():
        check_output(p, overwrite=args.force)
    image, labels = example_head()
    save_volume(image, paths["head"], overwrite=args.force)
    save_volume(labels, paths["labels"], overwrite=args.force)
    result = deface_file(
        paths["head"],
        paths["defaced"],
        save_mask=paths["mask"],
        qc=paths["qc"],
        overwrite=args.force,
        engine=args.engine,
        device=args.device,
    )
    qc = result.qc
    record = {"voxels": qc.voxels, "expected": qc.expected, "flags": qc.flags, "ok": qc.ok}
    with atomic_file(paths["record"]) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    for name, p in paths.items():
        log.info("%-8s %s", name, p)
    flags = "; ".join(qc.flags) or "none"
    print(f"defaced the example head into {paths['defaced']}; QC picture {paths['qc']}; flags: {flags}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deid demo``; returns the exit code."""
    return run(build_parser(), argv, _demo)
