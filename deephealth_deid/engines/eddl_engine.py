"""The EDDL engine (DeepHealth toolkit): a placeholder until the engine lands (issue #5).

What exists now is what the registry needs: :func:`is_available` says whether
``pyeddl`` imports, and :func:`require` raises
:class:`~deephealth_deid.errors.EngineUnavailableError` saying either what to
install or that the engine is not implemented yet. ``pyeddl`` is imported only
inside these functions.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from ..errors import EngineUnavailableError
from .registry import INSTALL_HINTS

__all__ = ["create", "is_available", "require"]

logger = logging.getLogger(__name__)


def _import_error() -> Exception | None:
    """The exception importing ``pyeddl.eddl`` raises, or ``None`` when it imports."""
    try:
        import pyeddl.eddl  # noqa: F401
    except Exception as e:  # also a missing libeddl.so, or bindings built for another EDDL
        return e
    return None


def is_available() -> bool:
    """Whether ``pyeddl`` (the EDDL library and its Python bindings) imports."""
    return _import_error() is None


def require() -> NoReturn:
    """Raise the error a user of the EDDL engine gets in this version.

    Raises:
        EngineUnavailableError: ``pyeddl`` cannot be imported (the message says
            what to install), or it imports but the engine is not implemented yet.
    """
    error = _import_error()
    if error is not None:
        raise EngineUnavailableError(
            f"the 'eddl' engine needs pyeddl, which cannot be imported ({error}). To use it, "
            f"{INSTALL_HINTS['eddl']}; or use --engine torch"
        ) from error
    raise EngineUnavailableError(
        "pyeddl imports, but the EDDL engine is not implemented yet in this version of "
        "deephealth_deid; use --engine torch"
    )


def create(*, device: str = "auto") -> NoReturn:
    """Make the EDDL engine (not implemented yet: raises what :func:`require` raises)."""
    require()
