#!/usr/bin/env bash
# On a lent GPU (an H200 with PyTorch, without vLLM or Ray): install them, then measure our endpoint
# against vLLM's own server on an 8B-shaped dummy model (benchmarks/gpu_check.py), and the engine's
# simulator profile (benchmarks/simulate/measure_engine.py). Budget: under 10 minutes; each step
# says how long it took, and a step that fails says why and stops the script (exit status != 0).
#
#   bash benchmarks/gpu_check.sh            # everything
#   SKIP_INSTALL=1 bash benchmarks/gpu_check.sh
#   WHEELS=/path/to/wheels bash benchmarks/gpu_check.sh   # install from a wheel directory, no index
#
# Results: benchmarks/results/gpu_check-<stamp>.json and benchmarks/simulate/profiles/gpu-h200-llama8b-measured.json,
# copied into $OUT when it is set (the device tool brings $OUT back).
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
OUT=${OUT:-}
LOG=${OUT:-/tmp}/gpu_check.log
step() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$LOG"; }

step "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
PY=${PYTHON:-python3}
step "python: $($PY --version 2>&1), torch: $($PY -c 'import torch; print(torch.__version__, torch.version.cuda)' 2>&1)"

if [ -z "${SKIP_INSTALL:-}" ]; then
  # The project (ray[serve]==2.60, httpx, pydantic, ...) and vLLM's CUDA build. pip keeps the installed
  # torch when vLLM accepts it; otherwise it fetches the one vLLM pins (the slowest part, GBs).
  if [ -n "${WHEELS:-}" ]; then SRC=(--no-index --find-links "$WHEELS"); else SRC=(); fi
  step "pip install vllm + the project (${WHEELS:-PyPI}) ..."
  if ! $PY -m pip install -q "${SRC[@]}" "vllm>=0.32" -e ".[bench]" pyyaml >>"$LOG" 2>&1; then
    step "STOPPED: pip install failed (no registry reachable, or no wheel for this platform); see $LOG"
    tail -20 "$LOG"
    exit 2
  fi
  step "installed: vllm $($PY -c 'import vllm; print(vllm.__version__)' 2>&1), ray $($PY -c 'import ray; print(ray.__version__)' 2>&1)"
fi

export HF_HUB_OFFLINE=1 VLLM_HOST_IP=127.0.0.1 RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
DATA=${DATA_DIR:-$PWD/.data/gpu}

step "8B-shaped model directory (Llama-3.1-8B config, tiny tokenizer) ..."
$PY -m benchmarks.gpu_check --data-dir "$DATA" --only model 2>&1 | tee -a "$LOG" | tail -1

step "vLLM's server vs our endpoint ..."
if ! timeout 420 $PY -m benchmarks.gpu_check --data-dir "$DATA" 2>&1 | tee -a "$LOG" | grep -v "^\s*$" | tail -20; then
  step "STOPPED: gpu_check failed or ran out of time; server logs under $DATA/logs"
  [ -n "$OUT" ] && cp -r "$DATA/logs" "$OUT/" 2>/dev/null || true
  exit 3
fi

LEFT=$(( 570 - ($(date +%s) - START) ))
if [ "$LEFT" -gt 120 ]; then
  step "the engine's simulator profile ($LEFT s left) ..."
  # hop_ms: what our endpoint added to vLLM's TTFT p50 in the probe above (measured), at least 1 ms.
  HOP=$($PY -c "import glob,json; f=sorted(glob.glob('benchmarks/results/gpu_check-*.json'))[-1]; v=json.load(open(f)).get('verdict',{}); print(max(1.0, round(v.get('ttft_p50_overhead_ms', 20.0), 1)))")
  timeout $(( LEFT - 15 )) $PY -m benchmarks.simulate.measure_engine --model "$DATA/models/llama-8b-dummy" \
    --name gpu-h200-llama8b-measured --engine-args '{"load_format": "dummy"}' --dtype bfloat16 \
    --max-num-seqs 256 --max-model-len 4096 --kv-cache-gib 40 --capacity-concurrency 64 --hop-ms "$HOP" \
    --streams 1 16 64 128 256 --seconds 8 --repeats 2 --data-dir "$DATA" 2>&1 | tee -a "$LOG" | grep -v INFO | tail -12 \
    || step "the profile did not finish in time (the comparison above stands)"
else
  step "no time left for the engine profile"
fi
if [ -n "$OUT" ]; then
  cp benchmarks/results/gpu_check-*.json "$OUT/" 2>/dev/null || true
  cp benchmarks/simulate/profiles/gpu-h200-llama8b-measured.json "$OUT/" 2>/dev/null || true
fi
step "done"
