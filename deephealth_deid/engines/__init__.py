"""Compute engines: PyTorch (what a plain install gets) and EDDL (the DeepHealth toolkit).

Every engine builds the networks of :mod:`deephealth_deid.nets` from the same
spec, and predicts, trains, saves and loads them; :func:`get_engine` picks one by
name or availability and says what to install when one is missing. Importing
this package imports no engine.

Example:
    >>> from deephealth_deid.engines import available_engines, get_engine
    >>> engine = get_engine("auto", device="cpu")  # doctest: +SKIP
"""

from __future__ import annotations

from .registry import (
    ENGINE_NAMES,
    INSTALL_HINTS,
    MODEL_FORMAT,
    Engine,
    available_engines,
    check_device_name,
    file_sha256,
    get_engine,
    get_predict_engine,
    is_available,
    read_model_file,
    write_model_file,
)

__all__ = [
    "ENGINE_NAMES",
    "INSTALL_HINTS",
    "MODEL_FORMAT",
    "Engine",
    "available_engines",
    "check_device_name",
    "file_sha256",
    "get_engine",
    "get_predict_engine",
    "is_available",
    "read_model_file",
    "write_model_file",
]
