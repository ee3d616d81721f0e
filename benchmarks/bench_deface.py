"""Benchmark: end-to-end ``deid deface`` time and peak memory, side by side with DeepDefacer.

Run on demand (not in CI):

    python benchmarks/bench_deface.py [--head tests/data/heads/chris_t1.nii.gz] [--repeat 3] \\
        [--engines auto,torch] [--deepdefacer-python dd/bin/python | --deepdefacer /path/to/deepdefacer] \\
        [--batch 8 [--jobs 1,2]]

Each tool runs as a separate process on the same file, interleaved, so the
times include start-up and file I/O; peak memory is the process's maximum
resident set size. DeepDefacer (PyPI ``deepdefacer`` 2.1.2, which ships its
Keras model) needs its own environment, e.g.::

    python3 -m venv dd && dd/bin/pip install tensorflow-cpu==2.15.1 'nibabel<5' 'numpy<2' termcolor
    dd/bin/pip install --no-deps deepdefacer==2.1.2

    dd/bin/pip install SimpleITK

As published, DeepDefacer 2.1.2 does not run on a CPU with current packages
(SimpleITK 1.x's ``Transform.AddTransform``; a channels-first Conv3D model
TensorFlow's CPU kernels refuse): ``--deepdefacer-python dd/bin/python`` runs
it through ``benchmarks/deepdefacer_sitk2.py``, which works around both
without changing what it computes. ``--deepdefacer`` runs a working
``deepdefacer`` command as it is.

With ``--batch N``, ``deid deface-batch`` also defaces N copies of the head in
one process (the model loaded once, the next case read while one is
predicted): volumes per second, and the time per volume against the
single-file runs of the same engine. ``--jobs 1,2`` times it with each number
of jobs (``deid deface-batch --jobs``: cases in processes of their own, the
cores shared out among them); the peak memory is then that of the largest
process, so a run of J jobs holds about J times it.

Besides time and memory, each tool's output is checked against the head's
landmarks (``deface.evaluate``): share of tissue changed near each face
landmark, voxels changed near the brain probes, share of each eyeball kept.
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


def run(cmd: list[str], cwd: Path | None = None) -> tuple[float, float]:
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
    out = subprocess.run(
        [sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True, cwd=cwd
    )
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
    parser.add_argument(
        "--deepdefacer-python", help="Python of DeepDefacer's environment (runs deepdefacer_sitk2.py)"
    )
    parser.add_argument("--landmarks", type=Path, default=None, help="default: HEAD's _landmarks.json")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--engines",
        default="auto",
        help="comma-separated --engine values of deid deface to time, e.g. auto,torch (default: auto, "
        "ONNX Runtime on a CPU where it is installed)",
    )
    parser.add_argument(
        "--batch", type=int, default=0, metavar="N", help="also time deface-batch on N copies of the head"
    )
    parser.add_argument(
        "--jobs", default="1", help="comma-separated --jobs values of the deface-batch runs (default: 1)"
    )
    args = parser.parse_args(argv)
    jobs = [int(j) for j in args.jobs.split(",") if j.strip()]
    # The installed command, else the package run by this Python (a checkout on PYTHONPATH).
    deid = [shutil.which("deid")] if shutil.which("deid") else [sys.executable, "-m", "deephealth_deid"]
    head = args.head.resolve()
    dd_cmd = None
    if args.deepdefacer_python:
        dd_cmd = [args.deepdefacer_python, str(ROOT / "benchmarks" / "deepdefacer_sitk2.py")]
    elif args.deepdefacer:
        dd_cmd = [args.deepdefacer]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    ours = {e: f"deid {e}" for e in engines}
    rows: dict[str, list[tuple[float, float]]] = {**{name: [] for name in ours.values()}, "deepdefacer": []}
    quality = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for k in range(args.repeat):
            for engine, name in ours.items():
                out = t / f"ours{k}_{engine}.nii.gz"
                rows[name].append(
                    run(
                        [
                            *deid,
                            "deface",
                            str(head),
                            str(out),
                            "--device",
                            args.device,
                            "--engine",
                            engine,
                            "-q",
                        ]
                    )
                )
            if dd_cmd:
                dd_out = t / f"dd{k}.nii.gz"
                # DeepDefacer writes a scratch file into its working folder: give it the temporary one.
                rows["deepdefacer"].append(
                    run([*dd_cmd, "--input_file", str(head), "--defaced_output_path", str(dd_out)], cwd=t)
                )
        batch = {}
        if args.batch > 0:
            cohort = t / "cohort"
            cohort.mkdir()
            for i in range(args.batch):
                shutil.copyfile(head, cohort / f"case{i:03d}{''.join(head.suffixes)}")
            for engine, name in ours.items():
                for j in jobs:
                    cmd = [*deid, "deface-batch", str(cohort), "-o", str(t / f"batch_{engine}_{j}")]
                    seconds, rss = run(
                        [*cmd, "--device", args.device, "--engine", engine, "-q", "--jobs", str(j)]
                    )
                    batch[name, j] = (seconds, rss)
        landmarks = args.landmarks or head.with_name(head.name.split(".")[0] + "_landmarks.json")
        if landmarks.is_file():
            for engine, name in ours.items():
                quality[name] = landmark_summary(head, t / f"ours0_{engine}.nii.gz", landmarks)
            if dd_cmd:
                quality["deepdefacer"] = landmark_summary(head, t / "dd0.nii.gz", landmarks)
    print(f"head: {args.head.name}; {os.cpu_count()} CPU cores; median of {args.repeat}")
    print(f"{'tool':<18} {'time s':>8} {'peak MiB':>9}")
    med = {}
    for name, values in rows.items():
        if not values:
            continue
        med[name] = statistics.median(v[0] for v in values)
        print(f"{name:<18} {med[name]:>8.2f} {max(v[1] for v in values):>9.0f}")
    if "deepdefacer" in med:
        for name in ours.values():
            print(f"{name} / deepdefacer time ratio: {med[name] / med['deepdefacer']:.2f}")
    for (name, j), (seconds, rss) in batch.items():
        per = seconds / args.batch
        print(
            f"{name} deface-batch of {args.batch}, {j} job(s): {args.batch / seconds:.2f} volumes/s, "
            f"{per:.2f} s per volume ({per / med[name]:.2f}x the single-file time), "
            f"peak {rss:.0f} MiB per process"
        )
    for name, summary in quality.items():
        print(f"{name}: {summary}")
    return 0


def landmark_summary(head: Path, output: Path, landmarks: Path) -> str:
    """The landmark criteria of one defaced output, in a line."""
    from deephealth_deid.deface.evaluate import check_landmarks, load_landmarks
    from deephealth_deid.io import load_volume

    lms, threshold = load_landmarks(landmarks)
    rep = check_landmarks(load_volume(head), load_volume(output), lms, threshold=threshold)
    face = ", ".join(f"{k} {v:.0%}" for k, v in rep.changed_near_surface.items())
    eyes = ", ".join(f"{k} {v:.0%}" for k, v in rep.unchanged_near_eyeball.items())
    brain = sum(rep.changed_near_brain.values())
    return f"face tissue changed: {face}; brain-probe voxels changed: {brain}; eyeballs kept: {eyes}"


if __name__ == "__main__":
    sys.exit(main())
