"""Choosing the text detector: the trained network (``'net'``), OCR (``'ocr'``) or any object.

:func:`load_text_detector` loads the shipped 2D text-region model (registry
name ``text``, checked against its SHA-256) or a given model file, on the
engine and device asked for, and returns a
:class:`~.network.NetTextDetector` (``detect(frame) -> list[Region]``, see
:class:`~.regions.Detector`). While no text model is shipped it raises
:class:`~deephealth_deid.errors.ModelCheckError` saying what to use instead.
:func:`network_input` (the frame as the network sees it) is re-exported from
:mod:`.network` for training.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import InputNotFoundError, ModelCheckError
from ..shipped import warn_if_not_validated
from .network import NetTextDetector, check_text_spec, network_input
from .ocr import OcrBackend, OcrDetector
from .regions import Detector

__all__ = ["load_text_detector", "get_detector", "NetTextDetector", "network_input", "SHIPPED_NAME"]

log = logging.getLogger(__name__)

#: Registry name of the shipped text-detection model (see :mod:`deephealth_deid.shipped`).
SHIPPED_NAME = "text"

_ALTERNATIVES = (
    "use the OCR detector instead (deid redact --detector ocr, with an OCR backend installed: "
    "pip install rapidocr_onnxruntime), add device rules (--regions RULES.yaml), pass a trained "
    "model (--model FILE, see 'deid train training/text.yaml'), or pass your own detector object to "
    "redact_text(detector=...)"
)


@functools.lru_cache(maxsize=4)
def _load(path: str, sha256: str | None, engine: str, device: str, stamp: tuple[int, int]) -> tuple:
    """``(engine, model, spec, metadata)`` of a checked text model.

    ``stamp`` (the file's size and modification time) is only part of the
    cache key, so a file rewritten in place is loaded again.
    """
    from ..engines import get_predict_engine

    eng = get_predict_engine(engine, device=device)
    model, spec, metadata = eng.load(path, sha256=sha256)
    check_text_spec(spec, path)
    task = metadata.get("task")
    if task is not None and task != "text":
        raise ModelCheckError(f"{path}: a model for the task {task!r}, not a text-detection model")
    warn_if_not_validated(metadata, path, "text-detection", "every image")  # once per model, not per image
    return eng, model, spec, metadata


#: The largest tile the EDDL engine predicts in one pass (``NetTextDetector(tile=...)``): a
#: 1024 x 1024 network holds about 3 GB of buffers on EDDL's CPU service, a 2048 x 2048 one 11.6 GB.
EDDL_TILE = 1024


def load_text_detector(
    model: str | os.PathLike[str] | None = None,
    *,
    engine: str = "auto",
    device: str = "auto",
    **options: Any,
) -> NetTextDetector:
    """The trained text-region detector.

    Args:
        model: A model file; ``None`` for the shipped text-detection model
            (its SHA-256 is checked).
        engine: ``'torch'``, ``'eddl'``, ``'onnxruntime'`` or ``'auto'`` (on
            a CPU: ONNX Runtime where installed, about twice as fast;
            otherwise the first engine available).
        device: ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'auto'``.
        **options: Options of :class:`~.network.NetTextDetector`
            (``threshold``, ``grow_threshold``, ``tile``, ``overlap``, ``min_area_px``,
            ``bridge_gap``, ``vertical_look``, ``min_score``). ``threshold`` and
            ``grow_threshold`` default to the model file's own (its metadata's,
            chosen on held-out images when it was shipped), else 0.5 and none;
            ``tile`` to :data:`EDDL_TILE` on the EDDL engine.

    Returns:
        A :class:`~.network.NetTextDetector` whose regions have ``source='net'``.

    Raises:
        ModelCheckError: No text model is shipped (and none was given), the
            shipped file fails its checksum, or the file is not a text model
            (a 2D network with 3 input channels and 2 classes).
        InputNotFoundError: ``model`` does not exist.
        EngineUnavailableError: The engine cannot run here.
    """
    if model is None:
        from ..shipped import shipped_models

        shipped = shipped_models().get(SHIPPED_NAME)
        if shipped is None:
            raise ModelCheckError(f"no text-detection model is shipped yet; {_ALTERNATIVES}")
        if not shipped.path.is_file():
            raise ModelCheckError(
                f"the shipped text-detection model {shipped.path} is missing from this installation; "
                "reinstall the package"
            )
        path, sha256 = shipped.path, shipped.sha256
    else:
        path, sha256 = Path(model), None
        if not path.is_file():
            raise InputNotFoundError(f"{path}: no such text-detection model file")
    given = set(options)
    stat = path.stat()
    eng, net, spec, metadata = _load(str(path), sha256, engine, device, (stat.st_size, stat.st_mtime_ns))
    for key in ("threshold", "grow_threshold"):  # the operating point chosen for this file on held-out images
        if metadata.get(key) is not None:
            options.setdefault(key, float(metadata[key]))
    grow, threshold = options.get("grow_threshold"), options.get("threshold", 0.5)
    if grow is not None and "grow_threshold" not in given and float(grow) > float(threshold):
        options["grow_threshold"] = None  # the file's grows below its own threshold, not above a lower one
    if getattr(eng, "name", "") == "eddl":  # its CPU buffers: 3 kB a pixel, 11.6 GB for 2048 x 2048
        options.setdefault("tile", EDDL_TILE)
    return NetTextDetector(eng, net, spec=spec, **options)


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
