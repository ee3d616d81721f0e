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
- 2D images (``load_image(path, reader="ecvl")``): ECVL gives (columns, rows,
  channels), colour from PNG/JPEG/TIFF in BGR order; both are undone here.
  Multi-frame files, and DICOM colour other than RGB (palette, YBR), are
  refused: ECVL does not read them as stored.
"""

from __future__ import annotations

import numpy as np

from ..errors import EngineUnavailableError, UnsupportedInputError
from .image import Image
from .volume import Volume

__all__ = ["is_available", "reread_image_with_ecvl", "reread_with_ecvl"]

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


def reread_image_with_ecvl(image: Image, *, dicom: bool) -> Image:
    """The same 2D image with its pixel values read again by ECVL.

    Args:
        image: The image as the built-in reader read it (its header, source
            and path are kept).
        dicom: Whether the file is DICOM (read with ``DicomRead``; otherwise
            ``ImRead``, which reads PNG, JPEG and TIFF through OpenCV).

    Raises:
        EngineUnavailableError: pyecvl cannot be imported.
        UnsupportedInputError: ECVL cannot read this image faithfully.
    """
    ecvl = _ecvl()
    path = image.path

    def refuse(why: str) -> UnsupportedInputError:
        return UnsupportedInputError(f"{path}: {why}; use reader='builtin'")

    if image.n_frames != 1:
        raise refuse(f"ECVL reads one frame of this {image.n_frames}-frame image")
    if dicom and image.photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB"):
        raise refuse(f"ECVL does not read {image.photometric} DICOM pixel data as stored")
    try:
        img = ecvl.DicomRead(str(path)) if dicom else ecvl.ImRead(str(path), ecvl.ImReadMode.UNCHANGED)
    except RuntimeError as e:
        raise refuse(f"ECVL cannot read this file ({e})") from e
    array = np.array(img)  # (columns, rows, channels)
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise refuse(f"ECVL returned an array of shape {array.shape}")
    if array.shape[2] == 1:
        frame = array[:, :, 0].T
    else:
        if str(img.colortype_).endswith("BGR"):
            array = array[:, :, ::-1]
        frame = array.transpose(1, 0, 2)
    want = image.frames[0]
    if frame.shape != want.shape:
        raise refuse(f"ECVL read shape {frame.shape}, the built-in reader {want.shape}")
    out = frame.astype(want.dtype)
    if not np.array_equal(out.astype(frame.dtype), frame):
        raise refuse(f"ECVL's {frame.dtype} values do not fit the image's {want.dtype}")
    if dicom and not np.array_equal(out, want):
        # The pixels are written back as stored values: values ECVL rescaled (RescaleSlope and
        # Intercept) would be stored rescaled, and scaled again by every viewer.
        raise refuse("ECVL's values differ from the stored pixel values (rescaled?)")
    return image.with_frames(out[None])
