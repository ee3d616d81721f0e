"""``deid train CONFIG``: train a network from a YAML configuration (resumable)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from ._common import at_least, make_parser, run

log = logging.getLogger("deephealth_deid.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "train",
        "Train a network from a YAML configuration: the defacing U-Net (task: deface, see "
        "training/deface.yaml; synthetic heads and/or DeepHealth YAML datasets) or the text-region "
        "detector (task: text, see training/text.yaml; synthetic text images). Validation Dice per class, "
        "checkpoints, resume after interruption.",
    )
    parser.add_argument("config", type=Path, help="training configuration (YAML)")
    parser.add_argument("--engine", choices=("auto", "torch", "eddl"), help="override the config's engine")
    parser.add_argument("--device", help="override the config's device: cpu, cuda, cuda:N or auto")
    parser.add_argument("--out-dir", type=Path, help="override the config's output folder")
    parser.add_argument("--iterations", type=at_least(1), help="override optim.iterations")
    parser.add_argument("--batch-size", type=at_least(1), help="override optim.batch_size")
    parser.add_argument(
        "--workers",
        type=at_least(0),
        help="override data.workers: processes drawing training samples (0: one background thread; "
        "on a GPU about one per spare CPU core)",
    )
    parser.add_argument(
        "--init",
        metavar="MODEL",
        help="start from this model file's weights (fine-tuning), or 'shipped' for the task's shipped "
        "model; the configuration's network must be the model's",
    )
    parser.add_argument(
        "--lr", type=float, help="a constant learning rate (replaces optim.lr and optim.lr_steps)"
    )
    parser.add_argument("--time-budget-min", type=float, help="stop (and save) after this many minutes")
    parser.add_argument("--no-resume", action="store_true", help="start again even if a checkpoint exists")
    return parser


def _train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..errors import ConfigError
    from ..train import load_config, train

    cfg = load_config(
        args.config,
        engine=args.engine,
        device=args.device,
        out_dir=str(args.out_dir.resolve()) if args.out_dir else None,
        time_budget_min=args.time_budget_min,
        init=str(Path(args.init).resolve()) if args.init and args.init != "shipped" else args.init,
    )
    if args.iterations is not None:
        cfg = replace(cfg, optim=replace(cfg.optim, iterations=args.iterations))
    if args.batch_size is not None:
        cfg = replace(cfg, optim=replace(cfg.optim, batch_size=args.batch_size))
    if args.lr is not None:
        if not args.lr > 0:
            raise ConfigError(f"--lr: a learning rate must be positive, got {args.lr}")
        cfg = replace(cfg, optim=replace(cfg.optim, lr=args.lr, lr_steps=()))
    if args.workers is not None:
        cfg = replace(cfg, data=replace(cfg.data, workers=args.workers))
    result = train(cfg, resume=not args.no_resume)
    best = result.best_dice
    log.info(
        "model %s after %d iterations (%.0f s this run); %s",
        result.model_path,
        result.iterations,
        result.seconds,
        (
            f"best validation mean Dice {best['mean']:.3f} at iteration {best['iteration']}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in best.items() if k not in {"mean", "iteration", "sets"})
            if best
            else "no validation (the last weights)"
        ),
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deid train``; returns the exit code."""
    return run(build_parser(), argv, _train)
