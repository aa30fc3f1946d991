"""A small closed-loop load generator for the reliability suites: N threads, each posting photos in a
loop until told to stop, recording every outcome (status code or transport error) and latency."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.serving import astronaut


@dataclass
class Outcome:
    status: int | str  # HTTP status, or the transport error's class name
    seconds: float
    retry_after: str | None = None


@dataclass
class Load:
    """Start with ``start()``, end with ``stop()``; ``outcomes`` holds every request's result."""

    url: str
    headers: dict[str, str]
    concurrency: int
    params: dict[str, str] = field(default_factory=lambda: {"formats": "json"})
    keep_alive: bool = True
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        photo = astronaut()
        limits = httpx.Limits() if self.keep_alive else httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=120, limits=limits) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    response = client.post("/v1/reconstruct", params=self.params, content=photo,
                                           headers={"Content-Type": "image/jpeg"})  # fmt: skip
                    outcome = Outcome(response.status_code, time.perf_counter() - start,
                                      response.headers.get("retry-after"))  # fmt: skip
                except httpx.TransportError as exc:
                    outcome = Outcome(type(exc).__name__, time.perf_counter() - start)
                self.outcomes.append(outcome)
                if outcome.status != 200:
                    time.sleep(0.05)  # a refused client backs off a little, as real ones do

    def start(self) -> Load:
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.concurrency)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = 180) -> Load:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        assert not any(t.is_alive() for t in self._threads), "a request never got an answer"
        return self

    def counts(self) -> Counter[int | str]:
        return Counter(o.status for o in self.outcomes)


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def open_loop(url: str, headers: dict[str, str], photo: bytes, rate: float, seconds: float) -> list[Outcome]:
    """Requests at a fixed ``rate`` per second for ``seconds``, whatever the answers (offered load,
    not a closed loop)."""
    from concurrent.futures import ThreadPoolExecutor

    outcomes: list[Outcome] = []
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    with httpx.Client(base_url=url, headers=headers, timeout=60, limits=limits) as client:

        def one() -> None:
            start = time.perf_counter()
            try:
                response = client.post("/v1/reconstruct", params={"formats": "json"}, content=photo,
                                       headers={"Content-Type": "image/jpeg"})  # fmt: skip
                outcomes.append(Outcome(response.status_code, time.perf_counter() - start,
                                        response.headers.get("retry-after")))  # fmt: skip
            except httpx.TransportError as exc:
                outcomes.append(Outcome(type(exc).__name__, time.perf_counter() - start))

        with ThreadPoolExecutor(64) as threads:
            begin, sent = time.perf_counter(), 0
            while time.perf_counter() - begin < seconds:
                threads.submit(one)
                sent += 1
                time.sleep(max(0.0, begin + sent / rate - time.perf_counter()))
    return outcomes


def _main() -> None:
    """``python -m tests.load URL TOKEN PHOTO RATE SECONDS``: run ``open_loop`` in a process of its
    own (the overload test starts it with a lower CPU priority, as if the clients were elsewhere) and
    print the outcomes as JSON lines."""
    import json
    import sys
    from pathlib import Path

    url, token, photo, rate, seconds = sys.argv[1:6]
    headers = {"Authorization": token}
    for outcome in open_loop(url, headers, Path(photo).read_bytes(), float(rate), float(seconds)):
        print(json.dumps(outcome.__dict__))


if __name__ == "__main__":
    _main()
