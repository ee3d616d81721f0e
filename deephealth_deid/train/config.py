"""Training configuration: YAML loaded with ``yaml.safe_load`` into validated dataclasses.

Two tasks (``task:``): ``deface`` (the 3D defacing U-Net on a head grid, the
dataclass defaults) and ``text`` (the 2D text-region U-Net on synthetic text
images). Each task has its own checks; :data:`TASK_DEFAULTS` holds what a
``text`` configuration gets where it says nothing (its patch, class weights,
input channels and output folder differ from the defacer's), and the keys that
mean nothing for it (``grid``, ``data.datasets``, ``data.synthetic_options``)
are refused rather than silently ignored.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..nets import text_unet_spec

__all__ = ["TASKS", "TASK_DEFAULTS", "GridConfig", "DataConfig", "OptimConfig", "TrainConfig", "load_config"]

#: The tasks ``deid train`` knows.
TASKS: tuple[str, ...] = ("deface", "text")

#: Values a task's configuration gets where its YAML is silent (the dataclass defaults are the defacer's).
_TEXT_NET = text_unet_spec()
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "text": {
        # the network of nets.text_unet_spec()
        "widths": list(_TEXT_NET.widths),
        "convs_per_level": _TEXT_NET.convs_per_level,
        "input_stride": _TEXT_NET.input_stride,
        "input_channels": _TEXT_NET.in_channels,
        "out_dir": "runs/text",
        "data": {"patch": [256, 256], "feature_patch_fraction": 0.7, "validation_size": 4},
        "optim": {"class_weights": [1.0, 1.0]},
    },
}


@dataclass(frozen=True)
class GridConfig:
    """The network's grid: isotropic spacing (mm) and shape."""

    spacing_mm: float = 2.0
    shape: tuple[int, int, int] = (112, 128, 128)


@dataclass(frozen=True)
class DataConfig:
    """Where training samples come from.

    For ``task: text`` only the synthetic text generator is used: ``patch`` is
    two sizes (rows, columns), ``patches_per_head`` counts patches per text
    image, ``feature_patch_fraction`` is the share of patches centred on a
    string, validation images are drawn with held-out fonts, and
    ``text_options`` replaces ``synthetic_options``.

    Attributes:
        synthetic: Draw heads from the synthetic generator.
        datasets: DeepHealth YAML datasets (images with label maps 1 eyes,
            2 nose, 3 mouth, 4 ears; other values count as background).
        synthetic_fraction: Share of synthetic samples when datasets are given.
        validation_size: Held-out synthetic heads for validation Dice, and the
            most images taken from the datasets' validation splits.
        validation_seed: Their seed (never used for training samples).
        patch: Training patch shape on the grid (centred near the face); the
            whole grid when null.
        patches_per_head: Consecutive patches drawn from each generated head.
        feature_patch_fraction: Share of patches centred near a feature voxel;
            the others lie anywhere on the grid, so the network also learns
            where features never are (air, brain, neck).
        synthetic_options: Keyword arguments of
            :class:`~deephealth_deid.data.synth_heads.SynthHeadGenerator` for the
            training heads (e.g. ``contrasts``); validation heads always use its
            defaults, the distribution the model is measured on.
        reader: How the dataset files are read: ``"builtin"`` (nibabel and
            pydicom) or ``"ecvl"`` (the pixels through the DeepHealth toolkit's
            ECVL, the geometry from the built-in reader, which checks they
            agree; see :mod:`deephealth_deid.io.ecvl`). Both give the same arrays.
        ecvl_augmentations: With ``reader: ecvl``, an augmentation in ECVL's
            text format applied by ECVL to each dataset image and its label map
            (see :mod:`deephealth_deid.train.ecvl_augment`); ``None`` for none.
        text_options: Keyword arguments of
            :class:`~deephealth_deid.data.synth_text.SynthTextGenerator` for
            ``task: text`` (``size_range``, ``n_text``, ...; not ``seed`` nor
            ``fonts``: training images use the training fonts and ``seed``,
            validation images the held-out fonts and ``validation_seed``, with
            the same options otherwise).
        workers: Processes drawing training samples ahead of the network
            (:mod:`deephealth_deid.train.feed`); 0 draws them in one background
            thread of the training process, which suits a CPU (the network
            needs its cores). On a GPU, where one thread cannot keep up, use
            about one per CPU core left over. The batches are the same either way.
        cache_mb: Memory (MiB, per process drawing samples) for the datasets'
            images kept between draws: on the grid, ready for the network (about
            6 MiB each on the 3 mm grid), or as read when ECVL augments them
            (each draw then augments anew). Reading and conforming a 1 mm head
            costs about a second of a core, as much as the network takes for
            several patches on a GPU. The least recently drawn image goes first
            when full; 0 reads every draw.
    """

    synthetic: bool = True
    datasets: tuple[str, ...] = ()
    synthetic_fraction: float = 1.0
    validation_size: int = 8
    validation_seed: int = 1_000_000
    patch: tuple[int, ...] | None = (80, 96, 96)
    patches_per_head: int = 1
    feature_patch_fraction: float = 0.5
    synthetic_options: dict[str, Any] = field(default_factory=dict)
    text_options: dict[str, Any] = field(default_factory=dict)
    reader: str = "builtin"
    ecvl_augmentations: str | None = None
    workers: int = 0
    cache_mb: int = 1024


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation settings.

    ``lr_steps``: ``[[iteration, lr], ...]``: from each iteration on, the learning
    rate is that value (a step schedule; it follows the iteration count, so it
    holds across a resume).
    """

    iterations: int = 2000
    batch_size: int = 1
    lr: float = 2e-3
    lr_steps: tuple[tuple[int, float], ...] = ()
    weight_decay: float = 1e-4
    class_weights: tuple[float, ...] = (0.2, 1.0, 1.0, 1.0, 1.0)
    dice_weight: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``deid train`` needs."""

    task: str = "deface"
    engine: str = "auto"
    device: str = "auto"
    seed: int = 0
    # PyTorch on a GPU: deterministic kernels, so that a run repeats exactly (slower; a CPU run
    # repeats without it).
    deterministic: bool = False
    threads: int = 0
    widths: tuple[int, ...] = (8, 16, 32, 64)
    convs_per_level: int = 2
    input_stride: int = 1  # the U-Net's stem (see nets.UNetSpec): 1 (none), 2 or 4
    norm: str = "batch"
    input_channels: int = 2  # deface: 1 the image, 2 and the depth under the skin; text: 3 (RGB)
    grid: GridConfig = field(default_factory=GridConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    validate_every: int = 200
    checkpoint_every: int = 50
    out_dir: str = "runs/deface"
    time_budget_min: float | None = None
    # A model file to start from (fine-tuning), or "shipped" (the task's shipped model);
    # a checkpoint in out_dir wins.
    init: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def stride(self) -> int:
        """The network's total downsampling factor, as ``UNetSpec.stride`` computes it."""
        return self.input_stride * 2 ** (len(self.widths) - 1)


def _build(cls: type, data: Any, where: str, source: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where or 'top level'}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"{source}: {where + '.' if where else ''}{unknown[0]}: unknown key (known: {sorted(known)})"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        sub = (
            {"grid": GridConfig, "data": DataConfig, "optim": OptimConfig}.get(name)
            if cls is TrainConfig
            else None
        )
        if sub is not None:
            kwargs[name] = _build(sub, value, key, source)
            continue
        default = getattr(cls(), name)
        kwargs[name] = _coerce(value, default, key, source)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {where or 'top level'}: {e}") from e


def _coerce(value: Any, default: Any, key: str, source: str) -> Any:
    if isinstance(default, tuple) or (default is None and isinstance(value, list)):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected a number, got {value!r}")
        return type(default)(value) if isinstance(default, float) or float(value).is_integer() else value
    if isinstance(default, dict) and not isinstance(value, dict):
        raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
    return value


def _validate(cfg: TrainConfig, source: str, given: dict[str, Any] | None = None) -> TrainConfig:
    """Check ``cfg`` for its task; ``given`` is the raw YAML mapping (to refuse keys a task ignores)."""

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {why}")

    if cfg.task not in TASKS:
        raise bad("task", f"unknown task {cfg.task!r} (known: {', '.join(TASKS)})")

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def whole(v: Any) -> bool:
        return number(v) and float(v).is_integer()

    for key, value, low in (
        ("seed", cfg.seed, None),
        ("threads", cfg.threads, 0),
        ("validate_every", cfg.validate_every, 1),
        ("checkpoint_every", cfg.checkpoint_every, 1),
        ("optim.iterations", cfg.optim.iterations, 1),
        ("optim.batch_size", cfg.optim.batch_size, 1),
        ("data.validation_size", cfg.data.validation_size, 0),
        ("data.patches_per_head", cfg.data.patches_per_head, 1),
    ):
        if not whole(value) or (low is not None and value < low):
            raise bad(key, "a whole number" + (f" of at least {low}" if low is not None else ""))
    if not (number(cfg.optim.lr) and cfg.optim.lr > 0):
        raise bad("optim.lr", "a learning rate above 0")
    if not (number(cfg.optim.weight_decay) and cfg.optim.weight_decay >= 0):
        raise bad("optim.weight_decay", "0 or more")
    if not all(number(w) and w >= 0 for w in cfg.optim.class_weights) or not any(cfg.optim.class_weights):
        raise bad("optim.class_weights", "numbers of 0 or more, not all 0")
    if cfg.time_budget_min is not None and not (number(cfg.time_budget_min) and cfg.time_budget_min > 0):
        raise bad("time_budget_min", "minutes above 0, or null for no limit")
    if cfg.data.patch is not None and not all(whole(p) and p > 0 for p in cfg.data.patch):
        raise bad("data.patch", "whole numbers above 0")
    if any(
        not isinstance(step, (list, tuple))
        or len(step) != 2
        or not whole(step[0])
        or not number(step[1])
        or step[0] < 0
        or step[1] <= 0
        for step in cfg.optim.lr_steps
    ):
        raise bad("optim.lr_steps", "a list of [iteration, learning rate] pairs, rates positive")
    if not 0.0 <= cfg.data.feature_patch_fraction <= 1.0:
        raise bad("data.feature_patch_fraction", "between 0 and 1")
    if not isinstance(cfg.data.workers, int) or cfg.data.workers < 0:
        raise bad("data.workers", "0 (a background thread) or a number of worker processes")
    if isinstance(cfg.data.cache_mb, bool) or not isinstance(cfg.data.cache_mb, int) or cfg.data.cache_mb < 0:
        raise bad("data.cache_mb", "0 (read every draw) or the MiB of dataset images kept per process")
    if not isinstance(cfg.deterministic, bool):
        raise bad("deterministic", "true or false")
    if cfg.deterministic and cfg.engine not in ("torch", "auto"):
        raise bad("deterministic", "only the torch engine chooses deterministic kernels")
    if cfg.input_stride not in (1, 2, 4):
        raise bad("input_stride", "1 (no stem), 2 or 4")
    if not isinstance(cfg.convs_per_level, int) or cfg.convs_per_level < 1:
        raise bad("convs_per_level", "a positive integer")
    stride = cfg.stride
    if cfg.task == "text":
        return _validate_text(cfg, stride, bad, given or {})
    if cfg.data.text_options:
        raise bad("data.text_options", "only for task: text (the head generator takes synthetic_options)")
    if cfg.input_channels not in (1, 2):
        raise bad("input_channels", "1 (the image) or 2 (the image and the depth under the skin)")
    if len(cfg.grid.shape) != 3 or min(cfg.grid.shape) < 16:
        raise bad("grid.shape", "three sizes of at least 16")
    if any(s % stride for s in cfg.grid.shape):
        raise bad("grid.shape", f"sizes must be multiples of {stride} (the network's stride)")
    if cfg.data.patch is not None and (
        len(cfg.data.patch) != 3
        or any(p % stride or p > g for p, g in zip(cfg.data.patch, cfg.grid.shape, strict=True))
    ):
        raise bad("data.patch", f"three multiples of {stride} no larger than grid.shape")
    if not cfg.data.synthetic and not cfg.data.datasets:
        raise bad("data", "no training data: set synthetic: true or list datasets")
    if cfg.data.synthetic and cfg.data.datasets and cfg.data.synthetic_fraction >= 1.0:
        raise bad(
            "data.synthetic_fraction",
            "1.0 with datasets listed: every head would be synthetic and the datasets never used; set it "
            "below 1 (the share of synthetic heads, e.g. 0.5) or synthetic: false",
        )
    if not 0.0 <= cfg.data.synthetic_fraction <= 1.0:
        raise bad("data.synthetic_fraction", "between 0 and 1")
    if cfg.data.reader not in ("builtin", "ecvl"):
        raise bad("data.reader", "'builtin' or 'ecvl'")
    if cfg.data.ecvl_augmentations is not None and (
        cfg.data.reader != "ecvl" or not isinstance(cfg.data.ecvl_augmentations, str)
    ):
        raise bad("data.ecvl_augmentations", "an ECVL augmentation text, used with data.reader: ecvl")
    if len(cfg.optim.class_weights) != 5:
        raise bad("optim.class_weights", "five weights: background, eyes, nose, mouth, ears")
    return cfg


def _validate_text(cfg: TrainConfig, stride: int, bad: Any, given: dict[str, Any]) -> TrainConfig:
    """The checks of ``task: text`` (the 2D text-region U-Net on synthetic text images)."""
    if "grid" in given:
        raise bad("grid", "not used by task: text (text images keep their own size); remove it")
    data = given.get("data") if isinstance(given.get("data"), dict) else {}
    for key, why in (
        ("datasets", "task: text trains on synthetic text images only"),
        ("synthetic_options", "task: text takes data.text_options (SynthTextGenerator options)"),
        ("synthetic_fraction", "task: text trains on synthetic text images only"),
        ("reader", "task: text trains on synthetic text images only"),
        ("ecvl_augmentations", "task: text trains on synthetic text images only"),
    ):
        if key in data:
            raise bad(f"data.{key}", why)
    if not cfg.data.synthetic:
        raise bad("data.synthetic", "task: text trains on synthetic text images; it must be true")
    if cfg.input_channels != 3:
        raise bad("input_channels", "task: text takes the displayed RGB frame: 3")
    patch = cfg.data.patch
    if patch is None or len(patch) != 2 or any(not isinstance(p, int) or p < 1 or p % stride for p in patch):
        raise bad("data.patch", f"two sizes (rows, columns), multiples of {stride} (the network's stride)")
    for key in ("seed", "fonts"):
        if key in cfg.data.text_options:
            raise bad(
                f"data.text_options.{key}",
                "set by the trainer (training: seed and the training fonts; validation: "
                "validation_seed and the held-out fonts)",
            )
    size_range = cfg.data.text_options.get("size_range")
    if (
        isinstance(size_range, (list, tuple))
        and all(isinstance(s, (int, float)) for s in size_range)
        and max(patch) > min(size_range)
    ):
        raise bad("data.patch", f"no larger than the smallest image (text_options.size_range {size_range})")
    if len(cfg.optim.class_weights) != 2:
        raise bad("optim.class_weights", "two weights: background, text")
    return cfg


def _with_task_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` completed with :data:`TASK_DEFAULTS` of its task (what the YAML says wins)."""
    defaults = TASK_DEFAULTS.get(raw.get("task", "deface"))
    if not defaults:
        return raw
    out = dict(raw)
    for key, value in defaults.items():
        if isinstance(value, dict):
            given = out.get(key)
            if given is None:
                out[key] = dict(value)
            elif isinstance(given, dict):
                out[key] = {**value, **given}
        elif key not in out:
            out[key] = value
    return out


def load_config(path: str | os.PathLike[str], **overrides: Any) -> TrainConfig:
    """Read a training YAML; ``overrides`` replace top-level keys (e.g. ``engine='eddl'``).

    Relative dataset paths and ``out_dir`` are resolved against the YAML file's folder.

    Raises:
        ConfigError: Malformed YAML, unknown keys, wrong types or values; the
            message names the file and the key.
    """
    import yaml

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"{p}: no such configuration file") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    raw = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
    given = raw
    cfg = _build(TrainConfig, _with_task_defaults(raw), "", str(p))
    base = p.parent
    data = cfg.data
    if not all(isinstance(d, str) and d for d in data.datasets):
        raise ConfigError(f"{path}: data.datasets: a list of dataset YAML paths")
    datasets = tuple(str((base / d).resolve()) if not os.path.isabs(d) else d for d in data.datasets)
    out_dir = cfg.out_dir if os.path.isabs(cfg.out_dir) else str((base / cfg.out_dir).resolve())
    init = cfg.init
    if init is not None:
        if not isinstance(init, str):
            raise ConfigError(f"{p}: init: expected the path of a model file, got {init!r}")
        if init != "shipped":
            init = init if os.path.isabs(init) else str((base / init).resolve())
        if init != "shipped" and not os.path.isfile(init):
            where = "--init" if overrides.get("init") is not None else f"{p}: init"
            what = "a folder, not a model file" if os.path.isdir(init) else "no such model file"
            raise ConfigError(f"{where}: {what}: {init}")
    from dataclasses import replace

    cfg = replace(cfg, data=replace(data, datasets=datasets), out_dir=out_dir, init=init)
    return _validate(cfg, str(p), given)
