"""Datasets: the DeepHealth YAML format and building datasets from image folders.

Example:
    >>> from deephealth_deid.data import build_dataset, load_dataset, save_dataset
    >>> ds = build_dataset("/data/bids")  # doctest: +SKIP
    >>> save_dataset(ds, "/data/bids/data.yaml")  # doctest: +SKIP
    >>> load_dataset("/data/bids/data.yaml", check_files=True).counts()  # doctest: +SKIP
"""

from __future__ import annotations

from .dataset import (
    SPLIT_NAMES,
    Dataset,
    Sample,
    Split,
    SplitName,
    check_files,
    dump_dataset,
    load_dataset,
    missing_files,
    save_dataset,
)
from .ingest import (
    DEFAULT_FRACTIONS,
    Case,
    build_dataset,
    dataset_from_cases,
    detect_layout,
    find_bids_cases,
    find_flat_cases,
    split_subjects,
)

__all__ = [
    "SPLIT_NAMES",
    "SplitName",
    "Dataset",
    "Sample",
    "Split",
    "load_dataset",
    "save_dataset",
    "dump_dataset",
    "missing_files",
    "check_files",
    "DEFAULT_FRACTIONS",
    "Case",
    "build_dataset",
    "dataset_from_cases",
    "detect_layout",
    "find_bids_cases",
    "find_flat_cases",
    "split_subjects",
]
