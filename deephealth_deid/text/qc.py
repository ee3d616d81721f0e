"""The QC picture of a redaction: the redacted frames with every region's box drawn.

Boxes are coloured by decision (red: blanked, green: kept) and labelled with
the decision, the detector's score and ``'identifying'``, ``'harmless'`` or
``'unread'`` (blanked without OCR);
never with the text read (a blanked region's text is patient data). The
picture shows the redacted image, so it holds no more than the output does.
"""

from __future__ import annotations

import numpy as np

from .blank import padded_box
from .pipeline import RedactResult, display_frame

__all__ = ["qc_picture", "DECISION_COLOURS"]

#: RGB colour of a box by decision.
DECISION_COLOURS: dict[str, tuple[int, int, int]] = {"blank": (230, 40, 40), "keep": (40, 200, 60)}

_GAP = 8


def qc_picture(result: RedactResult, *, max_frames: int = 4) -> np.ndarray:
    """The QC picture: ``(rows, width, 3)`` uint8 RGB.

    Args:
        result: What :func:`~.pipeline.redact_text` returned.
        max_frames: How many of the distinct frames to show, side by side
            (the first ones; repeated frames are never shown twice).

    Example:
        >>> pic = qc_picture(redact_text(img, detector=my_detector))  # doctest: +SKIP
        >>> PIL.Image.fromarray(pic).save("qc.png")  # doctest: +SKIP
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

    image = result.image
    indices = list(result.qc.distinct_frames[: max(1, max_frames)]) or [0]
    rows, cols = image.rows, image.columns
    canvas = PILImage.new("RGB", (len(indices) * cols + (len(indices) - 1) * _GAP, rows), (255, 255, 255))
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(canvas)
    for k, i in enumerate(indices):
        left = k * (cols + _GAP)
        canvas.paste(PILImage.fromarray(display_frame(image, i)), (left, 0))
        for r in (r for r in result.regions if r.frame == i):
            colour = DECISION_COLOURS[r.decision]
            if r.decision == "blank":
                x0, y0, x1, y1 = padded_box(r, rows, cols, result.pad_px, result.grid)
            else:
                x0, y0, x1, y1 = r.box
            draw.rectangle((left + x0, y0, left + x1 - 1, y1 - 1), outline=colour, width=2)
            kind = "harmless" if r.decision == "keep" else "identifying" if r.text is not None else "unread"
            label = f"{r.decision} {r.score:.2f} {kind}"
            _label(draw, font, label, (left + x0, y0, left + x1, y1), colour, rows)
    return np.asarray(canvas)


def _label(draw, font, text: str, box: tuple[int, int, int, int], colour: tuple[int, int, int], rows: int):
    """The label above the box (below it where there is no room), on a filled background."""
    tx0, ty0, tx1, ty1 = draw.textbbox((0, 0), text, font=font)
    w, h = tx1 - tx0, ty1 - ty0
    x = box[0]
    y = box[1] - h - 4 if box[1] - h - 4 >= 0 else min(box[3] + 2, rows - h - 2)
    draw.rectangle((x, y, x + w + 3, y + h + 3), fill=colour)
    draw.text((x + 2 - tx0, y + 2 - ty0), text, fill=(255, 255, 255), font=font)
