"""In-process benchmark of every backend side by side: one 1280² JPEG -> OBJ + GLB + 2048² PNG.

Each backend runs the service's own path (models/pipeline.py: decode -> backend.reconstruct ->
export_result with formats obj,glb,png) on the same photo in the same process, one after the
other; p50 and p90 per stage and in total, and the encode stage split into the PNG texture and what
the OBJ and the GLB each add (p50). Nets eager, or with ``--compiled`` the AOTInductor
packages a worker would install (from the weights cache's ``compiled/`` folder, built there first
when missing; a package that crashes on load is replaced by ``torch.compile``, as in the worker), or
with ``--jit`` each net ``torch.compile``-d in process (where packages are known to crash). The
``landmarks`` stage of ``ict`` includes its model fit and dense head.

    python -m bench.backends                                # facemesh and ict, CPU, 2 threads
    python -m bench.backends --compiled                     # as a worker serves once compiled
    python -m bench.backends --backends ict --runs 40 --threads 1 --json bench/results/backends.json

(Run it as a module from the repository root, so that ``scripts.photos`` and ``face3d`` import.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from bench.engine import _cpu_name, summarise, test_jpeg
from face3d.models.backends import BackendConfig, create_backend
from face3d.models.pipeline import Pipeline, ReconstructOptions
from face3d.models.runtime.aot import CompiledStore, jit_compile
from face3d.service.config import default_cache_dir
from face3d.service.workers.background_compile import compile_all

STAGES = ("decode", "detect", "landmarks", "bake", "encode", "total")


def run_once(pipeline: Pipeline, jpeg: bytes, options: ReconstructOptions) -> dict[str, float]:
    start = time.perf_counter()
    (item,) = pipeline.run([jpeg], options)
    total = (time.perf_counter() - start) * 1000
    if item.exported is None:
        raise RuntimeError(f"no result: {item.error}")
    stages = {k: item.timings_ms.get(k, 0.0) for k in ("decode", "detect", "landmarks", "bake")}
    return {**stages, "encode": item.exported.encode_ms, "total": total}


def encode_split(pipeline: Pipeline, jpeg: bytes, uv_size: int, runs: int) -> dict[str, float]:
    """p50 ms of the export with the texture alone, and what the OBJ and the GLB each add to it."""
    image = pipeline.decode(jpeg)
    (rec,) = pipeline.reconstruct([image], ReconstructOptions(uv_size=uv_size))

    def p50(*formats: str) -> float:
        options = ReconstructOptions(uv_size=uv_size, formats=frozenset(formats))
        return statistics.median(pipeline.export(rec, image, options).encode_ms for _ in range(runs))

    png = p50("png")
    return {"png": png, "obj": p50("png", "obj") - png, "glb": p50("png", "glb") - png}


def bench_backend(name: str, jpeg: bytes, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    backend = create_backend(name, BackendConfig(cache_dir=default_cache_dir(), buckets=(1,)))
    backend.load(args.device)
    backend.warmup((args.uv_size,))
    if args.jit:
        for unit in backend.compile_units():
            backend.install_compiled(unit.name, jit_compile(unit))
    elif args.compiled:  # the worker's own path: packages, or torch.compile where one crashes on load
        compile_all(backend, CompiledStore(default_cache_dir() / "compiled"), args.device, "float32")
    pipeline = Pipeline(backend, max_pixels=50_000_000)
    options = ReconstructOptions(uv_size=args.uv_size, formats=frozenset({"obj", "glb", "png"}))
    for _ in range(3):
        run_once(pipeline, jpeg, options)
    stages = summarise([run_once(pipeline, jpeg, options) for _ in range(args.runs)], STAGES)
    return {**stages, "encode split": encode_split(pipeline, jpeg, args.uv_size, args.runs)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="facemesh,ict")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--photo", default="face_001", help="test photo to upscale (scripts/photos.py)")
    parser.add_argument("--size", type=int, default=1280)
    parser.add_argument("--uv-size", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--compiled", action="store_true", help="install the compiled packages")
    parser.add_argument("--jit", action="store_true", help="torch.compile each net in process instead")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    jpeg = test_jpeg(args.photo, args.size)
    results = {name: bench_backend(name, jpeg, args) for name in args.backends.split(",")}
    load = os.getloadavg()
    print(f"face3d backends: {args.size}² JPEG ({args.photo}) -> OBJ + GLB + {args.uv_size}² PNG, in process")
    nets = "torch.compile" if args.jit else "compiled" if args.compiled else "eager"
    print(f"device={args.device} threads={args.threads} nets={nets} torch={torch.__version__}", end=" ")
    print(f"cpu={_cpu_name()}")
    print(f"load average during the run (1/5/15 min): {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"{'stage (ms)':<12}" + "".join(f"{name + ' p50':>16}{'p90':>8}" for name in results))
    for key in STAGES:
        print(
            f"{key:<12}" + "".join(f"{r[key]['p50']:>16.1f}{r[key]['p90']:>8.1f}" for r in results.values())
        )
    for part in ("png", "obj", "glb"):
        split = "".join(f"{r['encode split'][part]:>16.1f}{'':>8}" for r in results.values())
        print(f"{'  ' + part:<12}{split}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"args": {k: str(v) for k, v in vars(args).items()}, "load": load, "results": results}
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
