"""Upload abuse against the real server: many parts, huge headers, slow bodies, parallel large bodies.
Memory stays bounded (the upload budget), refusals are fast, and /livez stays fast throughout."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.figures import record
from tests.serving import Server, assert_problem, hardened, status_kb  # noqa: F401  (hardened: a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


@pytest.fixture(scope="module")
def client(hardened: Server) -> Iterator[httpx.Client]:  # noqa: F811
    with hardened.client("uploader") as client:
        client.get("/v1/models")
        yield client


def test_a_thousand_and_one_parts(client: httpx.Client, hardened: Server) -> None:  # noqa: F811
    images = [("images", (f"{k}.jpg", b"x", "image/jpeg")) for k in range(1001)]
    response = client.post("/v1/reconstruct/batch", files=images)
    assert_problem(response, 413, "too-large")
    fields = [("images", ("a.jpg", b"x", "image/jpeg"))] + [(f"f{k}", (None, "v")) for k in range(1000)]
    assert_problem(client.post("/v1/reconstruct/batch", files=fields), 422, "validation")


def _multipart(part_headers: bytes) -> tuple[bytes, str]:
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\n".encode() + part_headers
        + b"\r\n\r\nxyz\r\n" + f"--{boundary}--\r\n".encode()
    )  # fmt: skip
    return body, f"multipart/form-data; boundary={boundary}"


def test_huge_part_headers(client: httpx.Client) -> None:
    long_value = b'Content-Disposition: form-data; name="image"; filename="' + b"a" * 100_000 + b'"'
    many = b"\r\n".join(f"X-{k}: v".encode() for k in range(500))
    for headers in (long_value, many):
        body, media = _multipart(headers)
        assert_problem(client.post("/v1/reconstruct", content=body, headers={"Content-Type": media}), 422,
                       "validation")  # fmt: skip


def test_huge_request_headers_are_refused(client: httpx.Client, hardened: Server) -> None:  # noqa: F811
    try:
        response = client.get("/v1/models", headers={"X-Big": "v" * 200_000})
        if response.status_code == 400:  # uvicorn's HTTP parser refused a head that came in pieces
            assert response.text == "Invalid HTTP request received."
        else:  # a head that came whole reaches the app, which refuses anything over 32 KB
            assert_problem(response, 431, "headers-too-large")
    except httpx.TransportError:
        pass  # the connection was closed on us: also a refusal
    assert httpx.get(f"{hardened.url}/livez", timeout=5).status_code == 200


def _slow_upload(
    url: str, token: str, size: int, seconds: float, result: dict[str, object], multipart: bool = False
) -> None:
    """Declare a body of about ``size`` bytes and send it over ``seconds``; record the status line.
    The body is junk: a raw "JPEG", or a multipart form holding it as the ``image`` file."""
    host, port = url.removeprefix("http://").split(":")
    media, body = "image/jpeg", b"\xff" * size
    if multipart:
        media = "multipart/form-data; boundary=B0und"
        body = (b'--B0und\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
                + body + b"\r\n--B0und--\r\n")  # fmt: skip
    start = time.monotonic()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"POST /v1/reconstruct HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
            f"Content-Type: {media}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        chunk = 64 * 1024
        steps = -(-len(body) // chunk)
        sock.settimeout(seconds + 30)
        try:
            for step in range(steps):
                sock.sendall(body[step * chunk : (step + 1) * chunk])
                time.sleep(max(0.0, start + seconds * (step + 1) / steps - time.monotonic()))
        except OSError:
            pass  # the server answered early and closed
        head = sock.recv(4096).decode("latin-1")
    result["status"] = int(head.split()[1]) if head else 0
    result["seconds"] = time.monotonic() - start


def _livez_latencies(url: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            assert client.get(f"{url}/livez").status_code == 200
            out.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.05)


def test_slow_bodies_time_out_and_livez_stays_fast(hardened: Server) -> None:  # noqa: F811
    token = hardened.token("slow")["Authorization"]
    deadline = hardened.settings.body_timeout_s
    results: list[dict[str, object]] = [{} for _ in range(4)]
    stop, latencies = threading.Event(), []
    probe = threading.Thread(target=_livez_latencies, args=(hardened.url, stop, latencies))
    probe.start()
    uploads = [
        threading.Thread(target=_slow_upload, args=(hardened.url, token, 1_000_000, 4 * deadline, r))
        for r in results
    ]
    for thread in uploads:
        thread.start()
    for thread in uploads:
        thread.join()
    stop.set()
    probe.join()
    assert [r["status"] for r in results] == [408] * 4
    assert all(float(r["seconds"]) < deadline + 2 for r in results)  # type: ignore[arg-type]
    p90, worst = statistics.quantiles(latencies, n=10)[8], max(latencies)
    record("uploads", "slow bodies: /livez p90 (ms)", p90)
    record("uploads", "slow bodies: /livez max (ms)", worst)
    assert p90 < 100 and worst < 1000  # (a shared 2-core CI box adds its own scheduling noise)


def test_parallel_large_uploads_are_memory_bounded(hardened: Server) -> None:  # noqa: F811
    """20 uploads of 7 MB at once (raw and multipart) against a 40 MB upload budget: the ones that do
    not fit get 503 at once (before their bodies are read), the API's memory grows by the budget at
    most, and the event loop (parsing runs in threads) keeps answering /livez."""
    token = hardened.token("bulk")["Authorization"]
    api = hardened.process.pid
    before = status_kb(api, "VmHWM")
    results: list[dict[str, object]] = [{} for _ in range(20)]
    stop, latencies = threading.Event(), []
    probe = threading.Thread(target=_livez_latencies, args=(hardened.url, stop, latencies))
    probe.start()
    uploads = [
        threading.Thread(target=_slow_upload, args=(hardened.url, token, 7_000_000, 1.0, r, k % 2 == 1))
        for k, r in enumerate(results)
    ]
    for thread in uploads:
        thread.start()
    for thread in uploads:
        thread.join()
    stop.set()
    probe.join()
    statuses = sorted(int(r["status"]) for r in results)  # type: ignore[call-overload]
    refused = [float(r["seconds"]) for r in results if r["status"] == 503]  # type: ignore[arg-type]
    growth_mb = (status_kb(api, "VmHWM") - before) / 1024
    record("uploads", "20 parallel 7 MB uploads: accepted", statuses.count(400))
    record("uploads", "20 parallel 7 MB uploads: refused 503", statuses.count(503))
    record("uploads", "20 parallel 7 MB uploads: API peak RSS growth (MB)", growth_mb)
    record("uploads", "20 parallel 7 MB uploads: /livez p90 (ms)", statistics.quantiles(latencies, n=10)[8])
    assert set(statuses) <= {400, 503} and 1 <= statuses.count(400) <= 5  # 40 MB budget / 7 MB
    assert refused and max(refused) < 1.0  # refused up front, not after reading 7 MB
    assert growth_mb < 150
