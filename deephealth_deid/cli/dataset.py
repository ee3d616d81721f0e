"""``deid dataset``: build, check or describe DeepHealth YAML datasets.

Usage::

    deid dataset build ROOT OUT.yaml [--layout bids|flat|auto] [--label-suffix _dseg]
                       [--image-suffix _T1w] [--image-pattern P] [--label-pattern P]
                       [--subject-regex RE] [--split 0.7 0.15 0.15] [--seed 0]
                       [--name NAME] [--description TEXT] [--allow-unlabelled] [--force]
    deid dataset check DATA.yaml
    deid dataset info DATA.yaml

Each subcommand is added by one ``_add_*`` function listed in ``_SUBCOMMANDS``;
a new one (e.g. ``synth``) is one more function there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ._common import at_least, make_parser, millimetres, run

__all__ = ["main"]

_DESCRIPTION = "Build, check or describe DeepHealth YAML datasets (the format ECVL's DLDataset reads)."


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    """``-q`` / ``-v`` after the subcommand too (``deid dataset build -v ...``)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="print errors only"
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="print debugging messages"
    )


# --------------------------------------------------------------------------- build


def _add_build(sub: Any) -> None:
    p = sub.add_parser(
        "build",
        help="make a dataset YAML from a BIDS or flat folder, split by subject",
        description=(
            "Find images and label maps under ROOT (only file names are read) and write a DeepHealth\n"
            "dataset YAML split by subject: all sessions of a subject land in the same split, and the\n"
            "split depends only on the subjects, --split and --seed.\n\n"
            "  BIDS: sub-*/[ses-*/]anat/*_T1w.nii[.gz], with *_dseg.nii[.gz] beside it or under\n"
            "        derivatives/*/ at the same place\n"
            "  flat: files matched by --image-pattern and --label-pattern, paired by their {id} part"
        ),
        epilog=(
            "examples:\n"
            "  deid dataset build /data/bids /data/bids/data.yaml\n"
            "  deid dataset build /data/oasis oasis.yaml --image-pattern '{id}_t1.nii.gz' \\\n"
            "      --label-pattern '{id}_seg.nii.gz' --subject-regex 'OAS1_[0-9]+'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_verbosity(p)
    p.add_argument("root", metavar="ROOT", help="the folder holding the images")
    p.add_argument(
        "out", metavar="OUT.yaml", help="the dataset file to write (paths in it are relative to it)"
    )
    p.add_argument(
        "--layout",
        choices=("bids", "flat", "auto"),
        default="auto",
        help="folder layout (default: auto: flat when a pattern or --subject-regex is given, "
        "else bids when ROOT has sub-* folders, else flat)",
    )
    bids = p.add_argument_group("BIDS layout")
    bids.add_argument("--image-suffix", metavar="SUFFIX", help="suffix of the images (default: _T1w)")
    bids.add_argument(
        "--label-suffix",
        metavar="SUFFIX",
        help="suffix of the label maps (default: _dseg; _space-*/_desc-* entities before it are allowed)",
    )
    flat = p.add_argument_group("flat layout")
    flat.add_argument(
        "--image-pattern",
        metavar="PATTERN",
        help="images, relative to ROOT, with {id} where the case id is, e.g. '{id}_t1.nii.gz' or "
        "'images/{id}.nii.gz'; *, ? and **/ as in globs (default: '*_image.nii.gz', the * being the id)",
    )
    flat.add_argument(
        "--label-pattern",
        metavar="PATTERN",
        help="label maps, with the same {id} (default: '*_label.nii.gz')",
    )
    flat.add_argument(
        "--subject-regex",
        metavar="RE",
        help="regular expression that finds the subject in a case id (group 'subject', else group 1, "
        "else the whole match), e.g. 'OAS1_[0-9]+' (default: the id is the subject)",
    )
    split = p.add_argument_group("split")
    split.add_argument(
        "--split",
        nargs=3,
        type=float,
        metavar=("TRAIN", "VAL", "TEST"),
        default=(0.7, 0.15, 0.15),
        help="fractions of subjects for training, validation and test, adding up to 1 "
        "(default: 0.7 0.15 0.15)",
    )
    split.add_argument("--seed", type=int, default=0, help="seed of the subject shuffle (default: 0)")
    p.add_argument("--name", help="the dataset's name (default: ROOT's folder name)")
    p.add_argument("--description", help="the dataset's description (default: how it was split)")
    p.add_argument(
        "--allow-unlabelled",
        action="store_true",
        help="leave out images without a label map (listed in a warning) instead of failing",
    )
    p.add_argument("-f", "--force", action="store_true", help="replace OUT.yaml if it exists")
    p.set_defaults(command=_build, prog=p.prog)


def _build(args: argparse.Namespace) -> int:
    from ..data import build_dataset, save_dataset
    from ..io._files import check_output

    check_output(args.out, overwrite=args.force)  # fail before listing a big folder
    ds = build_dataset(
        args.root,
        layout=args.layout,
        name=args.name,
        description=args.description,
        image_suffix=args.image_suffix,
        label_suffix=args.label_suffix,
        image_pattern=args.image_pattern,
        label_pattern=args.label_pattern,
        subject_regex=args.subject_regex,
        fractions=args.split,
        seed=args.seed,
        require_labels=not args.allow_unlabelled,
    )
    out = save_dataset(ds, args.out, overwrite=args.force)
    c = ds.counts()
    splits = ", ".join(f"{name} {c[name]}" for name in ("training", "validation", "test"))
    print(f"wrote {out}: {c['total']} images: {splits}")
    return 0


# --------------------------------------------------------------------------- check


def _add_check(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="validate a dataset YAML and list its missing files",
        description=(
            "Check a dataset YAML: every key, the split indices, and that every image and label file "
            "exists. Missing files are listed on standard output, one per line; the exit code is 1 "
            "when any is missing or the file is malformed."
        ),
    )
    _add_verbosity(p)
    p.add_argument("dataset", metavar="DATA.yaml", help="the dataset file")
    p.set_defaults(command=_check, prog=p.prog)


def _check(args: argparse.Namespace) -> int:
    from ..data import load_dataset, missing_files

    ds = load_dataset(args.dataset)
    missing = missing_files(ds)
    total = len({f for s in ds.samples for f in s.files()})
    if missing:
        for path in missing:
            print(path)
        folders = sum(path.is_dir() for path in missing)
        print(
            f"deid dataset check: error: {args.dataset}: {len(missing)} of {total} files are missing "
            + (f"or not files ({folders} folders; listed above)" if folders else "(listed above)"),
            file=sys.stderr,
        )
        return 1
    c = ds.counts()
    empty = [name for name in ("training", "validation", "test") if c[name] == 0]
    note = f"; empty split: {', '.join(empty)}" if empty else ""
    unassigned = f"; {c['unassigned']} images in no split" if c["unassigned"] else ""
    print(f"{args.dataset}: OK: {c['total']} images, all {total} files present{note}{unassigned}")
    return 0


# --------------------------------------------------------------------------- info


def _add_info(sub: Any) -> None:
    p = sub.add_parser(
        "info",
        help="describe a dataset YAML: task and number of images per split",
        description="Print a dataset's name, task, classes and number of images per split "
        "(files are not checked).",
    )
    _add_verbosity(p)
    p.add_argument("dataset", metavar="DATA.yaml", help="the dataset file")
    p.set_defaults(command=_info, prog=p.prog)


def _info(args: argparse.Namespace) -> int:
    from ..data import load_dataset

    ds = load_dataset(args.dataset)
    c = ds.counts()
    labelled = sum(s.labelled for s in ds.samples)
    rows = [
        ("name", ds.name),
        ("description", ds.description),
        ("task", ds.task),
    ]
    if ds.classes:
        rows.append(("classes", ", ".join(ds.classes)))
    rows += [
        ("images", f"{c['total']} ({labelled} labelled)"),
        ("training", str(c["training"])),
        ("validation", str(c["validation"])),
        ("test", str(c["test"])),
    ]
    if c["unassigned"]:
        rows.append(("in no split", str(c["unassigned"])))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key + ':':<{width + 1}} {value}")
    return 0


def _add_synth(sub: Any) -> None:
    p = sub.add_parser(
        "synth",
        help="write synthetic labelled heads and their dataset YAML",
        description="Write N synthetic heads (NIfTI images and label maps: 1 eyes, 2 nose, 3 mouth, 4 ears) "
        "drawn by the seeded generator, and a DeepHealth dataset YAML listing them.",
    )
    _add_verbosity(p)
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder for images/, labels/ and dataset.yaml")
    p.add_argument("-n", type=at_least(1), default=20, help="number of heads (default 20)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--spacing", type=_positive_mm, default=2.0, help="voxel size in mm (default 2)")
    p.add_argument(
        "--shape", type=at_least(8), nargs=3, default=(128, 128, 128), metavar=("X", "Y", "Z"), help="voxels"
    )
    p.add_argument("--all-labels", action="store_true", help="keep tissue labels, not only the features")
    p.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=0.1,
        help="share of heads for validation (default 0.1)",
    )
    p.add_argument("-f", "--force", action="store_true", help="replace an existing dataset")
    p.set_defaults(command=_synth, prog=p.prog)


def _positive_mm(text: str) -> float:
    value = millimetres()(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 mm, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def _synth(args: argparse.Namespace) -> int:
    from ..data.synth_heads import write_synth_dataset

    path = write_synth_dataset(
        args.out_dir,
        n=args.n,
        seed=args.seed,
        spacing_mm=args.spacing,
        shape=tuple(args.shape),
        target_only=not args.all_labels,
        validation_fraction=args.validation_fraction,
        overwrite=args.force,
    )
    print(path)
    return 0


# --------------------------------------------------------------------------- main

#: One function per subcommand; each adds its parser and sets ``command``.
_SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (_add_build, _add_check, _add_info, _add_synth)


def _parser() -> argparse.ArgumentParser:
    parser = make_parser("dataset", _DESCRIPTION)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", dest="subcommand", required=True)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``deid dataset`` with ``argv`` (the arguments after ``dataset``) and return the exit code.

    Exit codes: 0 success, 1 an error (message on standard error) or missing
    files (``check``), 2 bad usage.
    """
    parser = _parser()
    return run(parser, None if argv is None else list(argv), lambda args: args.command(args))
