"""The public readers and writers: choose a format from the content, then delegate."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OutputError, UnsupportedInputError, WrongKindError
from ._files import check_input_file, check_output
from ._sniff import sniff
from .image import Image
from .volume import Volume

__all__ = ["load_volume", "save_volume", "load_image", "save_image", "check_image_path", "edit_grid"]

PathLike = str | os.PathLike[str]
_RASTER = ("png", "jpeg", "tiff")


def load_volume(
    path: PathLike,
    *,
    index: int | None = None,
    series_uid: str | None = None,
    allow_uneven: bool = False,
    reader: str = "builtin",
) -> Volume:
    """Read a head volume from a NIfTI file, a DICOM series or an Enhanced DICOM file.

    Args:
        path: A ``.nii``/``.nii.gz`` file; a folder holding a DICOM series
            (searched recursively); one file of a DICOM series (the rest of its
            series is read from the same folder); or an Enhanced (multi-frame)
            MR/CT DICOM file.
        index: For a 4D NIfTI file, the volume to read (0-based).
        series_uid: For a folder holding several series, the SeriesInstanceUID
            of the one to read.
        allow_uneven: Accept a DICOM series whose slice spacing varies by more
            than the tolerance; the affine then uses the mean step and a
            warning says by how much positions may be off.
        reader: ``'builtin'`` (nibabel/pydicom) or ``'ecvl'`` (pixel data read
            by ECVL through pyecvl; the geometry and source still come from
            the built-in reader, which checks they agree).

    Returns:
        The volume, in the array order of the source, with its RAS affine.

    Raises:
        InputNotFoundError, CorruptInputError, UnsupportedInputError,
        WrongKindError, InvalidDataError, TooLargeError, SeriesError,
        DecoderUnavailableError: see :mod:`deephealth_deid.errors`.

    Example:
        >>> vol = load_volume("head.nii.gz")  # doctest: +SKIP
        >>> vol.shape, vol.spacing, vol.axcodes  # doctest: +SKIP
        ((188, 256, 190), (0.88, 0.88, 0.88), ('R', 'A', 'S'))
    """
    p = check_input_file(path)
    if reader not in ("builtin", "ecvl"):
        raise ValueError(f"reader must be 'builtin' or 'ecvl', got {reader!r}")
    kind = sniff(p)
    if kind == "nifti" and series_uid is not None:
        raise UnsupportedInputError(
            f"{p}: a NIfTI file holds no DICOM series; series_uid (--series) is for DICOM"
        )
    if kind in ("dir", "dicom") and index is not None:
        raise UnsupportedInputError(f"{p}: DICOM; index (--volume) picks a volume of a 4D NIfTI file")
    if kind == "nifti":
        from .nifti import read_nifti

        vol = read_nifti(p, index=index)
    elif kind in ("dir", "dicom"):
        from .dicom_volume import read_dicom_volume

        vol = read_dicom_volume(p, series_uid=series_uid, allow_uneven=allow_uneven)
    elif kind in _RASTER:
        raise WrongKindError(
            f"{p}: a 2D {kind.upper()} image, not a volume; use load_image (CLI: deid redact)"
        )
    else:
        raise UnsupportedInputError(
            f"{p}: not a NIfTI or DICOM file (unrecognised content); "
            "volumes are read from .nii/.nii.gz files and DICOM series"
        )
    if reader == "ecvl":
        from .ecvl import reread_with_ecvl

        vol = reread_with_ecvl(vol)
    return vol


def save_volume(volume: Volume, path: PathLike, *, overwrite: bool = False) -> Path:
    """Write a volume, in its source's format unless the path asks for NIfTI.

    A path ending in ``.nii`` or ``.nii.gz`` writes NIfTI (keeping the source
    NIfTI header when there is one). Otherwise a volume read from a DICOM
    series is written as a DICOM series into the folder ``path``, and one read
    from an Enhanced DICOM file as one Enhanced file at ``path``; every
    attribute of the source is kept except the pixel data and what a derived
    image must change (see :data:`deephealth_deid.io.dicom_volume.CHANGED_ATTRIBUTES`).

    Writing is atomic, never touches the volume's own source files, and refuses
    an existing output unless ``overwrite`` is true.

    Returns:
        The path written.
    """
    if not isinstance(volume, Volume):
        raise TypeError(
            f"volume must be a Volume, got {type(volume).__name__}; Volume(array, affine) makes one from an "
            "array, or volume.with_array(array) keeps a source's header"
        )
    p = Path(path)
    src_path = volume.path
    fmt = volume.format
    is_nifti = p.name.lower().endswith((".nii", ".nii.gz"))
    check_output(p, overwrite=overwrite, inputs=(src_path, *_source_files(volume)))
    if is_nifti:
        from .nifti import write_nifti

        write_nifti(volume, p)
    elif fmt in ("dicom-series", "dicom-enhanced"):
        from .dicom_volume import write_dicom_volume

        write_dicom_volume(volume, p)
    else:
        raise OutputError(f"{p}: a {fmt} volume is written as NIfTI; give a path ending in .nii or .nii.gz")
    return p


def load_image(path: PathLike, *, reader: str = "builtin") -> Image:
    """Read a 2D image: a DICOM file (single or multi-frame), PNG, JPEG or TIFF.

    DICOM pixel data is decoded (JPEG baseline/lossless, JPEG 2000, RLE), YBR is
    converted to RGB, MONOCHROME1 and PALETTE COLOR keep their meaning (see
    :class:`Image`). Overlays (60xx) stay in the source and are written back.

    Args:
        path: The image file.
        reader: ``'builtin'`` (pydicom, Pillow, tifffile) or ``'ecvl'`` (pixel
            data read by ECVL through pyecvl; the header and source still come
            from the built-in reader; what ECVL cannot read faithfully is
            refused, see :mod:`deephealth_deid.io.ecvl`).

    Raises:
        WrongKindError: For a NIfTI file, a DICOM series folder or an Enhanced
            MR/CT volume (use :func:`load_volume`).
        DecoderUnavailableError: Compressed pixel data that no installed
            decoder reads; the message says what to install.

    Example:
        >>> img = load_image("us.dcm")  # doctest: +SKIP
        >>> img.n_frames, img.photometric  # doctest: +SKIP
        (1, 'RGB')
    """
    p = check_input_file(path)
    if reader not in ("builtin", "ecvl"):
        raise ValueError(f"reader must be 'builtin' or 'ecvl', got {reader!r}")
    kind = sniff(p)
    if kind == "dicom" or kind in _RASTER:
        if kind == "dicom":
            from .dicom_image import read_dicom_image

            image = read_dicom_image(p)
        else:
            from .raster import read_raster

            image = read_raster(p, kind)
        if reader == "ecvl":
            from .ecvl import reread_image_with_ecvl

            image = reread_image_with_ecvl(image, dicom=kind == "dicom")
        return image
    if kind in ("nifti", "dir"):
        what = "a NIfTI volume" if kind == "nifti" else "a folder (a DICOM series is a volume)"
        raise WrongKindError(f"{p}: {what}, not a 2D image; use load_volume (CLI: deid deface)")
    raise UnsupportedInputError(f"{p}: not a DICOM, PNG, JPEG or TIFF file (unrecognised content)")


def save_image(image: Image, path: PathLike, *, overwrite: bool = False) -> Path:
    """Write an image: DICOM if it came from DICOM, else by the path's suffix.

    DICOM is written uncompressed (Explicit VR Little Endian) with attributes
    consistent with the pixel data and every other attribute kept. PNG and TIFF
    are lossless; JPEG output is refused unless the image came from a JPEG
    (it would change pixels that were not redacted).

    Returns:
        The path written.
    """
    p = Path(path)
    check_output(p, overwrite=overwrite, inputs=(image.path,))
    if image.format == "dicom":
        from .dicom_image import write_dicom_image

        write_dicom_image(image, p)
    else:
        from .raster import write_raster

        write_raster(image, p)
    return p


def edit_grid(image: Image, path: PathLike | None = None) -> tuple[int, int] | None:
    """The pixel grid ``(rows, columns)`` changes to ``image`` should be aligned to, or None.

    An image read from a JPEG has one (its minimum coded unit: 8 x 8 or
    16 x 16 pixels): fills of whole grid cells are written back as new blocks
    inside the source's own compressed data, and every other pixel of the
    JPEG stays exactly as it was. Any other change makes :func:`save_image`
    encode the JPEG again. None for every other image: any change is written
    exactly.

    Args:
        image: The image to change.
        path: Where it will be written, if known: None unless that is a JPEG.
    """
    if image.format == "dicom":
        return None
    from .raster import check_raster_path
    from .raster import edit_grid as raster_grid

    if path is not None and check_raster_path(image, Path(path)) != "jpeg":
        return None
    return raster_grid(image)


def check_image_path(image: Image, path: PathLike) -> None:
    """Check, before any work, that :func:`save_image` can write ``image`` at ``path`` (format and suffix).

    Raises:
        OutputError: A DICOM image given another format's name (it stays
            DICOM), or a raster image given a suffix it cannot be written as.
    """
    if image.format == "dicom":
        from .dicom_image import check_dicom_path

        check_dicom_path(Path(path))
    else:
        from .raster import check_raster_path

        check_raster_path(image, Path(path))


def _source_files(volume: Volume) -> tuple[Path, ...]:
    files = getattr(volume.source, "files", None)
    return tuple(files) if files else ()
