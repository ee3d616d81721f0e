"""Optional OCR: read what a text region says, or find and read text on a whole frame.

Two backends, neither needed to import the package (install the ``ocr`` extra):

- ``'tesseract'``: Tesseract through ``pytesseract`` (``pip install pytesseract``)
  and the ``tesseract`` program (Debian/Ubuntu: ``apt-get install tesseract-ocr``).
- ``'rapidocr'``: RapidOCR on ONNX Runtime (``pip install rapidocr_onnxruntime``),
  a detector plus a recogniser; no system package needed.

OCR serves the policy (:mod:`.policy`): only a region read confidently as a
harmless marker is kept, so without OCR every region is blanked. The text read
is patient data: nothing here logs it.

Example:
    >>> ocr = get_ocr("auto")  # None when no backend is installed
    >>> if ocr is not None:  # doctest: +SKIP
    ...     text, confidence = ocr.read(crop)
"""

from __future__ import annotations

import functools
import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import EngineUnavailableError
from .regions import Region

__all__ = [
    "OcrBackend",
    "TesseractOcr",
    "RapidOcr",
    "OcrDetector",
    "BACKENDS",
    "get_ocr",
    "read_regions",
]

log = logging.getLogger(__name__)

#: A word found on a frame: ``((x0, y0, x1, y1), text, confidence 0..1)``.
Found = tuple[tuple[int, int, int, int], str, float]

#: Crops lower than this are scaled up before recognition (both engines read ~32-48 px text best).
_MIN_CROP_HEIGHT = 40


class OcrBackend(ABC):
    """An OCR engine: reads a crop, and finds and reads text lines on a frame.

    Attributes:
        name: The backend's name (``'tesseract'``, ``'rapidocr'``).
        install: What to install when it is missing.
    """

    name: str = ""
    install: str = ""

    @classmethod
    @abstractmethod
    def is_available(cls) -> bool:
        """Whether the backend's packages (and programs) are installed."""

    @classmethod
    def why_unavailable(cls) -> str:
        """Why the backend cannot be used here, completing "the OCR backend NAME ..." (``''`` when it can)."""
        return "" if cls.is_available() else "is not installed"

    @abstractmethod
    def read(self, crop: np.ndarray) -> tuple[str, float]:
        """The text in ``crop`` (one line, uint8 grey or RGB) and a confidence 0 to 1.

        Returns ``('', 0.0)`` when nothing is read.
        """

    @abstractmethod
    def find(self, frame: np.ndarray) -> list[Found]:
        """Text lines on a whole frame (uint8 grey or RGB): their boxes, text and confidence."""


class TesseractOcr(OcrBackend):
    """Tesseract through ``pytesseract``.

    Args:
        lang: Tesseract language(s), e.g. ``'eng'`` or ``'eng+deu'``.
    """

    name = "tesseract"
    install = (
        "pip install pytesseract, and the tesseract program (Debian/Ubuntu: apt-get install tesseract-ocr)"
    )

    def __init__(self, lang: str = "eng") -> None:
        self.lang = lang
        self._tess = _import_pytesseract()

    @classmethod
    def is_available(cls) -> bool:
        return _tesseract_available()

    def read(self, crop: np.ndarray) -> tuple[str, float]:
        img, _ = _prepare(crop, dark_text=True)
        words = self._words(img, psm=7)
        if not words:
            return "", 0.0
        return " ".join(w[1] for w in words), min(w[2] for w in words)

    def find(self, frame: np.ndarray) -> list[Found]:
        img, scale = _prepare(frame, dark_text=True, upscale_frame=True)
        data = self._data(img, psm=11)
        lines: dict[tuple[int, int, int], list[Found]] = {}
        for i, text in enumerate(data.get("text", [])):
            conf = _float(data["conf"][i])
            if not str(text).strip() or conf < 0:
                continue
            box = (
                int(data["left"][i]),
                int(data["top"][i]),
                int(data["left"][i]) + int(data["width"][i]),
                int(data["top"][i]) + int(data["height"][i]),
            )
            key = (int(data["block_num"][i]), int(data["par_num"][i]), int(data["line_num"][i]))
            lines.setdefault(key, []).append((box, str(text).strip(), conf / 100.0))
        found = []
        for words in lines.values():
            box = _union([w[0] for w in words], scale)
            found.append((box, " ".join(w[1] for w in words), min(w[2] for w in words)))
        return found

    def _data(self, img: Any, psm: int) -> dict[str, list[Any]]:
        tess = self._tess
        return tess.image_to_data(img, lang=self.lang, config=f"--psm {psm}", output_type=tess.Output.DICT)

    def _words(self, img: Any, psm: int) -> list[Found]:
        data = self._data(img, psm)
        words = []
        for i, text in enumerate(data.get("text", [])):
            conf = _float(data["conf"][i])
            if str(text).strip() and conf >= 0:
                words.append(((0, 0, 1, 1), str(text).strip(), conf / 100.0))
        return words


class RapidOcr(OcrBackend):
    """RapidOCR (PaddleOCR models on ONNX Runtime) through ``rapidocr_onnxruntime``."""

    name = "rapidocr"
    install = "pip install rapidocr_onnxruntime (or deephealth_deid[ocr])"

    def __init__(self) -> None:
        why = _rapidocr_unusable()
        if why:
            raise EngineUnavailableError(f"the OCR backend 'rapidocr' {why}; {self.install}")
        from rapidocr_onnxruntime import RapidOCR

        self._engine = RapidOCR()

    @classmethod
    def is_available(cls) -> bool:
        return not _rapidocr_unusable()

    @classmethod
    def why_unavailable(cls) -> str:
        return _rapidocr_unusable()

    def read(self, crop: np.ndarray) -> tuple[str, float]:
        img, _ = _prepare(crop, dark_text=False)
        result, _ = self._engine(_three_channels(img), use_det=False, use_cls=False, use_rec=True)
        pieces = [(str(r[0]).strip(), _float(r[1])) for r in result or () if str(r[0]).strip()]
        if not pieces:
            return "", 0.0
        return " ".join(p[0] for p in pieces), min(p[1] for p in pieces)

    def find(self, frame: np.ndarray) -> list[Found]:
        img, scale = _prepare(frame, dark_text=False, upscale_frame=True)
        result, _ = self._engine(_three_channels(img))
        found = []
        for points, text, score in result or ():
            if not str(text).strip():
                continue
            pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            box = (
                int(np.floor(pts[:, 0].min())),
                int(np.floor(pts[:, 1].min())),
                int(np.ceil(pts[:, 0].max())),
                int(np.ceil(pts[:, 1].max())),
            )
            found.append((_union([box], scale), str(text).strip(), _float(score)))
        return found


#: Backend name -> class, in the order ``'auto'`` tries them.
BACKENDS: dict[str, type[OcrBackend]] = {"rapidocr": RapidOcr, "tesseract": TesseractOcr}


def get_ocr(name: str | OcrBackend | None = "auto") -> OcrBackend | None:
    """An OCR backend by name.

    Args:
        name: ``'auto'`` (the first installed of RapidOCR and Tesseract, or
            ``None`` when neither is), ``'tesseract'``, ``'rapidocr'``, or
            ``'none'``/``None`` (no OCR). A backend object is returned as is.

    Raises:
        EngineUnavailableError: A backend named explicitly is not installed;
            the message says what to install.
        ValueError: An unknown name.
    """
    if name is None or isinstance(name, OcrBackend):
        return name
    key = str(name).lower()
    if key == "none":
        return None
    if key == "auto":
        for cls in BACKENDS.values():
            if cls.is_available():
                return _instance(cls.name)
        log.debug("no OCR backend installed (tried %s)", ", ".join(BACKENDS))
        return None
    if key not in BACKENDS:
        raise ValueError(f"unknown OCR backend {name!r}; choose auto, {', '.join(BACKENDS)} or none")
    cls = BACKENDS[key]
    if not cls.is_available():
        raise EngineUnavailableError(f"the OCR backend {key!r} {cls.why_unavailable()}; {cls.install}")
    return _instance(key)


@functools.cache
def _instance(name: str) -> OcrBackend:
    """One backend object per name (RapidOCR loads its models once)."""
    return BACKENDS[name]()


def read_regions(
    regions: Sequence[Region],
    frame: np.ndarray,
    ocr: OcrBackend,
    *,
    pad: int = 2,
    cache: dict[bytes, tuple[str, float]] | None = None,
) -> list[Region]:
    """``regions`` of one frame with ``text`` and ``text_confidence`` read by ``ocr``.

    Regions that already carry text (from the OCR detector) and device-rule
    regions are returned unchanged.

    Args:
        regions: Regions of ``frame``.
        frame: The frame as given to the detector (uint8 RGB or grey).
        ocr: The backend.
        pad: Pixels added around each box before reading.
        cache: Readings of ``ocr`` by crop, kept by the caller across the
            frames of one image: a crop identical, byte for byte, to one read
            before is not read again (the frames of an ultrasound cine carry
            the same burned-in text on changing anatomy). Keyed by a digest of
            the crop, so it holds no pixels; it holds what was read, which is
            patient data: keep it no longer than the image.
    """
    rows, cols = frame.shape[:2]
    out = []
    for r in regions:
        if r.text is not None or r.source == "rules":
            out.append(r)
            continue
        crop = frame[max(r.y0 - pad, 0) : min(r.y1 + pad, rows), max(r.x0 - pad, 0) : min(r.x1 + pad, cols)]
        if cache is None:
            text, conf = ocr.read(crop)
        else:
            crop = np.ascontiguousarray(crop)
            key = hashlib.blake2b(crop, digest_size=32).digest() + repr((crop.shape, crop.dtype.str)).encode()
            if key not in cache:
                cache[key] = ocr.read(crop)
            text, conf = cache[key]
        out.append(r.with_(text=text, text_confidence=conf if text else 0.0))
    return out


class OcrDetector:
    """A :class:`~.regions.Detector` made of an OCR backend's own text detection.

    Every line the backend finds becomes a region with ``source='ocr'``, its
    text and confidence already read. Slower and less sensitive to faint,
    inverse or tiny text than a trained detector; the fallback until one is
    shipped (``deid redact --detector ocr``).

    Args:
        ocr: The backend, or a name for :func:`get_ocr` (``'auto'`` must
            find one).

    Raises:
        EngineUnavailableError: No OCR backend is installed (or the one named).
    """

    def __init__(self, ocr: OcrBackend | str = "auto") -> None:
        backend = get_ocr(ocr)
        if backend is None:
            raise EngineUnavailableError(
                "the OCR text detector needs an OCR backend and none is installed; install one: "
                + "; or ".join(cls.install for cls in BACKENDS.values())
            )
        self.ocr = backend

    def detect(self, frame: np.ndarray) -> list[Region]:
        rows, cols = frame.shape[:2]
        regions = []
        for (x0, y0, x1, y1), text, conf in self.ocr.find(frame):
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, cols), min(y1, rows)
            if x1 > x0 and y1 > y0:
                regions.append(
                    Region(0, x0, y0, x1, y1, score=conf, text=text, text_confidence=conf, source="ocr")
                )
        return regions


# ----------------------------------------------------------------------------------------------------
# helpers


def _module_available(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@functools.lru_cache(maxsize=1)
def _rapidocr_unusable() -> str:
    """Why ``rapidocr_onnxruntime`` cannot be used here, or ``''`` when it can.

    Installed is not enough: it imports OpenCV, whose wheel needs system
    libraries a bare server may lack (``libGL.so.1``); such an install counts
    as absent, so ``'auto'`` goes on to the next backend.
    """
    if not _module_available("rapidocr_onnxruntime"):
        return "is not installed"
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except Exception as e:  # an ImportError, or an OSError from a shared library
        return (
            f"is installed but does not import ({type(e).__name__}: {e}); where OpenCV misses a "
            "system library, install it (Debian/Ubuntu: apt-get install libgl1 libglib2.0-0)"
        )
    return ""


@functools.lru_cache(maxsize=1)
def _tesseract_available() -> bool:
    if not _module_available("pytesseract"):
        return False
    try:
        import pytesseract

        pytesseract.get_tesseract_version()
    except (OSError, RuntimeError, ValueError):  # TesseractNotFoundError is an OSError
        return False
    return True


def _import_pytesseract() -> Any:
    if not TesseractOcr.is_available():
        raise EngineUnavailableError(f"the OCR backend 'tesseract' is not installed; {TesseractOcr.install}")
    import pytesseract

    return pytesseract


def _prepare(image: np.ndarray, *, dark_text: bool, upscale_frame: bool = False) -> tuple[Any, float]:
    """A grey PIL image ready for OCR and the scale applied to it.

    Crops lower than :data:`_MIN_CROP_HEIGHT` are scaled up; whole frames
    smaller than 1200 pixels are doubled (``upscale_frame``). With
    ``dark_text`` (Tesseract) light-on-dark text is inverted to dark-on-light
    and a margin is added.
    """
    from PIL import Image as PILImage

    a = np.asarray(image)
    grey = a.mean(axis=-1) if a.ndim == 3 else a.astype(np.float64)
    grey = np.clip(grey, 0, 255).astype(np.uint8)
    if dark_text and np.median(grey) < 128:
        grey = 255 - grey
    scale = 1.0
    if upscale_frame:
        scale = 2.0 if max(grey.shape) < 1200 else 1.0
    elif grey.shape[0] < _MIN_CROP_HEIGHT:
        scale = _MIN_CROP_HEIGHT / max(grey.shape[0], 1)
    pil = PILImage.fromarray(grey)
    if scale != 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        pil = pil.resize(size, PILImage.Resampling.BICUBIC)
    if dark_text and not upscale_frame:
        margin = 8
        framed = PILImage.new("L", (pil.width + 2 * margin, pil.height + 2 * margin), 255)
        framed.paste(pil, (margin, margin))
        pil = framed
    return pil, scale


def _three_channels(pil: Any) -> np.ndarray:
    grey = np.asarray(pil)
    return np.repeat(grey[..., None], 3, axis=-1)


def _union(boxes: Sequence[tuple[int, int, int, int]], scale: float) -> tuple[int, int, int, int]:
    x0 = min(b[0] for b in boxes) / scale
    y0 = min(b[1] for b in boxes) / scale
    x1 = max(b[2] for b in boxes) / scale
    y1 = max(b[3] for b in boxes) / scale
    return (int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1)))


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return -1.0
