"""Build small synthetic DICOM files for tests: series of slices, 2D images, Enhanced files.

Everything here is deterministic (UIDs are derived from the arguments) and
holds no real patient data. Arrays follow the library's convention:
``array[r, c, k]`` is row ``r``, column ``c`` of slice ``k``; the stored
values are given, and the rescale (slope/intercept) is written beside them.

Example:
    >>> import numpy as np
    >>> stored = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3)
    >>> datasets = make_series(stored, modality="CT", slice_step=2.5)
    >>> len(datasets), datasets[0].Rows, datasets[0].Columns
    (3, 4, 5)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

__all__ = [
    "CT_IMAGE",
    "MR_IMAGE",
    "ENHANCED_CT",
    "ENHANCED_MR",
    "CR_IMAGE",
    "SC_IMAGE",
    "US_IMAGE",
    "US_MULTIFRAME",
    "uid",
    "rotation",
    "slice_positions",
    "make_series",
    "make_image",
    "make_enhanced",
    "add_functional_groups",
    "write_datasets",
    "write_series",
]

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"

_SOP_OF_MODALITY = {"CT": CT_IMAGE, "MR": MR_IMAGE, "CR": CR_IMAGE, "OT": SC_IMAGE, "US": US_IMAGE}


def uid(*parts: object) -> str:
    """A UID derived from ``parts`` (same parts, same UID)."""
    return str(generate_uid(entropy_srcs=["deephealth_deid tests", *map(str, parts)]))


def rotation(ax: float = 0.0, ay: float = 0.0, az: float = 0.0) -> np.ndarray:
    """A 3x3 rotation matrix from angles in degrees about x, then y, then z."""
    a, b, c = np.deg2rad([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def slice_positions(
    n: int,
    *,
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    slice_step: float | Sequence[float] = 1.0,
) -> np.ndarray:
    """ImagePositionPatient of ``n`` evenly spaced slices, shape ``(n, 3)`` (LPS, mm).

    Args:
        n: Number of slices.
        orientation: ImageOrientationPatient (row cosines, then column cosines).
        origin: Position of the first slice.
        slice_step: A distance along the slice normal, or a full step vector
            (e.g. with an in-plane component for a gantry-tilted stack).
    """
    iop = np.asarray(orientation, dtype=np.float64)
    step = np.asarray(slice_step, dtype=np.float64)
    if step.ndim == 0:
        step = np.cross(iop[:3], iop[3:]) * float(step)
    return np.asarray(origin, dtype=np.float64) + np.outer(np.arange(n), step)


def _ds_str(value: float) -> str:
    """A DS string (16 characters at most) that keeps as much precision as fits."""
    for digits in range(10, 0, -1):
        text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
        if text == "-0":
            text = "0"
        if len(text) <= 16:
            return text
    return f"{value:.6g}"


def _per_slice(value: float | Sequence[float], n: int) -> list[float]:
    if np.ndim(value) == 0:
        return [float(value)] * n  # type: ignore[arg-type]
    values = [float(v) for v in value]  # type: ignore[union-attr]
    if len(values) != n:
        raise ValueError(f"need {n} per-slice values, got {len(values)}")
    return values


def _pixel_module(ds: Dataset, pixels: np.ndarray, *, bits_stored: int | None = None) -> None:
    """Set the Image Pixel module for stored values ``pixels`` (2D, or frames first)."""
    dtype = pixels.dtype
    if dtype.kind not in "iu" and dtype != np.float32:
        raise ValueError(f"stored values must be integers, got {dtype}")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = ds.get("PhotometricInterpretation", "MONOCHROME2")
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    if dtype == np.float32:
        ds.BitsAllocated = 32
        ds.FloatPixelData = np.ascontiguousarray(pixels, dtype="<f4").tobytes()
        return
    bits = dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=dtype.newbyteorder("<")).tobytes()
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"


def _common(
    ds: Dataset,
    *,
    sop_class: str,
    sop_uid: str,
    modality: str,
    study_uid: str,
    series_uid: str,
    series_number: int,
    series_description: str,
) -> None:
    """Patient, study, series, equipment and SOP common modules (synthetic values)."""
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = "20240102"
    ds.SeriesDate = "20240102"
    ds.ContentDate = "20240102"
    ds.StudyTime = "101500"
    ds.SeriesTime = "101500"
    ds.ContentTime = "101500"
    ds.AccessionNumber = "SYN0001"
    ds.Modality = modality
    ds.Manufacturer = "deephealth_deid tests"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = series_description
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "SYN-PHANTOM-1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number


def _file_meta(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta


def make_series(
    array: np.ndarray,
    *,
    modality: str = "CT",
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    pixel_spacing: Sequence[float] = (1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    slice_step: float | Sequence[float] = 1.0,
    positions: np.ndarray | None = None,
    slopes: float | Sequence[float] | None = None,
    intercepts: float | Sequence[float] | None = None,
    instance_numbers: Sequence[int] | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 1,
    series_description: str = "synthetic series",
    bits_stored: int | None = None,
    extra: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
) -> list[Dataset]:
    """Single-frame CT or MR datasets, one per slice, for stored values ``array[r, c, k]``.

    Args:
        array: Stored (raw) values, 3D, integer dtype (its dtype sets
            BitsAllocated and PixelRepresentation).
        modality: ``'CT'`` or ``'MR'`` (sets the SOP class and its module).
        orientation: ImageOrientationPatient.
        pixel_spacing: PixelSpacing (row spacing, column spacing) in mm.
        origin: ImagePositionPatient of slice 0.
        slice_step: Distance along the normal, or a step vector (gantry tilt).
        positions: Explicit ``(n, 3)`` positions, overriding origin/slice_step.
        slopes: RescaleSlope, one value or one per slice (CT defaults to 1).
        intercepts: RescaleIntercept, one value or one per slice (CT: 0).
        instance_numbers: InstanceNumber of each slice (default 1..n).
        study_uid: StudyInstanceUID (default derived from the description).
        series_uid: SeriesInstanceUID (default derived from the description).
        series_number: SeriesNumber.
        series_description: SeriesDescription, also seeds the default UIDs.
        bits_stored: BitsStored (default: all bits allocated).
        extra: Attributes (keyword -> value) added to every slice, or a list
            with one dict per slice.

    Returns:
        The datasets in slice order ``k``, each with file meta (Explicit VR
        Little Endian) and uncompressed pixel data.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"array must be 3D (rows, columns, slices), got {array.shape}")
    n = array.shape[2]
    iop = [float(v) for v in orientation]
    pos = (
        np.asarray(positions, dtype=np.float64)
        if positions is not None
        else slice_positions(n, orientation=iop, origin=origin, slice_step=slice_step)
    )
    study_uid = study_uid or uid("study", series_description)
    series_uid = series_uid or uid("series", series_description, series_number)
    frame_of_ref = uid("frame of reference", study_uid)
    numbers = list(instance_numbers) if instance_numbers is not None else list(range(1, n + 1))
    if slopes is None and intercepts is None and modality == "CT":
        slopes, intercepts = 1.0, 0.0
    m = _per_slice(slopes, n) if slopes is not None else None
    b = _per_slice(intercepts if intercepts is not None else 0.0, n) if m is not None else None
    extras = [dict(extra or {})] * n if not isinstance(extra, Sequence) else [dict(e) for e in extra]
    sop_class = _SOP_OF_MODALITY[modality]
    out = []
    for k in range(n):
        ds = Dataset()
        _common(
            ds,
            sop_class=sop_class,
            sop_uid=uid("instance", series_uid, k),
            modality=modality,
            study_uid=study_uid,
            series_uid=series_uid,
            series_number=series_number,
            series_description=series_description,
        )
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if modality == "CT" else "OTHER"]
        ds.BodyPartExamined = "HEAD"
        ds.PatientPosition = "HFS"
        ds.FrameOfReferenceUID = frame_of_ref
        ds.PositionReferenceIndicator = ""
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = numbers[k]
        ds.ImagePositionPatient = [_ds_str(v) for v in pos[k]]
        ds.ImageOrientationPatient = [_ds_str(v) for v in iop]
        ds.PixelSpacing = [_ds_str(float(v)) for v in pixel_spacing]
        ds.SliceThickness = _ds_str(float(np.linalg.norm(pos[1] - pos[0])) if n > 1 else 1.0)
        if modality == "CT":
            ds.KVP = "120"
        elif modality == "MR":
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = "SP"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "3D"
            ds.RepetitionTime = "8.1"
            ds.EchoTime = "3.7"
            ds.EchoTrainLength = "1"
            ds.ImagedNucleus = "1H"
            ds.MagneticFieldStrength = "3"
        _pixel_module(ds, array[:, :, k], bits_stored=bits_stored)
        if m is not None and b is not None:
            ds.RescaleIntercept = _ds_str(b[k])
            ds.RescaleSlope = _ds_str(m[k])
            ds.RescaleType = "HU" if modality == "CT" else "US"
        for key, value in extras[k].items():
            setattr(ds, key, value)
        _file_meta(ds)
        out.append(ds)
    return out


def make_image(
    pixels: np.ndarray,
    *,
    modality: str = "CR",
    photometric: str = "MONOCHROME2",
    sop_class: str | None = None,
    series_description: str = "synthetic image",
    extra: dict[str, Any] | None = None,
) -> Dataset:
    """A 2D image dataset (no patient position): CR, OT (secondary capture) or US.

    Args:
        pixels: ``(rows, columns)``; ``(frames, rows, columns)`` for a
            multi-frame image (NumberOfFrames is then set); a trailing axis
            of 3 for RGB (uint8).
        modality: Modality (``'CR'``, ``'OT'``, ``'US'``, ...).
        photometric: PhotometricInterpretation.
        sop_class: SOP Class UID (default from the modality; US multi-frame
            when there are several frames).
        series_description: SeriesDescription, also seeds the UIDs.
        extra: Attributes added to the dataset.
    """
    pixels = np.asarray(pixels)
    rgb = photometric in ("RGB", "YBR_FULL")
    frames = pixels.shape[0] if pixels.ndim == (4 if rgb else 3) else 1
    if sop_class is None:
        sop_class = (
            US_MULTIFRAME if (modality == "US" and frames > 1) else _SOP_OF_MODALITY.get(modality, SC_IMAGE)
        )
    series_uid = uid("series", series_description)
    ds = Dataset()
    _common(
        ds,
        sop_class=sop_class,
        sop_uid=uid("instance", series_uid),
        modality=modality,
        study_uid=uid("study", series_description),
        series_uid=series_uid,
        series_number=1,
        series_description=series_description,
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    if modality == "OT":
        ds.ConversionType = "WSD"
    ds.PhotometricInterpretation = photometric
    if rgb:
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        ds.Rows, ds.Columns = int(pixels.shape[-3]), int(pixels.shape[-2])
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
        ds["PixelData"].VR = "OB"
    else:
        _pixel_module(ds, pixels)
        ds.PhotometricInterpretation = photometric
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x00181063
        ds.FrameTime = "33.3"
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    _file_meta(ds)
    return ds


def _item(**attrs: Any) -> Dataset:
    it = Dataset()
    for key, value in attrs.items():
        setattr(it, key, value)
    return it


def add_functional_groups(
    ds: Dataset,
    *,
    positions: np.ndarray,
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    pixel_spacing: Sequence[float] = (1.0, 1.0),
    slice_thickness: float = 1.0,
    slopes: float | Sequence[float] | None = None,
    intercepts: float | Sequence[float] | None = None,
    stack_ids: Sequence[str] | None = None,
) -> Dataset:
    """Give a multi-frame dataset Shared and Per-frame Functional Groups, in place.

    Orientation, pixel measures and (when ``slopes`` is one value) the pixel
    value transformation are shared; the plane position and frame content are
    per frame, and so is the rescale when ``slopes`` is a sequence.

    Args:
        ds: A multi-frame dataset (NumberOfFrames set).
        positions: ImagePositionPatient of each frame in frame order, ``(n, 3)``.
        orientation: ImageOrientationPatient.
        pixel_spacing: PixelSpacing.
        slice_thickness: SliceThickness in the Pixel Measures.
        slopes: RescaleSlope (one value, or one per frame); none if ``None``.
        intercepts: RescaleIntercept (one value, or one per frame).
        stack_ids: StackID of each frame (default all ``'1'``).

    Returns:
        ``ds``.
    """
    n = int(ds.NumberOfFrames)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape != (n, 3):
        raise ValueError(f"need ({n}, 3) positions, got {positions.shape}")
    per_frame_rescale = slopes is not None and np.ndim(slopes) > 0
    shared = _item(
        PlaneOrientationSequence=DicomSequence(
            [_item(ImageOrientationPatient=[_ds_str(float(v)) for v in orientation])]
        ),
        PixelMeasuresSequence=DicomSequence(
            [
                _item(
                    SliceThickness=_ds_str(slice_thickness),
                    PixelSpacing=[_ds_str(float(v)) for v in pixel_spacing],
                )
            ]
        ),
    )
    if slopes is not None and not per_frame_rescale:
        shared.PixelValueTransformationSequence = DicomSequence(
            [
                _item(
                    RescaleIntercept=_ds_str(float(intercepts or 0.0)),
                    RescaleSlope=_ds_str(float(slopes)),
                    RescaleType="US",
                )
            ]
        )
    m = _per_slice(slopes, n) if per_frame_rescale else None
    b = _per_slice(intercepts if intercepts is not None else 0.0, n) if per_frame_rescale else None
    stacks = list(stack_ids) if stack_ids is not None else ["1"] * n
    in_stack = {s: 0 for s in stacks}
    per = []
    for f in range(n):
        in_stack[stacks[f]] += 1
        fg = _item(
            FrameContentSequence=DicomSequence(
                [_item(StackID=stacks[f], InStackPositionNumber=in_stack[stacks[f]])]
            ),
            PlanePositionSequence=DicomSequence(
                [_item(ImagePositionPatient=[_ds_str(float(v)) for v in positions[f]])]
            ),
        )
        if m is not None and b is not None:
            fg.PixelValueTransformationSequence = DicomSequence(
                [_item(RescaleIntercept=_ds_str(b[f]), RescaleSlope=_ds_str(m[f]), RescaleType="US")]
            )
        per.append(fg)
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per)
    if "FrameOfReferenceUID" not in ds:
        ds.FrameOfReferenceUID = uid("frame of reference", ds.get("StudyInstanceUID", ""))
    return ds


def make_enhanced(
    array: np.ndarray,
    *,
    modality: str = "MR",
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    pixel_spacing: Sequence[float] = (1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    slice_step: float | Sequence[float] = 1.0,
    positions: np.ndarray | None = None,
    frame_order: Sequence[int] | None = None,
    slopes: float | Sequence[float] | None = None,
    intercepts: float | Sequence[float] | None = None,
    stack_ids: Sequence[str] | None = None,
    series_description: str = "synthetic enhanced",
) -> Dataset:
    """An Enhanced MR or CT file holding stored values ``array[r, c, k]`` as frames.

    Args:
        array: Stored values, slice ``k`` at position ``k`` along the stack.
        modality: ``'MR'`` or ``'CT'``.
        orientation, pixel_spacing, origin, slice_step, positions: Geometry
            as in :func:`make_series`.
        frame_order: Which slice each frame holds (frame ``f`` holds slice
            ``frame_order[f]``); default slice order. Use it to store frames
            out of spatial order.
        slopes, intercepts: Rescale, one value (shared) or one per slice.
        stack_ids: StackID per frame (in frame order).
        series_description: Seeds the UIDs.
    """
    array = np.asarray(array)
    n = array.shape[2]
    iop = [float(v) for v in orientation]
    pos = (
        np.asarray(positions, dtype=np.float64)
        if positions is not None
        else slice_positions(n, orientation=iop, origin=origin, slice_step=slice_step)
    )
    order = list(frame_order) if frame_order is not None else list(range(n))
    series_uid = uid("series", series_description)
    ds = Dataset()
    _common(
        ds,
        sop_class=ENHANCED_MR if modality == "MR" else ENHANCED_CT,
        sop_uid=uid("instance", series_uid),
        modality=modality,
        study_uid=uid("study", series_description),
        series_uid=series_uid,
        series_number=1,
        series_description=series_description,
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.InstanceNumber = 1
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = uid("frame of reference", ds.StudyInstanceUID)
    ds.PositionReferenceIndicator = ""
    ds.AcquisitionNumber = 1
    ds.ContentQualification = "RESEARCH"
    ds.NumberOfFrames = n
    frames = np.stack([array[:, :, k] for k in order])
    _pixel_module(ds, frames)
    m = _per_slice(slopes, n) if slopes is not None and np.ndim(slopes) > 0 else slopes
    b = _per_slice(intercepts, n) if intercepts is not None and np.ndim(intercepts) > 0 else intercepts
    add_functional_groups(
        ds,
        positions=pos[order],
        orientation=iop,
        pixel_spacing=pixel_spacing,
        slice_thickness=float(np.linalg.norm(pos[1] - pos[0])) if n > 1 else 1.0,
        slopes=[m[k] for k in order] if isinstance(m, list) else m,
        intercepts=[b[k] for k in order] if isinstance(b, list) else b,
        stack_ids=stack_ids,
    )
    _file_meta(ds)
    return ds


def write_datasets(
    datasets: Sequence[Dataset], folder: Path, *, names: Sequence[str] | None = None
) -> list[Path]:
    """Write datasets as DICOM files (with preamble and file meta) into ``folder``.

    Args:
        datasets: The datasets.
        folder: Created if missing.
        names: File names (default ``slice_000.dcm``, ...), in dataset order.

    Returns:
        The paths written, in dataset order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(names) if names is not None else [f"slice_{i:03d}.dcm" for i in range(len(datasets))]
    paths = []
    for ds, name in zip(datasets, names, strict=True):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_series(
    folder: Path, array: np.ndarray, *, names: Sequence[str] | None = None, **kwargs: Any
) -> list[Path]:
    """:func:`make_series` then :func:`write_datasets`; returns the paths in slice order."""
    return write_datasets(make_series(array, **kwargs), folder, names=names)
