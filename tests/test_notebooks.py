"""The notebooks run top to bottom on the shipped models."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path) -> None:
    nbformat = pytest.importorskip(
        "nbformat", reason="running notebooks needs nbformat (pip install .[test])"
    )
    nbclient = pytest.importorskip(
        "nbclient", reason="running notebooks needs nbclient (pip install .[test])"
    )
    pytest.importorskip("torch", reason="the notebooks run the shipped models on the PyTorch engine")
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert not errors
