"""Start-up benchmark: how long until `face3d serve` answers, and until every net runs compiled.

    python -m bench.startup                        # CPU workers as configured by default (auto)
    python -m bench.startup --devices cuda:0 --json bench/results/startup-gpu.json

Two starts of a real server, each on a fresh process: first with an empty ``compiled/`` folder (the
weights already pulled), then a restart with the packages the first start built. For each it reports
the seconds from process start until ``/readyz`` says 200 (every worker serves, eager if need be) and
until ``/readyz``'s body says every worker runs every net compiled. Prints one table.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.http_load import ROOT, free_port


def _readiness(url: str) -> tuple[int, dict[str, Any]]:
    try:
        response = httpx.get(f"{url}/readyz", timeout=5)
        return response.status_code, response.json()
    except (httpx.TransportError, ValueError):
        return 0, {}


def _all_compiled(body: dict[str, Any]) -> bool:
    workers = body.get("workers", [])
    return bool(workers) and all(w.get("compiled") and all(w["compiled"].values()) for w in workers)


def one_start(config: dict[str, Any], folder: Path, timeout_s: float) -> dict[str, float | None]:
    """Start the server with ``config``; seconds to ready and to fully compiled; SIGTERM it after."""
    port = free_port()
    path = folder / "api_config.yaml"
    path.write_text(yaml.safe_dump({**config, "host": "127.0.0.1", "port": port}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACE3D_") or k == "FACE3D_CACHE_DIR"}
    url = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "face3d.service.cli.main", "serve", "--config", str(path)], cwd=ROOT, env=env
    )
    ready = compiled = None
    try:
        while time.monotonic() - start < timeout_s:
            if process.poll() is not None:
                raise SystemExit(f"server exited with {process.returncode}")
            status, body = _readiness(url)
            now = time.monotonic() - start
            if status == 200 and ready is None:
                ready = now
            if ready is not None and (not config["compile"] or _all_compiled(body)):
                compiled = now if config["compile"] else None
                break
            time.sleep(0.25)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(120)
    return {"ready_s": ready, "compiled_s": compiled}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="auto")
    parser.add_argument("--cpu-workers", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per start")
    parser.add_argument("--compiled-dir", type=Path, help="keep the packages here (emptied first)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="face3d-startup-") as tmp:
        compiled = args.compiled_dir or Path(tmp) / "compiled"
        shutil.rmtree(compiled, ignore_errors=True)  # a cold start: no package yet
        config = {
            "devices": args.devices, "cpu_workers": args.cpu_workers, "compile": True,
            "compile_cache_dir": str(compiled), "results_dir": f"{tmp}/results",
            "log_level": "warning", "jwt_secret": secrets.token_urlsafe(48),
        }  # fmt: skip
        cold = one_start(config, Path(tmp), args.timeout)
        warm = one_start(config, Path(tmp), args.timeout)
    workers = args.cpu_workers or "auto"
    cores = len(os.sched_getaffinity(0))
    print(f"face3d start-up: devices={args.devices} cpu_workers={workers} cores={cores}")
    print(f"{'start':<8}{'ready (s)':>12}{'all compiled (s)':>20}")
    for name, result in (("cold", cold), ("warm", warm)):
        fmt = lambda v: f"{v:.1f}" if v is not None else "-"  # noqa: E731
        print(f"{name:<8}{fmt(result['ready_s']):>12}{fmt(result['compiled_s']):>20}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"devices": args.devices, "cold": cold, "warm": warm}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
