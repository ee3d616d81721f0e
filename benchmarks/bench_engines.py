"""Inference on EDDL and ONNX Runtime against PyTorch: the shipped models, same inputs, same run.

For each network (the text detector on a 512 x 512 and a 2048 x 2048 frame; the defacing U-Net
on its grid, or on a coarser grid with ``--quick``), every engine loads the same model file and
predicts the same input with the same threads: seconds per prediction (median of ``--repeat``
after one warm-up, which also builds EDDL's network and ONNX Runtime's session), the ratio to
PyTorch, and the largest logit difference from PyTorch.

    python benchmarks/bench_engines.py [--threads 2] [--repeat 3] [--quick] [--device cpu]

EDDL runs where ``pyeddl`` imports, ONNX Runtime where ``onnxruntime`` and ``onnx`` do; a
missing engine is reported and left out. EDDL v1.1b's CPU 3D convolution is a plain loop: the
full defacing grid takes minutes, and the 2048 frame is left to the other engines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np

from deephealth_deid.engines import get_engine, read_model_file
from deephealth_deid.shipped import shipped_model


def timed(engine: Any, model: Any, x: np.ndarray, repeat: int) -> tuple[float, np.ndarray]:
    out = engine.predict(model, x)  # warm-up (EDDL builds its network for this size here)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = engine.predict(model, x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="defacing on a 4 mm grid (56 x 64 x 64)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    if args.quick:
        deface_grid = (56, 64, 64)
    else:
        _, _, meta, _ = read_model_file(shipped_model("deface").path)
        deface_grid = tuple(meta["grid"]["shape"])
    cases = [
        ("text", "text detector, 512 x 512 frame", (1, 3, 512, 512)),
        ("text", "text detector, 2048 x 2048 frame", (1, 3, 2048, 2048)),
        ("deface", f"defacing U-Net, grid {'x'.join(map(str, deface_grid))}", (1, 2, *deface_grid)),
    ]
    engines = {"torch": get_engine("torch", device=args.device)}
    for name in ("eddl", "onnxruntime"):
        try:
            engines[name] = get_engine(name, device=args.device)
        except Exception as e:  # reported, not fatal: the others are still measured
            print(f"{name}: not available ({e})")
    for engine in engines.values():
        engine.set_threads(args.threads)
    print(f"threads {args.threads}, device {args.device}, median of {args.repeat}")
    others = [n for n in engines if n != "torch"]
    header = "".join(f" {n + ' s':>14} {n + '/torch':>17} {'max |dlogit|':>13}" for n in others)
    print(f"{'network':<40} {'torch s':>9}{header}")
    for task, label, shape in cases:
        path = shipped_model(task).path
        x = rng.random(shape, dtype=np.float32)
        results = {}
        for name, engine in engines.items():
            if name == "eddl" and shape[-1] > 1024:
                continue
            model, _, _ = engine.load(path)
            results[name] = timed(engine, model, x, args.repeat)
        t_torch, ref = results["torch"]
        row = f"{label:<40} {t_torch:9.3f}"
        for name in others:
            if name in results:
                t, out = results[name]
                row += f" {t:14.3f} {t / t_torch:17.2f} {float(np.abs(out - ref).max()):13.2e}"
            else:
                row += f" {'-':>14} {'-':>17} {'-':>13}"
        print(row)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
