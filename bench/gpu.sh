#!/usr/bin/env bash
# The GPU figures in one run on a lent CUDA machine (README "Performance"), JSON to $OUT. Steps, in
# the order they run (STEPS picks some, e.g. STEPS="parity backends"), each with its own time bound:
#   parity    every test photo through facemesh and ict on the CPU and on CUDA, compared (exit 1 off)
#   backends  bench/backends on CUDA, eager nets with CUDA graphs: facemesh and ict side by side
#   http      bench/http_load on one GPU worker, facemesh and ict, c = 1, 8, 32: the default JSON
#             request, then ?format=glb
#   compiled  bench/backends on CUDA with the AOTInductor packages (built on the machine first; one
#             that crashes on load is replaced by torch.compile, as in the worker)
#   jit       bench/backends on CUDA, ict, each net torch.compile-d in process (no packages)
#   startup   bench/startup cold and warm on cuda:0
#   engine    bench/engine (facemesh: naive, eager, CUDA graphs, compiled)
# Needs: the project importable, weights under $FACE3D_CACHE_DIR. THREADS: torch CPU threads in process.
set -uo pipefail
OUT=${OUT:-bench/results}
STEPS=${STEPS:-parity backends http compiled startup engine}
THREADS=${THREADS:-4}
export PYTHONUNBUFFERED=1
step() { echo "== $1"; shift; local t=$SECONDS; "$@"; echo "== rc=$? in $((SECONDS - t)) s"; }
http() {  # $1: a name for the JSON file, then extra arguments
  local name=$1; shift
  timeout 240 python3 -m bench.http_load --devices cuda:0 --backends facemesh,ict --no-compile \
    --levels 1,8,32 --requests 160 --seconds 15 --ready-timeout 90 --json "$OUT/http-gpu-$name.json" "$@"
}
nvidia-smi -L
for s in $STEPS; do
  case $s in
    parity) step "CPU/CUDA parity" timeout 150 python3 -m bench.cuda_parity --json "$OUT/cuda-parity.json" ;;
    backends) step "backends, eager + CUDA graphs" timeout 120 python3 -m bench.backends --device cuda \
      --runs 40 --threads "$THREADS" --json "$OUT/backends-gpu.json" ;;
    http) step "http, JSON" http json; step "http, ?format=glb" http glb --format glb ;;
    compiled) step "backends, compiled" timeout 300 python3 -m bench.backends --device cuda --compiled \
      --runs 40 --threads "$THREADS" --json "$OUT/backends-gpu-compiled.json" ;;
    jit) step "backends, torch.compile" timeout 240 python3 -m bench.backends --device cuda --jit \
      --backends ict --runs 40 --threads "$THREADS" --json "$OUT/backends-gpu-jit.json" ;;
    startup) step "start-up (cold, warm)" timeout 200 python3 -m bench.startup --devices cuda:0 \
      --timeout 180 --compiled-dir "$FACE3D_CACHE_DIR/compiled" --json "$OUT/startup-gpu.json" ;;
    engine) step "engine" timeout 100 python3 -m bench.engine --device cuda --runs 30 --naive-runs 3 \
      --json "$OUT/engine-gpu.json" ;;
    *) echo "unknown step $s" ;;
  esac
done
