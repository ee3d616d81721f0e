"""The PyTorch engine on a CUDA device: the shipped models in mixed precision, and training.

These run where ``torch.cuda.is_available()`` and skip elsewhere, saying so. On
CUDA, prediction runs in bfloat16 autocast (float16 where bfloat16 is not
supported), the CPU in float32: the masks and regions must agree up to voxels
and pixels at their edges, and the real head must pass its landmark checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import pydicom_test_file
from train_configs import TINY_DEFACE, write_config

import deephealth_deid as dd
from deephealth_deid.deface.evaluate import check_landmarks, load_landmarks

torch = pytest.importorskip("torch", reason="the CUDA engine is PyTorch's (pip install torch)")
pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here: these tests check the PyTorch engine on a GPU"
)


def test_deface_on_cuda_matches_the_cpu_and_passes_the_landmarks(chris_t1: Path) -> None:
    vol = dd.load_volume(chris_t1)
    gpu = dd.deface(vol, engine="torch", device="cuda")
    cpu = dd.deface(vol, engine="torch", device="cpu")
    a, b = gpu.mask.array > 0, cpu.mask.array > 0
    assert (a ^ b).sum() <= 0.02 * b.sum(), "masks differ beyond their edges"
    assert gpu.qc.flags == cpu.qc.flags
    marks, threshold = load_landmarks(chris_t1.parent / "chris_t1_landmarks.json")
    report = check_landmarks(vol, gpu.volume, marks, threshold=threshold)
    assert report.ok, report.failures


def test_text_regions_on_cuda_match_the_cpu() -> None:
    image = dd.load_image(pydicom_test_file("US1_UNCR.dcm"))
    gpu = dd.redact_text(image, ocr="none", engine="torch", device="cuda")
    cpu = dd.redact_text(image, ocr="none", engine="torch", device="cpu")
    assert gpu.qc.detected >= 1
    assert (gpu.mask ^ cpu.mask).sum() <= 0.05 * cpu.mask.sum(), "blanked pixels differ beyond box edges"
    outside = ~gpu.mask
    assert np.array_equal(gpu.image.frames[outside], image.frames[outside])


def test_training_on_cuda_with_worker_processes(tmp_path: Path) -> None:
    from deephealth_deid.cli import main as cli_main
    from deephealth_deid.deface.model import load_predictor

    path = write_config(tmp_path, TINY_DEFACE, device="cuda")
    assert cli_main(["train", str(path), "--workers", "2", "--batch-size", "4"]) == 0
    run = tmp_path / "run"
    assert json.loads((run / "state.json").read_text())["iteration"] == 4
    # The model file trained on the GPU predicts on the CPU.
    predictor, _, shape = load_predictor(run / "model.safetensors", engine="torch", device="cpu")
    probs = predictor(np.zeros(shape, np.float32))
    assert probs.shape == (5, *shape) and np.allclose(probs.sum(axis=0), 1.0, atol=1e-4)
