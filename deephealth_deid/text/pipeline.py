"""``redact_text``: find burned-in text on every frame, decide what identifies, blank it.

detect (per distinct frame) -> follow each string along its line -> read (OCR, optional; each
distinct crop once) ->
fit the boxes to their ink where it lies on a plain background -> add device
rules -> decide (policy, against the image's own header) -> blank -> for DICOM: remove
overlays and set *Burned In Annotation* to ``NO``.

Example:
    >>> import deephealth_deid as dd
    >>> img = dd.load_image("us.dcm")  # doctest: +SKIP
    >>> res = dd.redact_text(img, detector="ocr")  # doctest: +SKIP
    >>> res.qc.blanked, res.qc.kept  # doctest: +SKIP
    (7, 2)
    >>> dd.save_image(res.image, "us_redacted.dcm")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..io.api import edit_grid
from ..io.dicom_image import curves, header_values, overlays, remove_overlays, set_burned_in_annotation
from ..io.image import Image
from .blank import blank_mask, blank_regions, padded_box
from .detector import get_detector
from .fit import fit_regions
from .follow import follow_regions
from .ocr import OcrBackend, get_ocr, read_regions
from .policy import IDENTIFYING_KEYWORDS, HeaderTerms, Policy
from .regions import Detector, Region
from .rules import RULE_KEYWORDS, RuleSet

__all__ = ["RedactQC", "RedactResult", "redact_text", "display_frame"]

log = logging.getLogger(__name__)

#: A blanked region larger than this fraction of its frame is flagged for review.
LARGE_REGION_FRACTION = 0.5

_HEADER_KEYWORDS = (*IDENTIFYING_KEYWORDS, *RULE_KEYWORDS.values(), "BitsStored")


@dataclass(frozen=True)
class RedactQC:
    """What a person checking a case needs to know, without patient data.

    Attributes:
        frames: Frames in the image.
        distinct_frames: Indices of the frames processed (the others repeat
            one of them byte for byte and reuse its regions).
        detected: Regions the detector found on the distinct frames.
        from_rules: Device-rule boxes applied to each frame.
        blanked: Regions blanked, over all frames.
        kept: Regions kept as harmless markers, over all frames.
        ocr: The OCR backend that read the regions, or ``None``.
        overlays_removed: 60xx overlay planes and retired 50xx curves removed (DICOM).
        burned_in_annotation: The *Burned In Annotation* the written DICOM file
            gets (``'NO'``), or ``None`` for other formats.
        flags: Reasons to review the case (empty when all is well).
    """

    frames: int
    distinct_frames: tuple[int, ...]
    detected: int
    from_rules: int
    blanked: int
    kept: int
    ocr: str | None
    overlays_removed: int
    burned_in_annotation: str | None
    flags: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing needs review."""
        return not self.flags

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record (counts only, no text)."""
        d = asdict(self)
        d["distinct_frames"] = len(self.distinct_frames)
        d["ok"] = self.ok
        return d


@dataclass(frozen=True)
class RedactResult:
    """The redacted image, every region with its decision, and the QC record.

    Attributes:
        image: The redacted image; keeps the input's source, so
            :func:`~deephealth_deid.save_image` writes it in the input's format.
        regions: Every region of every frame, decided (``'blank'`` or ``'keep'``).
            A kept region's ``text`` is harmless; a blanked one's may be
            patient data.
        qc: The :class:`RedactQC` record.
        pad_px: The margin used around boxes (``None``: scaled with each box).
        grid: The grid blanked boxes were grown to (rows, columns): a JPEG's
            blocks, so that a JPEG output keeps every other pixel exact
            (:func:`deephealth_deid.io.api.edit_grid`); None for other images.
    """

    image: Image
    regions: list[Region]
    qc: RedactQC
    pad_px: int | None = None
    grid: tuple[int, int] | None = None

    @property
    def mask(self) -> np.ndarray:
        """Boolean ``(frames, rows, columns)`` mask of the pixels blanked."""
        return blank_mask(self.image.frames.shape[:3], self.regions, pad_px=self.pad_px, grid=self.grid)


def display_frame(image: Image, index: int) -> np.ndarray:
    """Frame ``index`` as a detector sees it: ``(rows, columns, 3)`` uint8 RGB.

    Grey frames are windowed to their own full range (MONOCHROME1 inverted),
    palette frames looked up.
    """
    return replace(image, frames=image.frames[index : index + 1]).to_rgb()[0]


def redact_text(
    image: Image,
    *,
    detector: str | Detector = "net",
    ocr: str | OcrBackend | None = "auto",
    policy: Policy | str | os.PathLike[str] | None = None,
    rules: RuleSet | str | os.PathLike[str] | None = None,
    header: Mapping[str, Any] | None = None,
    keep_safe: bool | None = None,
    pad_px: int | None = None,
    keep_overlays: bool = False,
    fit: bool = True,
    follow: bool = True,
    output: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | None = None,
    engine: str = "auto",
    device: str = "auto",
    progress: bool = False,
) -> RedactResult:
    """Remove the identifying burned-in text from every frame of an image.

    Args:
        image: A 2D or multi-frame image (grey, MONOCHROME1, RGB, palette;
            YBR sources arrive decoded to RGB); not modified.
        detector: ``'net'`` (the trained text detector), ``'ocr'`` (the OCR
            backend's own text detection) or an object with
            ``detect(frame) -> list[Region]``.
        ocr: OCR backend reading each region (``'auto'``, ``'tesseract'``,
            ``'rapidocr'``, ``'none'`` or a backend object). Without one every
            region is blanked.
        policy: A :class:`Policy`, a YAML file for :meth:`Policy.from_yaml`,
            or ``None`` for the default policy.
        rules: Device rules (:class:`RuleSet` or its YAML file); their boxes
            are blanked in addition to what the detector finds.
        header: More header values (keyword -> value or values) to treat as
            identifying; a DICOM image's own header is always used.
        keep_safe: Keep harmless markers read by OCR; ``None`` for the
            policy's setting (default on).
        pad_px: Margin blanked around each detected box; ``None``: a fifth
            of the box's height, at least 2 pixels. Device-rule boxes are
            blanked as drawn.
        keep_overlays: Keep a DICOM image's 60xx overlays and retired 50xx
            curves (they can carry text; removed by default).
        fit: Cut each detected box to the ink it holds where it lies on a
            plain background, with a thin margin (:mod:`.fit`); elsewhere, and
            with ``fit=False`` or a ``pad_px``, boxes keep the full margin.
        follow: Lengthen each box the network found along its line over
            glyphs drawn in the string's own stored value (:mod:`.follow`),
            before OCR reads it: the part of a string that crosses onto a
            background it barely differs from is blanked with the rest.
        output: Where the result will be written, if known; only its format
            matters. A box in an image read from a JPEG grows to the JPEG's
            blocks (8 or 16 pixels), so that a JPEG output keeps every other
            pixel exact (:func:`deephealth_deid.io.api.edit_grid`), unless
            ``output`` is another format.
        model: Model file for ``detector='net'``.
        engine: Engine for ``detector='net'``.
        device: Device for ``detector='net'``.
        progress: Show a progress bar over the frames.

    Returns:
        :class:`RedactResult`. Pixels outside the blanked (padded) boxes are
        bit-identical to the input's; with nothing to blank the frames are
        the input's own.

    Raises:
        ModelCheckError: ``detector='net'`` and no text-detection model.
        EngineUnavailableError: An OCR backend named but not installed.
        ConfigError: A malformed policy or rules file.
    """
    if not isinstance(image, Image):
        raise TypeError(
            f"image must be an Image (dd.load_image(path)), got {type(image).__name__}; "
            "dd.redact_file(src, dst) redacts a file"
        )
    for name, value, kind in (("policy", policy, Policy), ("rules", rules, RuleSet)):
        if not isinstance(value, (kind, str, os.PathLike, type(None))):
            raise TypeError(
                f"{name} must be a {kind.__name__} or the path of its YAML file, got {type(value).__name__}"
            )
    # The files first: a malformed policy or rules file is reported before a model loads.
    pol = policy if isinstance(policy, Policy) else Policy() if policy is None else Policy.from_yaml(policy)
    if keep_safe is not None:
        pol = pol.with_keep_safe(keep_safe)
    rule_set = rules if isinstance(rules, RuleSet) or rules is None else RuleSet.from_yaml(rules)
    det = get_detector(detector, ocr=ocr, model=model, engine=engine, device=device)
    reader = get_ocr(ocr) if pol.keep_safe else None
    if pol.keep_safe and reader is None and not _reads_text(det):
        _say_once("no OCR backend: every text region found is blanked (harmless markers too)")

    own = header_values(image, _HEADER_KEYWORDS)
    merged = _merge(own, header or {})
    terms = HeaderTerms.from_header(merged)
    rule_regions = (
        rule_set.regions_for(merged, rows=image.rows, columns=image.columns) if rule_set is not None else []
    )

    seen: dict[bytes, list[Region]] = {}
    readings: dict[bytes, tuple[str, float]] = {}  # OCR by crop: a cine repeats its text on every frame
    distinct: list[int] = []
    regions: list[Region] = []
    detected = 0
    for i in _frames(image.n_frames, progress):
        key = hashlib.blake2b(np.ascontiguousarray(image.frames[i]), digest_size=32).digest()
        decided = seen.get(key)
        if decided is None:
            distinct.append(i)
            frame = display_frame(image, i)
            found = _found(det.detect(frame), image.rows, image.columns)
            detected += len(found)
            if follow:
                found = follow_regions(found, image.frames[i])
            if reader is not None:
                found = read_regions(found, frame, reader, cache=readings)
            if fit and pad_px is None:  # after reading: OCR reads best with the background around
                found = fit_regions(found, image.frames[i])
            decided = pol.decide_all([*found, *rule_regions], terms)
            seen[key] = decided
        regions.extend(r.with_(frame=i) if r.frame != i else r for r in decided)

    bits = _int(own.get("BitsStored"))
    grid = edit_grid(image, output)
    out = blank_regions(image, regions, pad_px=pad_px, bits_stored=bits, grid=grid)
    flags = _large_region_flags(regions, image, pad_px, grid)
    planes = len(overlays(out)) + len(curves(out))
    removed = 0
    if planes and not keep_overlays:
        out = remove_overlays(out)
        removed = planes
    elif planes:
        flags.append(
            f"kept {planes} overlay plane(s) (60xx) or curve(s) (50xx), which can carry text; check them"
        )
    marked = set_burned_in_annotation(out, "NO")
    burned = "NO" if marked is not out else None
    kept = sum(r.decision == "keep" for r in regions)
    qc = RedactQC(
        frames=image.n_frames,
        distinct_frames=tuple(distinct),
        detected=detected,
        from_rules=len(rule_regions),
        blanked=len(regions) - kept,
        kept=kept,
        ocr=reader.name if reader is not None else None,
        overlays_removed=removed,
        burned_in_annotation=burned,
        flags=flags,
    )
    name = image.path.name if image.path is not None else "image"
    log.info(
        "%s: %d frame(s) (%d distinct): %d region(s) blanked, %d kept, %d overlay plane(s) removed",
        name,
        qc.frames,
        len(distinct),
        qc.blanked,
        qc.kept,
        removed,
    )
    for flag in flags:
        log.warning("%s: %s", name, flag)
    return RedactResult(image=marked, regions=regions, qc=qc, pad_px=pad_px, grid=grid)


@functools.cache
def _say_once(message: str) -> None:
    """Log ``message`` once per process (not once per image of a batch)."""
    log.info(message)


def _frames(n: int, progress: bool) -> Any:
    if not progress or n < 2:
        return range(n)
    from tqdm.auto import tqdm

    return tqdm(range(n), desc="frames", unit="frame", leave=False)


def _reads_text(detector: Detector) -> bool:
    from .ocr import OcrDetector

    return isinstance(detector, OcrDetector)


def _found(regions: list[Region], rows: int, columns: int) -> list[Region]:
    """Detector output clipped to the frame, with the policy's fields reset."""
    out = []
    for r in regions:
        if not isinstance(r, Region):
            raise TypeError(f"a detector must return Region objects, got {type(r).__name__}")
        c = r.clipped(rows, columns)
        if c is not None:
            out.append(c.with_(frame=0, decision="blank", reason=""))
    return out


def _large_region_flags(
    regions: list[Region], image: Image, pad_px: int | None, grid: tuple[int, int] | None
) -> list[str]:
    area = image.rows * image.columns
    flags = []
    for r in regions:
        if r.decision != "blank" or r.source == "rules":
            continue
        x0, y0, x1, y1 = padded_box(r, image.rows, image.columns, pad_px, grid)
        if (x1 - x0) * (y1 - y0) > LARGE_REGION_FRACTION * area:
            flags.append(
                f"a blanked region covers {100 * (x1 - x0) * (y1 - y0) / area:.0f}% of frame {r.frame}; "
                "check the QC picture"
            )
            break
    return flags


def _merge(own: Mapping[str, tuple[str, ...]], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The image's header values plus the caller's, both kept where a keyword is in each."""
    merged: dict[str, Any] = dict(own)
    for key, value in extra.items():
        values = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else list(value)
        merged[key] = (*own.get(key, ()), *values)
    return merged


def _int(values: Any) -> int | None:
    try:
        return int(values[0]) if values else None
    except (TypeError, ValueError):
        return None
