"""Choosing the text detector: the trained network (``'net'``), OCR (``'ocr'``) or any object.

The network is the seam left for the detector step: :func:`load_text_detector`
will load the shipped 2D text-region model (checked against its SHA-256, on
the engine and device asked for) and return an object with
``detect(frame) -> list[Region]`` (see :class:`~.regions.Detector`). Until a
model is shipped it raises :class:`~deephealth_deid.errors.ModelCheckError`.
"""

from __future__ import annotations

import os

from ..errors import ModelCheckError
from .ocr import OcrBackend, OcrDetector
from .regions import Detector

__all__ = ["load_text_detector", "get_detector"]


def load_text_detector(
    model: str | os.PathLike[str] | None = None, *, engine: str = "auto", device: str = "auto"
) -> Detector:
    """The trained text-region detector.

    Args:
        model: A model file; ``None`` for the shipped text-detection model.
        engine: ``'torch'``, ``'eddl'`` or ``'auto'``.
        device: ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'auto'``.

    Returns:
        A :class:`~.regions.Detector` whose regions have ``source='net'``.

    Raises:
        ModelCheckError: Always for now: no text-detection model is shipped yet.
    """
    what = (
        "no text-detection model is shipped yet"
        if model is None
        else (f"{model}: loading text-detection models is not implemented yet")
    )
    raise ModelCheckError(
        f"{what}; use the OCR detector instead (deid redact --detector ocr, with an OCR backend "
        "installed: pip install rapidocr_onnxruntime), add device rules (--regions RULES.yaml), or pass "
        "your own detector object to redact_text(detector=...)"
    )


def get_detector(
    detector: str | Detector = "net",
    *,
    ocr: str | OcrBackend | None = "auto",
    model: str | os.PathLike[str] | None = None,
    engine: str = "auto",
    device: str = "auto",
) -> Detector:
    """A detector from its name, or ``detector`` itself when it is already one.

    Args:
        detector: ``'net'`` (:func:`load_text_detector`), ``'ocr'``
            (:class:`~.ocr.OcrDetector` on the ``ocr`` backend), or an object
            with a ``detect`` method.
        ocr: The OCR backend for ``'ocr'`` (``'auto'`` must find one).
        model: Model file for ``'net'``.
        engine: Engine for ``'net'``.
        device: Device for ``'net'``.

    Raises:
        ModelCheckError: ``'net'`` without a usable model.
        EngineUnavailableError: ``'ocr'`` without an OCR backend.
        ValueError: An unknown name, an object without ``detect``, or
            ``'ocr'`` with ``ocr='none'``.
    """
    if not isinstance(detector, str):
        if not isinstance(detector, Detector):
            raise ValueError(f"a detector needs a detect(frame) method; got {type(detector).__name__}")
        return detector
    if detector == "net":
        return load_text_detector(model, engine=engine, device=device)
    if detector == "ocr":
        if ocr is None or ocr == "none":
            raise ValueError("the OCR detector reads text with an OCR backend; ocr='none' leaves it none")
        return OcrDetector(ocr)
    raise ValueError(f"unknown detector {detector!r}; choose 'net' or 'ocr', or pass a detector object")
