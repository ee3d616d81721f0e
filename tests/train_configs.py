"""Write small training configurations for tests (a base mapping plus changes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

#: A defacing run on a coarse grid with a tiny network: a few seconds on 2 CPU cores.
TINY_DEFACE: dict[str, Any] = {
    "task": "deface",
    "engine": "torch",
    "device": "cpu",
    "seed": 3,
    "threads": 1,
    "widths": [4, 8],
    "input_channels": 2,
    "grid": {"spacing_mm": 6.0, "shape": [40, 44, 44]},
    "data": {
        "synthetic": True,
        "validation_size": 1,
        "patch": [16, 16, 16],
        "patches_per_head": 2,
        "synthetic_options": {"contrasts": {"t1": 1.0}},
    },
    "optim": {"iterations": 4, "batch_size": 2, "lr": 0.01},
    "validate_every": 2,
    "checkpoint_every": 2,
    "out_dir": "run",
}


def write_config(folder: Path, base: dict[str, Any], name: str = "train.yaml", **changes: object) -> Path:
    """``base`` with ``changes`` (mappings are merged one level deep), written as YAML in ``folder``."""
    cfg = json.loads(json.dumps(base))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path = folder / name
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path
