"""Benchmark: end-to-end ``deid deface`` time and peak memory, side by side with DeepDefacer.

Run on demand (not in CI):

    python benchmarks/bench_deface.py [--head tests/data/heads/chris_t1.nii.gz] [--repeat 3] \\
        [--deepdefacer /path/to/venv/bin/deepdefacer]

Each tool runs as a separate process on the same file, interleaved, so the
times include start-up and file I/O; peak memory is the process's maximum
resident set size. DeepDefacer (PyPI ``deepdefacer`` 2.1.2, which ships its
Keras model) needs its own environment, e.g.::

    python3 -m venv dd && dd/bin/pip install tensorflow-cpu==2.15.1 'nibabel<5' 'numpy<2' termcolor
    dd/bin/pip install --no-deps deepdefacer==2.1.2

DeepDefacer 2.1.2 also imports SimpleITK and calls ``Transform.AddTransform``,
which SimpleITK 2.x removed; SimpleITK 1.x has no wheel for Python 3.11, so on
Python 3.11 DeepDefacer fails before defacing (seen on 2026-11-27): run it with
an older Python where SimpleITK<2 installs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MiB) of one command, in a fresh process."""
    code = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "dt = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(p.returncode, dt, rss)\n"
        "sys.stderr.write(p.stderr[-2000:] if p.returncode else '')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True)
    rc, dt, rss = out.stdout.split()
    if int(rc) not in (0, 3):  # 3: deid's "QC flags for review"
        raise RuntimeError(f"{cmd[0]} failed ({rc}): {out.stderr}")
    return float(dt), float(rss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--head", type=Path, default=ROOT / "tests/data/heads/chris_t1.nii.gz")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--deepdefacer", help="path of DeepDefacer's 'deepdefacer' command")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    deid = shutil.which("deid") or "deid"
    rows: dict[str, list[tuple[float, float]]] = {"deid deface": [], "deepdefacer": []}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for k in range(args.repeat):
            out = t / f"ours{k}.nii.gz"
            rows["deid deface"].append(
                run([deid, "deface", str(args.head), str(out), "--device", args.device, "-q"])
            )
            if args.deepdefacer:
                dd_out = t / f"dd{k}.nii.gz"
                rows["deepdefacer"].append(
                    run(
                        [
                            args.deepdefacer,
                            "--input_file",
                            str(args.head),
                            "--defaced_output_path",
                            str(dd_out),
                        ]
                    )
                )
    print(f"head: {args.head.name}; {os.cpu_count()} CPU cores; median of {args.repeat}")
    print(f"{'tool':<14} {'time s':>8} {'peak MiB':>9}")
    med = {}
    for name, values in rows.items():
        if not values:
            continue
        med[name] = statistics.median(v[0] for v in values)
        print(f"{name:<14} {med[name]:>8.2f} {max(v[1] for v in values):>9.0f}")
    if len(med) == 2:
        print(f"deid deface / deepdefacer time ratio: {med['deid deface'] / med['deepdefacer']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
