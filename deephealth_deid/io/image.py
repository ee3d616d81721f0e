"""The in-memory 2D image every text pipeline works on: frames plus their meaning."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Image", "PHOTOMETRIC"]

#: Photometric meanings an :class:`Image` can carry.
PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR")


@dataclass(frozen=True, eq=False)
class Image:
    """A 2D image or a sequence of frames (ultrasound cine, multi-frame DICOM).

    Attributes:
        frames: Pixel values, shape ``(frames, rows, columns)`` for grey and
            palette images or ``(frames, rows, columns, 3)`` for RGB. Always
            4D-or-3D with the frame axis first, even for a single frame.
        photometric: What a value means: ``'MONOCHROME2'`` (higher is
            brighter), ``'MONOCHROME1'`` (higher is darker), ``'RGB'`` (YBR
            sources are decoded to RGB), or ``'PALETTE COLOR'`` (values are
            indices into :attr:`palette`).
        palette: For ``'PALETTE COLOR'``, an ``(entries, 3)`` array of the
            red, green and blue lookup tables, indexed from ``palette_first``.
        palette_first: Pixel value mapped to the first palette entry.
        source: What the writer needs to write the image back in its format.
        path: Where the image was read from, if anywhere.

    Example:
        >>> import numpy as np
        >>> img = Image(np.zeros((1, 32, 48), np.uint8), "MONOCHROME2")
        >>> img.n_frames, img.rows, img.columns, img.is_color
        (1, 32, 48, False)
    """

    frames: np.ndarray
    photometric: str = "MONOCHROME2"
    palette: np.ndarray | None = field(default=None, repr=False)
    palette_first: int = 0
    source: Any = field(default=None, repr=False)
    path: Path | None = None

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames)
        if self.photometric not in PHOTOMETRIC:
            raise ValueError(f"photometric must be one of {PHOTOMETRIC}, got {self.photometric!r}")
        want = 4 if self.photometric == "RGB" else 3
        if frames.ndim != want or (want == 4 and frames.shape[-1] != 3):
            raise ValueError(
                f"{self.photometric} frames must have shape "
                f"{'(frames, rows, columns, 3)' if want == 4 else '(frames, rows, columns)'}, "
                f"got {frames.shape}"
            )
        if self.photometric == "PALETTE COLOR" and self.palette is None:
            raise ValueError("a PALETTE COLOR image needs its palette")
        object.__setattr__(self, "frames", frames)

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.frames.shape[0])

    @property
    def rows(self) -> int:
        """Number of rows (height) of each frame."""
        return int(self.frames.shape[1])

    @property
    def columns(self) -> int:
        """Number of columns (width) of each frame."""
        return int(self.frames.shape[2])

    @property
    def is_color(self) -> bool:
        """Whether values are colours (RGB or palette) rather than grey levels."""
        return self.photometric in ("RGB", "PALETTE COLOR")

    @property
    def format(self) -> str:
        """The format the image was read from (``'dicom'``, ``'png'``, ...)."""
        return getattr(self.source, "format", "png")

    def with_frames(self, frames: np.ndarray) -> Image:
        """A new image with other pixel values and the same meaning and source.

        Raises:
            ValueError: If the shape differs.
        """
        frames = np.asarray(frames)
        if frames.shape != self.frames.shape:
            raise ValueError(f"shape {frames.shape} differs from the image's {self.frames.shape}")
        return replace(self, frames=frames)

    def to_rgb(self) -> np.ndarray:
        """The frames as displayable 8-bit RGB, shape ``(frames, rows, columns, 3)``.

        Grey images are windowed to their full range (MONOCHROME1 inverted);
        palette images are looked up. Meant for display and QC, not for writing.
        """
        f = self.frames
        if self.photometric == "PALETTE COLOR":
            assert self.palette is not None
            idx = np.clip(f.astype(np.int64) - self.palette_first, 0, len(self.palette) - 1)
            lut = self.palette.astype(np.float64)
            top = 65535.0 if lut.size and lut.max() > 255 else 255.0  # 16-bit or 8-bit entries
            return (lut[idx] * (255.0 / top)).round().astype(np.uint8)
        if self.photometric == "RGB":
            return _to_uint8(f)
        grey = _to_uint8(f)
        if self.photometric == "MONOCHROME1":
            grey = 255 - grey
        return np.repeat(grey[..., None], 3, axis=-1)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a.copy()
    lo, hi = float(np.min(a)), float(np.max(a))
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return ((a.astype(np.float64) - lo) * scale).round().astype(np.uint8)
