"""Burned-in text removal: find text regions on every frame, blank those that identify the patient.

Modules, one concept each: :mod:`.regions` (the :class:`Region` record and the
:class:`Detector` protocol), :mod:`.network` (the network detector: input, tiled prediction,
probabilities to boxes), :mod:`.detector` (choosing a detector: the network or
OCR), :mod:`.ocr` (optional OCR backends), :mod:`.policy` (what is
identifying, what is a harmless marker), :mod:`.rules` (fixed boxes per
device), :mod:`.blank` (filling boxes with the image's own black),
:mod:`.pipeline` (:func:`redact_text`), :mod:`.files` (:func:`redact_file`),
:mod:`.batch` (:func:`redact_batch`: many files), :mod:`.qc` (the QC picture) and
:mod:`.evaluate` (false positives on real images without text).

No OCR backend or compute engine is imported until it is used.
"""

from __future__ import annotations

from .batch import redact_batch
from .blank import blank_regions, fill_value
from .boxes import regions_from_probabilities
from .detector import get_detector, load_text_detector
from .files import redact_file, redact_text_file, write_qc_png
from .network import NetTextDetector, network_input
from .ocr import OcrBackend, OcrDetector, get_ocr
from .pipeline import RedactQC, RedactResult, redact_text
from .policy import HeaderTerms, Policy
from .regions import Detector, Region
from .rules import DeviceRule, RuleSet

__all__ = [
    "redact_batch",
    "Region",
    "Detector",
    "Policy",
    "HeaderTerms",
    "DeviceRule",
    "RuleSet",
    "OcrBackend",
    "OcrDetector",
    "get_ocr",
    "get_detector",
    "load_text_detector",
    "NetTextDetector",
    "network_input",
    "regions_from_probabilities",
    "fill_value",
    "blank_regions",
    "RedactQC",
    "RedactResult",
    "redact_text",
    "redact_file",
    "redact_text_file",
    "write_qc_png",
]
