"""Quota in units of work, refunds, and one bucket per tenant across replicas (a real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from face3d.service.api.quota import LocalQuota, RedisQuota, make_quota, work_units
from face3d.service.config import Settings
from face3d.service.errors import Problem
from tests.redis_server import redis_url  # noqa: F401  (a fixture)
from tests.serving import SECRET, Server, assert_problem, blank_png, launch, post_image

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


def test_units_of_work() -> None:
    assert [work_units(size, False, 4) for size in (256, 1024, 2048, 4096)] == [1, 1, 1, 4]
    assert work_units(2048, True, 4) == 4 and work_units(4096, True, 4) == 16
    assert work_units(1024, False, 4, images=3) == 3


def test_local_refund_never_exceeds_the_burst() -> None:
    quota = LocalQuota(rate_per_s=1e-9, burst=5, clock=lambda: 0.0)
    quota.acquire("alice", 5)
    quota.give_back("alice", 3)
    quota.give_back("alice", 30)
    quota.acquire("alice", 5)
    with pytest.raises(Problem):
        quota.acquire("alice", 1)


def _redis(url: str, burst: int = 10, rate: float = 1e-6) -> RedisQuota:
    return RedisQuota(url, rate_per_s=rate, burst=burst)


def _outcome(coroutine) -> int:  # type: ignore[no-untyped-def]
    try:
        asyncio.run(coroutine)
    except Problem as problem:
        return problem.status
    return 200


def test_replicas_share_one_bucket(redis_url: str) -> None:  # noqa: F811
    async def scenario() -> list[object]:
        a, b = _redis(redis_url), _redis(redis_url)  # two API replicas
        seen: list[object] = []
        await a.charge("acme", 6)
        await b.charge("acme", 4)
        for replica in (a, b):
            try:
                await replica.charge("acme", 1)
            except Problem as problem:
                seen.append((problem.status, problem.headers.get("Retry-After")))
        await b.refund("acme", 2)  # e.g. that request turned out to be a 415
        await a.charge("acme", 2)
        await a.charge("other-tenant", 10)  # tenants never share
        for replica in (a, b):
            await replica.close()
        return seen

    seen = asyncio.run(scenario())
    assert len(seen) == 2 and all(status == 429 and int(wait) >= 1 for status, wait in seen)  # type: ignore[misc]


def test_concurrent_charges_are_atomic(redis_url: str) -> None:  # noqa: F811
    async def scenario() -> int:
        replicas = [_redis(redis_url, burst=50) for _ in range(4)]

        async def one(k: int) -> bool:
            try:
                await replicas[k % 4].charge("race", 1)
                return True
            except Problem:
                return False

        granted = sum(await asyncio.gather(*(one(k) for k in range(200))))
        for replica in replicas:
            await replica.close()
        return granted

    assert asyncio.run(scenario()) == 50


def test_refill_uses_the_redis_clock(redis_url: str) -> None:  # noqa: F811
    async def scenario() -> None:
        quota = _redis(redis_url, burst=2, rate=20.0)  # 20 units/s
        await quota.charge("fast", 2)
        with pytest.raises(Problem):
            await quota.charge("fast", 1)
        await asyncio.sleep(0.2)  # ~4 units refilled, capped at the burst of 2
        await quota.charge("fast", 2)
        await quota.close()

    asyncio.run(scenario())


def test_unreachable_redis_refuses_with_503() -> None:
    quota = _redis("redis://127.0.0.1:1/0")
    with pytest.raises(Problem) as info:
        asyncio.run(quota.charge("alice", 1))
    assert info.value.status == 503 and info.value.headers["Retry-After"]
    asyncio.run(quota.refund("alice", 1))  # a lost refund is logged, never an error


def test_make_quota_picks_the_store() -> None:
    assert isinstance(make_quota(Settings(jwt_secret=SECRET)), LocalQuota)
    shared = make_quota(Settings(jwt_secret=SECRET, quota_redis_url="redis://127.0.0.1:6379/0"))
    assert isinstance(shared, RedisQuota)
    with pytest.raises(ValueError, match="quota_redis_url"):
        Settings(jwt_secret=SECRET, quota_redis_url="http://example.com")


# ------------------------------------------------------------------------------------ over HTTP
QUOTA = {"quota_burst": 6, "quota_rate_per_s": 0.001, "max_faces": 1}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[list[Server]]:  # noqa: F811
    """Two API replicas sharing one Redis quota, started side by side."""
    root: Path = tmp_path_factory.mktemp("replicas")
    servers = [launch(root / f"r{k}", quota_redis_url=redis_url, **QUOTA) for k in range(2)]
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_two_replicas_enforce_one_quota(replicas: list[Server]) -> None:
    """Before: each replica had its own bucket, so two replicas gave twice the quota."""
    statuses = []
    for k in range(10):
        with replicas[k % 2].client("shared-tenant") as client:
            statuses.append(post_image(client, blank_png(64)).status_code)
    assert statuses[:6] == [422] * 6  # charged: detection ran (no face in a grey square)
    assert statuses[6:] == [429] * 4
    with replicas[1].client("shared-tenant") as client:  # refused before any work: not charged
        assert_problem(client.post("/v1/reconstruct", content=b"x", headers={"Content-Type": "text/plain"}),
                       415, "unsupported-type")  # fmt: skip
