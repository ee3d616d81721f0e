"""Build a DeepHealth dataset from a folder of images and label maps (ADNI, OASIS, BIDS).

Two layouts are understood, and only file names are read (no image is opened):

* **BIDS**: ``sub-*/[ses-*/]anat/*_T1w.nii.gz`` (or ``.nii``), each with a label
  map beside it named by a suffix: ``sub-01_ses-1_T1w.nii.gz`` goes with
  ``sub-01_ses-1_dseg.nii.gz``; ``_desc-*`` and a native ``_space-`` entity are
  allowed before the suffix (``sub-01_desc-face_dseg.nii.gz``), and label maps
  are also looked for under ``derivatives/*/`` at the same relative place. The
  subject is the ``sub-*`` folder.
* **flat**: image and label files matched by two patterns relative to the
  root, with ``{id}`` marking the part that pairs them (``{id}_t1.nii.gz`` with
  ``{id}_seg.nii.gz``, or ``images/{id}.nii.gz`` with ``labels/{id}.nii.gz``).
  ``*``, ``?``, ``[...]`` and ``**/`` work as in globs. The subject is the id,
  or what ``subject_regex`` finds in it, so several sessions of one subject
  (OASIS ``OAS1_0001_MR1`` and ``OAS1_0001_MR2``) stay together.

The split is made **by subject**, never by image: every session of a subject
lands in the same split. It depends only on the sorted subject names, the
fractions and the seed, never on the order the file system lists files in.

Example:
    >>> from deephealth_deid.data import build_dataset, save_dataset
    >>> ds = build_dataset("/data/oasis", layout="flat", image_pattern="{id}_t1.nii.gz",
    ...                    label_pattern="{id}_seg.nii.gz", subject_regex=r"OAS1_\\d+")  # doctest: +SKIP
    >>> save_dataset(ds, "/data/oasis/data.yaml")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import DatasetError, InputNotFoundError
from .dataset import SPLIT_NAMES, Dataset, Sample, Split, _absolute, _listing

__all__ = [
    "DEFAULT_FRACTIONS",
    "Case",
    "detect_layout",
    "find_bids_cases",
    "find_flat_cases",
    "split_subjects",
    "dataset_from_cases",
    "build_dataset",
]

log = logging.getLogger(__name__)

#: Default fractions of subjects for training, validation and test.
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)
DEFAULT_IMAGE_SUFFIX = "_T1w"
DEFAULT_LABEL_SUFFIX = "_dseg"
DEFAULT_IMAGE_PATTERN = "*_image.nii.gz"
DEFAULT_LABEL_PATTERN = "*_label.nii.gz"

Layout = Literal["bids", "flat", "auto"]
#: ``space-`` values of a label map that is in the image's own space (besides the image suffix, e.g. ``T1w``).
_NATIVE_SPACES = ("orig", "native", "individual")


@dataclass(frozen=True)
class Case:
    """One image found in a folder, its label map (or None) and its subject.

    Attributes:
        subject: The subject id; the split keeps all cases of a subject together.
        image: The image file (absolute).
        label: The label map (absolute), or None when none was found.
    """

    subject: str
    image: Path
    label: Path | None = None


def _check_root(root: str | os.PathLike[str]) -> Path:
    p = _absolute(root)
    if not p.exists():
        raise InputNotFoundError(f"{root}: no such folder; check the path")
    if not p.is_dir():
        raise DatasetError(f"{root}: not a folder; give the folder that holds the images")
    return p


def _visible(name: str) -> bool:
    return not name.startswith(".")


def detect_layout(root: str | os.PathLike[str]) -> Literal["bids", "flat"]:
    """``'bids'`` when ``root`` has ``sub-*`` folders, else ``'flat'``."""
    p = _check_root(root)
    with os.scandir(p) as it:
        for entry in it:
            if entry.name.startswith("sub-") and entry.is_dir():
                return "bids"
    return "flat"


# --------------------------------------------------------------------------- BIDS


def find_bids_cases(
    root: str | os.PathLike[str],
    *,
    image_suffix: str = DEFAULT_IMAGE_SUFFIX,
    label_suffix: str = DEFAULT_LABEL_SUFFIX,
    require_labels: bool = True,
) -> list[Case]:
    """Find ``sub-*/[ses-*/]anat/*{image_suffix}.nii[.gz]`` images and their label maps.

    For an image ``<prefix>_T1w.nii.gz`` the label map is, in this order of
    preference: ``<prefix>{label_suffix}.nii[.gz]`` beside it, the same with
    ``_desc-*`` and a native ``_space-`` (``orig``, ``native``, ``individual``
    or ``T1w``; never a template space such as MNI) before the suffix beside
    it, then both forms under ``derivatives/*/`` at the same relative folder. Several
    candidates at the same level are an error that names them; choose with a
    more specific suffix (e.g. ``_desc-face_dseg``).

    Args:
        root: The BIDS folder (the one holding ``sub-*``).
        image_suffix: The suffix naming the images (``_T1w``, ``_T2w``, ...).
        label_suffix: The suffix naming the label maps.
        require_labels: Raise if an image has no label map; when false, such
            images are left out with a warning that lists them.

    Returns:
        The cases, sorted by subject then image path.

    Raises:
        DatasetError: If no image is found, labels are missing and required, or
            a label map is ambiguous.
    """
    base = _check_root(root)
    for what, suffix in (("image_suffix", image_suffix), ("label_suffix", label_suffix)):
        if not suffix or "/" in suffix or os.sep in suffix:
            raise DatasetError(f"{what} {suffix!r}: give a file name suffix such as '_T1w' or '_dseg'")
    if image_suffix == label_suffix:
        raise DatasetError(f"the image and label suffixes are both {image_suffix!r}; they must differ")
    image_re = re.compile(rf"(?P<prefix>.+){re.escape(image_suffix)}\.nii(?:\.gz)?")
    derivatives = base / "derivatives"
    pipelines = (
        sorted(d for d in derivatives.iterdir() if d.is_dir() and _visible(d.name))
        if derivatives.is_dir()
        else []
    )
    listings: dict[Path, list[str]] = {}

    def listing(folder: Path) -> list[str]:
        if folder not in listings:
            try:
                listings[folder] = sorted(n for n in os.listdir(folder) if _visible(n))
            except OSError:  # missing or unreadable: no candidates there
                listings[folder] = []
        return listings[folder]

    cases: list[Case] = []
    unlabelled: list[Path] = []
    for sub in sorted(d for d in base.iterdir() if d.name.startswith("sub-") and d.is_dir()):
        anat_dirs = [sub / "anat"]
        anat_dirs += sorted(d / "anat" for d in sub.iterdir() if d.name.startswith("ses-") and d.is_dir())
        for anat in anat_dirs:
            for name in listing(anat):
                m = image_re.fullmatch(name)
                if m is None or (anat / name).is_dir():
                    continue
                image = anat / name
                rel = anat.relative_to(base)
                folders = [anat] + [d / rel for d in pipelines]
                label = _bids_label(image, m["prefix"], (image_suffix, label_suffix), folders, listing)
                if label is None:
                    unlabelled.append(image)
                else:
                    cases.append(Case(sub.name, image, label))
    if not cases and not unlabelled:
        raise DatasetError(
            f"{root}: no sub-*/[ses-*/]anat/*{image_suffix}.nii[.gz] images found; "
            "is this a BIDS folder? (for other layouts use the flat layout with image and label patterns)"
        )
    _handle_unlabelled(
        unlabelled,
        len(cases) + len(unlabelled),
        require_labels=require_labels,
        how=f"no label map named *{label_suffix}.nii[.gz] beside it or under derivatives/*/",
    )
    return sorted(cases, key=lambda c: (c.subject, str(c.image)))


def _bids_label(
    image: Path,
    prefix: str,
    suffixes: tuple[str, str],
    folders: Sequence[Path],
    listing: Callable[[Path], list[str]],
) -> Path | None:
    """The label map of ``image`` by the preference order of :func:`find_bids_cases`.

    ``folders`` is the image's folder, then the same place in each derivatives
    pipeline. Names are only listed; a broken symbolic link (a DataLad file not
    fetched yet) still counts, so ``deid dataset check`` can report it.
    """
    image_suffix, label_suffix = suffixes
    end = rf"{re.escape(label_suffix)}\.nii(?:\.gz)?"
    native = "|".join(re.escape(s) for s in (*_NATIVE_SPACES, image_suffix.lstrip("_")))
    exact = re.compile(rf"{re.escape(prefix)}{end}")
    entities = re.compile(rf"{re.escape(prefix)}(?:_space-(?:{native}))?(?:_desc-[A-Za-z0-9]+)?{end}")
    beside: tuple[list[Path], list[Path]] = ([], [])
    derived: tuple[list[Path], list[Path]] = ([], [])
    for i, folder in enumerate(folders):
        tier = beside if i == 0 else derived
        for n in listing(folder):
            if (folder / n).is_dir():
                continue
            if exact.fullmatch(n):
                tier[0].append(folder / n)
            elif entities.fullmatch(n):
                tier[1].append(folder / n)
    for found in (*beside, *derived):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise DatasetError(
                f"{image}: several label maps match it:\n{_listing(found)}\n"
                "choose one with a more specific label suffix (e.g. '_desc-face_dseg')"
            )
    return None


def _handle_unlabelled(unlabelled: list[Path], total: int, *, require_labels: bool, how: str) -> None:
    if not unlabelled:
        return
    if require_labels:
        raise DatasetError(
            f"{len(unlabelled)} of {total} images have {how}:\n{_listing(unlabelled)}\n"
            "add the label maps, fix the suffix or patterns, or leave these images out with "
            "require_labels=False (CLI: --allow-unlabelled)"
        )
    log.warning(
        "leaving out %d of %d images that have %s:\n%s", len(unlabelled), total, how, _listing(unlabelled)
    )
    if len(unlabelled) == total:
        raise DatasetError(
            f"none of the {total} images has a label map ({how}); nothing to build a dataset from"
        )


# --------------------------------------------------------------------------- flat


def _pattern_regex(pattern: str, what: str) -> re.Pattern[str]:
    """Translate a glob pattern with an ``{id}`` placeholder into a regex over POSIX relative paths.

    Without ``{id}``, a pattern's single ``*`` is the id.
    """
    if not pattern or pattern.startswith("/") or ".." in pattern.split("/"):
        raise DatasetError(
            f"{what} {pattern!r}: give a pattern relative to the root, such as '{{id}}_t1.nii.gz'"
        )
    if "{id}" not in pattern:
        if pattern.count("*") != 1:
            raise DatasetError(
                f"{what} {pattern!r}: mark the part that pairs images with labels with {{id}}, "
                "e.g. '{id}_t1.nii.gz'"
            )
        pattern = pattern.replace("*", "{id}")
    out: list[str] = []
    i = 0
    used_id = False
    while i < len(pattern):
        if pattern.startswith("{id}", i):
            out.append("(?P=id)" if used_id else "(?P<id>[^/]+?)")
            used_id = True
            i += 4
        elif pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    try:
        return re.compile("".join(out))
    except re.error as e:
        raise DatasetError(f"{what} {pattern!r}: not a valid pattern ({e})") from e


def _walk(base: Path, max_depth: int | None) -> list[str]:
    """POSIX paths relative to ``base`` of every visible file, at most ``max_depth`` folders deep."""
    out: list[str] = []
    for folder, dirs, files in os.walk(base):
        rel = Path(folder).relative_to(base)
        depth = len(rel.parts)
        dirs[:] = sorted(d for d in dirs if _visible(d)) if max_depth is None or depth < max_depth else []
        out += [(rel / f).as_posix() for f in files if _visible(f)]
    return sorted(out)


def _subject_regex(regex: str | re.Pattern[str] | None) -> re.Pattern[str] | None:
    if regex is None or isinstance(regex, re.Pattern):
        return regex
    try:
        return re.compile(regex)
    except re.error as e:
        raise DatasetError(f"subject regex {regex!r}: not a valid regular expression ({e})") from e


def _subject_of(case_id: str, rx: re.Pattern[str] | None) -> str | None:
    if rx is None:
        return case_id
    m = rx.search(case_id)
    if m is None:
        return None
    if "subject" in rx.groupindex:
        return m["subject"]
    return m[1] if rx.groups else m[0]


def find_flat_cases(
    root: str | os.PathLike[str],
    *,
    image_pattern: str = DEFAULT_IMAGE_PATTERN,
    label_pattern: str = DEFAULT_LABEL_PATTERN,
    subject_regex: str | re.Pattern[str] | None = None,
    require_labels: bool = True,
) -> list[Case]:
    """Find image and label files by two patterns and pair them by their ``{id}``.

    A file that matches both patterns counts as a label when an image that
    matches only the image pattern has its id (so ``{id}.nii.gz`` and
    ``{id}_seg.nii.gz`` work), else as an image.

    Args:
        root: The folder; patterns are relative to it.
        image_pattern: Pattern of the images, with ``{id}`` (or a single ``*``
            that is the id), e.g. ``'{id}_t1.nii.gz'`` or ``'images/{id}.nii.gz'``.
        label_pattern: Pattern of the label maps, with the same ``{id}``.
        subject_regex: Finds the subject in an id (``re.search``): the group
            named ``subject``, else group 1, else the whole match. Default: the
            id is the subject. E.g. ``r'OAS1_\\d+'`` puts ``OAS1_0001_MR1`` and
            ``OAS1_0001_MR2`` in subject ``OAS1_0001``.
        require_labels: Raise if an image has no label map; when false, such
            images are left out with a warning that lists them.

    Returns:
        The cases, sorted by subject then image path.

    Raises:
        DatasetError: If a pattern is malformed, nothing matches, an id has
            several images or labels, the subject regex does not match an id,
            or labels are missing and required.
    """
    base = _check_root(root)
    image_re = _pattern_regex(image_pattern, "image pattern")
    label_re = _pattern_regex(label_pattern, "label pattern")
    if image_re.pattern == label_re.pattern:
        raise DatasetError(f"the image and label patterns are the same ({image_pattern!r}); they must differ")
    rx = _subject_regex(subject_regex)

    def depth(pattern: str) -> int | None:
        return None if "**" in pattern else pattern.count("/")

    depths = [depth(image_pattern), depth(label_pattern)]
    max_depth = None if None in depths else max(d for d in depths if d is not None)

    image_only: dict[str, list[str]] = defaultdict(list)
    label_only: dict[str, list[str]] = defaultdict(list)
    both: list[tuple[str, str, str]] = []  # (rel, image id, label id)
    for rel in _walk(base, max_depth):
        mi, ml = image_re.fullmatch(rel), label_re.fullmatch(rel)
        if mi and ml:
            both.append((rel, mi["id"], ml["id"]))
        elif mi:
            image_only[mi["id"]].append(rel)
        elif ml:
            label_only[ml["id"]].append(rel)
    pure_image_ids = set(image_only)
    images, labels = image_only, label_only
    for rel, image_id, label_id in both:
        if label_id in pure_image_ids:
            labels[label_id].append(rel)
        else:
            images[image_id].append(rel)

    if not images:
        raise DatasetError(
            f"{root}: no files match the image pattern {image_pattern!r}; give the image and label patterns "
            "(e.g. --image-pattern '{id}_t1.nii.gz' --label-pattern '{id}_seg.nii.gz')"
        )
    for what, found in (("images", images), ("label maps", labels)):
        several = sorted((k, v) for k, v in found.items() if len(v) > 1)
        if several:
            case_id, files = several[0]
            raise DatasetError(
                f"{root}: {len(several)} ids have several {what}, e.g. {case_id!r}:\n"
                f"{_listing(sorted(files))}\nmake the patterns more specific"
            )
    no_subject = sorted(i for i in images if _subject_of(i, rx) in (None, ""))
    if no_subject:
        raise DatasetError(
            f"{root}: the subject regex {rx.pattern if rx else ''!r} finds no subject in {len(no_subject)} "
            f"of {len(images)} ids:\n{_listing(no_subject)}\nfix the regex"
        )
    orphans = sorted(k for k in labels if k not in images)
    if orphans:
        log.warning(
            "%d label maps match no image (ids: %s%s)",
            len(orphans),
            ", ".join(orphans[:10]),
            " ..." if len(orphans) > 10 else "",
        )

    cases: list[Case] = []
    unlabelled: list[Path] = []
    for case_id, (rel,) in sorted(images.items()):
        label = labels.get(case_id)
        if label:
            subject = _subject_of(case_id, rx)
            assert subject is not None
            cases.append(Case(subject, base / rel, base / label[0]))
        else:
            unlabelled.append(base / rel)
    _handle_unlabelled(
        unlabelled,
        len(cases) + len(unlabelled),
        require_labels=require_labels,
        how=f"no label map matching {label_pattern!r}",
    )
    return sorted(cases, key=lambda c: (c.subject, str(c.image)))


# --------------------------------------------------------------------------- split


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3:
        raise DatasetError(
            f"split fractions {list(fractions)}: give three, for training, validation and test"
        )
    if any(not math.isfinite(f) or f < 0 for f in values) or not math.isclose(sum(values), 1.0, abs_tol=1e-3):
        raise DatasetError(
            f"split fractions {list(values)}: give three fractions >= 0 that add up to 1, e.g. 0.7 0.15 0.15"
        )
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def _allocate(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """How many of ``n`` subjects go to each split: largest remainders, then no wanted split empty."""
    raw = [f * n for f in fractions]
    counts = [math.floor(r) for r in raw]
    for i in sorted(range(3), key=lambda i: (-(raw[i] - counts[i]), i))[: n - sum(counts)]:
        counts[i] += 1
    protected = [i for i in range(3) if fractions[i] > 0][:n]  # too few subjects: training first
    for i in protected:
        if counts[i] == 0:
            donors = [j for j in range(3) if counts[j] >= 2 or (counts[j] == 1 and j not in protected)]
            donor = max(donors, key=lambda j: (counts[j], -j))  # exists: the counts add up to n
            counts[donor] -= 1
            counts[i] += 1
    return counts


def split_subjects(
    subjects: Iterable[str],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> dict[str, tuple[str, ...]]:
    """Assign subjects to training, validation and test.

    The result depends only on the set of subjects, ``fractions`` and ``seed``
    (subjects are sorted before a seeded shuffle). Counts are rounded by
    largest remainders; each split with a fraction above 0 gets at least one
    subject when there are enough subjects (3 for the default fractions; with
    fewer, training is filled first, then validation).

    Args:
        subjects: Subject ids; repeats are ignored.
        fractions: Fractions for training, validation and test; they must add up to 1.
        seed: Seed of the shuffle.

    Returns:
        ``{'training': (...), 'validation': (...), 'test': (...)}``, each sorted.

    Example:
        >>> s = split_subjects([f"sub-{i:02d}" for i in range(10)], seed=0)
        >>> [len(s[k]) for k in ("training", "validation", "test")]
        [7, 2, 1]
    """
    fr = _check_fractions(fractions)
    order = sorted(set(subjects))
    random.Random(seed).shuffle(order)
    counts = _allocate(len(order), fr)
    out: dict[str, tuple[str, ...]] = {}
    start = 0
    for name, count in zip(SPLIT_NAMES, counts, strict=True):
        out[name] = tuple(sorted(order[start : start + count]))
        start += count
    return out


# --------------------------------------------------------------------------- dataset


def dataset_from_cases(
    cases: Sequence[Case],
    *,
    name: str,
    description: str | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> Dataset:
    """A segmentation :class:`Dataset` of ``cases``, split by subject.

    Images are listed sorted by subject then path; split indices are sorted.

    Args:
        cases: The cases, e.g. from :func:`find_bids_cases`.
        name: The dataset's name.
        description: Its description; default: a sentence saying how it was split.
        fractions: Fractions of subjects for training, validation and test.
        seed: Seed of the subject shuffle.

    Raises:
        DatasetError: If there are no cases or an image is listed twice.
    """
    if not cases:
        raise DatasetError(f"dataset {name!r}: no images to put in it")
    ordered = sorted(cases, key=lambda c: (c.subject, str(c.image)))
    by_subject = split_subjects((c.subject for c in ordered), fractions=fractions, seed=seed)
    split_of = {s: split for split, subjects in by_subject.items() for s in subjects}
    indices: dict[str, list[int]] = {name_: [] for name_ in SPLIT_NAMES}
    for i, c in enumerate(ordered):
        indices[split_of[c.subject]].append(i)
    n_subjects = len(split_of)
    if description is None:
        fr = "/".join(f"{f:g}" for f in fractions)
        description = (
            f"{len(ordered)} images of {n_subjects} subjects, split by subject "
            f"(training/validation/test fractions {fr}, seed {seed}); built by deephealth_deid"
        )
    samples = tuple(Sample(c.image, label=c.label) for c in ordered)
    ds = Dataset(
        name, samples, description=description, split=Split(**{k: tuple(v) for k, v in indices.items()})
    )
    log.info(
        "%d images of %d subjects: %s",
        len(ordered),
        n_subjects,
        ", ".join(
            f"{k} {len(indices[k])} images of {_count(len(by_subject[k]), 'subject')}" for k in SPLIT_NAMES
        ),
    )
    empty = [k for k in SPLIT_NAMES if not indices[k]]
    if empty:
        log.warning(
            "the %s split%s empty (%d subjects in all)",
            " and ".join(empty),
            " is" if len(empty) == 1 else "s are",
            n_subjects,
        )
    return ds


def build_dataset(
    root: str | os.PathLike[str],
    *,
    layout: Layout = "auto",
    name: str | None = None,
    description: str | None = None,
    image_suffix: str | None = None,
    label_suffix: str | None = None,
    image_pattern: str | None = None,
    label_pattern: str | None = None,
    subject_regex: str | re.Pattern[str] | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    require_labels: bool = True,
) -> Dataset:
    """Find the images and label maps under ``root`` and make a dataset split by subject.

    Args:
        root: The folder.
        layout: ``'bids'``, ``'flat'`` or ``'auto'``: flat when a pattern or a
            subject regex is given, else BIDS when ``root`` has ``sub-*``
            folders, else flat.
        name: The dataset's name (default: the folder's name).
        description: Its description (default: how it was split).
        image_suffix: BIDS only: the image suffix (default ``'_T1w'``).
        label_suffix: BIDS only: the label map suffix (default ``'_dseg'``).
        image_pattern: Flat only: the image pattern (default ``'*_image.nii.gz'``).
        label_pattern: Flat only: the label pattern (default ``'*_label.nii.gz'``).
        subject_regex: Flat only: finds the subject in an id.
        fractions: Fractions of subjects for training, validation and test.
        seed: Seed of the subject shuffle.
        require_labels: Raise if an image has no label map (else leave it out
            with a warning).

    Raises:
        DatasetError: If an option does not fit the layout, or see
            :func:`find_bids_cases` and :func:`find_flat_cases`.
    """
    base = _check_root(root)
    _check_fractions(fractions)  # fail before listing a big folder
    flat_options = {
        "image_pattern": image_pattern,
        "label_pattern": label_pattern,
        "subject_regex": subject_regex,
    }
    bids_options = {"image_suffix": image_suffix, "label_suffix": label_suffix}
    if layout == "auto":
        layout = "flat" if any(v is not None for v in flat_options.values()) else detect_layout(base)
        log.info("layout: %s", layout)
    if layout == "bids":
        wrong = [k for k, v in flat_options.items() if v is not None]
        if wrong:
            raise DatasetError(
                f"{', '.join(wrong)} (--{wrong[0].replace('_', '-')}) apply to the flat layout only"
            )
        cases = find_bids_cases(
            base,
            image_suffix=image_suffix or DEFAULT_IMAGE_SUFFIX,
            label_suffix=label_suffix or DEFAULT_LABEL_SUFFIX,
            require_labels=require_labels,
        )
    elif layout == "flat":
        wrong = [k for k, v in bids_options.items() if v is not None]
        if wrong:
            raise DatasetError(
                f"{', '.join(wrong)} (--{wrong[0].replace('_', '-')}) apply to the BIDS layout only"
            )
        cases = find_flat_cases(
            base,
            image_pattern=image_pattern or DEFAULT_IMAGE_PATTERN,
            label_pattern=label_pattern or DEFAULT_LABEL_PATTERN,
            subject_regex=subject_regex,
            require_labels=require_labels,
        )
    else:
        raise DatasetError(f"layout {layout!r}: choose 'bids', 'flat' or 'auto'")
    return dataset_from_cases(
        cases,
        name=name if name is not None else base.name,
        description=description,
        fractions=fractions,
        seed=seed,
    )
