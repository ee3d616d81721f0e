"""Text regions and the detector protocol every text finder implements.

A :class:`Region` is one box of burned-in text on one frame: where it is, how
sure the finder was, what it reads (when an OCR backend read it) and what the
policy decided to do with it. A :class:`Detector` finds regions on one frame;
the neural detector, the OCR-only detector and test fakes all fit it.

Example:
    >>> r = Region(frame=0, x0=10, y0=4, x1=90, y1=20, score=0.97)
    >>> r.width, r.height, r.decision
    (80, 16, 'blank')
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Region", "Detector", "SOURCES", "DECISIONS"]

#: Where a region comes from: a network, an OCR backend's own text detection, or a device rule.
SOURCES = ("net", "ocr", "rules")

#: What happens to a region's pixels.
DECISIONS = ("blank", "keep")


@dataclass(frozen=True)
class Region:
    """One box of burned-in text on one frame.

    Coordinates are pixels of the frame, ``x`` along columns and ``y`` along
    rows, with the end exclusive (the box is ``frame[y0:y1, x0:x1]``).

    Attributes:
        frame: Index of the frame (0 for a single-frame image).
        x0: First column of the box.
        y0: First row of the box.
        x1: Column after the last one.
        y1: Row after the last one.
        score: The finder's confidence that the box holds text, 0 to 1.
        text: What an OCR backend read in the box; ``None`` when nothing read it.
            This is patient data when the region is identifying: never log it.
        text_confidence: The OCR backend's confidence in ``text``, 0 to 1
            (0 when there is no text).
        source: ``'net'``, ``'ocr'`` or ``'rules'`` (see :data:`SOURCES`).
        decision: ``'blank'`` or ``'keep'``. Blank until a policy decides
            otherwise: a region nobody looked at is never kept.
        reason: Why the policy decided so, in words that never quote the text
            (``'allow-listed marker'``, ``'matches PatientName'``, ...).
        line_px: How thick the box's lines of text are, across their reading
            direction, in pixels (the network detector measures it); 0 when
            unknown, and then the box's shorter side stands for it. The margin
            blanked around the box grows with it.
        fitted: The box was cut to the ink it holds on a plain background
            (:mod:`~deephealth_deid.text.fit`): it already holds its thin
            margin, and is blanked as it is.
    """

    frame: int
    x0: int
    y0: int
    x1: int
    y1: int
    score: float = 1.0
    text: str | None = None
    text_confidence: float = 0.0
    source: str = "net"
    decision: str = "blank"
    reason: str = ""
    line_px: int = 0
    fitted: bool = False

    def __post_init__(self) -> None:
        for name in ("frame", "x0", "y0", "x1", "y1", "line_px"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"Region.{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.frame < 0 or self.line_px < 0:
            raise ValueError(f"Region.frame and line_px must be >= 0, got {self.frame}, {self.line_px}")
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError(f"empty region box x {self.x0}..{self.x1}, y {self.y0}..{self.y1}")
        if self.source not in SOURCES:
            raise ValueError(f"Region.source must be one of {SOURCES}, got {self.source!r}")
        if self.decision not in DECISIONS:
            raise ValueError(f"Region.decision must be one of {DECISIONS}, got {self.decision!r}")
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "text_confidence", float(self.text_confidence))

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``."""
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def width(self) -> int:
        """Columns covered."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Rows covered."""
        return self.y1 - self.y0

    @property
    def line_height(self) -> int:
        """:attr:`line_px`, or the box's shorter side where it is unknown (a box of one line)."""
        return self.line_px or min(self.width, self.height)

    def with_(self, **changes: Any) -> Region:
        """A copy with some fields changed (the region is immutable)."""
        return replace(self, **changes)

    def clipped(self, rows: int, columns: int) -> Region | None:
        """The region cut to a ``rows`` x ``columns`` frame, or ``None`` if it lies outside."""
        x0, y0 = max(self.x0, 0), max(self.y0, 0)
        x1, y1 = min(self.x1, columns), min(self.y1, rows)
        if x1 <= x0 or y1 <= y0:
            return None
        if (x0, y0, x1, y1) == self.box:
            return self
        return replace(self, x0=x0, y0=y0, x1=x1, y1=y1)


@runtime_checkable
class Detector(Protocol):
    """Finds burned-in text on one frame.

    The pipeline calls :meth:`detect` once per distinct frame with the frame
    as displayed: ``(rows, columns, 3)`` uint8 RGB (grey images windowed to
    their full range and repeated over the channels, MONOCHROME1 inverted,
    palette images looked up), so a detector never needs to know the
    photometric interpretation. A detector may also be given a
    ``(rows, columns)`` uint8 grey frame by other callers.

    The regions returned may carry any ``frame`` index (the pipeline sets it),
    ``source`` (``'net'`` for a network), ``score``, and ``text`` /
    ``text_confidence`` when the detector also reads the text (the OCR
    detector does). Their ``decision`` is ignored: the policy decides.

    Example:
        >>> class Fixed:
        ...     def detect(self, frame):
        ...         return [Region(0, 0, 0, 40, 12, score=0.9)]
        >>> isinstance(Fixed(), Detector)
        True
    """

    def detect(self, frame: np.ndarray) -> list[Region]:
        """The text regions found on ``frame``."""
        ...
