"""Overload at 10x capacity against the real server: the excess gets a fast 503 + Retry-After, the
admitted requests stay within 3x the unloaded latency, and the service recovers once it ends."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.figures import record
from tests.load import Load, Outcome, percentile
from tests.serving import Server, astronaut, launch

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

LONG = os.environ.get("RELIABILITY_LONG") == "1"
OVERLOAD_S = 30 if LONG else 5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # One single-image worker (batching buys little on a CPU and costs latency) and a latency bound
    # on admission: jobs are refused once the wait they would face exceeds 0.1 s.
    server = launch(
        tmp_path_factory.mktemp("overload"), max_batch=1, batch_buckets=[1], torch_threads=1, max_queue=16,
        max_queue_wait_s=0.1, quota_burst=10**6, quota_rate_per_s=10**6, max_wait_ms=0,
    )  # fmt: skip
    server.wait_ready()
    yield server
    server.stop()


def sequential(client: httpx.Client, count: int) -> list[float]:
    photo, latencies = astronaut(), []
    for _ in range(count):
        start = time.perf_counter()
        response = client.post("/v1/reconstruct", params={"formats": "json"}, content=photo,
                               headers={"Content-Type": "image/jpeg"})  # fmt: skip
        assert response.status_code == 200, response.text
        latencies.append(time.perf_counter() - start)
    return latencies


def open_loop(client: httpx.Client, rate: float, seconds: float) -> list[Outcome]:
    """Requests at a fixed ``rate`` per second, whatever the answers: offered load, not a closed loop."""
    photo, outcomes = astronaut(), []

    def one() -> None:
        start = time.perf_counter()
        try:
            response = client.post("/v1/reconstruct", params={"formats": "json"}, content=photo,
                                   headers={"Content-Type": "image/jpeg"})  # fmt: skip
            outcomes.append(Outcome(response.status_code, time.perf_counter() - start,
                                    response.headers.get("retry-after")))  # fmt: skip
        except httpx.TransportError as exc:
            outcomes.append(Outcome(type(exc).__name__, time.perf_counter() - start))

    with ThreadPoolExecutor(128) as threads:
        begin, sent = time.perf_counter(), 0
        while time.perf_counter() - begin < seconds:
            threads.submit(one)
            sent += 1
            time.sleep(max(0.0, begin + sent / rate - time.perf_counter()))
    return outcomes


def test_overload_sheds_fast_and_admitted_stay_fast(server: Server) -> None:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    with httpx.Client(base_url=server.url, headers=server.token("load"), timeout=60, limits=limits) as client:
        unloaded = percentile(sequential(client, 15)[3:], 50)
        closed = Load(server.url, server.token("load"), 2).start()
        time.sleep(4)
        closed.stop()
        capacity = max(1.0, closed.counts()[200] / 4)
        outcomes = open_loop(client, 10 * capacity, OVERLOAD_S)
        time.sleep(1)
        after = percentile(sequential(client, 6)[1:], 50)
    counts = Counter(o.status for o in outcomes)
    admitted = [o.seconds for o in outcomes if o.status == 200]
    shed = [o for o in outcomes if o.status == 503]
    figures = {
        "unloaded p50 (ms)": unloaded * 1000,
        "capacity (images/s)": capacity,
        "offered (requests/s)": 10 * capacity,
        "admitted": counts[200],
        "refused 503": counts[503],
        "admitted p99 (ms)": percentile(admitted, 99) * 1000 if admitted else -1,
        "503 p99 (ms)": percentile([o.seconds for o in shed], 99) * 1000 if shed else -1,
        "after overload p50 (ms)": after * 1000,
    }
    for name, value in figures.items():
        record("overload", name, value)
    assert set(counts) <= {200, 503}, counts
    assert shed and all(o.retry_after for o in shed)
    assert percentile([o.seconds for o in shed], 99) < 0.25  # fast: refused before any work
    assert admitted and percentile(admitted, 99) <= 3 * unloaded
    assert after <= 1.5 * unloaded  # recovered
