"""Process-wide limits, in process (no server): requests in flight, header size, upload memory."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from face3d.service.api.middleware import MAX_HEADER_BYTES, RequestContext
from face3d.service.api.problems import install_handlers
from face3d.service.api.uploads import UploadBudget
from face3d.service.errors import Problem
from tests.asgi import asgi_requests


def _app(max_inflight: int) -> tuple[FastAPI, asyncio.Event]:
    app = FastAPI()
    release = asyncio.Event()
    install_handlers(app)
    app.add_middleware(RequestContext, max_inflight=max_inflight)

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await release.wait()
        return {"ok": "yes"}

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    return app, release


def test_requests_beyond_the_inflight_limit_get_503_at_once() -> None:
    async def scenario() -> list[httpx.Response]:
        app, release = _app(max_inflight=2)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            held = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
            await asyncio.sleep(0.05)
            refused = await client.get("/slow")
            probe = await client.get("/livez")  # probes never count against the limit
            release.set()
            return [refused, probe, *(await asyncio.gather(*held))]

    refused, probe, *held = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.json()["type"].endswith("/overloaded")
    assert (
        refused.headers["retry-after"] == "1"
        and refused.headers["content-type"] == "application/problem+json"
    )
    assert probe.status_code == 200 and [r.status_code for r in held] == [200, 200]


def test_oversized_headers_get_431() -> None:
    app, _ = _app(max_inflight=10)
    (response,) = asgi_requests(app, ("GET", "/livez", {"X-Big": "v" * (MAX_HEADER_BYTES + 1)}))
    assert response.status_code == 431 and response.json()["type"].endswith("/headers-too-large")


def test_upload_budget_never_waits_and_never_overcommits() -> None:
    budget = UploadBudget(100)
    budget.take(60)
    with pytest.raises(Problem) as info:
        budget.take(41)
    assert info.value.status == 503 and info.value.headers["Retry-After"]
    budget.take(40)
    budget.give(60)
    budget.take(60)
    assert budget.used == 100
