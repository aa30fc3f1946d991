"""Capacity and failure of the real service over real HTTP (tests/test_api.py has the happy paths and
errors): a worker killed mid-job, a full queue, deadlines, admission before the body is read, and a
SIGTERM drain.

These freeze, kill and end servers, so they do not share the happy-path server. Three server start-ups:

* ``server`` (tests/api_helpers.py, this module's own instance): the roomy one, for the killed worker;
* ``tight``: one worker, a one-slot queue and a short deadline, for 503/504 and early admission;
* a throw-away one for the SIGTERM drain test, which ends its server.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress

import httpx
import pytest

from tests.api_helpers import server  # noqa: F401  (a fixture)
from tests.serving import (  # noqa: F401  (start_server: a fixture)
    Server,
    assert_problem,
    astronaut,
    post_image,
    start_server,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tight(start_server: Callable[..., Server]) -> Server:  # noqa: F811
    # 1 worker holding at most 2 jobs (2 x max_batch) and 1 more waiting: the 4th concurrent request
    # is refused. A short deadline so that the admitted ones of a frozen worker expire quickly.
    return start_server(
        batch_buckets=[1], max_batch=1, max_wait_ms=0, max_queue=1, request_timeout_s=2,
        quota_burst=100, quota_rate_per_s=100,
    )  # fmt: skip


# ------------------------------------------------------------------------------------ capacity and failure
# A SIGSTOPped worker holds its jobs without finishing them: that makes "in flight", "queue full"
# and "deadline passed" exact states instead of races against how fast the engine happens to be.
@contextmanager
def frozen(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def worker_pid(client: httpx.Client) -> int:
    return client.get("/v1/models").json()["workers"][0]["pid"]


def wait_inflight(client: httpx.Client, jobs: int, timeout_s: float = 30) -> None:
    """Until the pool has handed ``jobs`` jobs to its workers."""
    end = time.monotonic() + timeout_s
    while sum(w["inflight"] for w in client.get("/v1/models").json()["workers"]) < jobs:
        assert time.monotonic() < end, f"fewer than {jobs} jobs reached the workers"
        time.sleep(0.05)


def test_killed_worker_fails_its_jobs_with_503_and_is_replaced(server: Server) -> None:  # noqa: F811
    with server.client("victim") as client, ThreadPoolExecutor(1) as threads:
        pid = worker_pid(client)
        restarts = server.metric("face3d_worker_restarts_total")
        with frozen(pid):
            pending = threads.submit(post_image, client, astronaut(), formats="png")
            wait_inflight(client, 1)
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            response = pending.result()
        assert time.monotonic() - killed_at < 1.5  # supervision notices within a second
        assert_problem(response, 503, "unavailable")
        assert server.metric("face3d_worker_restarts_total") == restarts + 1
        # No worker can take work while the new one loads: refused at once, not queued until then.
        started = time.monotonic()
        refused = post_image(client, astronaut(), formats="png")
        assert_problem(refused, 503, "unavailable")
        assert time.monotonic() - started < 1.0 and int(refused.headers["retry-after"]) >= 1
        assert httpx.get(f"{server.url}/readyz").json()["status"] in ("unavailable", "ready")
        server.wait_ready()
        assert worker_pid(client) != pid
        assert post_image(client, astronaut(), formats="png").status_code == 200


def test_full_queue_503_and_deadline_504(tight: Server) -> None:
    with tight.client() as client, ThreadPoolExecutor(6) as threads, frozen(worker_pid(client)):
        pending = [threads.submit(post_image, client, astronaut(), formats="png") for _ in range(6)]
        responses = [p.result() for p in pending]
    # 2 jobs held by the worker + 1 waiting = 3 admitted, all past their deadline; 3 refused at once.
    assert sorted(r.status_code for r in responses) == [503, 503, 503, 504, 504, 504]
    for response in responses:
        assert_problem(
            response, response.status_code, "overloaded" if response.status_code == 503 else "timeout"
        )
    assert all(int(r.headers["retry-after"]) >= 1 for r in responses if r.status_code == 503)


def test_sigterm_drains_requests_in_flight(start_server: Callable[..., Server]) -> None:  # noqa: F811
    server = start_server(drain_timeout_s=60)  # noqa: F811  (its own server, not the fixture)
    with server.client() as client, ThreadPoolExecutor(3) as threads:
        pid = worker_pid(client)
        with frozen(pid):
            pending = [threads.submit(post_image, client, astronaut(), formats="glb") for _ in range(3)]
            wait_inflight(client, 3)
            server.process.send_signal(signal.SIGTERM)
            terminated = time.monotonic()
            time.sleep(0.5)  # shutdown has begun while all three are still unanswered
            assert not any(p.done() for p in pending)
        responses = [p.result() for p in pending]
    assert [r.status_code for r in responses] == [200, 200, 200]
    # uvicorn re-raises the signal after a clean shutdown, so "killed by SIGTERM" is the normal status.
    assert server.process.wait(60) in (0, -signal.SIGTERM)
    assert time.monotonic() - terminated < server.settings.drain_timeout_s
    assert "Traceback" not in server.log.read_text()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the worker was stopped, not orphaned


def test_admission_is_decided_before_the_body_is_read(tight: Server) -> None:
    """With the queue full, an upload is refused while its body is still on the way (before: the
    server read all of it first, then answered 503)."""
    host, port = tight.url.removeprefix("http://").split(":")
    token = tight.token("early")["Authorization"]
    with tight.client() as client, ThreadPoolExecutor(3) as threads, frozen(worker_pid(client)):
        pending = [threads.submit(post_image, client, astronaut(), formats="png") for _ in range(3)]
        wait_inflight(client, 2)
        time.sleep(0.3)  # the third one waits in the queue: it is full now
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                f"POST /v1/reconstruct HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
                "Content-Type: image/jpeg\r\nContent-Length: 1900000\r\n\r\n".encode()
            )
            started = time.monotonic()
            sock.settimeout(5)
            head = sock.recv(4096).decode("latin-1")  # no body byte sent yet
        assert head.startswith("HTTP/1.1 503"), head[:200]
        assert "retry-after" in head.lower() and time.monotonic() - started < 1.0
        for future in pending:
            future.result()
