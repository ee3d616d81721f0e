"""Measure redaction on real images: what OCR still reads, and how much of a text-free image is blanked.

:func:`identifying_read` lists what an OCR backend reads on a frame that the
policy calls identifying (by reason only, never the text): run on a frame
before and after redaction, it tells whether any name, ID or date is still
legible. A detector that marks anatomy as text blanks research data; on a
text-free image every region is a false positive. :func:`anatomy_frames`
cuts such images from a real head volume (three orientations, four positions,
displayed at 64 to 512 pixels, from thumbnails to full views), and
:func:`blanked_share` counts the frames that get any region and the mean
share of a frame inside the padded regions that redaction would fill.

Example:
    >>> import deephealth_deid as dd  # doctest: +SKIP
    >>> from deephealth_deid.text import load_text_detector  # doctest: +SKIP
    >>> frames = anatomy_frames(dd.load_volume("tests/data/heads/chris_t1.nii.gz"))  # doctest: +SKIP
    >>> blanked_share(load_text_detector(), frames)  # doctest: +SKIP
    (12, 0.004)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..io.volume import Volume
from .blank import padded_box
from .ocr import OcrBackend
from .policy import HeaderTerms, Policy
from .regions import Detector

__all__ = ["anatomy_frames", "blanked_share", "identifying_read", "FRAME_SIZES"]

#: Sides (pixels) the slices are displayed at.
FRAME_SIZES: tuple[int, ...] = (64, 96, 128, 256, 512)


def anatomy_frames(
    volume: Volume, *, positions: Sequence[float] = (0.3, 0.45, 0.55, 0.7), sizes: Sequence[int] = FRAME_SIZES
) -> list[np.ndarray]:
    """Text-free uint8 frames of a head: each array axis x ``positions`` x ``sizes``.

    Each slice is windowed to the volume's 1st-99.5th percentiles, turned a
    quarter (so the head is upright in the usual views) and resized
    (bilinear) to a square of each size.
    """
    from PIL import Image as PILImage

    a = np.asarray(volume.array, dtype=np.float32)
    lo, hi = np.percentile(a, [1, 99.5])
    frames = []
    for axis in range(3):
        for position in positions:
            sl = np.rot90(np.take(a, int(a.shape[axis] * position), axis=axis))
            grey = PILImage.fromarray(np.clip((sl - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8))
            for size in sizes:
                frames.append(np.asarray(grey.resize((size, size), PILImage.Resampling.BILINEAR)))
    return frames


def blanked_share(detector: Detector, frames: Sequence[np.ndarray]) -> tuple[int, float]:
    """``(frames with any region, mean share of a frame inside the padded regions)``."""
    hit, share = 0, 0.0
    for f in frames:
        covered = np.zeros(f.shape[:2], bool)
        regions = detector.detect(f)
        for r in regions:
            x0, y0, x1, y1 = padded_box(r, *f.shape[:2])
            covered[y0:y1, x0:x1] = True
        hit += bool(regions)
        share += float(covered.mean())
    return hit, share / max(len(frames), 1)


def identifying_read(
    ocr: OcrBackend, frame: np.ndarray, terms: HeaderTerms, policy: Policy | None = None
) -> list[str]:
    """Why each line ``ocr`` reads on ``frame`` is identifying, for the lines the policy calls so.

    Args:
        ocr: The backend; its own text detection finds the lines
            (:meth:`~.ocr.OcrBackend.find`).
        frame: A displayed frame (uint8 grey or RGB).
        terms: The image's own header values (names, IDs, dates).
        policy: The policy deciding (default :class:`~.policy.Policy`).

    Returns:
        One reason per identifying line (``'matches PatientName'``, a pattern's
        name); never the text itself, which is patient data.
    """
    policy = policy if policy is not None else Policy()
    reasons = (policy.identifying_reason(text, terms) for _box, text, _conf in ocr.find(frame))
    return [r for r in reasons if r is not None]
