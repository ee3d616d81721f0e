"""NIfTI-1 and NIfTI-2 reading and writing that keeps the source header.

A volume read here and written back unchanged gives the same stored bytes:
the data type, the scaling (slope/intercept), the qform and sform with their
codes, and every other header field are kept. Scaled data is unscaled with the
source's own slope and intercept, so voxels that were not changed come back
bit-exact.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CorruptInputError, InvalidDataError, UnsupportedInputError, WrongKindError
from ._files import atomic_file, check_fits_in_memory
from .volume import Volume

__all__ = ["NiftiSource", "read_nifti", "write_nifti", "NIFTI_SUFFIXES"]

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class NiftiSource:
    """What is kept from a NIfTI file to write it back."""

    header: object  # nibabel Nifti1Header or Nifti2Header
    affine: np.ndarray
    index: int | None = None
    format: str = "nifti"


def read_nifti(path: Path, *, index: int | None = None) -> Volume:
    """Read a NIfTI-1/2 file (``.nii`` or ``.nii.gz``) into a :class:`Volume`.

    Args:
        path: The file.
        index: For a 4D file, which volume (0-based) to read. Required for 4D.

    Raises:
        CorruptInputError: Damaged or truncated file.
        WrongKindError: A 2D image, or a 4D file without ``index``.
        InvalidDataError: A zero-sized axis, or NaN/Inf values.
        TooLargeError: The data would not fit in memory (checked from the header).
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.openers import ImageOpener
    from nibabel.spatialimages import HeaderDataError

    try:
        img = nib.load(str(path))
    except (ImageFileError, HeaderDataError, OSError, EOFError, zlib.error, ValueError) as e:
        raise CorruptInputError(f"{path}: not a readable NIfTI file ({e})") from e
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise UnsupportedInputError(f"{path}: {type(img).__name__} is not NIfTI; convert it to NIfTI")
    shape = tuple(int(n) for n in img.shape)
    if any(n == 0 for n in shape):
        raise InvalidDataError(f"{path}: the header gives a zero-sized axis {shape}; the file holds no image")
    extra = shape[3:]
    if len(shape) < 3 or min(shape[:3]) < 2:
        raise WrongKindError(
            f"{path}: a 2D image of shape {shape}, not a volume; 2D images are read from DICOM, PNG, JPEG "
            "or TIFF (load_image, deid redact), not from NIfTI"
        )
    if len(extra) and int(np.prod(extra)) > 1:
        if len(extra) > 1:
            raise WrongKindError(f"{path}: a {len(shape)}D image {shape}; only 3D and 4D files are read")
        if index is None:
            raise WrongKindError(
                f"{path}: a 4D file with {extra[0]} volumes; choose one with index=N "
                "(CLI: --volume N of deid deface, info or convert)"
            )
        if not 0 <= index < extra[0]:
            raise WrongKindError(f"{path}: volume index {index} is outside 0..{extra[0] - 1}")
    elif index not in (None, 0):
        raise WrongKindError(f"{path}: a 3D file has no volume {index}")
    # nibabel moves the scaling out of img.header on load: keep the header as stored.
    with ImageOpener(str(path)) as f:
        hdr = img.header_class.from_fileobj(f)
    slope, inter = hdr.get_slope_inter()
    scaled = slope is not None and (slope != 1 or (inter or 0) != 0)
    itemsize = np.dtype(np.float64 if scaled else hdr.get_data_dtype()).itemsize
    check_fits_in_memory(path, int(np.prod(shape[:3])) * itemsize * 2, what="the volume")
    try:
        if len(shape) > 3:
            data = np.asanyarray(img.dataobj[..., index if index is not None else 0])
            data = data.reshape(shape[:3])
        else:
            data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise CorruptInputError(
            f"{path}: the image data is truncated or damaged ({e}); copy the file again"
        ) from e
    data = np.asarray(data)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        n = int((~np.isfinite(data)).sum())
        raise InvalidDataError(
            f"{path}: {n} voxels are NaN or infinite; replace them (e.g. with 0) before processing"
        )
    source = NiftiSource(header=hdr, affine=img.affine.copy(), index=index)
    return Volume(data, img.affine, source=source, path=Path(path))


def write_nifti(volume: Volume, path: Path) -> None:
    """Write ``volume`` to ``path`` (``.nii`` or ``.nii.gz``), atomically.

    With a NIfTI source the header is kept: data type, scaling, qform/sform and
    their codes (the affine is updated only if the volume's affine changed).
    Header extensions are left out (they can carry identifying data), with a
    warning.
    Values that do not fit the stored type are clipped, with a warning.
    """
    import nibabel as nib
    from nibabel.openers import ImageOpener
    from nibabel.volumeutils import array_to_file

    src = volume.source if isinstance(volume.source, NiftiSource) else None
    data = volume.array
    if src is not None:
        hdr = src.header.copy()
        stored = hdr.get_data_dtype()
        slope, inter = hdr.get_slope_inter()
        raw = _unscale(data, stored, slope, inter, path)
        if hdr.get_data_shape() != raw.shape:  # one volume of a 4D file
            hdr.set_data_shape(raw.shape)
        if hdr.extensions:
            # Extensions can carry identifying data (dcm2niix's DICOM header, AFNI's history),
            # and nibabel re-pads them while the data offset stays: they are left out.
            log.warning("%s: %d NIfTI header extension(s) left out", path.name, len(hdr.extensions))
            hdr.extensions.clear()
        hdr.set_data_offset(hdr.single_vox_offset)
        if not np.allclose(volume.affine, src.affine, atol=1e-6):
            hdr.set_qform(volume.affine, code=int(hdr["qform_code"]) or 1)
            hdr.set_sform(volume.affine, code=int(hdr["sform_code"]) or 1)
        # Written by hand rather than through nibabel's image writer, which
        # would choose a new scaling: the source's scaling is kept exactly.
        with atomic_file(path) as tmp, ImageOpener(tmp, "wb") as f:
            hdr.write_to(f)
            array_to_file(raw, f, stored, offset=hdr.get_data_offset(), order="F")
        return
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    elif data.dtype in (np.int64, np.uint64):
        data = data.astype(np.int32) if _fits(data, np.int32) else data.astype(np.float64)
    img = nib.Nifti1Image(data, volume.affine, dtype=data.dtype)
    img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=1)
    with atomic_file(path) as tmp:
        nib.save(img, str(tmp))


def _fits(a: np.ndarray, dtype: type) -> bool:
    info = np.iinfo(dtype)
    return a.size == 0 or (a.min() >= info.min and a.max() <= info.max)


def _unscale(
    data: np.ndarray, stored: np.dtype, slope: float | None, inter: float | None, path: Path
) -> np.ndarray:
    """Turn values back into what the file stores, with the source scaling."""
    scaled = slope is not None and (slope != 1 or (inter or 0) != 0)
    raw = (data.astype(np.float64) - (inter or 0.0)) / slope if scaled else data
    if stored.kind in "iu":
        if raw.dtype.kind == "f":
            if not np.isfinite(raw).all():
                bad = int((~np.isfinite(raw)).sum())
                raise InvalidDataError(
                    f"{path}: {bad} voxels are NaN or infinite, which the stored type {stored} cannot hold; "
                    "replace them (e.g. with 0) before saving"
                )
            raw = np.rint(raw)
        info = np.iinfo(stored)
        lo, hi = raw.min() if raw.size else 0, raw.max() if raw.size else 0
        if lo < info.min or hi > info.max:
            log.warning(
                "%s: values outside the stored type %s were clipped to [%s, %s]",
                path.name,
                stored,
                info.min,
                info.max,
            )
            raw = np.clip(raw, info.min, info.max)
    return np.asarray(raw).astype(stored, copy=False)
