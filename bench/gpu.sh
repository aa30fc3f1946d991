#!/usr/bin/env bash
# The GPU figures in one run on a lent CUDA machine (README "Performance"): start-up cold and warm,
# bench/engine (eager, CUDA graphs, compiled) and, when a pre-renovation checkout is given as $BASELINE
# (old top-level packages), its bench/engine beside ours; HTTP=1 adds the HTTP benches. JSON to $OUT.
# Needs: the project importable, weights under $FACE3D_CACHE_DIR. Each step has its own time bound.
set -uo pipefail
OUT=${OUT:-bench/results}
export PYTHONUNBUFFERED=1
step() { echo "== $1"; shift; local t=$SECONDS; "$@"; echo "== rc=$? in $((SECONDS - t)) s"; }
nvidia-smi -L
step "start-up (cold, warm)" timeout 200 python3 -m bench.startup --devices cuda:0 --timeout 180 \
  --compiled-dir "$FACE3D_CACHE_DIR/compiled" --json "$OUT/startup-gpu.json"
step "engine" timeout 100 python3 -m bench.engine --device cuda --runs 30 --naive-runs 3 --json "$OUT/engine-gpu.json"
if [ -n "${BASELINE:-}" ]; then
  step "engine (before)" bash -c "cd '$BASELINE' && timeout 120 python3 -m bench.engine --device cuda --runs 30 \
    --naive-runs 3 --json '$OUT/engine-gpu-before.json'"
fi
if [ -n "${HTTP:-}" ]; then
  step "http" timeout 90 python3 -m bench.http_load --devices cuda:0 --no-compile --levels 1,8,32 --requests 96 \
    --seconds 15 --json "$OUT/http-gpu.json"
fi
