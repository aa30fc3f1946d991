"""Hostile images against the real server: each is reconstructed correctly or refused with a 4xx, a
refusal costs under 100 ms of server time (Server-Timing), and memory stays bounded."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests import hostile_images as hostile
from tests.figures import record
from tests.serving import Server, assert_problem, hardened, status_kb  # noqa: F401  (hardened: a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

FAST_MS = 100.0


def server_ms(response: httpx.Response) -> float:
    match = re.search(r"app;dur=([\d.]+)", response.headers.get("server-timing", ""))
    assert match, response.headers
    return float(match.group(1))


@pytest.fixture(scope="module")
def client(hardened: Server) -> Iterator[httpx.Client]:  # noqa: F811
    api = hardened.process.pid
    before = status_kb(api, "VmRSS")
    with hardened.client("hostile") as client:
        client.get("/v1/models")  # first-call costs (thread pool, imports) are not the images' doing
        yield client
    after = status_kb(api, "VmRSS")
    record("hostile images", "API RSS before (MB)", before / 1024)
    record("hostile images", "API RSS after (MB)", after / 1024)
    assert after - before < 300 * 1024  # the API process holds no hostile bytes once answered


def post(client: httpx.Client, data: bytes, media: str = "image/jpeg", **params: object) -> httpx.Response:
    return client.post("/v1/reconstruct", params={"formats": "json", **params}, content=data,
                       headers={"Content-Type": media})  # fmt: skip


REFUSED: dict[str, tuple[Callable[[], bytes], str, int, str]] = {
    "zero bytes": (lambda: b"", "image/jpeg", 400, "invalid-image"),
    "decompression bomb 50000x50000 png": (
        lambda: hostile.bomb_png(50000, 50000),
        "image/png",
        413,
        "too-large",
    ),
    "iCCP chunk inflating to 200 MB": (hostile.iccp_bomb, "image/png", 400, "invalid-image"),
    "PNG with 64 MB of text chunks": (
        lambda: hostile.text_chunks_png(64_000_000, 60_000),
        "image/png",
        413,
        "too-large",
    ),
    "PNG with 7 MB of tiny text chunks": (
        lambda: hostile.text_chunks_png(7_000_000),
        "image/png",
        400,
        "invalid-image",
    ),
    "progressive JPEG with 200 scans": (lambda: hostile.many_scans(200), "image/jpeg", 400, "invalid-image"),
    "animated GIF": (lambda: hostile.animated("GIF"), "image/jpeg", 415, "unsupported-type"),
    "PDF polyglot": (hostile.pdf_then_jpeg, "application/octet-stream", 400, "invalid-image"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_fast(client: httpx.Client, case: str) -> None:
    make, media, status, slug = REFUSED[case]
    response = post(client, make(), media)
    assert_problem(response, status, slug)
    record("hostile images", f"{case}: server ms", server_ms(response))
    assert server_ms(response) < FAST_MS, case


HANDLED: dict[str, tuple[Callable[[], bytes], str, set[int]]] = {
    "16-bit RGB PNG": (hostile.png16, "image/png", {200}),
    "CMYK JPEG": (hostile.cmyk_jpeg, "image/jpeg", {200}),
    "YCCK JPEG": (hostile.ycck_jpeg, "image/jpeg", {200, 400, 422}),
    "animated WebP (first frame)": (lambda: hostile.animated("WEBP"), "image/webp", {200}),
    "APNG (first frame)": (lambda: hostile.animated("PNG"), "image/png", {200}),
    "JPEG + zip polyglot": (hostile.zip_polyglot, "image/jpeg", {200}),
    "PNG + HTML polyglot": (hostile.html_polyglot, "image/png", {200}),
    "1 x 20000": (lambda: hostile.line(1, 20000), "image/png", {422}),
    "20000 x 1": (lambda: hostile.line(20000, 1), "image/png", {422}),
    "decompression bomb 5000x5000 (75 MB)": (lambda: hostile.bomb_png(5000, 5000), "image/png", {422}),
    "truncated JPEG": (lambda: hostile.encode(hostile.face(), "JPEG")[:20000], "image/jpeg", {400}),
    "progressive JPEG with 50 scans": (lambda: hostile.many_scans(50), "image/jpeg", {200}),
}


@pytest.mark.parametrize("case", list(HANDLED))
def test_handled(client: httpx.Client, case: str) -> None:
    make, media, statuses = HANDLED[case]
    response = post(client, make(), media)
    assert response.status_code in statuses, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "Pillow" not in response.text and "cannot identify" not in response.text
    elif case != "YCCK JPEG":
        assert len(response.json()["faces"]) == 1
    record("hostile images", f"{case}: server ms", server_ms(response))


def test_exif_orientations_are_reconstructed_upright(client: httpx.Client) -> None:
    boxes = {}
    for orientation in range(1, 9):
        response = post(client, hostile.oriented(orientation))
        assert response.status_code == 200, (orientation, response.text)
        body = response.json()
        assert body["image"] == {"width": 400, "height": 512}, orientation  # upright size, whatever stored
        boxes[orientation] = body["faces"][0]["bbox"]
    for orientation, box in boxes.items():
        assert max(abs(a - b) for a, b in zip(box, boxes[1], strict=True)) < 8, (orientation, box, boxes[1])


def test_transposed_pair_in_one_batch_is_memory_bounded(client: httpx.Client, hardened: Server) -> None:  # noqa: F811
    """40000x1000 and 1000x40000 in one batch used to be padded to 40000x40000 each (9.6 GB for the
    pair); batches are now split so no backend call pads past max_batch_pixels."""
    tall, wide = hostile.flat_jpeg(1000, 40000), hostile.flat_jpeg(40000, 1000)
    [worker] = hardened.worker_pids()
    peak_before = status_kb(worker, "VmPeak")
    files = [("images", (f"{k}.jpg", data, "image/jpeg")) for k, data in enumerate([tall, wide, tall, wide])]
    response = client.post("/v1/reconstruct/batch", params={"formats": "json"}, files=files)
    assert response.status_code == 200, response.text
    assert [item.get("error", {}).get("status", 200) for item in response.json()["items"]] == [422] * 4
    peak_after, resident_peak = status_kb(worker, "VmPeak"), status_kb(worker, "VmHWM")
    record("hostile images", "transposed pairs: worker VmPeak growth (MB)", (peak_after - peak_before) / 1024)
    record("hostile images", "transposed pairs: worker peak RSS (MB)", resident_peak / 1024)
    assert peak_after - peak_before < 3 * 1024 * 1024  # < 3 GB more address space, not +9.6 GB per pair
