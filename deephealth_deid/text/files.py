"""``redact_file``: the whole job on files, with every output checked before any work starts."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..io import load_image, save_image
from ..io._files import atomic_file, check_output
from ..io.api import check_image_path
from .pipeline import RedactResult, redact_text

__all__ = ["check_outputs", "redact_file", "redact_text_file", "write_outputs", "write_qc_png"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def write_qc_png(
    result: RedactResult, path: PathLike, *, overwrite: bool = False, max_frames: int = 4
) -> Path:
    """Write the QC picture of ``result`` (see :func:`~.qc.qc_picture`) as a PNG, atomically."""
    from PIL import Image as PILImage

    from .qc import qc_picture

    p = check_output(path, overwrite=overwrite)
    with atomic_file(p) as tmp:
        PILImage.fromarray(qc_picture(result, max_frames=max_frames)).save(tmp, format="PNG")
    return p


def redact_file(
    src: PathLike,
    dst: PathLike,
    *,
    qc_png: PathLike | None = None,
    overwrite: bool = False,
    **options: Any,
) -> RedactResult:
    """Remove the identifying burned-in text of ``src`` into ``dst``, in the same format.

    Args:
        src: A 2D or multi-frame DICOM file, PNG, JPEG or TIFF; never modified.
        dst: The output. A DICOM input gives DICOM (every attribute kept but
            the pixel data, the new UIDs, *Burned In Annotation* ``NO`` and,
            unless ``keep_overlays``, the 60xx overlays); other inputs are
            written by ``dst``'s suffix (lossless; JPEG only from a JPEG).
        qc_png: Also write the QC picture (PNG) here.
        overwrite: Replace existing outputs.
        **options: Passed to :func:`~.pipeline.redact_text` (``detector``,
            ``ocr``, ``policy``, ``rules``, ``keep_safe``, ``keep_overlays``,
            ``pad_px``, ``model``, ``engine``, ``device``, ...).

    Returns:
        The :class:`~.pipeline.RedactResult`.

    Raises:
        OutputExistsError: An output exists and ``overwrite`` is false
            (checked before anything is read).
        OutputError: An output is the input, or the output and QC paths are
            the same.

    Example:
        >>> res = redact_file("us.dcm", "us_redacted.dcm", detector="ocr", qc_png="qc.png")  # doctest: +SKIP
    """
    check_outputs(src, dst, qc_png=qc_png, overwrite=overwrite)
    image = load_image(src)
    check_image_path(image, dst)  # the format its name asks for, before any work
    result = redact_text(image, output=dst, **options)
    write_outputs(result, dst, qc_png=qc_png, overwrite=overwrite)
    return result


def check_outputs(
    src: PathLike, dst: PathLike, *, qc_png: PathLike | None = None, overwrite: bool = False
) -> None:
    """Check, before any work, that the outputs of :func:`redact_file` may be written.

    Raises:
        OutputError: An output is the input, or the output and QC paths are the same.
        OutputExistsError: An output exists and ``overwrite`` is false.
    """
    outputs = [Path(dst)] + ([Path(qc_png)] if qc_png is not None else [])
    if len({o.resolve() for o in outputs}) != len(outputs):
        from ..errors import OutputError

        raise OutputError(f"{dst}: the output and the QC picture must be different files")
    for out in outputs:
        check_output(out, overwrite=overwrite, inputs=(src,))


def write_outputs(
    result: RedactResult, dst: PathLike, *, qc_png: PathLike | None = None, overwrite: bool = False
) -> None:
    """Write the redacted image (in its input's format), and the QC picture when asked."""
    save_image(result.image, dst, overwrite=overwrite)
    if qc_png is not None:
        write_qc_png(result, qc_png, overwrite=overwrite)


#: The name the design's public API uses (``dd.redact_text_file``); the same function.
redact_text_file = redact_file
