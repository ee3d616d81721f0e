"""Small helpers shared by the synthetic data generators."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["probabilities"]


def probabilities(given: Mapping[str, float], known: Iterable[str], what: str) -> dict[str, float]:
    """Normalise named probabilities, refusing unknown names and negative or all-zero weights.

    Args:
        given: Name -> relative weight.
        known: The names allowed.
        what: What they are, for the error message (e.g. ``"contrasts"``).

    Returns:
        Name -> probability, names with weight 0 left out.

    Raises:
        ValueError: Unknown names, a negative weight, or no positive weight.
    """
    known = list(known)
    unknown = [k for k in given if k not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; choose from {known}")
    total = float(sum(given.values()))
    if total <= 0 or any(v < 0 for v in given.values()):
        raise ValueError(f"{what} needs non-negative probabilities with a positive sum")
    return {k: float(v) / total for k, v in given.items() if v > 0}
