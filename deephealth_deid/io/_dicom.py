"""DICOM helpers shared by the volume and the 2D image readers and writers.

What is written follows one rule: every attribute of the source is kept except
the pixel data and what a derived image must change (:data:`CHANGED_ATTRIBUTES`).
New UIDs are derived deterministically from the old ones, so processing the
same input twice gives the same output.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import CorruptInputError, DecoderUnavailableError, UnsupportedInputError
from ._files import atomic_file

__all__ = [
    "CHANGED_ATTRIBUTES",
    "read_dataset",
    "require_pixels",
    "check_decodable",
    "decode_pixels",
    "derived_uid",
    "mark_derived",
    "set_native_pixels",
    "write_dataset",
]

log = logging.getLogger(__name__)

#: Attributes a written file may differ in from its source (keywords). File
#: meta information (group 0002) is rewritten to match. Pixel attributes change
#: only where the pixel data written requires it (e.g. YBR decoded to RGB).
CHANGED_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "SOPInstanceUID",
        "SeriesInstanceUID",
        "ImageType",
        "PixelData",
        "TransferSyntaxUID",
        "PhotometricInterpretation",
        "PlanarConfiguration",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "NumberOfFrames",
        "LossyImageCompression",
        "LossyImageCompressionRatio",
        "LossyImageCompressionMethod",
        "SmallestImagePixelValue",
        "LargestImagePixelValue",
        "BurnedInAnnotation",
    }
)

_UID_SALT = "deephealth_deid derived"

#: Compressed transfer syntaxes that are always lossless (pydicom 3.0 has no ``UID.is_lossless``).
_LOSSLESS_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
        "1.2.840.10008.1.2.4.92",  # JPEG 2000 Multi-component Lossless
        "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
        "1.2.840.10008.1.2.5",  # RLE Lossless
    }
)


def read_dataset(path: Path, *, stop_before_pixels: bool = False) -> Any:
    """Read a DICOM file with pydicom, turning parse failures into clear errors."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CorruptInputError(f"{path}: not a readable DICOM file ({type(e).__name__}: {e})") from e


def require_pixels(ds: Any, path: Path) -> None:
    """Refuse a DICOM object without an image (report, DICOMDIR, presentation state)."""
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        what = str(getattr(ds, "SOPClassUID", None) and ds.SOPClassUID.name) or "a DICOM object"
        raise UnsupportedInputError(
            f"{path}: holds no pixel data ({what}); give an image file or a series of images"
        )
    for key in ("Rows", "Columns"):
        if int(getattr(ds, key, 0) or 0) == 0:
            raise CorruptInputError(f"{path}: {key} is missing or 0, so the image is empty")


def check_decodable(ds: Any, path: Path) -> None:
    """Raise if the pixel data is compressed with a syntax no installed decoder reads."""
    from pydicom.pixels import get_decoder

    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if tsyntax is None or not tsyntax.is_compressed:
        return
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as e:
        raise DecoderUnavailableError(
            f"{path}: pixel data is compressed as {tsyntax.name} ({tsyntax}), which no Python "
            "decoder reads; convert the file to an uncompressed or JPEG transfer syntax first "
            "(e.g. with dcmtk's dcmdjpeg or gdcmconv --raw)"
        ) from e
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
        raise DecoderUnavailableError(
            f"{path}: pixel data is compressed as {tsyntax.name}, and no decoder for it is installed; "
            f"install one of: {missing} (pip install pylibjpeg pylibjpeg-libjpeg "
            "pylibjpeg-openjpeg pylibjpeg-rle)"
        )


def decode_pixels(ds: Any, path: Path, **options: Any) -> np.ndarray:
    """Decode the pixel data (no modality or VOI LUT), wrapping decoder failures."""
    from pydicom.pixels import pixel_array

    check_decodable(ds, path)
    try:
        return pixel_array(ds, **options)
    except (ValueError, RuntimeError, NotImplementedError, EOFError, OSError, AttributeError, KeyError) as e:
        raise CorruptInputError(f"{path}: the pixel data cannot be decoded ({type(e).__name__}: {e})") from e


def derived_uid(uid: str) -> str:
    """A new UID derived deterministically from ``uid`` (same input, same output)."""
    import uuid

    # A name-based (SHA-1, version 5) UUID as a 2.25 UID: pydicom's generate_uid
    # ignores entropy_srcs when prefix is None and would return a random UID.
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'{_UID_SALT} {uid}').int}"


def mark_derived(ds: Any, *, image_type: bool = True) -> None:
    """Give ``ds`` the identity of a derived image, in place.

    New SOP Instance UID and Series Instance UID (derived from the old ones),
    ImageType value 1 set to DERIVED (unless ``image_type`` is false), file meta
    information made consistent. The Study and every other attribute are kept.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    if "SOPInstanceUID" in ds:
        ds.SOPInstanceUID = derived_uid(ds.SOPInstanceUID)
    if "SeriesInstanceUID" in ds:
        ds.SeriesInstanceUID = derived_uid(ds.SeriesInstanceUID)
    if image_type and "ImageType" in ds:
        values = list(ds.ImageType) if ds["ImageType"].VM > 1 else [str(ds.ImageType)]
        if values and values[0] != "DERIVED":
            values[0] = "DERIVED"
            ds.ImageType = values
    meta = ds.file_meta if getattr(ds, "file_meta", None) is not None else FileMetaDataset()
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"DHDEID_{__version__}"[:16]
    ds.file_meta = meta


#: (0088,0200) Icon Image Sequence: a small copy of the image (burned-in text, a face and all).
ICON_IMAGE_SEQUENCE = 0x00880200


def drop_icons(ds: Any) -> int:
    """Delete every Icon Image Sequence of ``ds``, at any depth, in place; returns how many.

    A sequence that holds one is replaced by a copy before it is changed, so a
    dataset that shares its element objects with a source header (a series
    written slice by slice) never changes that source.
    """
    count = 0
    if ICON_IMAGE_SEQUENCE in ds:
        del ds[ICON_IMAGE_SEQUENCE]
        count += 1
    for elem in list(ds):
        if elem.VR == "SQ" and elem.value and any(_holds_icon(item) for item in elem.value):
            fresh = copy.deepcopy(elem)
            count += sum(drop_icons(item) for item in fresh.value)
            ds[elem.tag] = fresh
    return count


def _holds_icon(item: Any) -> bool:
    return ICON_IMAGE_SEQUENCE in item or any(
        e.VR == "SQ" and any(_holds_icon(i) for i in e.value) for e in item
    )


def set_native_pixels(ds: Any, array: np.ndarray, *, photometric: str | None = None) -> None:
    """Store ``array`` uncompressed (Explicit VR Little Endian) in ``ds``, in place.

    ``array`` is ``(rows, cols)``, ``(frames, rows, cols)`` or the same with a
    trailing sample axis; its dtype must be the stored integer type. BitsStored
    and HighBit are kept when the values fit, and widened otherwise. A source
    that was lossy-compressed keeps saying so (LossyImageCompression 01).
    Every Icon Image Sequence is deleted (:func:`drop_icons`): a thumbnail of
    the old pixels would keep what was removed from them.
    """
    from pydicom.uid import ExplicitVRLittleEndian

    drop_icons(ds)

    tsyntax = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) else None
    lossy = tsyntax is not None and tsyntax.is_compressed and not tsyntax.is_deflated
    if lossy and tsyntax not in _LOSSLESS_SYNTAXES and ds.get("LossyImageCompression") != "01":
        ds.LossyImageCompression = "01"
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    if array.dtype.kind not in "iu" or array.dtype.itemsize > 4:
        raise ValueError(f"stored pixel data must be 8, 16 or 32-bit integers, got {array.dtype}")
    bits_alloc = array.dtype.itemsize * 8
    bits_stored = int(ds.get("BitsStored", bits_alloc) or bits_alloc)
    if bits_stored > bits_alloc or int(ds.get("BitsAllocated", bits_alloc)) != bits_alloc:
        bits_stored = bits_alloc
    if array.size:
        lo, hi = int(array.min()), int(array.max())
        signed = array.dtype.kind == "i"
        fits = (
            (-(1 << (bits_stored - 1)) <= lo and hi < (1 << (bits_stored - 1)))
            if signed
            else hi < (1 << bits_stored)
        )
        if not fits:
            bits_stored = bits_alloc
    ds.BitsAllocated = bits_alloc
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if array.dtype.kind == "i" else 0
    if photometric is not None:
        ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    if "NumberOfFrames" in ds or nframes > 1:
        ds.NumberOfFrames = nframes
    ds.PixelData = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False)).tobytes()
    ds["PixelData"].VR = "OB" if bits_alloc == 8 else "OW"
    ds["PixelData"].is_undefined_length = False
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for key in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if key in ds:
            del ds[key]


def write_dataset(ds: Any, path: Path) -> None:
    """Write ``ds`` as a DICOM file (with preamble and file meta), atomically."""
    with atomic_file(path, suffix=path.suffix) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
