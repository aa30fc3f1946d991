"""HTTP load benchmark: latency percentiles, throughput and server CPU per image of POST /v1/reconstruct,
per backend and concurrency level, with the ratios of each backend to the first.

    python -m bench.http_load                  # facemesh and ict, each on its own `face3d serve`
    python -m bench.http_load --no-compile --devices cpu --levels 1,8 --requests 32
    python -m bench.http_load --before-repo /tmp/face3d-before --rounds 2   # and an older checkout
    python -m bench.http_load --url http://host:8000 --token "$TOKEN" --json out.json

(Run it as a module from the repository root, like bench/engine.py, so that ``scripts.photos`` imports.)

Each level runs a closed loop: ``concurrency`` clients, each sending the next request as soon as its
previous answer arrives, until ``--requests`` answers or ``--seconds`` have passed. The image is the
astronaut photo upscaled to 1280x1280 JPEG, a typical phone-portrait upload after client resizing.
Non-200 answers are counted per status (503/504 show where admission control kicks in) and are
left out of the latency percentiles. The request is the service's default (a JSON answer; files
obj, png, glb, json) unless ``--formats`` names others.

CPU per image: the user + system time that the server's whole process tree (API, workers, encoders,
read from /proc) spent during a level, divided by its answers: what a request costs the host, which
is what throughput on a small CPU machine is bounded by. The system part is shown on its own: it is
mostly the kernel's work of writing the result files, so it grows with the bytes a request stores.

Bytes per request: after its levels, each server answers one more request whose files are fetched
(``GET`` of every URL in the answer; with ``--format``, the artifact itself), and their sizes printed:
output size is part of a request's cost (stored, written, and sent to the client).

Side by side: every backend of ``--backends`` gets its own server in turn (the same config but the
backend), and with ``--before-repo`` every backend also runs on an older checkout (started from its
folder with ``--before-module``), alternating, ``--rounds`` times; each cell reports the median of
its rounds, so slow drifts of a noisy machine fall on every variant alike.
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
    cpu_ms_per_image: float  # the server's process tree; NaN against a remote --url
    sys_ms_per_image: float  # of which system (kernel) time


def tree_cpu_s(root: int) -> tuple[float, float]:
    """CPU seconds (user, system) spent so far by process ``root`` and its live descendants (Linux)."""
    parent: dict[int, int] = {}
    cpu: dict[int, tuple[float, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) / tick, int(fields[12]) / tick)  # utime, stime
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    times = [cpu[pid] for pid in tree if pid in cpu]
    return sum(t[0] for t in times), sum(t[1] for t in times)


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
    server_pid: int | None = None,
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
        nan = (float("nan"), float("nan"))
        user_before, sys_before = tree_cpu_s(server_pid) if server_pid else nan
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        user_after, sys_after = tree_cpu_s(server_pid) if server_pid else nan
    answers = max(len(latencies), 1)
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]).tolist() if latencies else (float("nan"),) * 3
    return LevelResult(
        concurrency, sent, len(latencies), round(elapsed, 3), round(len(latencies) / elapsed, 3),
        round(p50, 1), round(p95, 1), round(p99, 1), dict(statuses),
        round(1000 * (user_after - user_before + sys_after - sys_before) / answers, 1),
        round(1000 * (sys_after - sys_before) / answers, 1),
    )  # fmt: skip


def output_bytes(url: str, token: str, image: bytes, params: dict[str, Any]) -> dict[str, int]:
    """Bytes of what one request produces: each stored file (fetched by its URL), or the artifact."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=300, headers=headers) as client:
        response = client.post(
            "/v1/reconstruct", content=image, params=params, headers={"Content-Type": "image/jpeg"}
        )
        response.raise_for_status()
        if "format" in params:
            return {f"?format={params['format']}": len(response.content)}
        files = response.json()["files"]
        return {name: len(client.get(link).raise_for_status().content) for name, link in files.items()}


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
    """Start `face3d serve` with a throw-away config and secret; yield (url, token, pid); SIGTERM it after.

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
            "encode_processes": getattr(args, "encode_processes", 0),
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
            yield url, token, process.pid
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(120)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:  # not listening yet
        return False


@dataclass(frozen=True)
class Variant:
    """A checkout to serve from: this one, or an older one (``--before-repo``)."""

    name: str
    repo: Path
    module: str
    env: dict[str, str] | None = None


def older_checkout_env(repo: Path, folder: Path) -> dict[str, str]:
    """PYTHONPATH that makes ``face3d`` import from ``repo`` (its models/ and service/) instead of
    this checkout's editable install: a ``face3d`` folder of links in ``folder``, first on the path."""
    package = folder / "face3d"
    package.mkdir(parents=True, exist_ok=True)
    for name in ("models", "service"):
        (package / name).symlink_to(repo / name)
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)}


def median_level(runs: list[LevelResult]) -> LevelResult:
    """One level's rounds folded into their medians (statuses summed)."""
    statuses: Counter[str] = Counter()
    for run in runs:
        statuses.update(run.statuses)

    def mid(key: str) -> float:
        return round(float(np.median([getattr(r, key) for r in runs])), 3)

    return LevelResult(
        runs[0].concurrency, sum(r.requests for r in runs), sum(r.ok for r in runs), mid("seconds"),
        mid("images_per_s"), mid("p50_ms"), mid("p95_ms"), mid("p99_ms"), dict(statuses),
        mid("cpu_ms_per_image"), mid("sys_ms_per_image"),
    )  # fmt: skip


def print_table(title: str, results: list[LevelResult]) -> None:
    print(f"\n{title}")
    head = f"{'conc':>5} {'ok/sent':>9} {'img/s':>8} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}"
    print(f"{head} {'CPU ms/img':>11} {'of it sys':>10}  statuses")
    for r in results:
        print(
            f"{r.concurrency:>5} {r.ok:>4}/{r.requests:<4} {r.images_per_s:>8.2f} {r.p50_ms:>9.1f} "
            f"{r.p95_ms:>9.1f} {r.p99_ms:>9.1f} {r.cpu_ms_per_image:>11.1f} {r.sys_ms_per_image:>10.1f}"
            f"  {r.statuses}"
        )


def print_bytes(sizes: dict[str, int]) -> None:
    listed = ", ".join(f"{name} {size / 1e6:.2f}" for name, size in sizes.items())
    print(f"  output: {sum(sizes.values()) / 1e6:.2f} MB per request ({listed})")


def print_ratios(title: str, results: list[LevelResult], reference: list[LevelResult]) -> None:
    """Per level: p50 latency, throughput and CPU per image of ``results`` over ``reference``'s."""
    print(f"\n{title}")
    for r, ref in zip(results, reference, strict=True):
        print(
            f"  c={r.concurrency:<3} p50 x{r.p50_ms / ref.p50_ms:.2f}"
            f"   img/s x{r.images_per_s / ref.images_per_s:.2f}"
            f"   CPU ms/img x{r.cpu_ms_per_image / ref.cpu_ms_per_image:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="benchmark a running server instead of starting one")
    parser.add_argument("--token", default=os.environ.get("FACE3D_TOKEN"), help="bearer token for --url")
    parser.add_argument("--levels", default="1,8", help="comma list of concurrency levels")
    parser.add_argument("--requests", type=int, default=48, help="answers per level (upper bound)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound per level")
    parser.add_argument("--uv-size", type=int, default=2048)
    parser.add_argument("--formats", help="outputs the server builds per image (default: the service's)")
    parser.add_argument("--format", dest="single", help="one artifact as the answer (glb, obj, zip, ...)")
    parser.add_argument("--devices", default="auto")
    parser.add_argument(
        "--backends", default="facemesh,ict", help="one server each, in turn; ratios to the first"
    )
    parser.add_argument("--before-repo", type=Path, help="an older checkout to run alternately")
    parser.add_argument("--before-module", default="face3d.service.cli.main", help="its CLI module")
    parser.add_argument("--rounds", type=int, default=1, help="alternations of every variant and backend")
    parser.add_argument("--cpu-workers", type=int, default=0, help="0 = the service default (auto)")
    parser.add_argument("--torch-threads", type=int, default=0, help="0 = the service default (auto)")
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--encode-processes", type=int, default=0, help="0 = the service default (auto)")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--ready-timeout", type=float, default=900.0)
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args()

    image = bench_image()
    levels = [int(x) for x in args.levels.split(",")]
    params: dict[str, Any] = {"uv_size": args.uv_size}
    params.update({"formats": args.formats} if args.formats else {})
    params.update({"format": args.single} if args.single else {})

    sizes: dict[str, dict[str, int]] = {}

    def run(url: str, token: str, pid: int | None, name: str = "") -> list[LevelResult]:
        asyncio.run(run_level(url, token, image, 1, 2, 60, params))  # warm connections and caches
        done = [
            asyncio.run(run_level(url, token, image, c, args.requests, args.seconds, params, pid))
            for c in levels
        ]
        sizes[name] = output_bytes(url, token, image, params)
        return done

    if args.url:
        if not args.token:
            raise SystemExit("--url needs --token (or $FACE3D_TOKEN)")
        print_table(f"{args.url}", run(args.url, args.token, None))
        print_bytes(sizes[""])
        return

    variants = [Variant("this checkout", ROOT, "face3d.service.cli.main")]
    if args.before_repo:
        before = args.before_repo.resolve()
        links = tempfile.mkdtemp(prefix="face3d-before-")  # a few links: left for the OS to clear
        env = older_checkout_env(before, Path(links))
        variants.append(Variant(f"before ({before.name})", before, args.before_module, env))
    backends = args.backends.split(",")
    rounds: dict[tuple[str, str], list[list[LevelResult]]] = {}
    for _ in range(args.rounds):
        for variant in variants:
            for backend in backends:
                args.backend = backend
                server = local_server(args, module=variant.module, cwd=variant.repo, extra_env=variant.env)
                with server as (url, token, pid):
                    rounds.setdefault((variant.name, backend), []).append(
                        run(url, token, pid, f"{backend} - {variant.name}")
                    )
    results = {
        key: [median_level(list(level)) for level in zip(*runs, strict=True)] for key, runs in rounds.items()
    }

    print(f"POST /v1/reconstruct {params} on {os.cpu_count()} CPUs, {args.rounds} round(s), medians")
    for (variant, backend), levels_done in results.items():
        print_table(f"{backend} - {variant}", levels_done)
        print_bytes(sizes[f"{backend} - {variant}"])
    for variant in variants:
        for backend in backends[1:]:
            print_ratios(
                f"{backend} / {backends[0]} ({variant.name})",
                results[(variant.name, backend)], results[(variant.name, backends[0])],
            )  # fmt: skip
    if len(variants) > 1:
        for backend in backends:
            print_ratios(
                f"{backend}: this checkout / {variants[1].name}",
                results[(variants[0].name, backend)], results[(variants[1].name, backend)],
            )  # fmt: skip
    if args.json:
        doc = {
            "image_bytes": len(image), "params": params, "cpus": os.cpu_count(), "rounds": args.rounds,
            "results": [
                {"variant": v, "backend": b, "levels": [asdict(r) for r in res], "bytes": sizes[f"{b} - {v}"]}
                for (v, b), res in results.items()
            ],
        }  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
