"""The in-memory volume every pipeline works on: an array, its affine and its source."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Volume"]


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image with its voxel-to-world transform.

    Attributes:
        array: The voxel values, 3D, in the order they are stored in the source
            (no reorientation). Scaled data (NIfTI slope/intercept, DICOM
            rescale) is already applied.
        affine: 4x4 voxel-to-world matrix, world in millimetres, RAS+ (the
            NIfTI/nibabel convention): world = ``affine @ [i, j, k, 1]``.
        source: What the writer needs to write the volume back in the format it
            came from (a header, DICOM datasets). ``None`` for a volume built in
            memory; it is then written as NIfTI.
        path: Where the volume was read from, if anywhere.

    Example:
        >>> import numpy as np
        >>> vol = Volume(np.zeros((4, 5, 6), np.int16), np.diag([1.0, 1.0, 2.0, 1.0]))
        >>> vol.spacing
        (1.0, 1.0, 2.0)
        >>> vol.axcodes
        ('R', 'A', 'S')
    """

    array: np.ndarray
    affine: np.ndarray
    source: Any = field(default=None, repr=False)
    path: Path | None = None

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        affine = np.asarray(self.affine, dtype=np.float64)
        if array.ndim != 3:
            raise ValueError(f"a Volume array must be 3D, got shape {array.shape}")
        if affine.shape != (4, 4):
            raise ValueError(f"a Volume affine must be 4x4, got shape {affine.shape}")
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Number of voxels along each array axis."""
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis (length of the affine's columns)."""
        zooms = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return tuple(float(z) for z in zooms)  # type: ignore[return-value]

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Anatomical direction each array axis points to, e.g. ``('R', 'A', 'S')``."""
        return axcodes_of(self.affine)

    @property
    def format(self) -> str:
        """The format the volume was read from (``'nifti'``, ``'dicom-series'``, ...)."""
        return getattr(self.source, "format", "nifti")

    def with_array(self, array: np.ndarray) -> Volume:
        """A new volume with other voxel values and the same geometry and source.

        Args:
            array: New values, same shape as :attr:`array`.

        Raises:
            ValueError: If the shape differs.
        """
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} differs from the volume's {self.array.shape}")
        return replace(self, array=array)


def axcodes_of(affine: np.ndarray) -> tuple[str, str, str]:
    """Anatomical codes of the array axes of an affine (nearest RAS axis, with sign)."""
    from nibabel.orientations import aff2axcodes

    return tuple(aff2axcodes(np.asarray(affine, dtype=np.float64)))  # type: ignore[return-value]
