"""Auth as the API applies it: the FastAPI dependency's problem+json answers (401, 403, 429, 404,
500 without internals), dev mode, token-free logs, and the per-tenant token-bucket quota."""

from __future__ import annotations

import json
import logging
import threading

import httpx
import pytest
from fastapi import FastAPI

from face3d.service.api.auth import mint_token
from face3d.service.api.deps import ReconstructCaller, TenantQuota
from face3d.service.api.problems import install_handlers
from face3d.service.api.quota import LocalQuota as QuotaLimiter
from face3d.service.config import Settings
from face3d.service.errors import Problem
from face3d.service.logs import JsonFormatter
from tests.asgi import asgi_requests


def test_quota_token_bucket() -> None:
    now = [100.0]
    quota = QuotaLimiter(rate_per_s=2, burst=3, clock=lambda: now[0])
    for _ in range(3):
        quota.acquire("alice")
    with pytest.raises(Problem) as info:
        quota.acquire("alice")
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "1"
    quota.acquire("bob", cost=3)  # tenants do not share buckets
    now[0] += 0.5  # refills one token at 2/s
    quota.acquire("alice")
    with pytest.raises(Problem):
        quota.acquire("alice")
    now[0] += 100
    quota.acquire("alice", cost=3)  # never more than burst accumulates
    with pytest.raises(Problem):
        quota.acquire("alice")
    with pytest.raises(Problem, match="exceeds the quota burst"):
        quota.acquire("carol", cost=4)


def test_quota_is_thread_safe() -> None:
    quota = QuotaLimiter(rate_per_s=1e-9, burst=50, clock=lambda: 0.0)
    granted = []

    def hammer() -> None:
        for _ in range(100):
            try:
                quota.acquire("alice")
                granted.append(1)
            except Problem:
                pass

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 50


@pytest.fixture
def app(hs: Settings) -> FastAPI:
    app = FastAPI()
    app.state.settings = hs
    app.state.quota = QuotaLimiter(rate_per_s=0.5, burst=2)
    install_handlers(app)

    @app.post("/crash")
    def crash() -> None:
        raise RuntimeError("secret internals")

    @app.post("/v1/reconstruct")
    async def reconstruct(caller: ReconstructCaller, quota: TenantQuota) -> dict:
        await quota.charge(caller.tenant, 1)
        return {"tenant": caller.tenant}

    return app


def post_all(app: FastAPI, path: str, headers_list: list[dict[str, str]]) -> list[httpx.Response]:
    """POST ``path`` once per headers dict, in order, through the ASGI app (no socket needed)."""
    return asgi_requests(app, *[("POST", path, headers) for headers in headers_list])


def test_dependency_maps_auth_to_problem_json(app: FastAPI, hs: Settings) -> None:
    reader = mint_token(hs, "alice", ["results:read"], ttl_s=60)
    good = {"Authorization": f"Bearer {mint_token(hs, 'alice', ['reconstruct'], ttl_s=60)}"}
    missing, forbidden, *ok = post_all(
        app, "/v1/reconstruct", [{}, {"Authorization": f"Bearer {reader}"}, good, good, good]
    )
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"].endswith("/unauthorized")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert forbidden.status_code == 403 and forbidden.json()["type"].endswith("/forbidden")
    assert [r.status_code for r in ok] == [200, 200, 429]
    assert ok[2].json()["type"].endswith("/quota-exceeded") and ok[2].headers["retry-after"] == "2"
    (unknown,) = post_all(app, "/nope", [good])
    assert unknown.status_code == 404 and unknown.json()["type"].endswith("/not-found")


def test_unexpected_errors_are_problem_json_without_internals(app: FastAPI) -> None:
    (response,) = asgi_requests(app, ("POST", "/crash", {}), raise_app_exceptions=False)
    assert response.status_code == 500 and response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/internal") and "secret" not in response.text


def test_dev_mode_needs_no_token(app: FastAPI) -> None:
    app.state.settings = Settings(auth_disabled_dev=True)
    (response,) = post_all(app, "/v1/reconstruct", [{}])
    assert response.status_code == 200 and response.json() == {"tenant": "dev"}


def test_logs_never_contain_tokens(hs: Settings) -> None:
    token = mint_token(hs, "alice", ["reconstruct"], ttl_s=60)
    record = logging.makeLogRecord(
        {"msg": "auth header Bearer %s", "args": (token,), "image": b"\xff\xd8" * 100, "levelname": "INFO"}
    )
    line = JsonFormatter().format(record)
    assert token not in line and token.split(".")[1] not in line
    entry = json.loads(line)
    assert entry["image"] == "<200 bytes>" and "<redacted" in entry["message"]
