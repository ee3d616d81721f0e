"""Inference on EDDL against PyTorch: the shipped models, same inputs, same run, same threads.

For each network (the text detector on a 512 x 512 frame; the defacing U-Net on its grid, or
on a coarser grid with ``--quick``), both engines load the same model file and predict the same
input: seconds per prediction (median of ``--repeat`` after one warm-up, which also builds
EDDL's network for that size), the ratio EDDL / PyTorch, and the largest logit difference.

    python benchmarks/bench_engines.py [--threads 2] [--repeat 3] [--quick] [--device cpu]

EDDL runs where ``pyeddl`` imports; otherwise only PyTorch is timed and EDDL is reported as
missing. EDDL v1.1b's CPU 3D convolution is a plain loop: the full defacing grid takes minutes.
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
        ("text", "text detector, 512 x 512 frame", rng.random((1, 3, 512, 512), dtype=np.float32)),
        ("deface", f"defacing U-Net, grid {'x'.join(map(str, deface_grid))}", None),
    ]
    engines = {"torch": get_engine("torch", device=args.device)}
    try:
        engines["eddl"] = get_engine("eddl", device=args.device)
    except Exception as e:  # reported, not fatal: PyTorch is still measured
        print(f"EDDL: not available ({e})")
    for engine in engines.values():
        engine.set_threads(args.threads)
    print(f"threads {args.threads}, device {args.device}, median of {args.repeat}")
    print(f"{'network':<40} {'torch s':>9} {'eddl s':>9} {'eddl/torch':>11} {'max |dlogit|':>13}")
    for task, label, x in cases:
        path = shipped_model(task).path
        results = {}
        for name, engine in engines.items():
            model, _, _ = engine.load(path)
            if x is None:
                x = rng.random((1, 2, *deface_grid), dtype=np.float32)
            results[name] = timed(engine, model, x, args.repeat)
        t_torch = results["torch"][0]
        if "eddl" in results:
            t_eddl, out = results["eddl"]
            diff = float(np.abs(out - results["torch"][1]).max())
            print(f"{label:<40} {t_torch:9.3f} {t_eddl:9.3f} {t_eddl / t_torch:11.1f} {diff:13.2e}")
        else:
            print(f"{label:<40} {t_torch:9.3f} {'-':>9} {'-':>11} {'-':>13}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
