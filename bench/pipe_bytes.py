"""Bytes crossing process pipes per request: what every process of the service writes to the others.

    python -m bench.pipe_bytes                                  # this checkout, 10 requests per mode
    python -m bench.pipe_bytes --requests 3 --encode-processes 0
    python -m bench.pipe_bytes --repo /work/baseline --module service.cli   # an older checkout

Why: the service moves images and finished artifacts between the API process, its spawned workers
and the encoder processes over ``multiprocessing`` pipes; every byte there is pickled, copied
through the kernel and unpickled again. This counts them, so a change in how work is handed
around (before/after a refactor) shows up as a number rather than a guess.

How: the server is started by bench/http_load.py's ``local_server`` with a throw-away directory
first on PYTHONPATH holding a ``sitecustomize.py``. Python imports it at start-up in every process
(spawned children inherit the environment), and it wraps
``multiprocessing.connection.Connection._send_bytes`` to count the payload bytes and messages each
process writes. The counters go to ``$PIPE_BYTES_DIR/<pid>.json`` after every send (atomic
replace; spawned children can leave through ``os._exit``, which skips atexit), so the numbers are
complete whenever the files are read. The bench photo (1280x1280 JPEG) is sent ``--requests`` times
with a JSON response (formats obj,png,glb,json) and ``--requests`` times with ``?format=glb``, one
at a time, after one warm-up request of each kind; the counters are read between the phases.
Only pipes are counted: shared memory, files and sockets are not. Rows are process kinds (the
process name without its index, ``< parent`` where the parent sent something too); ``senders`` is
how many processes of that kind wrote anything at all.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

from bench.http_load import bench_image, local_server

ROOT = Path(__file__).resolve().parents[1]
COUNTER_ENV = "PIPE_BYTES_DIR"  # no FACE3D_ prefix: the service's settings must not see it
SETTLE_S = 1.0  # lets sends that trail an answer (bookkeeping, stats) land in the phase they belong to

SITECUSTOMIZE = '''\
"""bench/pipe_bytes.py: count the bytes this process writes through multiprocessing pipes."""
import json
import os
import threading

_dir = os.environ.get("PIPE_BYTES_DIR")
if _dir:
    import atexit
    import multiprocessing
    import sys
    from multiprocessing import connection as _connection

    _lock = threading.Lock()
    _counts = {"bytes": 0, "messages": 0}
    _original = _connection.Connection._send_bytes

    def _dump():
        # Read the name now, not at import: a spawned child gets it only after start-up.
        record = {
            "pid": os.getpid(), "ppid": os.getppid(), "name": multiprocessing.current_process().name,
            "argv": sys.argv[:3], **_counts,
        }
        path = os.path.join(_dir, f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as fh:
            json.dump(record, fh)
        os.replace(path + ".tmp", path)

    def _send_bytes(self, buf):
        _original(self, buf)
        with _lock:
            _counts["bytes"] += memoryview(buf).nbytes
            _counts["messages"] += 1
            _dump()

    _connection.Connection._send_bytes = _send_bytes
    atexit.register(lambda: _counts["messages"] and _dump())
'''


def read_counters(folder: Path) -> dict[int, dict]:
    """pid -> the latest record of each process that has sent anything."""
    records = {}
    for path in folder.glob("*.json"):
        record = json.loads(path.read_text())
        records[record["pid"]] = record
    return records


def process_kind(name: str) -> str:
    """``face3d-worker-3`` -> ``face3d-worker``; the server's own process is ``MainProcess``."""
    return "api (MainProcess)" if name == "MainProcess" else re.sub(r"[-_]?\d+$", "", name)


def by_kind(records: dict[int, dict], family: dict[int, dict]) -> dict[str, dict[str, int]]:
    """Sums per process kind. A child of a counted process is labelled with its parent's kind (the
    encoder processes may belong to the API or to each worker, depending on the code measured);
    ``family`` is the last snapshot, so that every snapshot uses the same labels."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"bytes": 0, "messages": 0, "processes": 0})
    for record in records.values():
        kind = process_kind(record["name"])
        parent = family.get(record["ppid"])
        if parent is not None and kind != "api (MainProcess)":
            kind = f"{kind} < {process_kind(parent['name']).split()[0]}"
        row = totals[kind]
        row["bytes"] += record["bytes"]
        row["messages"] += record["messages"]
        row["processes"] += 1
    return dict(totals)


def delta(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]], key: str) -> dict[str, int]:
    return {kind: row[key] - before.get(kind, {}).get(key, 0) for kind, row in after.items()}


def send(url: str, token: str, image: bytes, params: dict[str, object], count: int) -> list[int]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}
    statuses = []
    with httpx.Client(base_url=url, timeout=600) as client:
        for _ in range(count):
            response = client.post("/v1/reconstruct", content=image, params=params, headers=headers)
            statuses.append(response.status_code)
            if response.status_code != 200:
                print(f"HTTP {response.status_code}: {response.text[:300]}", file=sys.stderr)
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout whose server runs (its cwd)")
    parser.add_argument("--module", default="face3d.service.cli.main", help="old checkouts: service.cli")
    parser.add_argument("--requests", type=int, default=10, help="measured requests per response mode")
    parser.add_argument("--encode-processes", type=int, default=2, help="config key encode_processes")
    parser.add_argument("--uv-size", type=int, default=2048)
    parser.add_argument("--formats", default="obj,png,glb,json")
    parser.add_argument("--devices", default="cpu")
    parser.add_argument("--cpu-workers", type=int, default=0, help="0 = the service default (auto)")
    parser.add_argument("--torch-threads", type=int, default=0, help="0 = the service default (auto)")
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="torch.compile (changes no pipe traffic)")
    parser.add_argument("--ready-timeout", type=float, default=900.0)
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args()

    image = bench_image()
    modes = {
        "json": {"uv_size": args.uv_size, "formats": args.formats},
        "glb": {"uv_size": args.uv_size, "formats": args.formats, "format": "glb"},
    }
    with tempfile.TemporaryDirectory(prefix="face3d-pipe-bytes-") as tmp:
        site, counters = Path(tmp, "site"), Path(tmp, "counters")
        site.mkdir()
        counters.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        pythonpath = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
        snapshots: dict[str, dict[int, dict]] = {}
        statuses: dict[str, list[int]] = {}
        with local_server(
            args,
            module=args.module,
            cwd=args.repo.resolve(),
            extra_config={"encode_processes": args.encode_processes},
            extra_env={"PYTHONPATH": pythonpath, COUNTER_ENV: str(counters)},
        ) as (url, token, _pid):
            snapshots["ready"] = read_counters(counters)
            for mode, params in modes.items():
                send(url, token, image, params, 1)  # warm-up: first-use set-up stays out of the numbers
                time.sleep(SETTLE_S)
                snapshots[f"{mode}-start"] = read_counters(counters)
                statuses[mode] = send(url, token, image, params, args.requests)
                time.sleep(SETTLE_S)
                snapshots[f"{mode}-end"] = read_counters(counters)
        snapshots["stopped"] = read_counters(counters)  # local_server waited for the exit

    family = snapshots["stopped"]
    report(args, image, {name: by_kind(records, family) for name, records in snapshots.items()}, statuses)


def per_request(snapshots: dict, mode: str, key: str, requests: int) -> dict[str, float]:
    """Mean ``key`` (bytes or messages) per measured request of one mode, per process kind."""
    changes = delta(snapshots[f"{mode}-end"], snapshots[f"{mode}-start"], key)
    return {kind: value / requests for kind, value in changes.items()}


def report(args: argparse.Namespace, image: bytes, snapshots: dict, statuses: dict[str, list[int]]) -> None:
    final = snapshots["stopped"]
    columns = {
        "json B/req": per_request(snapshots, "json", "bytes", args.requests),
        "json msgs": per_request(snapshots, "json", "messages", args.requests),
        "glb B/req": per_request(snapshots, "glb", "bytes", args.requests),
        "glb msgs": per_request(snapshots, "glb", "messages", args.requests),
        "startup B": {kind: row["bytes"] for kind, row in snapshots["ready"].items()},
        "shutdown B": delta(final, snapshots["glb-end"], "bytes"),
        "senders": {kind: row["processes"] for kind, row in final.items()},
    }
    seen = {code for codes in statuses.values() for code in codes}
    print(f"\nrepo {args.repo}  module {args.module}  encode_processes {args.encode_processes}")
    print(
        f"image {len(image):,} B JPEG, uv_size {args.uv_size}, formats {args.formats}, "
        f"{args.requests} measured requests per mode, HTTP statuses {sorted(seen)}"
    )
    print(f"{'process kind (< parent)':<30}" + "".join(f"{name:>12}" for name in columns))
    kinds = sorted(final, key=lambda k: (not k.startswith("api"), k))
    for kind in [*kinds, "total"]:
        cells = [sum(col.values()) if kind == "total" else col.get(kind, 0) for col in columns.values()]
        print(f"{kind:<30}" + "".join(f"{v:>12,.1f}" if "msgs" in n else f"{v:>12,.0f}"
                                      for n, v in zip(columns, cells, strict=True)))  # fmt: skip
    if args.json:
        doc = {
            "repo": str(args.repo), "module": args.module, "encode_processes": args.encode_processes,
            "image_bytes": len(image), "requests": args.requests, "statuses": statuses,
            "columns": columns, "processes": final,
        }  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
