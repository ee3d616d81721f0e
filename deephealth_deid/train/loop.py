"""The training loop: seeded, resumable, validated, logged.

The loop is the same for every task; :data:`TASKS` maps a task name to what
differs (the network spec, the model file's metadata and the sample source:
:class:`~.samples.DefaceSamples` or :class:`~.text_samples.TextSamples`). The
validation Dice is reported per foreground class, named after the spec's
class names (``eyes``, ``nose``, ``mouth``, ``ears``; ``text``).

Outputs in ``out_dir``: ``model.safetensors`` (best validation mean Dice, a
model file any engine loads), ``last.safetensors`` + ``optimizer.pt`` (resume
point, written every ``checkpoint_every`` iterations), ``metrics.jsonl`` (one
line per logged iteration and per validation), ``config.yaml``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .config import TrainConfig
from .feed import batches

__all__ = ["TASKS", "Samples", "TrainResult", "train", "dice_per_class"]

log = logging.getLogger(__name__)

FEATURES = ("eyes", "nose", "mouth", "ears")


class Samples(Protocol):
    """A task's source of training and validation pairs."""

    def training(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index``: input ``[C, *patch]`` float32 and labels ``[*patch]`` int64."""
        ...

    def validation(self) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
        """The validation pairs by set name (fixed, never used for training); empty sets left out."""
        ...


def _deface_task(config: TrainConfig) -> tuple[Any, dict[str, Any], Callable[[TrainConfig], Samples]]:
    """The 3D defacing U-Net on the head grid (image and depth under the skin)."""
    from ..nets import deface_unet_spec
    from .samples import DefaceSamples

    spec = deface_unet_spec(
        widths=tuple(config.widths),
        convs_per_level=config.convs_per_level,
        input_stride=config.input_stride,
        norm=config.norm,
        spacing=(config.grid.spacing_mm,) * 3,
        in_channels=config.input_channels,
    )
    metadata = {
        "task": "deface",
        "labels": {"1": "eyes", "2": "nose", "3": "mouth", "4": "ears"},
        "grid": {"spacing_mm": config.grid.spacing_mm, "shape": list(config.grid.shape)},
        "inputs": ["image", "depth"][: config.input_channels],
        "training": {"config": config.to_dict()},
    }
    return spec, metadata, DefaceSamples


def _text_task(config: TrainConfig) -> tuple[Any, dict[str, Any], Callable[[TrainConfig], Samples]]:
    """The 2D text-region U-Net on synthetic text images, fed the displayed RGB frame."""
    from ..nets import text_unet_spec
    from .text_samples import ACROSS, ALONG, TextSamples

    spec = text_unet_spec(
        widths=tuple(config.widths),
        convs_per_level=config.convs_per_level,
        input_stride=config.input_stride,
        norm=config.norm,
    )
    metadata = {
        "task": "text",
        "labels": {"1": "text"},
        "inputs": ["red", "green", "blue"],
        "input": {
            "frame": (
                "the frame as displayed, (rows, columns, 3) uint8 RGB: grey windowed to its full range "
                "and repeated over the channels, MONOCHROME1 inverted, palette looked up"
            ),
            "scale": "value / 255",
            "layout": "[N, 3, rows, columns], zero-padded to a multiple of the stride; never resized",
            "function": "deephealth_deid.text.network.network_input",
        },
        "target": (
            f"each string's ink grown by {ALONG} x its text height along its reading direction and "
            f"{ACROSS} x across, cut to its tight box"
        ),
        "training": {"config": config.to_dict()},
    }
    return spec, metadata, TextSamples


#: What differs between tasks: ``task -> f(config) -> (spec, metadata, samples class)``.
TASKS: dict[str, Callable[[TrainConfig], tuple[Any, dict[str, Any], Callable[[TrainConfig], Samples]]]] = {
    "deface": _deface_task,
    "text": _text_task,
}


@dataclass(frozen=True)
class TrainResult:
    """Where the model went and how good it was."""

    model_path: Path
    iterations: int
    #: The best validation: ``mean``, each class's Dice, ``iteration`` (and ``sets``, each
    #: validation set's Dice, when there are several); empty when nothing was validated.
    best_dice: dict[str, Any]
    seconds: float


def dice_per_class(
    pred: np.ndarray, truth: np.ndarray, classes: int = 5, *, names: Sequence[str] | None = None
) -> dict[str, float]:
    """Dice of each foreground class (NaN when absent from both).

    Args:
        pred: Predicted labels.
        truth: True labels.
        classes: Number of classes, background included (the defacer's five
            when ``names`` is not given).
        names: Names of the foreground classes 1, 2, ... (default: the
            defacing features).
    """
    names = FEATURES[: classes - 1] if names is None else tuple(names)
    out = {}
    for c, name in enumerate(names, start=1):
        p, t = pred == c, truth == c
        denom = p.sum() + t.sum()
        out[name] = float(2.0 * (p & t).sum() / denom) if denom else float("nan")
    return out


def _validate(
    engine: Any, model: Any, sets: dict[str, list[tuple[np.ndarray, np.ndarray]]], names: Sequence[str]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean Dice per class over all validation images, and per set (classes absent from both: NaN)."""
    pooled: dict[str, list[float]] = {n: [] for n in names}
    per_set = {}
    for set_name, pairs in sets.items():
        scores: dict[str, list[float]] = {n: [] for n in names}
        for x, y in pairs:
            logits = engine.predict(model, x[None])[0]
            pred = logits.argmax(axis=0)
            for name, d in dice_per_class(pred, y, names=names).items():
                if not np.isnan(d):
                    scores[name].append(d)
                    pooled[name].append(d)
        per_set[set_name] = _means(scores)
    return _means(pooled), per_set


def _means(scores: dict[str, list[float]]) -> dict[str, float]:
    return {n: float(np.mean(v)) if v else float("nan") for n, v in scores.items()}


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in scores.items()}


def train(config: TrainConfig, *, resume: bool = True, progress: bool | None = None) -> TrainResult:
    """Train the network of ``config.task``; resume from ``out_dir`` when a checkpoint is there.

    Raises:
        ConfigError: An unknown task.
    """
    import yaml

    from ..engines import get_engine
    from ..errors import ConfigError

    if config.task not in TASKS:
        raise ConfigError(f"task: unknown task {config.task!r} (known: {', '.join(TASKS)})")
    spec, metadata, samples_class = TASKS[config.task](config)

    out = Path(config.out_dir)
    last = out / "last.safetensors"
    if resume and (out / "state.json").is_file() and last.is_file():
        from ..engines import read_model_file

        _, saved, _, _ = read_model_file(last)
        if saved != spec:  # checked before anything in the run folder changes
            raise ConfigError(
                f"out_dir: {out} holds a run of a network that differs from the configuration's in "
                f"{_differing(spec, saved)}; give another out_dir (--out-dir), or --no-resume to start "
                "that run again from the beginning"
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    engine = get_engine(config.engine, device=config.device)
    if config.threads:
        engine.set_threads(config.threads)
    if engine.name == "torch":
        from ..engines.torch_engine import seeded

        settings = seeded(config.seed, deterministic=config.deterministic)
    elif config.deterministic:
        raise ConfigError(
            f"deterministic: only the torch engine chooses deterministic kernels, not {engine.name}"
        )
    else:
        settings = contextlib.nullcontext()
    with settings:
        return _run(config, engine, spec, metadata, samples_class, out, resume=resume, progress=progress)


def _run(
    config: TrainConfig,
    engine: Any,
    spec: Any,
    metadata: dict[str, Any],
    samples_class: Any,
    out: Path,
    *,
    resume: bool,
    progress: bool | None,
) -> TrainResult:
    """The training loop of :func:`train`, on its engine, seeded."""
    model = engine.build(spec, seed=config.seed)
    opt = engine.optimizer(model, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    start, best = 0, {}
    state_path, last_path = out / "state.json", out / "last.safetensors"
    if resume and state_path.is_file() and last_path.is_file():
        state = json.loads(state_path.read_text())
        model, _, _ = engine.load(last_path)
        model.train()
        opt = engine.optimizer(model, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
        _load_optimizer(engine, opt, out / "optimizer.pt")
        start, best = int(state["iteration"]), state.get("best") or {}
        if best.get("mean", -1.0) < 0:  # runs saved before validation was optional stored -1
            best = {}
        log.info(
            "resuming at iteration %d (%s)",
            start,
            f"best mean Dice {best['mean']:.3f}" if best else "no validation yet",
        )
        if config.init:
            log.info("init %s is not used: the run resumes from its own checkpoint", config.init)
    elif config.init:
        model = _initial_weights(engine, spec, config.init, config.task)
        opt = engine.optimizer(model, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    samples = samples_class(config)
    names = spec.class_names[1:]
    val = samples.validation()
    total = config.optim.iterations
    if start >= total:
        log.info(
            "the run in %s already reached iteration %d of %d; raise optim.iterations (--iterations) to "
            "train on",
            out,
            start,
            total,
        )
    if val:
        log.info("validation: %s", ", ".join(f"{len(pairs)} {name}" for name, pairs in val.items()))
    else:
        log.info(
            "no validation images (data.validation_size is 0, or no synthetic data and no labelled "
            "validation split): model.safetensors will hold the last weights"
        )
    bar = _progress(progress, start, total)
    t0 = time.monotonic()
    metrics = open(out / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in finally
    weights = list(config.optim.class_weights)
    done = start
    feed = batches(
        samples,
        start,
        total,
        config.optim.batch_size,
        workers=config.data.workers,
        make_samples=functools.partial(samples_class, config),
        patches_per_head=config.data.patches_per_head,
    )
    try:
        for it, (x, y) in feed:
            done = it + 1
            _set_lr(engine, opt, learning_rate(config, it))
            stats = engine.train_step(
                model, opt, x, y, class_weights=weights, dice_weight=config.optim.dice_weight
            )
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.3f}")
            if (it + 1) % 10 == 0:
                metrics.write(
                    json.dumps({"iteration": it + 1, "time_s": round(time.monotonic() - t0, 1), **stats})
                    + "\n"
                )
                metrics.flush()
            last = it + 1 == total
            over = config.time_budget_min is not None and time.monotonic() - t0 > config.time_budget_min * 60
            if val and ((it + 1) % config.validate_every == 0 or last or over):
                scores, per_set = _validate(engine, model, val, names)
                finite = [v for v in scores.values() if not np.isnan(v)]
                mean = float(np.mean(finite)) if finite else float("nan")
                record = {"iteration": it + 1, "validation_dice": scores, "mean": mean}
                if len(per_set) > 1:
                    record["sets"] = per_set
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                log.info(
                    "iteration %d: validation Dice %s%s",
                    it + 1,
                    _rounded(scores),
                    "".join(f"; {name} {_rounded(v)}" for name, v in per_set.items())
                    if len(per_set) > 1
                    else "",
                )
                if mean > best.get("mean", -1.0):
                    best = {"mean": mean, **scores, "iteration": it + 1}
                    if len(per_set) > 1:
                        best["sets"] = per_set
                    engine.save(
                        model,
                        spec,
                        out / "model.safetensors",
                        metadata={**metadata, "validation": best},
                        overwrite=True,
                    )
            if (it + 1) % config.checkpoint_every == 0 or last or over:
                engine.save(model, spec, last_path, metadata=metadata, overwrite=True)
                _save_optimizer(engine, opt, out / "optimizer.pt")
                state_path.write_text(json.dumps({"iteration": it + 1, "best": best}))
            if over:
                log.info("time budget of %g min reached at iteration %d", config.time_budget_min, it + 1)
                break
    finally:
        feed.close()
        metrics.close()
        if bar is not None:
            bar.close()
    if not val or not (out / "model.safetensors").exists():
        engine.save(model, spec, out / "model.safetensors", metadata=metadata, overwrite=True)
    return TrainResult(out / "model.safetensors", done, best, time.monotonic() - t0)


def _differing(spec: Any, other: Any) -> str:
    """The spec keys whose values differ, comma-separated."""
    ours, theirs = spec.to_dict(), other.to_dict()
    return ", ".join(sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)))


def _initial_weights(engine: Any, spec: Any, path: str, task: str) -> Any:
    """The model of file ``path`` (``"shipped"``: the task's shipped model), to train on.

    Its network must be the configuration's.

    Raises:
        ConfigError: The file holds another network (the differing keys are named).
    """
    from ..errors import ConfigError

    sha256 = None
    if path == "shipped":
        from ..shipped import shipped_model

        shipped = shipped_model(task)
        path, sha256 = str(shipped.path), shipped.sha256
    model, saved, _ = engine.load(path, sha256=sha256)
    if saved != spec:
        raise ConfigError(
            f"init: {path} holds a network that differs from the configuration's in "
            f"{_differing(spec, saved)}; set the configuration's widths, convs_per_level, input_stride, "
            "norm, input_channels (and grid.spacing_mm) to the model's"
        )
    log.info("starting from the weights of %s", path)
    model.train()
    return model


def learning_rate(config: TrainConfig, iteration: int) -> float:
    """The learning rate at ``iteration`` (0-based): ``optim.lr``, then the last step reached."""
    lr = config.optim.lr
    for start, value in sorted(config.optim.lr_steps):
        if iteration >= start:
            lr = float(value)
    return lr


def _set_lr(engine: Any, opt: Any, lr: float) -> None:
    engine.set_lr(opt, lr)


def _save_optimizer(engine: Any, opt: Any, path: Path) -> None:
    if engine.name != "torch":
        return
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(opt.state_dict(), tmp)
    tmp.replace(path)


def _load_optimizer(engine: Any, opt: Any, path: Path) -> None:
    if engine.name != "torch" or not path.is_file():
        return
    import torch

    opt.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def _progress(progress: bool | None, start: int, total: int) -> Any:
    import sys

    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="training", unit="it")
