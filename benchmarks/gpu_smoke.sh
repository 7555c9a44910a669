#!/usr/bin/env bash
# GPU smoke test: 4 trials at 0.25 GPU each through the real `mapruner prune` path on one GPU,
# with evidence that they ran at the same time (result table) and on the GPU (nvidia-smi).
#
#   benchmarks/gpu_smoke.sh            # from anywhere; runs in the repository root
#
# Environment: OUT (directory for the run, the samples and the report; default: a new temp dir),
# VENV (default .venv; created with `make venv` when it has no mapruner), CONFIG (default
# configs/quickstart.yaml), TRIALS (default 4), GPUS_PER_TRIAL (default 0.25), TIMEOUT_S (default 900).
# Exit status: 0 pass, 1 the checks failed, 2 no GPU found, other: the run itself failed.
set -euo pipefail
cd "$(dirname "$0")/.."

fail_no_gpu() {
    echo "gpu_smoke: no GPU found: $1" >&2
    exit 2
}

command -v nvidia-smi >/dev/null 2>&1 || fail_no_gpu "nvidia-smi is not installed"
gpus=$(nvidia-smi -L 2>&1) || fail_no_gpu "nvidia-smi failed: ${gpus}"
grep -q '^GPU ' <<<"$gpus" || fail_no_gpu "nvidia-smi lists no GPU"
echo "$gpus"

VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/mapruner" ]; then
    echo "gpu_smoke: creating $VENV with make venv"
    make venv VENV="$VENV"
fi
PY="$VENV/bin/python"
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || fail_no_gpu "torch $("$PY" -c 'import torch; print(torch.__version__)') in $VENV cannot use CUDA"

export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
OUT=${OUT:-$(mktemp -d -t gpu-smoke-XXXXXX)}
TRIALS=${TRIALS:-4}
RUN="$OUT/gpu_smoke"
SAMPLES="$OUT/gpu_samples.txt"
rm -rf "$RUN"  # this script's own run directory: a leftover table would mix two runs
mkdir -p "$OUT"
echo "$gpus" >"$OUT/gpu_smoke_gpus.txt"
: >"$SAMPLES"

# Sample the GPU's compute processes every half second for the whole run.
(
    while true; do
        echo "@$(date +%s.%N)"
        nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>/dev/null || true
        nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits 2>/dev/null \
            | sed 's/^/gpu,/' || true
        sleep 0.5
    done
) >>"$SAMPLES" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true' EXIT

start=$(date +%s)
set +e
timeout "${TIMEOUT_S:-900}" "$VENV/bin/mapruner" prune --config "${CONFIG:-configs/quickstart.yaml}" \
    --set hardware.device=cuda --set hardware.num_gpus=1 \
    --set hardware.gpus_per_trial="${GPUS_PER_TRIAL:-0.25}" --set hardware.cpus_per_trial=1 \
    --set search.trials="$TRIALS" --set search.max_iterations=1 --set search.batch_size="$TRIALS" \
    --output-dir "$RUN" 2>&1 | tee "$OUT/gpu_smoke_prune.log"
status=${PIPESTATUS[0]}
set -e
kill "$sampler" 2>/dev/null || true
echo "gpu_smoke: mapruner prune exited $status after $(($(date +%s) - start)) s"
if [ ! -d "$RUN/results" ]; then
    echo "gpu_smoke: the run wrote no result table ($RUN/results); see $OUT/gpu_smoke_prune.log" >&2
    exit $((status == 0 ? 3 : status))
fi

checked=0
"$PY" benchmarks/gpu_smoke.py --run-dir "$RUN" --samples "$SAMPLES" --trials "$TRIALS" --out "$OUT" || checked=$?
if [ "$status" -ne 0 ]; then
    echo "gpu_smoke: FAIL: mapruner prune exited $status (log: $OUT/gpu_smoke_prune.log)" >&2
    exit 1
fi
echo "gpu_smoke: report in $OUT/gpu_smoke_report.txt"
exit $((checked == 0 ? 0 : 1))
