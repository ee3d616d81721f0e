"""Safe file handling shared by every reader and writer.

Inputs are checked before they are parsed (exists, not empty); outputs are
never an input, never overwritten unless asked, and always written to a
temporary name beside the target and then renamed, so a crash or an error
never leaves a half-written file or folder behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import (
    CorruptInputError,
    DeidError,
    InputNotFoundError,
    OutputError,
    OutputExistsError,
    TooLargeError,
)

__all__ = [
    "check_input_file",
    "check_output",
    "atomic_file",
    "atomic_dir",
    "available_memory",
    "check_fits_in_memory",
]


def check_input_file(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a :class:`Path` after checking it exists and is not empty.

    Raises:
        InputNotFoundError: If nothing exists at ``path``.
        CorruptInputError: If it is an empty file.
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such file or folder; check the path")
    if p.is_file() and p.stat().st_size == 0:
        raise CorruptInputError(f"{p}: the file is empty (0 bytes); it was probably not copied fully")
    return p


def check_output(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: tuple[str | os.PathLike[str] | None, ...] = (),
) -> Path:
    """Check that ``path`` may be written and return it.

    Args:
        path: The output file or folder.
        overwrite: Allow replacing an existing output.
        inputs: Paths that were read; the output may never be one of them (or
            lie inside an input folder / contain it), even with ``overwrite``.

    Raises:
        OutputError: If the output is an input, or its parent folder is missing.
        OutputExistsError: If the output exists and ``overwrite`` is false.
    """
    p = Path(path)
    target = p.resolve()
    for src in inputs:
        if src is None:
            continue
        s = Path(src).resolve()
        if target == s or (s.is_dir() and s in target.parents) or target in s.parents:
            raise OutputError(
                f"{p}: the output would overwrite or lie inside the input {src}; "
                "choose another output path (inputs are never modified)"
            )
    if not target.parent.is_dir():
        raise OutputError(f"{p}: the folder {p.parent} does not exist; create it first")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: the folder {p.parent} cannot be written to (permission denied)")
    if (p.exists() or p.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{p}: already exists; pass overwrite=True (CLI: --force) to replace it")
    if p.is_dir() and not p.is_symlink():
        _check_replaceable_folder(p)
    return p


def _check_replaceable_folder(p: Path) -> None:
    """Refuse to replace a folder unless it is empty or holds DICOM files only (an earlier output series).

    A folder of anything else (notes, another study, a NIfTI output's
    parent named by mistake) is never deleted, ``overwrite`` or not.
    """
    from ._sniff import sniff

    for item in sorted(p.rglob("*")):
        if item.is_dir() and not item.is_symlink():
            continue
        try:
            ok = item.is_file() and not item.is_symlink() and sniff(item) == "dicom"
        except (OSError, DeidError):
            ok = False
        if not ok:
            raise OutputError(
                f"{p}: is a folder holding other files than DICOM ({item.relative_to(p)}); only a folder "
                "of DICOM files (an earlier output series) or an empty one is replaced. Choose another "
                "output path, or empty or remove this folder yourself"
            )


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The temporary file keeps the target's suffixes (``.nii.gz``) so writers that
    choose a format from the name behave. On any error it is removed.
    """
    p = Path(path)
    suffix = suffix if suffix is not None else "".join(p.suffixes[-2:]) or p.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=f".tmp{suffix}", dir=p.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path``; move it to ``path`` on success.

    An existing ``path`` (allowed by :func:`check_output`) is replaced only
    after the new folder is complete.
    """
    p = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if p.exists() or p.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".old", dir=p.parent))
            old.rmdir()
            os.replace(p, old)
            os.replace(tmp, p)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            os.replace(tmp, p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable`` on Linux)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return 1 << 62  # unknown: do not refuse


def check_fits_in_memory(path: Path, nbytes: int, *, what: str = "the data") -> None:
    """Refuse, before reading, data whose decoded size exceeds available memory.

    Raises:
        TooLargeError: If ``nbytes`` exceeds the memory available now.
    """
    avail = available_memory()
    if nbytes > avail:
        raise TooLargeError(
            f"{path}: {what} needs {nbytes / 2**30:.1f} GiB in memory but only "
            f"{avail / 2**30:.1f} GiB is available; check the header's dimensions, "
            "or process it on a machine with more memory"
        )
