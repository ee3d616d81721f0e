"""``deface_file``: the whole job on files, with every output checked before any work starts."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..io import load_volume, save_volume
from ..io._files import atomic_file, check_output
from ..io.volume import Volume
from .pipeline import DefaceResult, deface

__all__ = ["check_outputs", "deface_file", "write_outputs", "write_qc_png"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def write_qc_png(result: DefaceResult, before: Any, path: PathLike, *, overwrite: bool = False) -> Path:
    """Write the QC picture of ``result`` (see :func:`~.qc.qc_image`) as a PNG."""
    from PIL import Image as PILImage

    from .qc import qc_image

    p = check_output(path, overwrite=overwrite)
    with atomic_file(p) as tmp:
        PILImage.fromarray(qc_image(before, result.volume, result.mask)).save(tmp, format="PNG")
    return p


def deface_file(
    src: PathLike,
    dst: PathLike,
    *,
    save_mask: PathLike | None = None,
    qc: PathLike | None = None,
    overwrite: bool = False,
    index: int | None = None,
    series_uid: str | None = None,
    allow_uneven: bool = False,
    brain_mask: PathLike | Volume | None = None,
    **options: Any,
) -> DefaceResult:
    """Deface ``src`` (NIfTI file, DICOM series folder or file) into ``dst``, in the same format.

    Args:
        src: The input; never modified.
        dst: The output: a ``.nii``/``.nii.gz`` file, or a folder for a DICOM
            series (an Enhanced DICOM input gives one file).
        save_mask: Also write the removal mask (labels 1 eyes, 2 nose, 3 mouth,
            4 ears) as NIfTI here.
        qc: Also write the QC picture (PNG) here.
        overwrite: Replace existing outputs.
        index: Volume of a 4D NIfTI input.
        series_uid: Series to read from a folder holding several.
        allow_uneven: Accept a DICOM series whose slice spacing varies (the
            mean step is used, with a warning).
        brain_mask: A brain mask of the head (a file any reader here reads,
            or a Volume): nothing near it changes (see :mod:`.brain`).
        **options: Passed to :func:`~.pipeline.deface` (``mode``, ``engine``,
            ``device``, ``model``, ``margin_mm``, ...).

    Returns:
        The :class:`~.pipeline.DefaceResult`.
    """
    given = () if brain_mask is None or isinstance(brain_mask, Volume) else (brain_mask,)
    check_outputs(src, dst, save_mask=save_mask, qc=qc, overwrite=overwrite, inputs=given)
    volume = load_volume(src, index=index, series_uid=series_uid, allow_uneven=allow_uneven)
    if given:
        brain_mask = load_volume(given[0])
    result = deface(volume, brain_mask=brain_mask, **options)
    write_outputs(result, volume, dst, save_mask=save_mask, qc=qc, overwrite=overwrite)
    log.info("%s: removed %s", Path(src).name, result.qc.voxels)
    return result


def check_outputs(
    src: PathLike,
    dst: PathLike,
    *,
    save_mask: PathLike | None = None,
    qc: PathLike | None = None,
    overwrite: bool = False,
    inputs: tuple[PathLike, ...] = (),
) -> None:
    """Check, before any work, that the outputs of :func:`deface_file` may be written
    (``inputs``: other files it reads besides ``src``).

    Raises:
        OutputError: Two outputs share a path; an output is an input, lies inside it, or has no folder; the
            mask is not a NIfTI path.
        OutputExistsError: An output exists and ``overwrite`` is false.
    """
    outputs = [Path(dst)] + [Path(p) for p in (save_mask, qc) if p is not None]
    if len({o.resolve() for o in outputs}) != len(outputs):
        raise OutputError("the output, mask and QC paths must differ")
    for out in outputs:
        check_output(out, overwrite=overwrite, inputs=(src, *inputs))
    if save_mask is not None and not str(save_mask).lower().endswith((".nii", ".nii.gz")):
        raise OutputError(f"{save_mask}: the mask is written as NIfTI; give a path ending in .nii or .nii.gz")


def write_outputs(
    result: DefaceResult,
    before: Any,
    dst: PathLike,
    *,
    save_mask: PathLike | None = None,
    qc: PathLike | None = None,
    overwrite: bool = False,
) -> None:
    """Write the defaced volume (in its input's format), and the mask and QC picture when asked."""
    save_volume(result.volume, dst, overwrite=overwrite)
    if save_mask is not None:
        save_volume(result.mask, save_mask, overwrite=overwrite)
    if qc is not None:
        write_qc_png(result, before, qc, overwrite=overwrite)
