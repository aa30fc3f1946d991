"""Requests through a FastAPI app in process, for the tests that need no server: no socket and no
lifespan, so no workers start."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI


def asgi_requests(
    app: FastAPI, *requests: tuple[str, str, dict[str, str]], raise_app_exceptions: bool = True
) -> list[httpx.Response]:
    """Each (method, path, headers) in order, one client; ``raise_app_exceptions=False`` answers an
    unhandled error as the server would (500) instead of raising it in the test."""

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.request(method, path, headers=headers) for method, path, headers in requests]

    return asyncio.run(go())
