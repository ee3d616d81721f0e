"""DICOM volumes: a series of single-frame slices, or one Enhanced (multi-frame) file.

Reading assembles the slices by their position in space, never by file name or
InstanceNumber, and refuses a stack it cannot place exactly: missing or
duplicated slices, uneven spacing (unless asked), positions off one line, or
slices that differ in orientation, size or pixel spacing. Writing puts the
voxel values back into copies of the source headers, through each slice's own
rescale, so voxels that were not changed keep their stored values bit for bit.

Conventions:

* ``array[r, c, k]`` is row ``r``, column ``c`` of the ``k``-th slice in the
  order of increasing position along the slice normal (the cross product of
  the row and column direction cosines of ImageOrientationPatient). The array
  is a view of a ``(k, r, c)`` C-contiguous stack, so each slice is contiguous.
* The affine maps ``(r, c, k)`` to RAS millimetres (the NIfTI convention). In
  DICOM's LPS it has column 0 = column direction cosine x row spacing
  (PixelSpacing[0]), column 1 = row direction cosine x column spacing
  (PixelSpacing[1]), column 2 = the actual step between consecutive slice
  positions (so a gantry-tilted stack keeps exact world coordinates), and the
  translation = ImagePositionPatient of the first slice; rows 0 and 1 are then
  negated (LPS to RAS).
* Enhanced files: geometry and rescale come from the Shared and Per-frame
  Functional Groups. Frames at the same position (several stacks, echoes or
  temporal positions) are refused: such a file is several volumes, and no
  dimension index is used to choose one.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    CorruptInputError,
    InvalidDataError,
    MultipleSeriesError,
    OutputError,
    SeriesError,
    SliceGeometryError,
    UnsupportedInputError,
    WrongKindError,
)
from ._dicom import (
    CHANGED_ATTRIBUTES,
    decode_pixels,
    mark_derived,
    require_pixels,
    set_native_pixels,
)
from ._files import atomic_dir, atomic_file, check_fits_in_memory
from .volume import Volume

__all__ = ["DicomVolumeSource", "read_dicom_volume", "write_dicom_volume", "CHANGED_ATTRIBUTES"]

log = logging.getLogger(__name__)

#: Elements longer than this (bytes) are read from the file only when used:
#: the pixel data is read after the headers have been grouped and checked.
_DEFER_SIZE = 1024
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"

#: Multi-frame SOP classes read as one volume (Enhanced and Legacy Converted CT/MR/PET).
ENHANCED_VOLUME_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
        "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
        "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR
        "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET
        "1.2.840.10008.5.1.4.1.1.128.1",  # Legacy Converted Enhanced PET
    }
)
#: Multi-frame objects with functional groups that hold no image volume.
_NOT_IMAGES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "a Segmentation",
    "1.2.840.10008.5.1.4.1.1.30": "a Parametric Map",
    "1.2.840.10008.5.1.4.1.1.481.2": "an RT Dose (a dose grid)",
}

#: Distance (mm) under which two slice positions count as the same.
_SAME_POSITION_MM = 0.01
#: Positions may deviate from an even, straight stack by this fraction of the
#: step, or this many millimetres, whichever is larger.
_TOLERANCE_FRACTION = 0.01
_TOLERANCE_MM = 0.01
#: Orientation cosines and pixel spacings are the same within these.
_COSINE_TOL = 1e-4
_SPACING_RTOL = 1e-4
#: Largest |stored value| + |intercept / slope| for which float32 scaled values
#: still unscale to the exact stored integers (rounding error below 1/4).
_FLOAT32_EXACT_LIMIT = 2.0**22

#: Attributes that tell apart slices found at the same position.
_SPLIT_KEYWORDS = (
    "EchoNumbers",
    "EchoTime",
    "InversionTime",
    "AcquisitionNumber",
    "TemporalPositionIdentifier",
    "TriggerTime",
    "ImageType",
    "SeriesNumber",
)


@dataclass(frozen=True, eq=False)
class DicomVolumeSource:
    """What is kept from a DICOM series or Enhanced file to write the volume back.

    Attributes:
        format: ``'dicom-series'`` (one single-frame file per slice) or
            ``'dicom-enhanced'`` (one multi-frame file).
        files: The source files (in path order for a series; one for an
            Enhanced file).
        headers: The source datasets without their pixel data, one per file,
            fully read into memory (the files are not read again).
        order: For each array slice ``k``, the index of its source: the file
            in :attr:`files` (series) or the 0-based frame number (Enhanced).
        slopes: RescaleSlope of each array slice (1.0 where absent).
        intercepts: RescaleIntercept of each array slice (0.0 where absent).
        stored_dtypes: Numpy dtype string of the stored values of each slice.
        shape: The shape of the volume's array.
        affine: The RAS affine computed from the headers; a volume with another
            affine cannot be written back into these headers.
        series_uid: SeriesInstanceUID of the source.
    """

    format: str
    files: tuple[Path, ...]
    headers: tuple[Any, ...]
    order: tuple[int, ...]
    slopes: tuple[float, ...]
    intercepts: tuple[float, ...]
    stored_dtypes: tuple[str, ...]
    shape: tuple[int, int, int]
    affine: np.ndarray
    series_uid: str


@dataclass
class _Item:
    """One DICOM file found while scanning: its path and its deferred-read header."""

    path: Path
    ds: Any

    @property
    def series_uid(self) -> str:
        return str(self.ds.get("SeriesInstanceUID", "") or "")

    @property
    def frames(self) -> int:
        try:
            return int(self.ds.get("NumberOfFrames", 1) or 1)
        except (TypeError, ValueError):
            return 1

    @property
    def has_pixels(self) -> bool:
        return any(k in self.ds for k in _PIXEL_KEYWORDS)


# --------------------------------------------------------------------------- reading


def read_dicom_volume(path: Path, *, series_uid: str | None = None, allow_uneven: bool = False) -> Volume:
    """Read a DICOM series (folder or one of its files) or an Enhanced file as a volume.

    Args:
        path: A folder (searched recursively; DICOMDIR, hidden and non-DICOM
            files are skipped), one file of a series (the rest of the series is
            read from the same folder), or an Enhanced CT/MR/PET file.
        series_uid: The SeriesInstanceUID to read when a folder holds several.
        allow_uneven: Accept slice spacing that varies by more than the
            tolerance (1% of the step or 0.01 mm); the affine then uses the
            mean step and a warning gives the largest position error.

    Returns:
        The volume; its ``source`` is a :class:`DicomVolumeSource`.

    Raises:
        MultipleSeriesError: Several series in the folder and no ``series_uid``.
        SeriesError: Unknown ``series_uid``, or slices that differ in
            orientation, size or spacing, or an Enhanced file without geometry.
        SliceGeometryError: Missing, duplicated, unevenly spaced slices, or
            positions not on one line.
        WrongKindError: A 2D image, a single slice or a multi-frame image
            without per-frame positions (use ``load_image``).
        UnsupportedInputError: No pixel data, or colour pixels.
        CorruptInputError, DecoderUnavailableError, TooLargeError,
        InvalidDataError: See :mod:`deephealth_deid.errors`.
    """
    path = Path(path)
    if path.is_dir():
        items, skipped = _scan_folder(path, recursive=True)
        where = path
        items = _select_series(path, items, series_uid, skipped)
    else:
        first = _read_header(path)
        assert first is not None
        if not first.has_pixels:
            _check_not_cut_image(first)
            require_pixels(first.ds, path)
        if first.frames > 1 or _is_enhanced(first.ds):
            if series_uid is not None and series_uid != first.series_uid:
                raise SeriesError(f"{path}: its SeriesInstanceUID is {first.series_uid}, not {series_uid}")
            return _read_enhanced(first, allow_uneven=allow_uneven)
        _check_slice_kind(first)
        uid = first.series_uid
        if series_uid is not None and series_uid != uid:
            raise SeriesError(
                f"{path}: this file belongs to series {uid}, not {series_uid}; "
                "give the folder, or a file of the series you want"
            )
        siblings, _ = _scan_folder(path.parent, recursive=False, known={path: first}, want_uid=uid)
        items = [it for it in siblings if it.series_uid == uid and it.has_pixels]
        where = path.parent
    if len(items) == 1 and (items[0].frames > 1 or _is_enhanced(items[0].ds)):
        return _read_enhanced(items[0], allow_uneven=allow_uneven)
    multi = [it for it in items if it.frames > 1]
    if multi:
        raise SeriesError(
            f"{where}: the series holds {len(multi)} multi-frame file(s) among {len(items)} files; "
            f"give one multi-frame file (e.g. {multi[0].path.name}) instead of the folder"
        )
    return _read_series(where, items, allow_uneven=allow_uneven)


def _read_header(path: Path, *, sniff: bool = False) -> _Item | None:
    """Parse a file's header; large values (the pixel data) stay in the file for now.

    With ``sniff``, return ``None`` for a file that does not look like DICOM
    (no DICM magic and no DICOM group at the start) instead of parsing it.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with open(path, "rb") as f:
            if sniff and not _looks_like_dicom(f.read(132)):
                return None
            f.seek(0)
            ds = pydicom.dcmread(f, defer_size=_DEFER_SIZE, force=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CorruptInputError(f"{path}: not a readable DICOM file ({type(e).__name__}: {e})") from e
    if len(ds) == 0:
        raise CorruptInputError(f"{path}: not a readable DICOM file (no data elements)")
    _check_not_truncated(ds, path)
    return _Item(path, ds)


def _check_not_truncated(ds: Any, path: Path) -> None:
    """Refuse a file whose last element holds fewer bytes than its length says."""
    from pydicom.dataelem import RawDataElement

    last = ds.get_item(max(ds.keys()), keep_deferred=True)
    if (
        isinstance(last, RawDataElement)
        and last.value is not None
        and last.length != 0xFFFFFFFF
        and len(last.value) < last.length
    ):
        raise CorruptInputError(
            f"{path}: the file is truncated (element {last.tag} holds {len(last.value)} of "
            f"{last.length} bytes); copy it again"
        )


def _looks_like_dicom(head: bytes) -> bool:
    """True for the DICM magic, or a preamble-less file starting with a DICOM group."""
    if head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    # Preamble-less (ACR-NEMA style) files start with a group 0x0002 or 0x0008 tag.
    return int.from_bytes(head[:2], "little") in (0x0002, 0x0008) or int.from_bytes(head[:2], "big") in (
        0x0002,
        0x0008,
    )


def _scan_folder(
    folder: Path,
    *,
    recursive: bool,
    known: dict[Path, _Item] | None = None,
    want_uid: str | None = None,
) -> tuple[list[_Item], int]:
    """Find the DICOM files in ``folder`` and parse their headers (pixel data deferred).

    Returns the items (in path order) and the number of files skipped. Only
    files of ``want_uid`` are kept when it is given.
    """
    known = known or {}
    paths: list[Path] = []
    if recursive:
        for root, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            paths.extend(Path(root) / n for n in sorted(names))
    else:
        paths = sorted(p for p in folder.iterdir() if p.is_file())
    items: list[_Item] = []
    skipped = 0
    for p in paths:
        if p.name.startswith(".") or p.name.upper() == "DICOMDIR":
            skipped += 1
            continue
        if p in known:
            items.append(known[p])
            continue
        try:
            item = _read_header(p, sniff=True)
            if item is not None and not item.has_pixels:
                meta = getattr(item.ds, "file_meta", None)
                if meta is None or meta.get("MediaStorageSOPClassUID") != _DICOMDIR_CLASS:
                    _check_not_cut_image(item)
        except CorruptInputError:
            # Looking for the rest of one file's series, a damaged file of unknown
            # series is not ours to judge; in a series folder it is an error.
            if want_uid is not None or not _has_magic(p):
                skipped += 1
                continue
            raise
        if item is None:
            skipped += 1
            continue
        meta = getattr(item.ds, "file_meta", None)
        if meta is not None and meta.get("MediaStorageSOPClassUID") == _DICOMDIR_CLASS:
            skipped += 1
            continue
        if want_uid is not None and item.series_uid != want_uid:
            continue
        items.append(item)
    if skipped:
        log.debug(
            "%s: skipped %d files that are not DICOM images (hidden, DICOMDIR or other)", folder, skipped
        )
    return items, skipped


def _has_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _select_series(folder: Path, items: list[_Item], series_uid: str | None, skipped: int) -> list[_Item]:
    """Group a folder's files by SeriesInstanceUID and return the one series asked for."""
    if not items:
        raise UnsupportedInputError(
            f"{folder}: no DICOM files found ({skipped} other files skipped); "
            "give the folder that holds the series"
        )
    images = [it for it in items if it.has_pixels]
    if not images:
        require_pixels(items[0].ds, items[0].path)
    groups: dict[str, list[_Item]] = {}
    for it in images:
        groups.setdefault(it.series_uid, []).append(it)
    if len(items) > len(images):
        log.debug("%s: skipped %d DICOM files without pixel data", folder, len(items) - len(images))
    if series_uid is not None:
        if series_uid not in groups:
            raise SeriesError(
                f"{folder}: no series with SeriesInstanceUID {series_uid}; the folder holds:\n"
                + _describe_series(groups)
            )
        return groups[series_uid]
    if len(groups) > 1:
        raise MultipleSeriesError(
            f"{folder}: holds {len(groups)} series; choose one with series_uid=UID "
            f"(CLI: --series UID of deid deface, info or convert; a batch takes one series per folder):\n"
            + _describe_series(groups)
        )
    return next(iter(groups.values()))


def _check_not_cut_image(item: _Item) -> None:
    """Refuse a file without pixel data that should have some (an image cut short)."""
    ds = item.ds
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("MediaStorageSOPClassUID") == _DICOMDIR_CLASS:
        raise UnsupportedInputError(
            f"{item.path}: a DICOMDIR (an index of the files on a medium), not an image; "
            "give the folder that holds the series"
        )
    if "SOPClassUID" not in ds or "Image Storage" in _sop_name(ds):
        what = f"a {_sop_name(ds)} file" if "SOPClassUID" in ds else "a DICOM file without SOPClassUID"
        raise CorruptInputError(
            f"{item.path}: {what} without pixel data; it is probably truncated, copy it again"
        )


def _describe_series(groups: dict[str, list[_Item]]) -> str:
    """One line per series: its UID (what ``series_uid`` takes), number, modality and size.

    Never the SeriesDescription: free text, which can hold a name.
    """
    lines = []
    for uid, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        ds = members[0].ds
        number = ds.get("SeriesNumber", None)
        modality = str(ds.get("Modality", "") or "?")
        nframes = sum(m.frames for m in members)
        frames = f", {nframes} frames" if nframes != len(members) else ""
        numbered = f"series {number}, " if number not in (None, "") else ""
        lines.append(
            f"  {uid or '(no SeriesInstanceUID)'}  {numbered}{modality}, {len(members)} files{frames}"
        )
    return "\n".join(lines)


def _is_enhanced(ds: Any) -> bool:
    return (
        "PerFrameFunctionalGroupsSequence" in ds or str(ds.get("SOPClassUID", "")) in ENHANCED_VOLUME_CLASSES
    )


def _check_slice_kind(item: _Item) -> None:
    """Refuse a single-frame file that cannot be the slice of a volume."""
    ds = item.ds
    missing = [k for k in ("ImagePositionPatient", "ImageOrientationPatient") if k not in ds]
    if missing:
        modality = str(ds.get("Modality", "") or "DICOM")
        raise WrongKindError(
            f"{item.path}: a 2D {modality} image (no {' or '.join(missing)}), not a volume; "
            "use load_image (CLI: deid redact)"
        )
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise UnsupportedInputError(
            f"{item.path}: colour slices (SamplesPerPixel {ds.SamplesPerPixel}) are not read as a volume; "
            "use load_image (CLI: deid redact)"
        )


def _floats(value: Any, n: int, what: str, where: str) -> np.ndarray:
    try:
        out = np.array([float(v) for v in (value if isinstance(value, Sequence | np.ndarray) else [value])])
    except (TypeError, ValueError) as e:
        raise SeriesError(f"{where}: {what} is not numeric ({e})") from e
    if out.shape != (n,) or not np.isfinite(out).all():
        raise SeriesError(f"{where}: {what} must hold {n} finite numbers, got {len(out)}")
    return out


def _rescale_of(ds: Any, where: str) -> tuple[float, float]:
    slope = ds.get("RescaleSlope", None)
    inter = ds.get("RescaleIntercept", None)
    try:
        m = float(slope) if slope not in (None, "") else 1.0
        b = float(inter) if inter not in (None, "") else 0.0
    except (TypeError, ValueError) as e:
        raise InvalidDataError(f"{where}: RescaleSlope/RescaleIntercept is not numeric ({e})") from e
    if m == 0 or not np.isfinite(m) or not np.isfinite(b):
        raise InvalidDataError(f"{where}: RescaleSlope {m} / RescaleIntercept {b} cannot be used")
    return m, b


def _stored_dtype(ds: Any, where: str) -> np.dtype:
    """The dtype pydicom decodes the pixel data to, from the header."""
    if "FloatPixelData" in ds:
        return np.dtype(np.float32)
    if "DoubleFloatPixelData" in ds:
        return np.dtype(np.float64)
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if bits not in (8, 16, 32):
        raise UnsupportedInputError(f"{where}: BitsAllocated {bits} is not read as a volume (8, 16 or 32)")
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


def _read_series(where: Path, items: list[_Item], *, allow_uneven: bool) -> Volume:
    """Assemble single-frame slices into a volume."""
    for it in items:
        _check_slice_kind(it)
    if len(items) == 1:
        raise WrongKindError(
            f"{items[0].path}: the series has a single slice, so it is a 2D image, not a volume; "
            "use load_image (CLI: deid redact)"
        )
    n = len(items)
    ref = items[0]
    rows, cols = int(ref.ds.get("Rows", 0) or 0), int(ref.ds.get("Columns", 0) or 0)
    ipp = np.empty((n, 3))
    iop = np.empty((n, 6))
    spacing = np.empty((n, 2))
    for i, it in enumerate(items):
        ds = it.ds
        require_pixels(ds, it.path)
        name = str(it.path)
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise SeriesError(
                f"{where}: slices differ in size: {ref.path.name} is {rows}x{cols}, "
                f"{it.path.name} is {int(ds.Rows)}x{int(ds.Columns)} (Rows x Columns); "
                "the folder mixes images that are not one volume"
            )
        if "PixelSpacing" not in ds:
            raise SeriesError(f"{it.path}: no PixelSpacing, so the voxel size is unknown")
        iop[i] = _floats(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", name)
        spacing[i] = _floats(ds.PixelSpacing, 2, "PixelSpacing", name)
        ipp[i] = _floats(ds.ImagePositionPatient, 3, "ImagePositionPatient", name)
    iop0, ps0 = iop[0], spacing[0]
    bad = np.flatnonzero(np.abs(iop - iop0).max(axis=1) > _COSINE_TOL)
    if bad.size:
        odd = items[bad[0]]
        raise SeriesError(
            f"{where}: slices differ in ImageOrientationPatient ({ref.path.name}: {_fmt(iop0)}, "
            f"{odd.path.name}: {_fmt(iop[bad[0]])}); a localizer or a second orientation is mixed in, "
            "split the series"
        )
    bad = np.flatnonzero(np.abs(spacing - ps0).max(axis=1) > _SPACING_RTOL * np.abs(ps0).max())
    if bad.size:
        odd = items[bad[0]]
        raise SeriesError(
            f"{where}: slices differ in PixelSpacing ({ref.path.name}: {_fmt(ps0)}, "
            f"{odd.path.name}: {_fmt(spacing[bad[0]])}); they are not one volume"
        )
    labels = [it.path.name for it in items]
    order, affine = _stack_geometry(
        ipp,
        iop0,
        ps0,
        labels,
        where=where,
        allow_uneven=allow_uneven,
        split_hint=lambda idx: _what_differs([items[i].ds for i in idx]),
    )
    dtypes = [_stored_dtype(items[j].ds, str(items[j].path)) for j in order]
    rescale = [_rescale_of(items[j].ds, str(items[j].path)) for j in order]
    _check_memory(where, n, rows, cols, dtypes, rescale)

    raw = np.empty((n, rows, cols), dtype=np.result_type(*dtypes))
    for k, j in enumerate(order):
        it = items[j]
        pixels = decode_pixels(it.ds, it.path)
        if pixels.shape != (rows, cols):
            raise CorruptInputError(
                f"{it.path}: decoded pixel data has shape {pixels.shape}, not {(rows, cols)}"
            )
        decoded = pixels.dtype.newbyteorder("=")
        if decoded != raw.dtype and not np.can_cast(decoded, raw.dtype):
            raw = raw.astype(np.result_type(raw.dtype, decoded))
        dtypes[k] = decoded
        raw[k] = pixels
        _detach_pixels(it.ds, it.path)
    array = _scaled(raw, rescale, where)
    source = DicomVolumeSource(
        format="dicom-series",
        files=tuple(it.path for it in items),
        headers=tuple(it.ds for it in items),
        order=tuple(int(j) for j in order),
        slopes=tuple(m for m, _ in rescale),
        intercepts=tuple(b for _, b in rescale),
        stored_dtypes=tuple(d.str for d in dtypes),
        shape=(rows, cols, n),
        affine=affine.copy(),
        series_uid=ref.series_uid,
    )
    log.debug("%s: read %d slices of %dx%d as a volume", where, n, rows, cols)
    return Volume(np.moveaxis(array, 0, -1), affine, source=source, path=where)


def _fg_item(frame_fg: Any, shared_fg: Any, sequence: str) -> Any:
    """The first item of a functional group macro, per-frame first, then shared."""
    for fg in (frame_fg, shared_fg):
        if fg is not None and sequence in fg:
            seq = fg[sequence].value
            if len(seq):
                return seq[0]
    return None


def _read_enhanced(item: _Item, *, allow_uneven: bool) -> Volume:
    """Read an Enhanced CT/MR/PET file (Per-frame Functional Groups) as a volume."""
    ds, path = item.ds, item.path
    sop = str(ds.get("SOPClassUID", ""))
    if sop in _NOT_IMAGES:
        raise UnsupportedInputError(f"{path}: {_NOT_IMAGES[sop]}, not an image volume")
    if "PerFrameFunctionalGroupsSequence" not in ds:
        if sop in ENHANCED_VOLUME_CLASSES:
            raise SeriesError(
                f"{path}: an Enhanced image without Per-frame Functional Groups, so the frames have no "
                "position in space and cannot be placed as a volume; the file is incomplete "
                "(re-export it from the scanner or PACS)"
            )
        raise WrongKindError(
            f"{path}: a multi-frame {ds.get('Modality', '')} image without per-frame positions "
            "(a cine or a set of 2D frames), not a volume; use load_image (CLI: deid redact)"
        )
    if sop and sop not in ENHANCED_VOLUME_CLASSES:
        raise WrongKindError(
            f"{path}: a multi-frame {_sop_name(ds)}, not a CT/MR/PET volume; "
            "use load_image (CLI: deid redact)"
        )
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise UnsupportedInputError(
            f"{path}: colour frames are not read as a volume; use load_image (CLI: deid redact)"
        )
    nframes = item.frames
    per = ds.PerFrameFunctionalGroupsSequence
    if len(per) != nframes:
        raise CorruptInputError(
            f"{path}: NumberOfFrames is {nframes} but the Per-frame Functional Groups hold {len(per)} items"
        )
    if nframes < 2:
        raise WrongKindError(
            f"{path}: a single frame, so a 2D image, not a volume; use load_image (CLI: deid redact)"
        )
    shared = (
        ds.SharedFunctionalGroupsSequence[0] if len(ds.get("SharedFunctionalGroupsSequence", [])) else None
    )
    rows, cols = int(ds.Rows), int(ds.Columns)
    ipp = np.empty((nframes, 3))
    iop0 = ps0 = None
    rescale: list[tuple[float, float]] = []
    for f, fg in enumerate(per):
        where = f"{path} frame {f + 1}"
        pos = _fg_item(fg, shared, "PlanePositionSequence")
        ori = _fg_item(fg, shared, "PlaneOrientationSequence")
        meas = _fg_item(fg, shared, "PixelMeasuresSequence")
        missing = [
            macro
            for macro, it, key in (
                ("Plane Position (ImagePositionPatient)", pos, "ImagePositionPatient"),
                ("Plane Orientation (ImageOrientationPatient)", ori, "ImageOrientationPatient"),
                ("Pixel Measures (PixelSpacing)", meas, "PixelSpacing"),
            )
            if it is None or key not in it
        ]
        if missing:
            raise SeriesError(
                f"{where}: the functional groups lack {', '.join(missing)}, so the frames cannot be placed "
                "in space as a volume"
            )
        ipp[f] = _floats(pos.get("ImagePositionPatient"), 3, "ImagePositionPatient", where)
        iop = _floats(ori.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", where)
        ps = _floats(meas.get("PixelSpacing"), 2, "PixelSpacing", where)
        if iop0 is None:
            iop0, ps0 = iop, ps
        elif not np.allclose(iop, iop0, rtol=0, atol=_COSINE_TOL):
            raise SeriesError(
                f"{path}: frames differ in ImageOrientationPatient (frame 1: {_fmt(iop0)}, frame {f + 1}: "
                f"{_fmt(iop)}); the file holds several stacks and cannot be one volume"
            )
        elif not np.allclose(ps, ps0, rtol=_SPACING_RTOL, atol=0):
            raise SeriesError(
                f"{path}: frames differ in PixelSpacing (frame 1: {_fmt(ps0)}, frame {f + 1}: {_fmt(ps)})"
            )
        pvt = _fg_item(fg, shared, "PixelValueTransformationSequence")
        rescale.append(_rescale_of(pvt if pvt is not None else ds, where))
    assert iop0 is not None and ps0 is not None
    order, affine = _stack_geometry(
        ipp,
        iop0,
        ps0,
        [f"frame {f + 1}" for f in range(nframes)],
        where=path,
        allow_uneven=allow_uneven,
        split_hint=lambda idx: _frames_differ([per[i] for i in idx], shared),
        enhanced=True,
    )
    dtype = _stored_dtype(ds, str(path))
    rescale = [rescale[f] for f in order]
    _check_memory(path, nframes, rows, cols, [dtype], rescale)
    frames = decode_pixels(ds, path)
    if frames.shape != (nframes, rows, cols):
        raise CorruptInputError(
            f"{path}: decoded pixel data has shape {frames.shape}, not {(nframes, rows, cols)}"
        )
    _detach_pixels(ds, path)
    raw = frames[np.asarray(order)].astype(frames.dtype.newbyteorder("="), copy=False)
    del frames
    array = _scaled(raw, rescale, path)
    source = DicomVolumeSource(
        format="dicom-enhanced",
        files=(path,),
        headers=(ds,),
        order=tuple(int(f) for f in order),
        slopes=tuple(m for m, _ in rescale),
        intercepts=tuple(b for _, b in rescale),
        stored_dtypes=(raw.dtype.str,) * nframes,
        shape=(rows, cols, nframes),
        affine=affine.copy(),
        series_uid=item.series_uid,
    )
    return Volume(np.moveaxis(array, 0, -1), affine, source=source, path=path)


def _sop_name(ds: Any) -> str:
    uid = ds.get("SOPClassUID", None)
    return str(getattr(uid, "name", uid) or "DICOM object")


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def _stack_geometry(
    ipp: np.ndarray,
    iop: np.ndarray,
    spacing: np.ndarray,
    labels: list[str],
    *,
    where: Path,
    allow_uneven: bool,
    split_hint: Any,
    enhanced: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Sort slices along the normal, check the stack, and build the RAS affine.

    Returns:
        ``order`` (source index of each sorted slice) and the 4x4 RAS affine.
    """
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)
    norm = float(np.linalg.norm(normal))
    if not (0.9 < np.linalg.norm(row_cos) < 1.1 and 0.9 < np.linalg.norm(col_cos) < 1.1) or norm < 0.9:
        raise SeriesError(
            f"{where}: ImageOrientationPatient {_fmt(iop)} is not two perpendicular unit vectors"
        )
    normal = normal / norm
    dist = ipp @ normal
    order = np.argsort(dist, kind="stable")
    d = dist[order]
    pos = ipp[order]
    n = len(d)
    gaps = np.diff(d)
    kind = "frames" if enhanced else "slices"

    dup = np.flatnonzero(gaps < _SAME_POSITION_MM)
    if dup.size:
        same = sorted({int(order[i]) for i in dup} | {int(order[i + 1]) for i in dup})
        n_pos = n - dup.size
        hint = split_hint(same)
        if enhanced:
            raise SeriesError(
                f"{where}: {n} frames but only {n_pos} distinct positions: the file holds several stacks, "
                f"echoes or temporal positions at the same places{hint}, and cannot be one volume; "
                "split it into one file per stack (e.g. with dcmtk or dicom3tools) first"
            )
        raise SliceGeometryError(
            f"{where}: {len(same)} {kind} share positions with another ({_examples(labels, same)}); "
            f"{n} {kind} but only {n_pos} distinct positions{hint}. This is usually a multi-echo series, "
            "several acquisitions or repeated slices in one series; split it by echo/acquisition "
            "into separate folders and read one of them"
        )

    step = float(np.median(gaps))
    tol = max(_TOLERANCE_FRACTION * step, _TOLERANCE_MM)
    # Off-line check: perpendicular distance of each position from the best-fit line.
    centred = pos - pos.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    residual = centred - np.outer(centred @ direction, direction)
    off = np.linalg.norm(residual, axis=1)
    if off.max() > tol:
        worst = int(np.argmax(off))
        raise SliceGeometryError(
            f"{where}: slice positions are not on one line: {labels[order[worst]]} lies "
            f"{off[worst]:.3f} mm off the line through the others (tolerance {tol:.3f} mm); "
            "the series mixes stacks or was moved between slices"
        )

    ratio = gaps / step
    big = np.flatnonzero(ratio > 1.5)
    missing = [i for i in big if abs(ratio[i] - round(ratio[i])) <= 0.25]
    if missing:
        parts = [
            f"about {round(ratio[i]) - 1} between {labels[order[i]]} and {labels[order[i + 1]]} "
            f"({d[i]:.2f} mm to {d[i + 1]:.2f} mm along the normal)"
            for i in missing[:5]
        ]
        raise SliceGeometryError(
            f"{where}: {kind} are missing (step {step:.3f} mm): {'; '.join(parts)}"
            f"{' ...' if len(missing) > 5 else ''}; copy the complete series again"
        )

    step_vec = (pos[-1] - pos[0]) / (n - 1)
    expected = pos[0] + np.outer(np.arange(n), step_vec)
    dev = np.linalg.norm(pos - expected, axis=1)
    max_dev = float(dev.max())
    if max_dev > tol:
        worst = int(np.argmax(dev))
        msg = (
            f"{where}: uneven slice spacing: steps range from {gaps.min():.4f} to {gaps.max():.4f} mm, "
            f"so with the mean step {np.linalg.norm(step_vec):.4f} mm {labels[order[worst]]} would be "
            f"placed {max_dev:.4f} mm from its true position (tolerance {tol:.4f} mm)"
        )
        if not allow_uneven:
            raise SliceGeometryError(msg + "; pass allow_uneven=True (CLI: --allow-uneven) to accept it")
        log.warning("%s; using the mean step as asked (allow_uneven)", msg)

    affine = np.eye(4)
    affine[:3, 0] = col_cos * spacing[0]
    affine[:3, 1] = row_cos * spacing[1]
    affine[:3, 2] = step_vec
    affine[:3, 3] = pos[0]
    affine[:2, :] *= -1.0  # LPS -> RAS
    return order, affine


def _examples(labels: list[str], idx: list[int], limit: int = 4) -> str:
    shown = ", ".join(labels[i] for i in idx[:limit])
    return shown + (f" and {len(idx) - limit} more" if len(idx) > limit else "")


def _what_differs(datasets: list[Any]) -> str:
    """Name the attributes that tell apart slices at the same position."""
    found = []
    for key in _SPLIT_KEYWORDS:
        values = {str(ds.get(key, "")) for ds in datasets}
        if len(values) > 1:
            found.append(f"{key} ({len(values)} values)")
    return f"; they differ in {', '.join(found)}" if found else ""


def _frames_differ(frames: list[Any], shared: Any) -> str:
    """Name the per-frame attributes that tell apart frames at the same position."""
    probes = (
        ("FrameContentSequence", "StackID"),
        ("FrameContentSequence", "TemporalPositionIndex"),
        ("MREchoSequence", "EffectiveEchoTime"),
        ("MRDiffusionSequence", "DiffusionBValue"),
        ("FrameContentSequence", "DimensionIndexValues"),
    )
    found = []
    for seq, key in probes:
        values = set()
        for fg in frames:
            it = _fg_item(fg, shared, seq)
            values.add(str(it.get(key, "")) if it is not None else "")
        if len(values) > 1:
            found.append(f"{key} ({len(values)} values)")
    return f" (frames differ in {', '.join(found)})" if found else ""


def _check_memory(
    where: Path, n: int, rows: int, cols: int, dtypes: list[np.dtype], rescale: list[tuple[float, float]]
) -> None:
    stored = max(d.itemsize for d in dtypes)
    scaled = any(m != 1 or b != 0 for m, b in rescale)
    out = 8 if scaled else 0
    check_fits_in_memory(where, n * rows * cols * (stored + out), what="the volume")


def _detach_pixels(ds: Any, path: Path) -> None:
    """Drop the pixel data from a header and read the rest of its deferred values now.

    The header is then complete in memory: writing never reads the source file again.
    """
    from pydicom.dataelem import RawDataElement

    for key in _PIXEL_KEYWORDS:
        if key in ds:
            del ds[key]
    deferred = [
        e.tag
        for e in ds.values()
        if isinstance(e, RawDataElement) and e.value is None and e.length not in (0,)
    ]
    try:
        for tag in deferred:
            ds[tag]
    except (OSError, ValueError, EOFError) as e:
        raise CorruptInputError(
            f"{path}: the header cannot be read completely ({type(e).__name__}: {e})"
        ) from e


def _scaled(raw: np.ndarray, rescale: list[tuple[float, float]], where: Path) -> np.ndarray:
    """Apply each slice's rescale to a ``(k, r, c)`` stack of stored values."""
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        bad = int((~np.isfinite(raw)).sum())
        raise InvalidDataError(
            f"{where}: {bad} voxels are NaN or infinite; replace them (e.g. with 0) before processing"
        )
    if all(m == 1 and b == 0 for m, b in rescale):
        return raw
    if raw.dtype.kind == "f":
        dtype = np.dtype(np.float64)
    else:
        lo = raw.min(axis=(1, 2)).astype(np.float64)
        hi = raw.max(axis=(1, 2)).astype(np.float64)
        bound = max(max(abs(lo[k]), abs(hi[k])) + abs(b / m) for k, (m, b) in enumerate(rescale))
        dtype = np.dtype(np.float32 if bound < _FLOAT32_EXACT_LIMIT else np.float64)
    out = np.empty(raw.shape, dtype=dtype)
    for k, (m, b) in enumerate(rescale):
        out[k] = raw[k] * np.float64(m) + np.float64(b)
    return out


# --------------------------------------------------------------------------- writing


def write_dicom_volume(volume: Volume, dst: Path) -> None:
    """Write a volume read from DICOM back in its source's form, atomically.

    A series becomes a folder ``dst`` with one file per slice, in the sorted
    slice order, named like the source files when their names are unique
    (else ``IM00001.dcm``, ...). An Enhanced source becomes one file ``dst``
    with the frames in the original frame order. Each file keeps every
    attribute of its source except those in :data:`CHANGED_ATTRIBUTES` (new
    SOP Instance and Series Instance UIDs derived deterministically from the
    old ones, ImageType DERIVED, uncompressed Explicit VR Little Endian pixel
    data). Values are stored through each slice's own rescale: rounded, and
    clipped to the stored type with a warning if needed.

    Args:
        volume: A volume whose ``source`` is a :class:`DicomVolumeSource`.
        dst: The output folder (series) or file (Enhanced); the caller has
            checked it may be written.

    Raises:
        ValueError: The array's shape differs from the source's.
        OutputError: The source is not DICOM, the affine was changed, or the
            values cannot be stored (NaN/Inf).
    """
    src = volume.source
    dst = Path(dst)
    if not isinstance(src, DicomVolumeSource):
        raise OutputError(f"{dst}: the volume was not read from DICOM; write it as NIfTI (.nii.gz)")
    array = volume.array
    if tuple(array.shape) != src.shape:
        raise ValueError(
            f"the volume's shape {tuple(array.shape)} differs from its DICOM source's {src.shape}; "
            "a resampled or cropped volume cannot be written into the source headers (write NIfTI)"
        )
    if not np.allclose(volume.affine, src.affine, rtol=0, atol=1e-4):
        raise OutputError(
            f"{dst}: the volume's affine differs from its DICOM source's; geometry changes cannot be "
            "written into the source headers; save it as NIfTI (.nii.gz) instead"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise OutputError(
            f"{dst}: the volume holds NaN or infinite values, which DICOM integers cannot store"
        )
    if any(np.dtype(d).kind == "f" for d in src.stored_dtypes):
        raise OutputError(
            f"{dst}: the source stores floating-point pixel data, which is not written back; save as NIfTI"
        )
    clipped: list[int] = []
    if src.format == "dicom-series":
        _write_series(volume, src, dst, clipped)
    elif src.format == "dicom-enhanced":
        _write_enhanced(volume, src, dst, clipped)
    else:
        raise OutputError(f"{dst}: unknown DICOM source format {src.format!r}")
    if clipped:
        log.warning(
            "%s: values outside the stored type were clipped in %d of %d slices",
            dst.name,
            len(clipped),
            src.shape[2],
        )


def _output_names(files: Sequence[Path], order: Sequence[int]) -> list[str]:
    """File names for the sorted slices: IM00001.dcm, ... in slice order.

    Source file names are not reused: exports often name files after the patient.
    """
    names = [files[j].name for j in order]
    width = max(5, len(str(len(names))))
    return [f"IM{k + 1:0{width}d}.dcm" for k in range(len(names))]


def _write_series(volume: Volume, src: DicomVolumeSource, dst: Path, clipped: list[int]) -> None:
    names = _output_names(src.files, src.order)
    array = volume.array
    with atomic_dir(dst) as tmp:
        for k, j in enumerate(src.order):
            dtype = np.dtype(src.stored_dtypes[k])
            raw = _unscale(array[:, :, k], src.slopes[k], src.intercepts[k], dtype)
            if raw is None:
                clipped.append(k)
                raw = _unscale(array[:, :, k], src.slopes[k], src.intercepts[k], dtype, clip=True)
            ds = _derived_copy(src.headers[j])
            set_native_pixels(ds, raw)
            _save(ds, tmp / names[k])


def _write_enhanced(volume: Volume, src: DicomVolumeSource, dst: Path, clipped: list[int]) -> None:
    array = volume.array
    dtype = np.dtype(src.stored_dtypes[0])
    rows, cols, nframes = src.shape
    frames = np.empty((nframes, rows, cols), dtype=dtype)
    for k, f in enumerate(src.order):
        raw = _unscale(array[:, :, k], src.slopes[k], src.intercepts[k], dtype)
        if raw is None:
            clipped.append(k)
            raw = _unscale(array[:, :, k], src.slopes[k], src.intercepts[k], dtype, clip=True)
        frames[f] = raw
    # ImageType stays as it is: the Enhanced MR modules tie conditions to
    # ImageType ORIGINAL/MIXED, and FrameType in the functional groups must agree.
    ds = _derived_copy(src.headers[0], image_type=False)
    set_native_pixels(ds, frames)
    with atomic_file(dst, suffix=dst.suffix) as tmp:
        _save(ds, tmp)


def _unscale(
    values: np.ndarray, slope: float, intercept: float, dtype: np.dtype, *, clip: bool = False
) -> np.ndarray | None:
    """Stored values for one slice; ``None`` if some fall outside ``dtype`` and ``clip`` is false."""
    info = np.iinfo(dtype)
    if values.dtype.kind in "iub" and slope == 1 and intercept == 0:
        if values.dtype == dtype:
            return values
        raw = values
    else:
        raw = np.rint((values.astype(np.float64) - intercept) / slope)
    if raw.size:
        lo, hi = raw.min(), raw.max()
        if lo < info.min or hi > info.max:
            if not clip:
                return None
            raw = np.clip(raw, info.min, info.max)
    return raw.astype(dtype)


def _derived_copy(header: Any, *, image_type: bool = True) -> Any:
    """A new dataset holding the source header's elements, marked as derived.

    The element objects are shared with the source header (cheap for a long
    series): every attribute that may change is replaced by a copy first, so
    the source is never modified. A big-endian source (a retired transfer
    syntax) is deep-copied instead and its OW/OL/OF/OD/OV values byte-swapped
    for the little-endian output.
    """
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset, FileMetaDataset

    implicit, little = header.original_encoding
    if little is False:
        ds = copy.deepcopy(header)
        _swap_word_values(ds)
    else:
        elements = dict(header.items())
        for tag in _changed_tags():
            elem = elements.get(tag)
            # A raw element is converted into a new object on first use; a
            # converted one is shared with the source and must be copied.
            if elem is not None and not isinstance(elem, RawDataElement):
                elements[tag] = copy.copy(elem)
        ds = Dataset(elements)
        ds.set_original_encoding(implicit, little, header.original_character_set)
    # Group 0002 is rewritten: only the source transfer syntax is kept (it says
    # whether the source was lossy-compressed).
    meta = FileMetaDataset()
    tsyntax = getattr(header, "file_meta", Dataset()).get("TransferSyntaxUID")
    if tsyntax is not None:
        meta.TransferSyntaxUID = tsyntax
    ds.file_meta = meta
    mark_derived(ds, image_type=image_type)
    return ds


@functools.cache
def _changed_tags() -> tuple[Any, ...]:
    from pydicom.datadict import tag_for_keyword
    from pydicom.tag import Tag

    return tuple(Tag(t) for t in (tag_for_keyword(k) for k in sorted(CHANGED_ATTRIBUTES)) if t is not None)


_WORD_SIZES = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}


def _swap_word_values(ds: Any) -> None:
    """Byte-swap the values of 'other' word elements, in place, recursively.

    pydicom keeps these values as bytes in the source byte order and writes
    them unchanged, so a big-endian source needs them swapped for little-endian
    output. UN values cannot be interpreted and are left as they are.
    """
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_word_values(item)
        elif elem.VR in _WORD_SIZES and isinstance(elem.value, bytes | bytearray) and elem.value:
            size = _WORD_SIZES[elem.VR]
            if len(elem.value) % size == 0:
                elem.value = np.frombuffer(elem.value, f">u{size}").astype(f"<u{size}").tobytes()


def _save(ds: Any, path: Path) -> None:
    """Write ``ds`` as a DICOM file in the encoding of its transfer syntax."""
    import pydicom

    pydicom.dcmwrite(path, ds, enforce_file_format=True)
