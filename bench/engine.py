"""In-process benchmark: one 1280x1280 JPEG -> OBJ + 2048² PNG, per stage, the paths side by side.

Paths, measured in the same run on the same photo:
  naive     eager nets, the bake's texel map rebuilt and sampled at full uv_size every call,
            Pillow's default PNG encoder
  eager     the facemesh backend as shipped, nets eager (what a worker serves until its packages are in)
  compiled  the same with its AOTInductor packages installed (models/runtime/aot.py; built into the
            weights cache's compiled/ folder on the first run, loaded afterwards)
  +graphs   on CUDA: the same with each net replayed from a per-bucket CUDA graph

Prints medians (p50) and p90 per stage (decode, detect, landmarks, bake, encode) and the whole path,
and the speed-up of each path over the naive one. Runs unchanged on CUDA (``--device cuda``).

    python -m bench.engine                      # CPU, defaults below (run from the repo root)
    python -m bench.engine --device cuda --runs 50 --json bench/results/gpu.json

(Run it as a module from the repository root, so that ``scripts.photos`` and ``face3d`` import.)
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from face3d.models.backends.base import BackendConfig
from face3d.models.backends.facemesh.backend import FacemeshBackend
from face3d.models.backends.facemesh.bake import TextureBaker
from face3d.models.backends.facemesh.topology import load_topology
from face3d.models.export.files import encode_texture
from face3d.models.export.obj import to_obj
from face3d.models.imageio import decode_image
from face3d.models.reconstruction import Face
from face3d.models.runtime.aot import CompiledStore, artifact_key
from face3d.service.config import default_cache_dir
from scripts.photos import photo

STAGES = ("decode", "detect", "landmarks", "bake", "encode")


def test_jpeg(name: str, size: int) -> bytes:
    """A ``size``² JPEG (quality 90) made from a test photo: what a client would upload."""
    buf = io.BytesIO()
    Image.fromarray(photo(name)).resize((size, size), Image.Resampling.LANCZOS).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ready_engine(
    device: torch.device,
    uv_size: int,
    landmark_model: str,
    cuda_graphs: bool = False,
    compiled: bool = False,
) -> FacemeshBackend:
    """The facemesh backend as the service runs it: eager, or with the compiled packages from the
    weights cache's ``compiled/`` folder installed (built there first when missing), CUDA graphs
    where asked."""
    config = BackendConfig(
        default_cache_dir(), buckets=(1,), cuda_graphs=cuda_graphs, landmark_model=landmark_model
    )
    engine = FacemeshBackend(config)
    engine.load(str(device))
    engine.warmup(uv_sizes=(uv_size,))
    if compiled:
        store = CompiledStore(default_cache_dir() / "compiled")
        for unit in engine.compile_units():
            key = artifact_key(unit, "facemesh", device, torch.float32)
            runner = store.load_or_build(unit, key, device)
            assert runner is not None
            engine.install_compiled(unit.name, runner)
    return engine


def face_obj(face: Face) -> tuple[bytes, bytes]:
    """The OBJ + MTL a facemesh result carries."""
    hooks = FacemeshBackend.mesh_export()
    return to_obj(hooks.layout, hooks.mesh(face, False), "face.png", "face.mtl")


def run_engine_path(engine: FacemeshBackend, jpeg: bytes, uv_size: int) -> dict[str, float]:
    """decode -> backend -> OBJ + fpng PNG, ms per stage."""
    start = time.perf_counter()
    image = decode_image(jpeg, max_pixels=50_000_000)
    decoded = time.perf_counter()
    (rec,) = engine.reconstruct([image], uv_size=uv_size)
    reconstructed = time.perf_counter()
    face = rec.faces[0]
    png = encode_texture(face.texture, "png")
    obj, mtl = face_obj(face)
    end = time.perf_counter()
    assert png and obj and mtl
    stages = {"decode": (decoded - start) * 1000, "encode": (end - reconstructed) * 1000}
    stages.update({k: rec.timings_ms.get(k, 0.0) for k in ("detect", "landmarks", "bake")})
    stages["total"] = (end - start) * 1000
    return stages


@torch.inference_mode()
def run_naive_path(engine: FacemeshBackend, jpeg: bytes, uv_size: int) -> dict[str, float]:
    """Eager nets, an uncached full-resolution bake and Pillow's default PNG: the baseline."""
    start = time.perf_counter()
    image = decode_image(jpeg, max_pixels=50_000_000)
    decoded = time.perf_counter()
    (rec,) = engine.reconstruct([image], uv_size=256)  # landmarks; its small bake is not counted
    landmarked = time.perf_counter()
    face = rec.faces[0]
    baker = TextureBaker(load_topology(), uv_size, engine.device, sample_size=uv_size)
    pixels = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].to(engine.device)
    verts = torch.from_numpy(face.landmarks[None, :468].copy()).to(engine.device)
    textures, _ = baker.bake(pixels, torch.zeros(1, dtype=torch.long, device=engine.device), verts)
    texture = textures[0].cpu().numpy()
    baked = time.perf_counter()
    buf = io.BytesIO()
    Image.fromarray(texture).save(buf, "PNG")
    face_obj(face)
    end = time.perf_counter()
    bake_in_engine = rec.timings_ms["bake"]
    return {
        "decode": (decoded - start) * 1000,
        "detect": rec.timings_ms["detect"],
        "landmarks": rec.timings_ms["landmarks"],
        "bake": (baked - landmarked) * 1000,
        "encode": (end - baked) * 1000,
        "total": (end - start) * 1000 - bake_in_engine,
    }


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{names[0]} x{len(names)}" if names else platform.machine()


def summarise(
    samples: list[dict[str, float]], keys: Sequence[str] = (*STAGES, "total")
) -> dict[str, dict[str, float]]:
    """p50 and p90 of each key over the samples."""
    out = {}
    for key in keys:
        values = sorted(s[key] for s in samples)
        out[key] = {"p50": statistics.median(values), "p90": values[int(0.9 * (len(values) - 1))]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--photo", default="face_001", help="test photo to upscale (scripts/photos.py)")
    parser.add_argument("--size", type=int, default=1280, help="edge of the uploaded JPEG")
    parser.add_argument("--uv-size", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--naive-runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--landmark-model", default="v2", choices=("468", "478", "v2"))
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled path")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    jpeg = test_jpeg(args.photo, args.size)
    paths: dict[str, dict] = {}

    eager = ready_engine(device, args.uv_size, args.landmark_model)
    for _ in range(2):
        run_naive_path(eager, jpeg, args.uv_size)
    naive = [run_naive_path(eager, jpeg, args.uv_size) for _ in range(args.naive_runs)]
    paths["naive"] = summarise(naive)

    runners: dict[str, FacemeshBackend] = {"eager": eager}
    compile_s = None
    if device.type == "cuda":
        runners["eager+graphs"] = ready_engine(device, args.uv_size, args.landmark_model, cuda_graphs=True)
    if not args.no_compile:
        start = time.perf_counter()
        runners["compiled"] = ready_engine(device, args.uv_size, args.landmark_model, compiled=True)
        compile_s = time.perf_counter() - start
        if device.type == "cuda":
            runners["compiled+graphs"] = ready_engine(
                device, args.uv_size, args.landmark_model, cuda_graphs=True, compiled=True
            )
    for name, engine in runners.items():
        for _ in range(3):
            run_engine_path(engine, jpeg, args.uv_size)
        _sync(device)
        paths[name] = summarise([run_engine_path(engine, jpeg, args.uv_size) for _ in range(args.runs)])

    print(f"face3d engine benchmark: {args.size}² JPEG ({args.photo}) -> OBJ + {args.uv_size}² PNG")
    print(
        f"landmarks={args.landmark_model} device={device} threads={args.threads} "
        f"torch={torch.__version__} cpu={_cpu_name()}"
    )
    if compile_s is not None:
        print(f"compiled packages loaded (or built, first run) + warm-up: {compile_s:.1f} s")
    header = f"{'stage (ms)':<12}" + "".join(f"{name + ' p50':>14}{'p90':>8}" for name in paths)
    print(header)
    for key in (*STAGES, "total"):
        row = f"{key:<12}" + "".join(f"{p[key]['p50']:>14.1f}{p[key]['p90']:>8.1f}" for p in paths.values())
        print(row)
    base = paths["naive"]["total"]["p50"]
    for name in runners:
        print(f"speed-up {name} vs naive (p50 total): {base / paths[name]['total']['p50']:.1f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "device": str(device),
            "threads": args.threads,
            "torch": torch.__version__,
            "photo": args.photo,
            "size": args.size,
            "uv_size": args.uv_size,
            "compile_s": compile_s,
            "paths": paths,
            "cpu": _cpu_name(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
