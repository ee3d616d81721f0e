"""The package as a user meets it: a light import, the deid command, the demo."""

from __future__ import annotations

import doctest
import functools
import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import deephealth_deid as dd
from deephealth_deid.cli import SUBCOMMANDS
from deephealth_deid.cli import main as deid


def test_import_does_not_import_engines():
    code = (
        "import sys, deephealth_deid; "
        "engines = ('torch', 'pyeddl', 'pyecvl', 'tensorflow', 'onnxruntime'); "
        "heavy = [m for m in engines if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_api_names():
    for name in ("load_volume", "save_volume", "load_image", "save_image", "Volume", "Image", "DeidError"):
        assert name in dd.__all__ and hasattr(dd, name)
    assert issubclass(dd.errors.WrongKindError, dd.DeidError)


_MODULES = sorted(m.name for m in pkgutil.walk_packages(dd.__path__, "deephealth_deid."))


@pytest.mark.parametrize("name", _MODULES)
def test_docstring_examples_run_as_written(name):
    """The examples in the docstrings are what the code does (skipped ones are marked +SKIP)."""
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} fail (see the output above)"


def test_console_script_version_and_help():
    out = subprocess.run(
        [sys.executable, "-m", "deephealth_deid", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and dd.__version__ in out.stdout
    out = subprocess.run([sys.executable, "-m", "deephealth_deid", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in SUBCOMMANDS:
        assert name in out.stdout


def test_console_script_ends_with_its_outputs_written_and_streams_flushed(tmp_path, chris_t1):
    """``deid`` skips the interpreter's teardown: what it wrote and printed is all there."""
    cmd = [sys.executable, "-m", "deephealth_deid"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as usual
    run = functools.partial(subprocess.run, capture_output=True, text=True, env=env)
    dst = tmp_path / "copy.nii.gz"
    out = run([*cmd, "convert", str(chris_t1), str(dst)])
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stderr  # the log line, flushed
    assert np.array_equal(nib.load(dst).get_fdata(), nib.load(chris_t1).get_fdata())
    out = run([*cmd, "info", str(dst), "--json"])
    assert out.returncode == 0 and json.loads(out.stdout)["shape"] == [188, 256, 190]
    out = run([*cmd, "convert", str(chris_t1), str(dst)])
    assert out.returncode == 1 and out.stderr  # the command's own code: refused to overwrite
    out = run([*cmd, "frobnicate"])
    assert out.returncode == 2 and "unknown command" in out.stderr
    if Path("/dev/full").exists():  # the standard output cannot be written: not a success
        with open("/dev/full", "w") as full:
            out = subprocess.run([*cmd, "--version"], stdout=full, stderr=subprocess.PIPE, text=True, env=env)
        assert out.returncode != 0 and "could not write" in out.stderr


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(name, capsys):
    assert deid([name, "--help"]) == 0
    assert f"deid {name}" in capsys.readouterr().out


def test_unknown_subcommand_is_an_error(capsys):
    assert deid(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_demo_defaces_the_example_and_refuses_to_overwrite(tmp_path, capsys):
    pytest.importorskip("torch", reason="the demo runs the shipped model on the PyTorch engine")
    import json

    out = tmp_path / "demo"
    assert deid(["demo", str(out), "-q"]) == 0
    head = dd.load_volume(out / "head.nii.gz")
    labels = dd.load_volume(out / "head_labels.nii.gz")
    defaced = dd.load_volume(out / "head_defaced.nii.gz")
    mask = dd.load_volume(out / "head_mask.nii.gz")
    assert head.shape == labels.shape == defaced.shape == mask.shape
    assert set(np.unique(labels.array)) >= {1, 2, 3, 4}  # every feature is in the example
    changed = defaced.array != head.array
    assert changed.any() and (mask.array[changed] > 0).all()
    assert not changed[labels.array == 9].any()  # brain
    assert (out / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((out / "qc.json").read_text())
    assert set(record["voxels"]) == {"eyes", "nose", "mouth", "ears"}
    # The first case a user runs passes its QC: every feature found, nothing deep labelled.
    assert record["ok"] and record["flags"] == [], record["flags"]
    before = (out / "head_defaced.nii.gz").read_bytes()
    assert deid(["demo", str(out), "-q"]) == 1
    assert "--force" in capsys.readouterr().err
    assert (out / "head_defaced.nii.gz").read_bytes() == before


def test_convert_and_info_on_the_real_head(tmp_path, chris_t1, capsys):
    dst = tmp_path / "copy.nii"
    assert deid(["convert", str(chris_t1), str(dst), "-q"]) == 0
    assert np.array_equal(nib.load(dst).get_fdata(), nib.load(chris_t1).get_fdata())
    assert deid(["convert", str(chris_t1), str(dst), "-q"]) == 1
    assert deid(["info", str(dst), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"orientation": "RAS"' in out and '"shape": [188, 256, 190]' in out
