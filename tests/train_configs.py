"""Write small training configurations for tests (a base mapping plus changes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


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
