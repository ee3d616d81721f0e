"""Reading pixel data through ECVL (``pyecvl``), the DeepHealth toolkit's image library.

``load_volume(path, reader="ecvl")`` reads the pixels with ECVL and takes the
geometry (affine) and the source header from the built-in reader, after
checking that both agree on the shape and spacing. What ECVL 1.0.3 does
differently, and how it is handled:

- NIfTI: same axis order as nibabel; the slope/intercept scaling is not
  applied by ECVL, so it is applied here. ECVL's own gzip decoder fails on some
  ``.nii.gz`` streams: that is reported as an error, not worked around.
- DICOM: ECVL reads one frame per file, as (columns, rows); slices are read one
  by one, transposed and stacked in the order the built-in reader sorted them.
  ECVL applies the rescale slope/intercept itself but rounds non-integer
  results, so a series with a fractional slope is refused. Enhanced
  (multi-frame) files are refused: ECVL returns only their first frame.
"""

from __future__ import annotations

import numpy as np

from ..errors import EngineUnavailableError, UnsupportedInputError
from .volume import Volume

__all__ = ["is_available", "reread_with_ecvl"]

INSTALL_HINT = (
    "reading through ECVL needs the ECVL library and its Python bindings: install them from the "
    "DeepHealth conda channel (conda install -c dhealth pyecvl-cpu) or build ECVL and `pip install pyecvl`; "
    "or use reader='builtin'"
)


def _ecvl():
    try:
        import pyecvl.ecvl as ecvl
    except ImportError as e:
        raise EngineUnavailableError(f"pyecvl cannot be imported ({e}); {INSTALL_HINT}") from e
    return ecvl


def is_available() -> bool:
    """Whether ``pyecvl`` can be imported here."""
    try:
        _ecvl()
    except EngineUnavailableError:
        return False
    return True


def reread_with_ecvl(volume: Volume) -> Volume:
    """The same volume with its voxel values read again by ECVL.

    Raises:
        EngineUnavailableError: pyecvl cannot be imported.
        UnsupportedInputError: ECVL cannot read this input faithfully (see the module notes).
    """
    ecvl = _ecvl()
    fmt = volume.format
    path = volume.path
    if fmt == "nifti":
        array = _nifti(ecvl, volume)
    elif fmt == "dicom-series":
        array = _series(ecvl, volume)
    else:
        raise UnsupportedInputError(
            f"{path}: ECVL reads only the first frame of an Enhanced DICOM file; use reader='builtin'"
        )
    if array.shape != volume.shape:
        raise UnsupportedInputError(
            f"{path}: ECVL read shape {array.shape}, the header says {volume.shape}; use reader='builtin'"
        )
    return volume.with_array(array)


def _nifti(ecvl, volume: Volume) -> np.ndarray:
    src = volume.source
    try:
        img = ecvl.NiftiRead(str(volume.path))
    except RuntimeError as e:
        raise UnsupportedInputError(
            f"{volume.path}: ECVL cannot read this file ({e}); ECVL's gzip decoder fails on some "
            ".nii.gz streams: decompress it (gunzip) or use reader='builtin'"
        ) from e
    spacing = tuple(float(s) for s in img.spacings_[:3])
    if not np.allclose(spacing, _header_zooms(src), atol=1e-4):
        raise UnsupportedInputError(
            f"{volume.path}: ECVL reports spacing {spacing}, the header {_header_zooms(src)}"
        )
    array = np.array(img)
    if array.ndim == 4:
        array = array[..., src.index or 0]
    slope, inter = src.header.get_slope_inter()
    if slope is not None and (slope != 1 or (inter or 0) != 0):
        array = array.astype(np.float64) * slope + (inter or 0.0)
    return array.astype(volume.array.dtype, copy=False)


def _header_zooms(src) -> tuple[float, float, float]:
    return tuple(float(z) for z in src.header.get_zooms()[:3])  # type: ignore[return-value]


def _series(ecvl, volume: Volume) -> np.ndarray:
    src = volume.source
    slopes = np.asarray(src.slopes, dtype=np.float64)
    inters = np.asarray(src.intercepts, dtype=np.float64)
    if not (np.all(slopes == np.round(slopes)) and np.all(inters == np.round(inters))):
        raise UnsupportedInputError(
            f"{volume.path}: the series has a fractional rescale slope or intercept, which ECVL rounds; "
            "use reader='builtin'"
        )
    slices = []
    for j in src.order:
        path = src.files[j]
        try:
            img = ecvl.DicomRead(str(path))
        except RuntimeError as e:
            raise UnsupportedInputError(
                f"{path}: ECVL cannot read this DICOM file ({e}); use reader='builtin'"
            ) from e
        arr = np.array(img)
        slices.append(arr[:, :, 0].T)
    return np.stack(slices, axis=-1).astype(volume.array.dtype, copy=False)
