"""Training the networks from YAML configurations."""

from __future__ import annotations

from .config import TrainConfig, load_config
from .loop import TrainResult, dice_per_class, train

__all__ = ["TrainConfig", "TrainResult", "load_config", "train", "dice_per_class"]
