"""Recognise a file's format from its first bytes, never from its name alone."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from ..errors import CorruptInputError

__all__ = ["sniff"]

_DICOM_SUFFIXES = {"", ".dcm", ".dicom", ".ima", ".dc3"}


def sniff(path: Path) -> str:
    """Return ``'dir'``, ``'nifti'``, ``'dicom'``, ``'png'``, ``'jpeg'``, ``'tiff'`` or ``'unknown'``.

    Raises:
        CorruptInputError: If a gzip file cannot even be opened.
    """
    if path.is_dir():
        return "dir"
    with open(path, "rb") as f:
        head = f.read(1024)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as g:
                head = g.read(1024)
        except (OSError, EOFError, zlib.error) as e:
            raise CorruptInputError(
                f"{path}: the gzip stream is damaged or truncated ({e}); copy the file again"
            ) from e
        return "nifti" if _is_nifti(head) else "unknown"
    if _is_nifti(head):
        return "nifti"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    # Without a preamble, only names a DICOM file may have are parsed: the usual suffixes, none,
    # or a UID's last number (files named by their SOP Instance UID).
    suffix = path.suffix.lower()
    if (suffix in _DICOM_SUFFIXES or suffix[1:].isdigit()) and _looks_like_raw_dicom(path):
        return "dicom"
    return "unknown"


def _is_nifti(head: bytes) -> bool:
    if len(head) >= 348 and head[344:347] in (b"n+1", b"ni1"):
        return True
    return len(head) >= 540 and head[4:7] in (b"n+2", b"ni2")


def _looks_like_raw_dicom(path: Path) -> bool:
    """A DICOM file without the 128-byte preamble (old ACR-NEMA style exports)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
        return False
    return "SOPClassUID" in ds or "Rows" in ds
