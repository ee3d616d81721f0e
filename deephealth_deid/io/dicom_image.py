"""2D and multi-frame DICOM images: read to an :class:`~deephealth_deid.io.image.Image`, write back.

Reading decodes the pixel data (native, JPEG baseline/lossless, JPEG 2000, RLE)
into raw stored values: no modality or VOI LUT is applied, so a MONOCHROME
image written back is bit-exact. YBR colour (YBR_FULL, YBR_FULL_422, and the
YBR_ICT/YBR_RCT of JPEG 2000) is converted to RGB; PALETTE COLOR keeps its
indices and carries the palette.

Writing keeps the source dataset, every attribute included (60xx overlays too,
unless :func:`remove_overlays` was applied), and replaces only the pixel data
and what must agree with it (:data:`~deephealth_deid.io._dicom.CHANGED_ATTRIBUTES`).
The file is uncompressed (Explicit VR Little Endian) and gets new SOP Instance
and Series Instance UIDs, derived deterministically from the old ones.

Where the source was uncompressed, every pixel whose value did not change is
written with the exact bits of the source (bits above *Bits Stored* included),
so an unchanged image gives a *Pixel Data* value byte-identical to the
source's (for a little-endian source whose planar layout and photometric
interpretation are kept, i.e. not YBR).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptInputError, OutputError, UnsupportedInputError, WrongKindError
from ._dicom import (
    decode_pixels,
    mark_derived,
    read_dataset,
    require_pixels,
    set_native_pixels,
    write_dataset,
)
from ._files import check_fits_in_memory
from .image import Image

__all__ = [
    "DicomSource",
    "Overlay",
    "read_dicom_image",
    "write_dicom_image",
    "overlays",
    "curves",
    "remove_overlays",
    "header_values",
    "set_burned_in_annotation",
]

log = logging.getLogger(__name__)

#: SOP classes whose frames are the slices of one 3D volume (read with ``load_volume``).
_VOLUME_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET Image Storage",
    "1.2.840.10008.5.1.4.1.1.128.1": "Legacy Converted Enhanced PET Image Storage",
}

#: Photometric interpretations read, and what the decoded frames mean.
_DECODED_PHOTOMETRIC: dict[str, str] = {
    "MONOCHROME1": "MONOCHROME1",
    "MONOCHROME2": "MONOCHROME2",
    "PALETTE COLOR": "PALETTE COLOR",
    "RGB": "RGB",
    "YBR_FULL": "RGB",
    "YBR_FULL_422": "RGB",
    "YBR_ICT": "RGB",
    "YBR_RCT": "RGB",
}

#: Byte width of the VRs whose values are words that must be swapped from big endian.
_WORD_VRS = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}

_PIXEL_DATA_TAG = 0x7FE00010
_EXTENDED_OFFSET_TAGS = (0x7FE00001, 0x7FE00002)


@dataclass(frozen=True, eq=False)
class DicomSource:
    """What the DICOM writer needs to write an image back: the dataset as read.

    Attributes:
        dataset: The pydicom ``Dataset`` as read, with its encoded *Pixel Data*
            (no decoded copy is kept). Treat it as read-only.
        photometric: The source's *Photometric Interpretation* (``'YBR_FULL_422'``
            for a JPEG whose frames were decoded to RGB, for example).
        transfer_syntax: The source's *Transfer Syntax UID*.
        overlays_removed: Whether the written file leaves out the 60xx overlay
            groups and the retired 50xx curve groups (see :func:`remove_overlays`).
        burned_in_annotation: The *Burned In Annotation* value the written file
            gets (``'YES'`` or ``'NO'``), or ``None`` to keep the source's (see
            :func:`set_burned_in_annotation`).
        format: Always ``'dicom'``.
    """

    dataset: Any = field(repr=False)
    photometric: str
    transfer_syntax: str
    overlays_removed: bool = False
    burned_in_annotation: str | None = None
    format: str = field(default="dicom", init=False)


@dataclass(frozen=True)
class Overlay:
    """One 60xx overlay plane of a DICOM image (a bitmap drawn over the pixels, often text).

    Attributes:
        group: The overlay's group, 0x6000 to 0x601E.
        rows: Overlay rows.
        columns: Overlay columns.
        type: ``'G'`` (graphics) or ``'R'`` (region of interest).
        origin: Row and column (1-based) of the overlay's first pixel in the image.
        n_frames: Number of frames the overlay covers.
        in_pixel_data: Whether the bitmap lives in unused high bits of the pixel
            data (retired encoding) rather than in *Overlay Data*.
    """

    group: int
    rows: int
    columns: int
    type: str
    origin: tuple[int, int]
    n_frames: int
    in_pixel_data: bool


def read_dicom_image(path: Path) -> Image:
    """Read a single- or multi-frame 2D DICOM image.

    Args:
        path: A DICOM file (checked to exist and be non-empty by the caller).

    Returns:
        The image: raw stored values (no modality/VOI LUT), frame axis first,
        YBR converted to RGB, palette indices with their palette; its
        ``source`` is a :class:`DicomSource`.

    Raises:
        CorruptInputError: The file cannot be parsed, or its pixel data or
            palette cannot be decoded (truncated, damaged).
        UnsupportedInputError: No pixel data (a report, a presentation state),
            float or 1-bit pixel data, or a photometric interpretation not read.
        WrongKindError: An Enhanced MR/CT/PET file, whose frames are the slices
            of a volume (use ``load_volume``), or an RT Dose file (a dose grid).
        TooLargeError: The decoded pixels would not fit in memory.
        DecoderUnavailableError: No installed decoder reads the compression.
    """
    path = Path(path)
    check_fits_in_memory(path, path.stat().st_size, what="the DICOM file")
    ds = _read(path)
    require_pixels(ds, path)
    _refuse_volume(ds, path)
    if "PixelData" not in ds:
        raise UnsupportedInputError(
            f"{path}: holds floating-point pixel data (a parametric map), not an image with burned-in "
            "text; it cannot be read as a 2D image"
        )
    _ensure_transfer_syntax(ds, path)

    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    n_frames = _n_frames(ds)
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if bits not in (8, 16, 32):
        what = "1-bit (binary, e.g. a segmentation)" if bits == 1 else f"{bits}-bit"
        raise UnsupportedInputError(
            f"{path}: {what} pixel data is not read as an image; only 8, 16 and 32-bit pixels are"
        )
    photometric = _photometric(ds, path, samples)
    check_fits_in_memory(path, rows * cols * samples * n_frames * (bits // 8), what="the decoded pixel data")

    arr = decode_pixels(ds, path, as_rgb=True)
    frames = _frames_axis(arr, n_frames, rows, cols, samples, path)
    palette, first = (None, 0)
    if photometric == "PALETTE COLOR":
        palette, first = _read_palette(ds, path)
    tsyntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    source = DicomSource(ds, photometric, tsyntax)
    log.debug("%s: read %d frame(s) of %dx%d, %s, %s", path, n_frames, rows, cols, photometric, frames.dtype)
    return Image(
        frames,
        _DECODED_PHOTOMETRIC[photometric],
        palette=palette,
        palette_first=first,
        source=source,
        path=path,
    )


def write_dicom_image(image: Image, dst: Path) -> None:
    """Write an image read from DICOM back as an uncompressed DICOM file, atomically.

    The source dataset is kept, every attribute included, except the pixel data
    and the attributes that must agree with it (photometric interpretation RGB
    for decoded YBR, planar configuration, bits stored where new values need
    more bits, ...), and the SOP Instance and Series Instance UIDs, which are
    replaced by deterministic derived ones. Overlays (60xx) are kept unless the
    image went through :func:`remove_overlays`. Palette LUTs are kept, and
    MONOCHROME1 stays MONOCHROME1. *Burned In Annotation* is set where
    :func:`set_burned_in_annotation` asked for it.

    Args:
        image: An image from :func:`read_dicom_image` (possibly with new frames).
        dst: The output file; the caller has checked it may be written.

    Raises:
        OutputError: The image did not come from DICOM, ``dst`` names a raster
            format, the frames do not match the source's geometry, or their
            values do not fit the source's pixel type.
    """
    dst = Path(dst)
    src = image.source
    if not isinstance(src, DicomSource):
        raise OutputError(f"{dst}: the image was not read from DICOM, so it cannot be written as DICOM")
    check_dicom_path(dst)
    ds0 = src.dataset
    arr = _stored_frames(image, src, dst)

    ds = copy.deepcopy(ds0)
    _to_little_endian(ds, swap=_is_big_endian(ds0))
    for tag in _EXTENDED_OFFSET_TAGS:
        if tag in ds:
            del ds[tag]
    if src.overlays_removed:
        _delete_overlays(ds)

    samples = int(ds0.get("SamplesPerPixel", 1) or 1)
    keep_planar = (
        samples > 1 and image.photometric == "RGB" == src.photometric and ds0.get("PlanarConfiguration") == 1
    )
    set_native_pixels(ds, arr, photometric=image.photometric)
    if keep_planar:
        ds.PlanarConfiguration = 1
    pixel_bytes = _pixel_bytes(arr, src, keep_planar, bits_stored=int(ds.BitsStored))
    if pixel_bytes is not None:
        ds.PixelData = pixel_bytes
    if src.burned_in_annotation is not None:
        ds.BurnedInAnnotation = src.burned_in_annotation
    mark_derived(ds)
    write_dataset(ds, dst)
    log.debug("%s: wrote %d frame(s), %s", dst, image.n_frames, image.photometric)


def overlays(image: Image) -> list[Overlay]:
    """The 60xx overlay planes the written file of ``image`` would carry.

    Overlays are bitmaps shown over the image by viewers; they often hold text
    (annotations, sometimes patient data). Images not read from DICOM have none.

    Example:
        >>> img = load_image("mr_with_overlay.dcm")  # doctest: +SKIP
        >>> [hex(o.group) for o in overlays(img)]  # doctest: +SKIP
        ['0x6000']
    """
    src = image.source
    if not isinstance(src, DicomSource) or src.overlays_removed:
        return []
    ds = src.dataset
    found: list[Overlay] = []
    # iterating a Dataset gives elements, so its keys() are needed here
    for group in sorted({tag.group for tag in ds.keys() if _is_overlay_group(tag.group)}):  # noqa: SIM118
        rows = ds.get((group, 0x0010))
        cols = ds.get((group, 0x0011))
        kind = ds.get((group, 0x0040))
        origin = ds.get((group, 0x0050))
        n = ds.get((group, 0x0015))
        bit_pos = ds.get((group, 0x0102))
        found.append(
            Overlay(
                group=group,
                rows=int(rows.value) if rows is not None and rows.value is not None else 0,
                columns=int(cols.value) if cols is not None and cols.value is not None else 0,
                type=str(kind.value).strip() if kind is not None and kind.value else "",
                origin=_pair(origin.value if origin is not None else None),
                n_frames=int(n.value) if n is not None and n.value else 1,
                in_pixel_data=(group, 0x3000) not in ds and bit_pos is not None and bool(bit_pos.value),
            )
        )
    return found


def curves(image: Image) -> list[int]:
    """The retired 50xx curve groups the written file of ``image`` would carry.

    Curves (retired since 2004, still written by older ultrasound and
    angiography systems) are graphics drawn over the image, with labels and
    descriptions: annotations, like overlays. Images not read from DICOM have none.
    """
    src = image.source
    if not isinstance(src, DicomSource) or src.overlays_removed:
        return []
    return sorted({tag.group for tag in src.dataset.keys() if _is_curve_group(tag.group)})  # noqa: SIM118


def remove_overlays(image: Image) -> Image:
    """A new image whose written file has no 60xx overlay groups and no 50xx curve groups.

    The frames are shared, not copied; ``image`` is not modified. Overlays kept
    in unused high bits of the pixel data (a retired encoding) go too: those
    bits are written as zero (or sign bits). An image not read from DICOM is
    returned as is.

    Example:
        >>> img = remove_overlays(load_image("mr_with_overlay.dcm"))  # doctest: +SKIP
        >>> overlays(img)  # doctest: +SKIP
        []
    """
    src = image.source
    if not isinstance(src, DicomSource) or src.overlays_removed:
        return image
    return replace(image, source=replace(src, overlays_removed=True))


def set_burned_in_annotation(image: Image, value: str) -> Image:
    """A new image whose written file says *Burned In Annotation* ``value``.

    The text pipeline calls this with ``'NO'`` once a redaction pass has run
    over every frame. The frames are shared, not copied; ``image`` is not
    modified. An image not read from DICOM is returned as is (other formats
    have no such attribute).

    Raises:
        ValueError: If ``value`` is not ``'YES'`` or ``'NO'``.
    """
    if value not in ("YES", "NO"):
        raise ValueError(f"Burned In Annotation is 'YES' or 'NO', got {value!r}")
    src = image.source
    if not isinstance(src, DicomSource):
        return image
    return replace(image, source=replace(src, burned_in_annotation=value))


def header_values(image: Image, keywords: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The text of some top-level attributes of the image's DICOM header, by keyword.

    Meant for code that must compare pixels with the header (burned-in text
    against the patient's name, device rules against the manufacturer) without
    knowing DICOM. The values are patient data: never log them.

    Args:
        image: Any image; one not read from DICOM has no header and gives ``{}``.
        keywords: DICOM keywords (``'PatientName'``, ``'Manufacturer'``, ...).
            Unknown keywords, absent or empty attributes and sequences are
            left out.

    Returns:
        Keyword -> its values as strings (several for a multi-valued
        attribute; a person name as written, ``'Doe^John'``; a date as
        ``'YYYYMMDD'``).

    Example:
        >>> header_values(load_image("us.dcm"), ["Manufacturer"])  # doctest: +SKIP
        {'Manufacturer': ('G.E. Medical Systems',)}
    """
    src = image.source
    if not isinstance(src, DicomSource):
        return {}
    ds = src.dataset
    found: dict[str, tuple[str, ...]] = {}
    for keyword in keywords:
        try:
            elem = ds.data_element(keyword)
        except (KeyError, ValueError, TypeError):
            elem = None
        if elem is None or elem.VR == "SQ" or elem.value is None:
            continue
        values = elem.value if elem.VM > 1 else [elem.value]
        texts = tuple(t for t in (_text(v) for v in values) if t)
        if texts:
            found[keyword] = texts
    return found


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1", errors="replace").strip("\x00 ")
    return str(value).strip()


# ----------------------------------------------------------------------------------------------------
# reading


def _read(path: Path) -> Any:
    """Read the dataset; an encapsulated pixel data cut short is an error, not a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = read_dataset(path)
    for w in caught:
        if "End of file reached before delimiter" in str(w.message):
            raise CorruptInputError(
                f"{path}: the file ends inside its compressed pixel data; it is truncated, copy it again"
            )
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ds


def check_dicom_path(dst: Path) -> None:
    """Refuse an output name that says another format (``.png``, ``.nii.gz``): a DICOM image stays DICOM."""
    suffix = Path(dst).suffix.lower()
    if suffix not in _DICOM_NAME_SUFFIXES and not suffix[1:].isdigit():  # .56: a file named by its UID
        raise OutputError(
            f"{dst}: an image read from DICOM is written as DICOM (headers kept); "
            "give a path ending in .dcm or without a suffix"
        )


#: Suffixes a DICOM output may have (besides a UID's last number).
_DICOM_NAME_SUFFIXES = ("", ".dcm", ".dicom", ".ima", ".dc3")

#: RT Dose Storage: its frames are planes of a dose grid (Gy), numbers rather than a picture.
_RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"


def _refuse_volume(ds: Any, path: Path) -> None:
    sop = str(ds.get("SOPClassUID", ""))
    if sop == _RT_DOSE or (not sop and str(ds.get("Modality", "")).upper() == "RTDOSE"):
        raise WrongKindError(
            f"{path}: an RT Dose file, whose frames are the planes of a dose grid: numbers, not a "
            "picture with text burned in; it is not an image deid reads"
        )
    if sop in _VOLUME_SOP_CLASSES:
        raise WrongKindError(
            f"{path}: an {_VOLUME_SOP_CLASSES[sop]} file, whose frames are the slices of a volume, "
            "not a 2D image; use load_volume (CLI: deid deface)"
        )


def _ensure_transfer_syntax(ds: Any, path: Path) -> None:
    """Give a dataset without (0002,0010) the transfer syntax it was read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = ds.original_encoding
    if implicit is None:
        raise CorruptInputError(f"{path}: the transfer syntax is missing and cannot be inferred")
    if implicit:
        tsyntax = ImplicitVRLittleEndian
    else:
        tsyntax = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    log.info("%s: no Transfer Syntax UID in the file meta; the file reads as %s", path, tsyntax.name)
    ds.file_meta.TransferSyntaxUID = tsyntax


def _n_frames(ds: Any) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def _photometric(ds: Any, path: Path, samples: int) -> str:
    pi = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if not pi:
        pi = "MONOCHROME2" if samples == 1 else "RGB"
        log.warning("%s: no Photometric Interpretation; reading the pixels as %s", path, pi)
    if pi not in _DECODED_PHOTOMETRIC:
        raise UnsupportedInputError(
            f"{path}: the photometric interpretation {pi} is not supported; "
            f"supported are {', '.join(_DECODED_PHOTOMETRIC)}"
        )
    want = 3 if _DECODED_PHOTOMETRIC[pi] == "RGB" else 1
    if samples != want:
        raise CorruptInputError(f"{path}: {pi} needs {want} sample(s) per pixel but the file says {samples}")
    return pi


def _frames_axis(
    arr: np.ndarray, n_frames: int, rows: int, cols: int, samples: int, path: Path
) -> np.ndarray:
    want = (n_frames, rows, cols) + ((samples,) if samples > 1 else ())
    if arr.shape == want[1:] and n_frames == 1:
        arr = arr[None]
    if arr.shape != want:
        raise CorruptInputError(f"{path}: decoded pixels have shape {arr.shape}, expected {want}")
    if arr.dtype.kind not in "iu":
        raise UnsupportedInputError(f"{path}: pixels decode to {arr.dtype}, not integers")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.ascontiguousarray(arr)


def _read_palette(ds: Any, path: Path) -> tuple[np.ndarray, int]:
    """The ``(entries, 3)`` palette (8 or 16-bit entries) and the first mapped value."""
    from pydicom.pixels.processing import apply_color_lut

    try:
        desc = [int(v) for v in ds.RedPaletteColorLookupTableDescriptor]
        n = desc[0] or 65536
        first = desc[1]
        if int(ds.get("PixelRepresentation", 0) or 0) == 1 and first >= 32768:
            first -= 65536
        lut = apply_color_lut(np.arange(first, first + n, dtype=np.int64), ds)
    except (AttributeError, KeyError, IndexError, ValueError, TypeError) as e:
        raise CorruptInputError(f"{path}: the palette colour lookup table cannot be read ({e})") from e
    lut = lut[:, :3]
    if lut.dtype.itemsize > 1 and "RedPaletteColorLookupTableData" in ds and _is_big_endian(ds):
        # pydicom 3.0 reads plain (not segmented) 16-bit LUT data in the machine's byte order
        lut = lut.byteswap()
    return np.ascontiguousarray(lut), first


# ----------------------------------------------------------------------------------------------------
# writing


def _stored_frames(image: Image, src: DicomSource, dst: Path) -> np.ndarray:
    """The frames as the source's stored integer type, after checking they fit its geometry."""
    ds = src.dataset
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    want = (_n_frames(ds), rows, cols) + ((samples,) if samples > 1 else ())
    if image.frames.shape != want:
        raise OutputError(
            f"{dst}: frames of shape {image.frames.shape} do not match the DICOM source's {want}; "
            "the DICOM writer keeps the source's geometry"
        )
    decoded = _DECODED_PHOTOMETRIC.get(src.photometric.strip().upper(), src.photometric)
    allowed = {decoded} | ({"MONOCHROME1", "MONOCHROME2"} if decoded.startswith("MONO") else set())
    if image.photometric not in allowed:
        raise OutputError(
            f"{dst}: a {image.photometric} image cannot be written over a {src.photometric} DICOM source"
        )
    if image.photometric == "PALETTE COLOR":
        palette, first = _read_palette(ds, dst)
        if (
            image.palette is None
            or first != image.palette_first
            or image.palette.shape != palette.shape
            or not np.array_equal(image.palette, palette)
        ):
            raise OutputError(f"{dst}: the palette differs from the source's; changing it is not supported")
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    dtype = np.dtype(f"{'i' if signed else 'u'}{int(ds.BitsAllocated) // 8}")
    frames = image.frames
    if frames.dtype == dtype:
        return frames
    info = np.iinfo(dtype)
    if frames.dtype.kind == "b":
        frames = frames.astype(np.uint8)
    if frames.dtype.kind not in "iuf":
        raise OutputError(f"{dst}: frames of type {frames.dtype} cannot be stored as {dtype}")
    if frames.size:
        if frames.dtype.kind == "f" and not np.array_equal(frames, np.round(frames)):
            raise OutputError(f"{dst}: frames hold non-integer values; the DICOM source stores {dtype}")
        lo, hi = frames.min(), frames.max()
        if lo < info.min or hi > info.max:
            raise OutputError(
                f"{dst}: frame values {lo}..{hi} do not fit the source's {dtype}; "
                f"clip them to {info.min}..{info.max}"
            )
    return frames.astype(dtype)


def _pixel_bytes(arr: np.ndarray, src: DicomSource, planar: bool, *, bits_stored: int) -> bytes | None:
    """Encode ``arr`` little endian, keeping the source's exact bits wherever a value is unchanged.

    ``None`` when the plain encoding :func:`set_native_pixels` made is the answer.
    """
    out = arr.transpose(0, 3, 1, 2) if planar else arr
    ds0 = src.dataset
    raw = _source_words(src, arr, planar, bits_stored)
    if raw is None:
        if not planar:
            return None
        return np.ascontiguousarray(out).astype(out.dtype.newbyteorder("<"), copy=False).tobytes()
    words, values = raw
    same = values == out
    if same.all() and not _is_big_endian(ds0):
        return bytes(ds0.PixelData)  # byte-identical, padding included
    merged = np.where(same, words, out)
    return np.ascontiguousarray(merged).astype(out.dtype.newbyteorder("<"), copy=False).tobytes()


def _source_words(
    src: DicomSource, arr: np.ndarray, planar: bool, bits_stored: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The source's stored words and their decoded values in the output layout, or ``None``.

    ``None`` when the source bits cannot be reused: compressed pixel data, YBR
    converted to RGB, overlays to remove, another bit depth, or a length that
    does not match.
    """
    from pydicom.uid import UID

    ds0 = src.dataset
    tsyntax = UID(src.transfer_syntax) if src.transfer_syntax else None
    if tsyntax is None or tsyntax.is_encapsulated or src.overlays_removed:
        return None
    if src.photometric.strip().upper() not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB"):
        return None
    if int(ds0.get("BitsStored", 0) or 0) != bits_stored or "PixelData" not in ds0:
        return None
    if int(ds0.get("BitsAllocated", 0) or 0) != arr.dtype.itemsize * 8:
        return None
    if int(ds0.get("PlanarConfiguration", 0) or 0) == 1 and not planar and arr.ndim == 4:
        return None
    raw = ds0.PixelData
    n = arr.size * arr.dtype.itemsize
    if len(raw) < n:
        return None
    order = ">" if _is_big_endian(ds0) else "<"
    shape = (arr.shape[0], arr.shape[3], arr.shape[1], arr.shape[2]) if planar else arr.shape
    words = np.frombuffer(raw, dtype=arr.dtype.newbyteorder(order), count=arr.size).reshape(shape)
    words = words.astype(arr.dtype)
    shift = arr.dtype.itemsize * 8 - bits_stored
    values = (words << shift) >> shift if shift else words
    return words, values


def _is_big_endian(ds: Any) -> bool:
    meta = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if tsyntax is not None:
        try:
            return not tsyntax.is_little_endian
        except ValueError:
            pass
    return ds.original_encoding[1] is False


def _to_little_endian(ds: Any, *, swap: bool) -> None:
    """Make every element of ``ds`` (recursively) ready to be written little endian, in place.

    Raw elements are parsed (so an element whose VR the file left implicit
    gets it from the dictionary). With ``swap`` (a big-endian source) the
    OW/OL/OF/OD/OV values, which pydicom keeps as raw bytes (palette LUT data,
    overlay data, ...), are byte-swapped; numbers and text are decoded by
    pydicom and need nothing. *Pixel Data* is replaced by the caller.
    """
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or ():
                _to_little_endian(item, swap=swap)
        elif swap and elem.VR in _WORD_VRS and elem.value and elem.tag != _PIXEL_DATA_TAG:
            width = _WORD_VRS[elem.VR]
            value = bytes(elem.value)
            whole = len(value) // width * width
            swapped = np.frombuffer(value[:whole], dtype=f">u{width}").astype(f"<u{width}").tobytes()
            elem.value = swapped + value[whole:]
        elif swap and elem.VR == "UN" and elem.value:
            log.debug("%s: a value of unknown VR is kept as is when converting to little endian", elem.tag)
    if swap:
        ds.set_original_encoding(False, True, ds.original_character_set)


def _is_overlay_group(group: int) -> bool:
    return 0x6000 <= group <= 0x60FF and group % 2 == 0


def _is_curve_group(group: int) -> bool:
    return 0x5000 <= group <= 0x50FF and group % 2 == 0


def _delete_overlays(ds: Any) -> None:
    for tag in [t for t in ds.keys() if _is_overlay_group(t.group) or _is_curve_group(t.group)]:  # noqa: SIM118
        del ds[tag]


def _pair(value: Any) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        return (1, 1)
    return (a, b)
