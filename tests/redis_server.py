"""A real redis-server for tests: started on a free port in a temp dir, stopped afterwards.

CI installs the Debian package (.ci/run); a developer machine without it skips these tests with a
message that says how to get it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import free_port

REDIS_BINARY = shutil.which("redis-server")


def _wait(port: int, process: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    import redis

    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            if client.ping():
                return
        except redis.ConnectionError:
            time.sleep(0.05)
    raise TimeoutError("redis-server did not answer")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """redis://127.0.0.1:<port>/0 of a private redis-server (no persistence, loopback only)."""
    if REDIS_BINARY is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; CI installs it)")
    folder: Path = tmp_path_factory.mktemp("redis")
    port = free_port()
    process = subprocess.Popen(
        [REDIS_BINARY, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
         "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
