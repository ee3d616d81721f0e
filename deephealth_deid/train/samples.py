"""Training samples for the defacer, on the network's grid.

Every sample goes through the same :func:`~deephealth_deid.deface.conform.conform`
as inference, so the network learns exactly what it will see. Labels are the
features only (1 eyes, 2 nose, 3 mouth, 4 ears; everything else 0).
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..deface.conform import _sample, conform, network_input
from ..io.volume import Volume
from .config import TrainConfig

__all__ = ["DefaceSamples", "check_feature_labels", "check_label_grid", "features_only"]

log = logging.getLogger(__name__)


def features_only(labels: np.ndarray) -> np.ndarray:
    """Label map restricted to the four features (other values become background)."""
    out = np.rint(np.asarray(labels)).astype(np.int64, copy=False)
    return np.where((out >= 1) & (out <= 4), out, 0).astype(np.uint8)


#: The four features are thin shells on the face: a label map whose values 1-4 cover more of
#: its array than this is a tissue or parcellation map (1 grey matter, 2 white matter, ...).
MAX_FEATURE_FRACTION = 0.05


def check_feature_labels(labels: Volume, where: object) -> None:
    """Refuse a label map that is not a feature map (1 eyes, 2 nose, 3 mouth, 4 ears).

    Raises:
        DatasetError: Values that are not whole numbers, no feature voxel at
            all, or values 1-4 covering more than :data:`MAX_FEATURE_FRACTION`
            of the array (a tissue or parcellation map).
    """
    from ..errors import DatasetError

    a = np.asarray(labels.array)
    if a.dtype.kind == "f" and not np.array_equal(a, np.rint(a)):
        raise DatasetError(
            f"{where}: the label map holds values that are not whole numbers; labels are 1 eyes, 2 nose, "
            "3 mouth, 4 ears (0 and other values: background)"
        )
    features = np.count_nonzero(features_only(a))
    if features == 0:
        raise DatasetError(f"{where}: the label map has no feature voxel (1 eyes, 2 nose, 3 mouth, 4 ears)")
    if features > MAX_FEATURE_FRACTION * a.size:
        raise DatasetError(
            f"{where}: values 1-4 cover {features / a.size:.0%} of the label map: a tissue or parcellation "
            "map, not the facial features (1 eyes, 2 nose, 3 mouth, 4 ears, thin shells on the face)"
        )


def check_label_grid(image: Volume, labels: Volume, where: object) -> None:
    """Refuse a label map that does not lie on its image.

    Labels are read through their own header (affine), so a map on another
    grid is fine as long as it covers its image; these are the mistakes that
    put every label in the wrong place without an error:

    Raises:
        DatasetError: The same array shape as the image with another affine
            (a map saved without the image's header, e.g. with an identity
            affine), the same affine with another shape (a map of another
            image), or feature voxels outside the image's field of view.
    """
    from ..errors import DatasetError

    same_affine = np.allclose(image.affine, labels.affine, atol=1e-3)
    if image.shape[:3] == labels.shape[:3] and not same_affine:
        raise DatasetError(
            f"{where}: the label map has its image's array shape but another affine (voxel-to-world "
            "matrix): was it saved without the image's header? Save it with the image's affine"
        )
    if same_affine and image.shape[:3] != labels.shape[:3]:
        raise DatasetError(
            f"{where}: the label map's array shape {tuple(labels.shape[:3])} differs from its image's "
            f"{tuple(image.shape[:3])} on the same affine: the labels of another image?"
        )
    if same_affine:
        return
    idx = np.argwhere(features_only(labels.array) > 0)
    if not idx.size:
        return
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    corners = np.array([[*c, 1.0] for c in itertools.product(*zip(lo, hi, strict=True))])
    inside = (np.linalg.inv(image.affine) @ (labels.affine @ corners.T))[:3].T
    size = np.array(image.shape[:3], dtype=float)
    if np.any(inside < -0.5 - 1.0) or np.any(inside > size - 0.5 + 1.0):
        raise DatasetError(
            f"{where}: the label map's features lie outside its image's field of view (their box reaches "
            f"voxel {np.round(inside.min(axis=0)).astype(int).tolist()} to "
            f"{np.round(inside.max(axis=0)).astype(int).tolist()} of an image of {tuple(image.shape[:3])}): "
            "the two files' headers do not agree"
        )


class DefaceSamples:
    """Draws (image, labels) pairs on the grid from the generator and/or YAML datasets."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.spacing = config.grid.spacing_mm
        self.shape = tuple(config.grid.shape)
        self._generator = None
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None
        if config.data.synthetic:
            from ..data.synth_heads import SynthHeadGenerator

            try:
                self._generator = SynthHeadGenerator(seed=config.seed, **config.data.synthetic_options)
            except (TypeError, ValueError) as e:
                from ..errors import ConfigError

                raise ConfigError(f"data.synthetic_options: {e}") from e
            self._val_generator = SynthHeadGenerator(seed=config.data.validation_seed)
        if config.data.ecvl_augmentations:
            from .ecvl_augment import check_augmentations

            check_augmentations(config.data.ecvl_augmentations)
        self._store = _Store(config.data.cache_mb * 2**20)
        self._pairs: list[tuple[Path, Path]] = []
        self._val_pairs: list[tuple[Path, Path]] = []
        for path in config.data.datasets:
            from ..data.dataset import load_dataset

            ds = load_dataset(path, check_files=True)
            training = ds.split_samples("training")
            if not training and any(ds.split_samples(name) for name in ("validation", "test")):
                from ..errors import ConfigError

                raise ConfigError(
                    f"{path}: the training split is empty while other splits are not; training on them would "
                    "leak held-out subjects. Give the dataset a training split"
                )
            for sample in training or ds.samples:
                if sample.label is not None:
                    self._pairs.append((Path(sample.location), Path(sample.label)))
            for sample in ds.split_samples("validation") if training else []:
                if sample.label is not None:
                    self._val_pairs.append((Path(sample.location), Path(sample.label)))
        if config.data.datasets and not self._pairs:
            from ..errors import ConfigError

            raise ConfigError(f"the datasets {list(config.data.datasets)} hold no labelled training images")

    def on_grid(self, image: Volume, labels: Volume) -> tuple[np.ndarray, np.ndarray]:
        """The network's input ``(channels, *grid)`` and the labels on the grid."""
        x, grid = conform(image, spacing=self.spacing, shape=self.shape)
        y = _sample(features_only(labels.array), labels.affine, grid, order=0, cval=0)
        return network_input(x, self.spacing, self.config.input_channels), y

    def _draw(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Head ``index`` on the grid: a synthetic head, or a dataset's image (kept in the store)."""
        use_synth = self._generator is not None and (
            not self._pairs or rng.random() < self.config.data.synthetic_fraction
        )
        if use_synth:
            return self.on_grid(*self._generator.sample(index))  # type: ignore[union-attr]

        k = int(rng.integers(len(self._pairs)))
        augmentations = self.config.data.ecvl_augmentations
        if not augmentations:
            return self._store.get(k, lambda: self.on_grid(*self._load_pair(*self._pairs[k])))
        from .ecvl_augment import augment_pair

        image, labels = self._store.get(k, lambda: self._load_pair(*self._pairs[k]))
        return self.on_grid(*augment_pair(image, labels, augmentations, seed=int(rng.integers(2**31))))

    def _load_pair(self, image_path: Path, label_path: Path) -> tuple[Volume, Volume]:
        """A dataset's image and label map, checked (feature values, one grid)."""
        from ..io import load_volume

        reader = self.config.data.reader
        image, labels = load_volume(image_path, reader=reader), load_volume(label_path, reader=reader)
        check_feature_labels(labels, label_path)
        check_label_grid(image, labels, label_path)
        return image, labels

    def training(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index``: input ``[channels, *patch]`` float32 and labels ``[*patch]`` int64.

        With patches, each head serves ``data.patches_per_head`` consecutive
        samples (different patches), which keeps a CPU's cores on the network;
        a batch of ``optim.batch_size`` takes consecutive samples.
        """
        patch = self.config.data.patch
        per_head = self.config.data.patches_per_head if patch is not None else 1
        head = index // per_head
        if self._cached is None or self._cached[0] != head:
            rng = np.random.default_rng([self.config.seed, head])
            self._cached = (head, *self._draw(head, rng))
        _, x, y = self._cached
        if patch is not None:
            rng = np.random.default_rng([self.config.seed, head, index])
            x, y = _crop(x, y, tuple(patch), rng, self.config.data.feature_patch_fraction)
        return x.astype(np.float32), y.astype(np.int64)

    def validation(self) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
        """The validation sets on the full grid, by name, each never used for training.

        ``synthetic``: ``data.validation_size`` held-out synthetic heads (seeds
        never used in training). ``datasets``: the labelled images of the
        listed datasets' validation splits, at most ``data.validation_size``
        of them (in the order listed). Empty sets are left out.
        """
        n = self.config.data.validation_size
        sets: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        if self._generator is not None and n:
            sets["synthetic"] = [self._pair_on_grid(*self._val_generator.sample(i)) for i in range(n)]
        if self._val_pairs and n:
            if len(self._val_pairs) > n:
                log.info(
                    "validating on the first %d of the datasets' %d validation images (data.validation_size)",
                    n,
                    len(self._val_pairs),
                )
            sets["datasets"] = [self._pair_on_grid(*self._load_pair(*pair)) for pair in self._val_pairs[:n]]
        return sets

    def _pair_on_grid(self, image: Volume, labels: Volume) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.on_grid(image, labels)
        return x.astype(np.float32), y.astype(np.int64)


class _Store:
    """Values kept by key up to a budget of bytes, the least recently used going first."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._items: OrderedDict[int, tuple[Any, int]] = OrderedDict()

    def get(self, key: int, make: Any) -> Any:
        """The value kept for ``key``, or ``make()``, kept when it fits in the budget."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key][0]
        value = make()
        size = sum(_nbytes(v) for v in value)
        if size <= self.budget:
            while self.used + size > self.budget:
                self.used -= self._items.popitem(last=False)[1][1]
            self._items[key] = (value, size)
            self.used += size
        return value


def _nbytes(value: Any) -> int:
    return int(value.array.nbytes if isinstance(value, Volume) else np.asarray(value).nbytes)


def _crop(
    x: np.ndarray, y: np.ndarray, patch: tuple[int, int, int], rng: np.random.Generator, near: float
) -> tuple[np.ndarray, np.ndarray]:
    """A patch centred near a random feature voxel (share ``near``) or anywhere on the grid."""
    fg = np.argwhere(y > 0)
    if fg.size and rng.random() < near:
        centre = fg[int(rng.integers(len(fg)))] + rng.integers(-12, 13, size=3)
    else:
        centre = np.array(
            [int(rng.integers(p // 2, s - p // 2 + 1)) for p, s in zip(patch, y.shape, strict=True)]
        )
    lo = [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, patch, y.shape, strict=True)]
    box = tuple(slice(a, a + p) for a, p in zip(lo, patch, strict=True))
    return x[(slice(None), *box)], y[box]
