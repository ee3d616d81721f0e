"""The DeepHealth dataset YAML format: what ECVL's ``DLDataset`` reads.

A dataset file names the images, their labels and how they are split::

    name: heads
    description: synthetic heads, labels 1 eyes, 2 nose, 3 mouth, 4 ears
    images:
      - location: sub-01/anat/sub-01_T1w.nii.gz
        label: sub-01/anat/sub-01_dseg.nii.gz
      - location: sub-02/anat/sub-02_T1w.nii.gz
        label: sub-02/anat/sub-02_dseg.nii.gz
    split:
      training: [0]
      validation: [1]
      test: []

Each item of ``images`` is a path, a list of paths (channels ECVL stacks), or a
mapping with ``location`` (a path or a list of paths) and optionally ``label``
and ``values``. A ``label`` is a path to a label map (segmentation, no
``classes`` key) or class labels: an index, a name listed in ``classes``, or a
list of them (classification). ``values`` is a list, or a mapping keyed by the
names in ``features``. ``split`` maps ``training``, ``validation`` and ``test``
to lists of indices into ``images``. Relative paths are relative to the YAML
file's folder.

Loading checks everything ECVL would trip on later (indices out of range, an
image in two splits, duplicate images, unknown keys, a split mixing labelled
and unlabelled images) and names the file and the key in the error. In memory
every path is absolute; :func:`save_dataset` writes them relative to the new
file's folder.

Example:
    >>> from deephealth_deid.data import load_dataset, save_dataset
    >>> ds = load_dataset("data.yaml", check_files=True)  # doctest: +SKIP
    >>> [s.location for s in ds.split_samples("training")]  # doctest: +SKIP
    >>> save_dataset(ds, "copy/data.yaml")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import yaml

from .._version import __version__
from ..errors import DatasetError, InputNotFoundError, OutputError
from ..io._files import atomic_file, check_output

__all__ = [
    "SPLIT_NAMES",
    "SplitName",
    "Sample",
    "Split",
    "Dataset",
    "load_dataset",
    "save_dataset",
    "dump_dataset",
    "missing_files",
    "check_files",
]

log = logging.getLogger(__name__)

#: The split names ECVL knows (``SplitType``), in the order they are written.
SPLIT_NAMES: tuple[str, str, str] = ("training", "validation", "test")
SplitName: TypeAlias = Literal["training", "validation", "test"]
#: A feature value: what YAML gives for a scalar.
Scalar: TypeAlias = str | int | float | bool | None

_TOP_KEYS = ("name", "description", "classes", "features", "images", "split")
_IMAGE_KEYS = ("location", "label", "values")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: How many file names an error message lists before it only counts.
MAX_LISTED = 20


# --------------------------------------------------------------------------- paths


def _absolute(path: str | os.PathLike[str], root: Path | None = None) -> Path:
    """``path`` made absolute against ``root`` (default: the working folder) and normalised.

    Symbolic links are not followed, so the path stays the one the user wrote.
    """
    p = Path(path)
    if not p.is_absolute():
        p = (root if root is not None else Path.cwd()) / p
    return Path(os.path.normpath(p))


def _relative(paths: Sequence[Path], root: Path) -> list[str]:
    """``paths`` relative to ``root`` in POSIX form; all absolute if any cannot be relative.

    All or none: ECVL joins a relative label path to the root only when the
    image locations are relative too.
    """
    try:
        return [Path(os.path.relpath(p, root)).as_posix() for p in paths]
    except ValueError:  # another drive on Windows
        return [p.as_posix() for p in paths]


def _listing(paths: Sequence[object], *, limit: int = MAX_LISTED) -> str:
    """``paths`` one per line, the first ``limit`` of them, then how many more."""
    shown = [f"  {p}" for p in paths[:limit]]
    if len(paths) > limit:
        shown.append(f"  ... and {len(paths) - limit} more")
    return "\n".join(shown)


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Sample:
    """One item of ``images``: an image, and its label map or class labels.

    Paths are made absolute (against the working folder) when the sample is
    created; :func:`load_dataset` makes them absolute against the YAML file's
    folder first.

    Attributes:
        location: The image file (the first one when ECVL stacks several).
        label: The label map (ground-truth image) for segmentation, or None.
        extra_locations: Further image files ECVL stacks with ``location`` as
            channels; usually empty.
        class_labels: Indices into the dataset's ``classes`` (classification);
            empty for segmentation. A sample has a label map or class labels,
            never both.
        values: Feature values: a tuple (by position) or a mapping keyed by the
            dataset's ``features``; None when absent.

    Example:
        >>> s = Sample("/data/sub-01_T1w.nii.gz", label="/data/sub-01_dseg.nii.gz")
        >>> s.label.name
        'sub-01_dseg.nii.gz'
    """

    location: Path
    label: Path | None = None
    extra_locations: tuple[Path, ...] = ()
    class_labels: tuple[int, ...] = ()
    values: tuple[Scalar, ...] | Mapping[str, Scalar] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "location", _absolute(self.location))
        if self.label is not None:
            object.__setattr__(self, "label", _absolute(self.label))
        extra = self.extra_locations
        if isinstance(extra, (str, os.PathLike)):
            extra = (extra,)
        object.__setattr__(self, "extra_locations", tuple(_absolute(p) for p in extra))
        labels = tuple(self.class_labels)
        for c in labels:
            if isinstance(c, bool) or not isinstance(c, int) or c < 0:
                raise DatasetError(f"class label {c!r}: class labels are indices 0, 1, 2, ...")
        object.__setattr__(self, "class_labels", labels)
        if self.label is not None and labels:
            raise DatasetError(f"{self.location}: a sample has a label map or class labels, not both")
        values = self.values
        if isinstance(values, Mapping):
            object.__setattr__(self, "values", dict(values))
        elif isinstance(values, (str, bytes)):
            raise DatasetError(f"{self.location}: values must be a list or a mapping, not a single text")
        elif values is not None:
            object.__setattr__(self, "values", tuple(values))

    @property
    def locations(self) -> tuple[Path, ...]:
        """All image files of the sample: ``location`` then ``extra_locations``."""
        return (self.location, *self.extra_locations)

    @property
    def labelled(self) -> bool:
        """Whether the sample has a label map or class labels."""
        return self.label is not None or bool(self.class_labels)

    def files(self) -> tuple[Path, ...]:
        """Every file the sample refers to: its images, then its label map if any."""
        return self.locations + ((self.label,) if self.label is not None else ())


@dataclass(frozen=True)
class Split:
    """Indices into ``images`` for each split; a split not in the file is empty.

    Example:
        >>> Split(training=(0, 1), test=(2,))["test"]
        (2,)
    """

    training: tuple[int, ...] = ()
    validation: tuple[int, ...] = ()
    test: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in SPLIT_NAMES:
            indices = tuple(getattr(self, name))
            for k, i in enumerate(indices):
                if isinstance(i, bool) or not isinstance(i, int):
                    raise DatasetError(f"split.{name}[{k}]: {i!r} is not an image index (a whole number)")
            object.__setattr__(self, name, indices)

    def __getitem__(self, name: str) -> tuple[int, ...]:
        if name not in SPLIT_NAMES:
            raise KeyError(f"{name!r} is not a split; the splits are {', '.join(SPLIT_NAMES)}")
        return getattr(self, name)  # type: ignore[no-any-return]

    def items(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """``(name, indices)`` for training, validation and test, in that order."""
        for name in SPLIT_NAMES:
            yield name, getattr(self, name)

    @property
    def empty(self) -> bool:
        """Whether no image is in any split."""
        return not (self.training or self.validation or self.test)


@dataclass(frozen=True)
class Dataset:
    """A DeepHealth dataset: a name, samples with absolute paths, and a split.

    Creating one checks it (see the module docstring) and raises
    :class:`~deephealth_deid.errors.DatasetError` naming the wrong key.

    Attributes:
        name: The dataset's name.
        samples: The items of ``images``, in order; split indices point here.
        description: Free text.
        classes: Class names (classification); empty for segmentation, and
            then the ``classes`` key is left out when written.
        features: Names of the feature values (``values``), if any.
        split: Which samples are for training, validation and test.

    Example:
        >>> sample = Sample("/d/a.nii.gz", label="/d/a_seg.nii.gz")
        >>> ds = Dataset("demo", (sample,), split=Split(training=(0,)))
        >>> ds.task, ds.counts()["training"]
        ('segmentation', 1)
    """

    name: str
    samples: tuple[Sample, ...]
    description: str = ""
    classes: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    split: Split = field(default_factory=Split)

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples", tuple(self.samples))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "features", tuple(self.features))
        problem = _consistency_problem(self.samples, self.classes, self.features, self.split)
        if problem is not None:
            raise DatasetError(f"dataset {self.name!r}: {problem}")

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def task(self) -> Literal["segmentation", "classification"]:
        """``'classification'`` when ``classes`` are given, else ``'segmentation'`` (as ECVL decides)."""
        return "classification" if self.classes else "segmentation"

    def split_samples(self, name: SplitName) -> tuple[Sample, ...]:
        """The samples of split ``name`` (``'training'``, ``'validation'`` or ``'test'``)."""
        return tuple(self.samples[i] for i in self.split[name])

    def unassigned(self) -> tuple[int, ...]:
        """Indices of the samples that are in no split."""
        used = {i for _, indices in self.split.items() for i in indices}
        return tuple(i for i in range(len(self.samples)) if i not in used)

    def counts(self) -> dict[str, int]:
        """Number of samples per split, plus ``'unassigned'`` and ``'total'``."""
        out = {name: len(indices) for name, indices in self.split.items()}
        out["unassigned"] = len(self.unassigned())
        out["total"] = len(self.samples)
        return out

    def to_dict(self, *, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The YAML content as plain Python objects, with paths relative to ``root``.

        Args:
            root: The folder the YAML file will be in (default: the working folder).

        Returns:
            A mapping with exactly the keys ECVL reads: ``name``, ``description``,
            ``classes`` and ``features`` when not empty, ``images``, and ``split``
            when any image is in a split.
        """
        base = _absolute(root if root is not None else Path.cwd())
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.classes:
            out["classes"] = list(self.classes)
        if self.features:
            out["features"] = list(self.features)
        images: list[Any] = []
        for s in self.samples:
            paths = _relative(s.files(), base)
            locations = paths[: len(s.locations)]
            if s.label is None and not s.class_labels and s.values is None:
                images.append(locations[0] if len(locations) == 1 else locations)
                continue
            item: dict[str, Any] = {"location": locations[0] if len(locations) == 1 else locations}
            if s.label is not None:
                item["label"] = paths[-1]
            elif s.class_labels:
                names = [self.classes[c] if self.classes else c for c in s.class_labels]
                item["label"] = names[0] if len(names) == 1 else names
            if s.values is not None:
                item["values"] = dict(s.values) if isinstance(s.values, Mapping) else list(s.values)
            images.append(item)
        out["images"] = images
        if not self.split.empty:
            out["split"] = {name: _FlowList(indices) for name, indices in self.split.items()}
        return out

    @classmethod
    def from_dict(
        cls,
        data: object,
        *,
        root: str | os.PathLike[str] | None = None,
        source: str = "dataset",
        default_name: str = "DeepHealth dataset",
    ) -> Dataset:
        """Build a dataset from parsed YAML content, checking every key.

        Args:
            data: What ``yaml.safe_load`` returned.
            root: The folder relative paths are relative to (default: the
                working folder); normally the YAML file's folder.
            source: How errors name the origin, normally the file's path.
            default_name: The name when the content has no ``name`` key.

        Raises:
            DatasetError: Naming ``source`` and the wrong key.
        """
        return _parse(
            data,
            root=_absolute(root if root is not None else Path.cwd()),
            source=source,
            default_name=default_name,
        )


# --------------------------------------------------------------------------- checks


def _consistency_problem(
    samples: Sequence[Sample], classes: Sequence[str], features: Sequence[str], split: Split
) -> str | None:
    """The first problem across keys (indices, duplicates, classes), or None."""
    for k, c in enumerate(classes):
        if not isinstance(c, str) or not c:
            return f"classes[{k}]: a class name must be a non-empty text"
        if c in classes[:k]:
            return f"classes[{k}]: {c!r} is listed twice"
    for k, f in enumerate(features):
        if not isinstance(f, str) or not f:
            return f"features[{k}]: a feature name must be a non-empty text"
        if f in features[:k]:
            return f"features[{k}]: {f!r} is listed twice"
    first_seen: dict[tuple[Path, ...], int] = {}
    for i, s in enumerate(samples):
        if not isinstance(s, Sample):
            return f"images[{i}]: expected a Sample, got {type(s).__name__}"
        if s.locations in first_seen:
            return f"images[{i}]: the same image as images[{first_seen[s.locations]}] ({s.location})"
        first_seen[s.locations] = i
        if classes and s.label is not None:
            return (
                f"images[{i}].label: a label map ({s.label.name}) in a classification dataset; "
                "leave out 'classes' for segmentation"
            )
        if classes:
            for c in s.class_labels:
                if c >= len(classes):
                    return f"images[{i}].label: class index {c} is outside the {len(classes)} classes"
        if isinstance(s.values, Mapping):
            unknown = [k for k in s.values if k not in features]
            if unknown:
                return (
                    f"images[{i}].values.{unknown[0]}: not one of the features "
                    f"({', '.join(features) if features else 'no features key'})"
                )
    n = len(samples)
    where: dict[int, str] = {}
    for name, indices in split.items():
        for k, i in enumerate(indices):
            if not 0 <= i < n:
                return f"split.{name}[{k}]: index {i} is outside the {n} images (indices are 0 to {n - 1})"
            if i in where:
                if where[i] == name:
                    return f"split.{name}[{k}]: index {i} is listed twice"
                return (
                    f"split.{name}[{k}]: image {i} is also in split.{where[i]}; an image is in one split only"
                )
            where[i] = name
        labelled = [i for i in indices if samples[i].labelled]
        if labelled and len(labelled) != len(indices):
            bare = [str(i) for i in indices if not samples[i].labelled]
            shown = ", ".join(bare[:10]) + (f" and {len(bare) - 10} more" if len(bare) > 10 else "")
            return (
                f"split.{name}: images {shown} have no label but other images of the split do; "
                "ECVL needs all or none labelled within a split"
            )
    return None


# --------------------------------------------------------------------------- parsing


def _kind(value: object) -> str:
    """A user-facing word for the YAML type of ``value`` (never the value itself)."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _parse(data: object, *, root: Path, source: str, default_name: str) -> Dataset:
    def fail(key: str, message: str) -> DatasetError:
        return DatasetError(f"{source}: {key}: {message}" if key else f"{source}: {message}")

    def text(value: object, key: str) -> str:
        if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float)):
            raise fail(key, f"expected a text, got {_kind(value)}")
        return str(value)

    def names(value: object, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise fail(key, f"expected a list of names, got {_kind(value)}")
        return tuple(text(v, f"{key}[{k}]") for k, v in enumerate(value))

    def path(value: object, key: str) -> Path:
        if not isinstance(value, str):
            raise fail(key, f"expected a file path, got {_kind(value)}")
        if not value.strip():
            raise fail(key, "expected a file path, got an empty text")
        if _URL.match(value):
            raise fail(key, "URLs are not supported; download the file and give its path")
        return _absolute(value, root)

    def paths(value: object, key: str) -> tuple[Path, ...]:
        if isinstance(value, list):
            if not value:
                raise fail(key, "the list of image files is empty")
            return tuple(path(v, f"{key}[{k}]") for k, v in enumerate(value))
        return (path(value, key),)

    if not isinstance(data, dict):
        raise fail(
            "", f"the top level must be a mapping with 'name', 'images' and 'split' keys, got {_kind(data)}"
        )
    for key in data:
        if key not in _TOP_KEYS:
            raise fail(str(key), f"unknown key; a DeepHealth dataset has {', '.join(_TOP_KEYS)}")
    name = text(data["name"], "name") if "name" in data else default_name
    description = "" if data.get("description") is None else text(data["description"], "description")
    classes = names(data["classes"], "classes") if data.get("classes") is not None else ()
    features = names(data["features"], "features") if data.get("features") is not None else ()

    if "images" not in data:
        raise fail("images", "missing; list the image files under 'images:'")
    raw_images = data["images"]
    if not isinstance(raw_images, list):
        raise fail("images", f"expected a list of images, got {_kind(raw_images)}")
    if not raw_images:
        raise fail("images", "the list is empty")

    samples: list[Sample] = []
    for i, item in enumerate(raw_images):
        key = f"images[{i}]"
        label: Path | None = None
        class_labels: tuple[int, ...] = ()
        values: tuple[Scalar, ...] | dict[str, Scalar] | None = None
        if isinstance(item, (str, list)):
            locations = paths(item, key)
        elif isinstance(item, dict):
            for k in item:
                if k not in _IMAGE_KEYS:
                    raise fail(f"{key}.{k}", f"unknown key; an image has {', '.join(_IMAGE_KEYS)}")
            if "location" not in item:
                raise fail(f"{key}.location", "missing; give the image file")
            locations = paths(item["location"], f"{key}.location")
            if "label" in item:
                label, class_labels = _parse_label(item["label"], classes, f"{key}.label", fail, path)
            if "values" in item:
                values = _parse_values(item["values"], features, f"{key}.values", fail)
        else:
            raise fail(key, f"expected a path or a mapping with 'location' and 'label', got {_kind(item)}")
        samples.append(
            Sample(
                locations[0],
                label=label,
                extra_locations=locations[1:],
                class_labels=class_labels,
                values=values,
            )
        )

    raw_split = data.get("split")
    split_lists: dict[str, tuple[int, ...]] = {}
    if raw_split is not None:
        if not isinstance(raw_split, dict):
            raise fail(
                "split", f"expected a mapping of training, validation and test lists, got {_kind(raw_split)}"
            )
        for name_key, indices in raw_split.items():
            key = f"split.{name_key}"
            if name_key not in SPLIT_NAMES:
                raise fail(key, f"unknown split; the splits are {', '.join(SPLIT_NAMES)}")
            if not isinstance(indices, list):
                raise fail(key, f"expected a list of image indices (write [] for none), got {_kind(indices)}")
            for k, idx in enumerate(indices):
                if isinstance(idx, bool) or not isinstance(idx, int):
                    raise fail(f"{key}[{k}]", f"expected an image index (a whole number), got {_kind(idx)}")
            split_lists[name_key] = tuple(indices)
    split = Split(**split_lists)

    problem = _consistency_problem(samples, classes, features, split)
    if problem is not None:
        raise fail("", problem)
    return Dataset(
        name, tuple(samples), description=description, classes=classes, features=features, split=split
    )


def _parse_label(
    value: object,
    classes: tuple[str, ...],
    key: str,
    fail: Any,
    path: Any,
) -> tuple[Path | None, tuple[int, ...]]:
    """A ``label`` entry: a label map path, or class labels (index, class name or a list)."""

    def class_label(v: object, k: str) -> int:
        if isinstance(v, int) and not isinstance(v, bool):
            if v < 0 or (classes and v >= len(classes)):
                raise fail(
                    k,
                    f"class index {v} is outside the {len(classes)} classes"
                    if classes
                    else f"class index {v} is negative",
                )
            return v
        if isinstance(v, str) and v in classes:
            return classes.index(v)
        if isinstance(v, str):
            raise fail(
                k,
                f"{v!r} is not one of the classes ({', '.join(classes)})"
                if classes
                else "a list of labels holds class names, but the dataset has no 'classes'",
            )
        raise fail(k, f"expected a class name or index, got {_kind(v)}")

    if isinstance(value, str):
        if value in classes:
            return None, (classes.index(value),)
        if classes:
            raise fail(key, f"{value!r} is not one of the classes ({', '.join(classes)})")
        return path(value, key), ()
    if isinstance(value, list):
        if not value:
            raise fail(key, "the list of class labels is empty")
        return None, tuple(class_label(v, f"{key}[{k}]") for k, v in enumerate(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return None, (class_label(value, key),)
    raise fail(key, f"expected a label map path or class labels, got {_kind(value)}")


def _parse_values(
    value: object, features: tuple[str, ...], key: str, fail: Any
) -> tuple[Scalar, ...] | dict[str, Scalar]:
    """A ``values`` entry: a list by position, or a mapping keyed by ``features``."""

    def scalar(v: object, k: str) -> Scalar:
        if v is None or isinstance(v, (str, int, float, bool)):
            return v
        raise fail(k, f"expected a single value, got {_kind(v)}")

    if isinstance(value, list):
        return tuple(scalar(v, f"{key}[{k}]") for k, v in enumerate(value))
    if isinstance(value, dict):
        if not features:
            raise fail(key, "a mapping of values needs the feature names under the top-level 'features' key")
        out: dict[str, Scalar] = {}
        for k, v in value.items():
            if k not in features:
                raise fail(f"{key}.{k}", f"not one of the features ({', '.join(features)})")
            out[k] = scalar(v, f"{key}.{k}")
        return out
    raise fail(key, f"expected a list or a mapping of values, got {_kind(value)}")


# --------------------------------------------------------------------------- YAML I/O


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        with contextlib.suppress(TypeError):  # unhashable keys: construct_mapping reports them
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _FlowList(list):  # type: ignore[type-arg]
    """A list written on one line (``[0, 1, 2]``): used for split indices."""


class _Dumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that indents lists inside mappings and writes index lists inline."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


_Dumper.add_representer(
    _FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", list(v), flow_style=True)
)


def dump_dataset(ds: Dataset, *, root: str | os.PathLike[str] | None = None) -> str:
    """The YAML text of ``ds`` with paths relative to ``root`` (the file's future folder)."""
    header = f"# DeepHealth dataset (ECVL DLDataset format), written by deephealth_deid {__version__}\n"
    body = yaml.dump(
        ds.to_dict(root=root),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return header + body


def load_dataset(path: str | os.PathLike[str], *, check_files: bool = False) -> Dataset:
    """Read a DeepHealth dataset YAML file.

    Args:
        path: The YAML file. Relative paths inside it are relative to its folder.
        check_files: Also check that every image and label file exists.

    Returns:
        The dataset, with absolute paths.

    Raises:
        InputNotFoundError: If ``path`` does not exist.
        DatasetError: If the file is not valid YAML, a key is wrong (the
            message names the file and the key), or, with ``check_files``,
            files are missing (all of them are listed).
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such dataset file; check the path")
    if p.is_dir():
        raise DatasetError(f"{p}: is a folder; give the dataset's YAML file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{p}: not a UTF-8 text file; is it really a dataset YAML?") from e
    except OSError as e:
        raise DatasetError(f"{p}: cannot be read ({e.strerror or e})") from e
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise DatasetError(f"{p}: not valid YAML: {at}{e.problem or e}") from e
    except yaml.YAMLError as e:
        raise DatasetError(f"{p}: not valid YAML: {e}") from e
    if data is None:
        raise DatasetError(f"{p}: the file is empty; a dataset needs at least 'name' and 'images'")
    ds = Dataset.from_dict(data, root=_absolute(p).parent, source=str(p), default_name=p.stem)
    if check_files:
        _raise_if_missing(ds, source=str(p))
    log.debug("read %s: %d images", p, len(ds))
    return ds


def save_dataset(ds: Dataset, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``ds`` as a DeepHealth YAML file, atomically.

    Paths are written relative to the file's folder (absolute only where no
    relative path exists, e.g. another drive), so the folder can be moved as a
    whole. ``load_dataset(path)`` gives back a dataset equal to ``ds``.

    Args:
        ds: The dataset.
        path: The YAML file to write; its folder must exist.
        overwrite: Replace an existing file.

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        OutputExistsError: If ``path`` exists and ``overwrite`` is false.
        OutputError: If the folder does not exist.
    """
    p = check_output(path, overwrite=overwrite)
    if p.is_dir():
        raise OutputError(f"{p}: is a folder; give the path of the YAML file to write")
    text = dump_dataset(ds, root=_absolute(p).parent)
    with atomic_file(p) as tmp:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, _new_file_mode())
    log.debug("wrote %s: %d images", p, len(ds))
    return p


def _new_file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 less the umask), without changing the umask."""
    umask = 0o022
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
                break
    return 0o666 & ~umask


# --------------------------------------------------------------------------- files


def missing_files(ds: Dataset) -> list[Path]:
    """Every image or label file of ``ds`` that does not exist (or is not a file), in order."""
    out: list[Path] = []
    seen: set[Path] = set()
    for s in ds.samples:
        for f in s.files():
            if f not in seen:
                seen.add(f)
                if not f.is_file():
                    out.append(f)
    return out


def check_files(ds: Dataset, *, source: str | None = None) -> None:
    """Check that every file ``ds`` refers to exists.

    Args:
        ds: The dataset.
        source: How the message names the dataset (normally its YAML path).

    Raises:
        DatasetError: Listing all missing files (the first :data:`MAX_LISTED`
            in the message, then a count).
    """
    _raise_if_missing(ds, source=source)


def _raise_if_missing(ds: Dataset, *, source: str | None) -> None:
    missing = missing_files(ds)
    if missing:
        total = len({f for s in ds.samples for f in s.files()})
        raise DatasetError(
            f"{source or f'dataset {ds.name!r}'}: {len(missing)} of {total} files are missing or not files:\n"
            f"{_listing([f'{m} (a folder)' if m.is_dir() else m for m in missing])}\n"
            "check the paths (relative paths are relative to the YAML file's folder; each is a file)"
        )
