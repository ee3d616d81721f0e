"""Shared fixtures: real files shipped in tests/data and small synthetic volumes."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Where the CI installed the external tools, their tests must run, not skip.

    ``DEID_REQUIRE_TOOLS``: dciodvfy (Debian dicom3tools). ``DEID_REQUIRE_OCR``:
    RapidOCR, which reads the redacted real images back.
    """
    if os.environ.get("DEID_REQUIRE_TOOLS") and shutil.which("dciodvfy") is None:
        raise pytest.UsageError("DEID_REQUIRE_TOOLS is set but dciodvfy (Debian dicom3tools) is not on PATH")
    if os.environ.get("DEID_REQUIRE_OCR") and sys.version_info < (3, 13):  # RapidOCR: Python < 3.13
        from deephealth_deid.text.ocr import RapidOcr

        if not RapidOcr.is_available():
            raise pytest.UsageError(f"DEID_REQUIRE_OCR is set but RapidOCR {RapidOcr.why_unavailable()}")


@pytest.fixture(scope="session")
def chris_t1() -> Path:
    """A real T1 head (NiiVue demo, BSD-2), 0.88 mm, RAS, uint8."""
    return DATA / "heads" / "chris_t1.nii.gz"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def require_tool(name: str) -> str:
    """Path of an external tool; skip (or fail where the CI demands it) when missing."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("DEID_REQUIRE_TOOLS"):
            pytest.fail(f"{name} is required here (DEID_REQUIRE_TOOLS is set) but not on PATH")
        pytest.skip(f"{name} is not on PATH (Debian: apt-get install dicom3tools)")
    return path


def pydicom_test_file(name: str) -> Path:
    """A file of pydicom's test data; skip where it is not installed (pip install pydicom-data)."""
    data = pytest.importorskip("pydicom.data")
    path = data.get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not in pydicom's test data here (pip install pydicom-data)")
    return Path(path)
