"""A real `face3d serve` for tests: a subprocess on a free port, real HTTP, and what tests need to
look inside it (tokens, metrics, process trees, memory).

Used by tests/test_api.py and the reliability suites. ``shared_server`` starts one server per
distinct config for the whole pytest session (several modules use the same hardened server: one
start instead of one per module); ``start_server`` (a fixture) starts throw-away ones.
"""

from __future__ import annotations

import atexit
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image

from face3d.service.api.auth import mint_token
from face3d.service.config import Settings, load_settings
from scripts.photos import photo_bytes

ROOT = Path(__file__).resolve().parents[1]
SECRET = "test-secret-" + "x" * 40
PROBLEM = "application/problem+json"
ALL_SCOPES = ("reconstruct", "results:read", "results:delete")

BASE_CONFIG: dict[str, Any] = {
    "host": "127.0.0.1",
    "devices": "cpu",
    "cpu_workers": 1,
    "compile": False,
    "batch_buckets": [1, 2, 4],
    "max_batch": 4,
    "max_wait_ms": 50,
    "uv_size": 256,
    "max_uv_size": 1024,
    "max_body_bytes": 2_000_000,
    "max_pixels": 4_000_000,
    "max_batch_items": 4,
    "request_timeout_s": 120,
    # Admission refuses work it estimates will wait longer than this; functional tests run on loaded CI
    # machines, so they get room (the overload suite sets its own, tight value).
    "max_queue_wait_s": 120,
    "drain_timeout_s": 60,
    "quota_rate_per_s": 2,
    "quota_burst": 12,
    "jwt_secret": SECRET,
    "log_level": "warning",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One `face3d serve` process and what a test needs to talk to it."""

    process: subprocess.Popen[bytes]
    url: str
    settings: Settings
    log: Path
    private_key: str | None = None  # PEM, for servers verifying RS*/ES* tokens
    kid: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def token(self, tenant: str, scopes: tuple[str, ...] = ALL_SCOPES, ttl_s: int = 600) -> dict[str, str]:
        headers = {"kid": self.kid} if self.kid else None
        if self.private_key is None:
            token = mint_token(self.settings, tenant, scopes, ttl_s)
        else:
            import jwt

            now = int(time.time())
            claims = {"iss": self.settings.jwt_issuer, "aud": self.settings.jwt_audience, "sub": tenant,
                      "scope": " ".join(scopes), "iat": now, "exp": now + ttl_s}  # fmt: skip
            token = jwt.encode(claims, self.private_key, self.settings.jwt_algorithms[0], headers=headers)
        return {"Authorization": f"Bearer {token}"}

    def client(self, tenant: str = "alice", scopes: tuple[str, ...] = ALL_SCOPES) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.token(tenant, scopes), timeout=180)

    def wait_ready(self, timeout_s: float = 300) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready in {timeout_s} s:\n{self.log.read_text()[-3000:]}")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of one sample family's values in /metrics matching ``labels``."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
            if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
                total += float(match.group(2))
        return total

    def models(self) -> dict[str, Any]:
        with self.client("observer", ("results:read",)) as client:
            return client.get("/v1/models").json()

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in self.models()["workers"] if w["pid"]]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def launch(folder: Path, env_extra: dict[str, str] | None = None, **overrides: Any) -> Server:
    """Start a server (not waiting for it to be ready): config file in ``folder``, log next to it.

    The server runs in its own session, so ``session_pids`` finds every process it started.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {**BASE_CONFIG, "port": port, "results_dir": str(folder / "results"), **overrides}
    path = folder / "api_config.yaml"
    path.write_text(yaml.safe_dump(config))
    log = folder / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACE3D_") or k == "FACE3D_CACHE_DIR"}
    env.update(env_extra or {})
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "face3d.service.cli.main", "serve", "--config", str(path)],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    secret = (env_extra or {}).get("FACE3D_JWT_SECRET")
    settings = load_settings(path, **({"jwt_secret": secret} if secret else {}))
    return Server(process, f"http://127.0.0.1:{port}", settings, log)


@pytest.fixture(scope="module")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """Start throw-away servers (ready on return); all are stopped when the module ends."""
    started: list[Server] = []

    def start(**overrides: Any) -> Server:
        server = launch(tmp_path_factory.mktemp("server"), **overrides)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


_SHARED: dict[str, Server] = {}


def shared_server(tmp_root: Path, name: str, **overrides: Any) -> Server:
    """One server per ``name`` for the whole test session (stopped at exit)."""
    if name not in _SHARED:
        server = launch(tmp_root / name, **overrides)
        _SHARED[name] = server
        atexit.register(server.stop)
        server.wait_ready()
    return _SHARED[name]


HARDENED: dict[str, Any] = {
    "max_body_bytes": 8_000_000,
    "max_pixels": 40_000_000,
    "max_batch_pixels": 20_000_000,
    "upload_buffer_bytes": 40_000_000,
    "body_timeout_s": 3,
    "max_wait_ms": 5,
    "quota_rate_per_s": 1000,
    "quota_burst": 5000,
    "max_batch_items": 8,
}
"""The config of the session's shared server: roomy quota, short body deadline, a 40 MB upload
budget, max_pixels of the default config (so real-size hostile images fit)."""


@pytest.fixture(scope="session")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Server:
    return shared_server(tmp_path_factory.getbasetemp(), "hardened", **HARDENED)


# ------------------------------------------------------------------------------------ helpers
def mesh_sizes() -> tuple[int, int, int]:
    """(OBJ vertices, triangles, vertices once split at UV seams) of the default backend's meshes."""
    from face3d.models.backends import backend_class
    from face3d.service.config import Settings

    layout = backend_class(Settings.model_fields["backend"].default).mesh_export().layout
    return layout.vertex_count, len(layout.triangles), len(layout.gl_vertex)


def blank_png(size: int = 320) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (128, 128, 128)).save(buf, "PNG")
    return buf.getvalue()


def astronaut() -> bytes:
    return photo_bytes("astronaut")


def post_image(client: httpx.Client, data: bytes, **params: Any) -> httpx.Response:
    return client.post("/v1/reconstruct", params=params, files={"image": ("photo.jpg", data, "image/jpeg")})


def post_raw(client: httpx.Client, data: bytes, content_type: str, **params: Any) -> httpx.Response:
    return client.post("/v1/reconstruct", params=params, content=data, headers={"Content-Type": content_type})


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["type"].endswith("/" + slug) and body["status"] == status
    return body


def session_pids(leader: int) -> list[int]:
    """Every live process in the session ``leader`` started (the server and all its children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader and fields[0] != "Z":  # fields[3] = session id, [0] = state
            pids.append(int(entry.name))
    return pids


def status_kb(pid: int, key: str) -> int:
    """A /proc/<pid>/status value in kB: VmRSS (resident now), VmHWM (peak resident), VmPeak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.1) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()
