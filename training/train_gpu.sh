#!/usr/bin/env bash
# Fine-tune the shipped networks on one GPU within a time budget, then measure them.
#
#   training/train_gpu.sh OUT [MINUTES] [TASKS]
#
# MINUTES (default 5): each network's training time. TASKS (default "deface text"): which
# networks; both train at once, sharing the GPU, each with half the CPU cores (less one) as
# sample-drawing workers. Each starts from its shipped model (--init shipped) at a constant
# learning rate (DEFACE_LR, TEXT_LR) with a GPU-sized batch (DEFACE_BATCH, TEXT_BATCH).
# DEVICE (default cuda) and WORKERS (per network) override the device and the workers;
# BENCH=0 skips the defacing speed benchmark (minutes of a short device loan).
#
# Written under OUT: deface/ and text/ (run folders, resumable: model.safetensors is the best
# validation checkpoint), train_<task>.log, and the measures of the trained models:
# eval_deface.log (held-out Dice, landmarks of the real head), bench_deface.log (the shipped
# model's time per file and volumes per second in batch on DEVICE) and bench_text.log (held-out
# recall, blanked area outside text). A model that beats the shipped one is shipped with
# training/ship_model.py (see the model cards).
set -euo pipefail

out=${1:?usage: training/train_gpu.sh OUT [MINUTES] [TASKS]}
minutes=${2:-5}
tasks=${3:-deface text}
device=${DEVICE:-cuda}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
python=${PYTHON:-python3}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"  # the package and benchmarks of this checkout, from wherever the script is called

# Fail in seconds, not after the first minutes of training: the Python, the package, the GPU.
"$python" - "$device" <<'PY' || exit 2
import sys

if sys.version_info < (3, 10):
    sys.exit(f"Python 3.10 or newer is needed, this is {sys.version.split()[0]} (set PYTHON=...)")
try:
    import deephealth_deid  # noqa: F401
    import torch
except ImportError as e:
    sys.exit(f"{e}: install the package with its torch extra first (pip install -e '.[torch]')")
device = sys.argv[1]
if device.startswith("cuda") and not torch.cuda.is_available():
    sys.exit(f"DEVICE={device}, but torch {torch.__version__} sees no CUDA GPU (a CPU build, or no driver)")
PY

n_tasks=$(wc -w <<<"$tasks")
cores=$(nproc)
workers=${WORKERS:-$(( cores / n_tasks - 1 ))}
(( workers >= 1 )) || workers=1

declare -A lr=([deface]=${DEFACE_LR:-0.001} [text]=${TEXT_LR:-0.0005})
declare -A batch=([deface]=${DEFACE_BATCH:-8} [text]=${TEXT_BATCH:-16})

pids=()
for task in $tasks; do
    [[ -n "${lr[$task]:-}" ]] || { echo "unknown task: $task (deface or text)" >&2; exit 2; }
    "$python" -m deephealth_deid train "$here/$task.yaml" --device "$device" --init shipped \
        --lr "${lr[$task]}" --batch-size "${batch[$task]}" --workers "$workers" \
        --iterations 1000000 --time-budget-min "$minutes" --out-dir "$out/$task" \
        >"$out/train_$task.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
if (( status )); then
    echo "a training run failed: see $out/train_*.log" >&2
    tail -n 20 "$out"/train_*.log >&2
    exit 1
fi

for task in $tasks; do
    case $task in
    deface)
        "$python" "$root/benchmarks/eval_deface.py" --model "$out/deface/model.safetensors" \
            --synthetic 8 >"$out/eval_deface.log" 2>&1 || echo "eval_deface failed: see its log" >&2
        # Volumes per second in batch on this device (the shipped model), one job and several.
        [[ "${BENCH:-1}" == 0 ]] || "$python" "$root/benchmarks/bench_deface.py" --device "$device" --engines torch --repeat 1 \
            --batch "${BENCH_BATCH:-16}" --jobs "${BENCH_JOBS:-1,4}" >"$out/bench_deface.log" 2>&1 \
            || echo "bench_deface failed: see its log" >&2 ;;
    text)
        "$python" "$root/benchmarks/bench_text.py" --model "$out/text/model.safetensors" --n 10 \
            --threshold 0.2 --grow-threshold 0.1 --only-ours >"$out/bench_text.log" 2>&1 || echo "bench_text failed: see its log" >&2 ;;
    esac
done
grep -h "validation Dice" "$out"/train_*.log | tail -n 4 || true
echo "runs, logs and measures in $out"
