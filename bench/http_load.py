"""HTTP load benchmark: latency percentiles and throughput of POST /v1/reconstruct per concurrency level.

    python -m bench.http_load                  # starts `face3d serve` itself (devices auto, compile on)
    python -m bench.http_load --no-compile --devices cpu --levels 1,8 --requests 32
    python -m bench.http_load --url http://host:8000 --token "$TOKEN" --json out.json

(Run it as a module from the repository root, like bench/engine.py, so that ``scripts.photos`` imports.)

Each level runs a closed loop: ``concurrency`` clients, each sending the next request as soon as its
previous answer arrives, until ``--requests`` answers or ``--seconds`` have passed. The image is the
astronaut photo upscaled to 1280x1280 JPEG, a typical phone-portrait upload after client resizing.
Non-200 answers are counted per status (503/504 show where admission control kicks in) and are
left out of the latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from PIL import Image

from scripts.photos import photo

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    ok: int
    seconds: float
    images_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    statuses: dict[str, int]


def bench_image(side: int = 1280) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo("astronaut")).resize((side, side), Image.Resampling.LANCZOS).save(
        buf, "JPEG", quality=90
    )
    return buf.getvalue()


async def run_level(
    url: str,
    token: str,
    image: bytes,
    concurrency: int,
    requests: int,
    seconds: float,
    params: dict[str, Any],
) -> LevelResult:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    sent = 0
    end = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests and time.monotonic() < end:
            sent += 1
            started = time.perf_counter()
            try:
                response = await client.post("/v1/reconstruct", content=image, params=params, headers=headers)
                status = str(response.status_code)
            except httpx.TransportError as exc:
                status = type(exc).__name__
            statuses[status] += 1
            if status == "200":
                latencies.append((time.perf_counter() - started) * 1000.0)

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]).tolist() if latencies else (float("nan"),) * 3
    return LevelResult(
        concurrency, sent, len(latencies), round(elapsed, 3), round(len(latencies) / elapsed, 3),
        round(p50, 1), round(p95, 1), round(p99, 1), dict(statuses),
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_server(
    args: argparse.Namespace,
    *,
    module: str = "face3d.service.cli.main",
    cwd: Path = ROOT,
    extra_config: dict[str, Any] | None = None,
    extra_env: dict[str, str] | None = None,
):
    """Start `face3d serve` with a throw-away config and secret; yield (url, token); SIGTERM it after.

    ``module``, ``cwd``, ``extra_config`` and ``extra_env`` let bench/pipe_bytes.py start an older
    checkout (``service.cli`` run from its own folder) with its byte counters switched on.
    """
    with tempfile.TemporaryDirectory(prefix="face3d-bench-") as tmp:
        port = free_port()
        config = {
            "host": "127.0.0.1", "port": port, "devices": args.devices, "compile": args.compile,
            "cpu_workers": args.cpu_workers, "torch_threads": args.torch_threads,
            "uv_size": args.uv_size, "max_uv_size": max(4096, args.uv_size),
            "max_queue": args.max_queue, "results_dir": f"{tmp}/results", "log_level": "warning",
            "jwt_secret": secrets.token_urlsafe(48), "quota_rate_per_s": 1e6, "quota_burst": 1_000_000,
            **({"backend": args.backend} if getattr(args, "backend", None) else {}),
            **(extra_config or {}),
        }  # fmt: skip
        path = Path(tmp) / "api_config.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("FACE3D_") or k == "FACE3D_CACHE_DIR"}
        env.update(extra_env or {})
        process = subprocess.Popen(
            [sys.executable, "-m", module, "serve", "--config", str(path)], cwd=cwd, env=env
        )
        url = f"http://127.0.0.1:{port}"
        try:
            started = time.monotonic()
            while not _ready(url):
                if process.poll() is not None:
                    raise SystemExit(f"server exited with {process.returncode}")
                if time.monotonic() - started > args.ready_timeout:
                    raise SystemExit(f"server not ready after {args.ready_timeout} s")
                time.sleep(0.5)
            print(f"server ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
            # The server's own `token` command signs it, so an older checkout gets a token it accepts.
            token = subprocess.run(
                [sys.executable, "-m", module, "token", "--config", str(path), "--sub", "bench",
                 "--scope", "reconstruct", "--scope", "results:read", "--ttl", "1h"],
                cwd=cwd, env=env, check=True, capture_output=True, text=True,
            ).stdout.split()[-1]  # fmt: skip
            yield url, token
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(120)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:  # not listening yet
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="benchmark a running server instead of starting one")
    parser.add_argument("--token", default=os.environ.get("FACE3D_TOKEN"), help="bearer token for --url")
    parser.add_argument("--levels", default="1,8,32", help="comma list of concurrency levels")
    parser.add_argument("--requests", type=int, default=64, help="answers per level (upper bound)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound per level")
    parser.add_argument("--uv-size", type=int, default=2048)
    parser.add_argument("--formats", default="png", help="outputs the server builds per image")
    parser.add_argument("--devices", default="auto")
    parser.add_argument("--backend", help="reconstruction backend (default: the service's, ict)")
    parser.add_argument("--cpu-workers", type=int, default=0, help="0 = the service default (auto)")
    parser.add_argument("--torch-threads", type=int, default=0, help="0 = the service default (auto)")
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--ready-timeout", type=float, default=900.0)
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args()

    image = bench_image()
    levels = [int(x) for x in args.levels.split(",")]
    params = {"uv_size": args.uv_size, "formats": args.formats}

    def run(url: str, token: str) -> list[LevelResult]:
        asyncio.run(run_level(url, token, image, 1, 2, 60, params))  # warm connections and caches
        return [
            asyncio.run(run_level(url, token, image, c, args.requests, args.seconds, params)) for c in levels
        ]

    if args.url:
        if not args.token:
            raise SystemExit("--url needs --token (or $FACE3D_TOKEN)")
        results = run(args.url, args.token)
    else:
        with local_server(args) as (url, token):
            results = run(url, token)

    print(f"{'conc':>5} {'ok/sent':>9} {'img/s':>8} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}  statuses")
    for r in results:
        print(
            f"{r.concurrency:>5} {r.ok:>4}/{r.requests:<4} {r.images_per_s:>8.2f} {r.p50_ms:>9.1f} "
            f"{r.p95_ms:>9.1f} {r.p99_ms:>9.1f}  {r.statuses}"
        )
    if args.json:
        doc = {"image_bytes": len(image), "params": params, "levels": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
