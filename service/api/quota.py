"""Per-tenant quota as token buckets counted in units of work: in this process, or in Redis so that
every replica draws on one bucket per tenant.

Why units, not images: a 4096² texture is four times the bake and encode work of a 2048² one, and
``all_faces`` can reconstruct ``max_faces`` faces from one upload. One unit is one face textured at
up to 2048²; see ``work_units``. A request is charged before its body is read (the upload costs the
server too) and refunded when it fails before any work starts (wrong type, too large, unreadable
header, queue full, no worker), so a client is never billed for what it was refused.

``LocalQuota`` keeps buckets in memory: right for one node, but N replicas give N times the quota.
``RedisQuota`` keeps them in Redis and updates them with one Lua script per call, atomic on the
server and timed by the server's clock, so replicas neither race nor disagree about time. When
Redis cannot be reached the request is refused with 503 (a quota that a broken link turns off is no
quota); the outage is logged.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from face3d.service.config import Settings
from face3d.service.errors import Problem

log = logging.getLogger("face3d.quota")

UNIT_UV_SIZE = 2048
"""One unit of work is one face textured at up to this size."""


def work_units(uv_size: int, all_faces: bool, max_faces: int, images: int = 1) -> int:
    """Units a request costs: per image ``max(1, (uv_size / 2048)²)`` per face, ``max_faces`` faces
    with ``all_faces`` (charged up front: how many faces a photo holds is known only after the work)."""
    per_face = max(1, math.ceil((uv_size / UNIT_UV_SIZE) ** 2))
    return images * per_face * (max_faces if all_faces else 1)


def _too_costly(cost: float, burst: float) -> Problem:
    return Problem("quota-exceeded", f"a request of {cost:g} units exceeds the quota burst of {burst:g}")


def _exhausted(rate: float, burst: float, wait: float) -> Problem:
    return Problem(
        "quota-exceeded",
        f"tenant quota is {rate:g} units/s (burst {burst:g}); retry in {wait:.1f} s",
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


class Quota(Protocol):
    """What the API needs from a quota: charge before work, refund what was refused early."""

    async def charge(self, tenant: str, cost: float) -> None:
        """Take ``cost`` units or raise 429 ``quota-exceeded`` (503 when the store is unreachable)."""
        ...

    async def refund(self, tenant: str, cost: float) -> None:
        """Give ``cost`` units back (never above the burst)."""
        ...

    async def close(self) -> None: ...


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class LocalQuota:
    """Token buckets in this process: ``burst`` units at once, refilled at ``rate_per_s``.

    A lock guards the buckets; the critical section is a few float operations, so the synchronous
    ``acquire``/``give_back`` are safe from the event loop and from threads alike.
    """

    _PRUNE_AT = 10_000  # tenants tracked before idle (full) buckets are forgotten

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, tenant: str, now: float) -> _Bucket:
        bucket = self._buckets.get(tenant)
        if bucket is None:
            if len(self._buckets) >= self._PRUNE_AT:
                self._prune(now)
            bucket = self._buckets[tenant] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        return bucket

    def acquire(self, tenant: str, cost: float = 1.0) -> None:
        """Take ``cost`` units from ``tenant``'s bucket or raise 429 with ``Retry-After`` seconds."""
        if cost > self.burst:
            raise _too_costly(cost, self.burst)
        with self._lock:
            bucket = self._bucket(tenant, self._clock())
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return
            wait = (cost - bucket.tokens) / self.rate
        raise _exhausted(self.rate, self.burst, wait)

    def give_back(self, tenant: str, cost: float) -> None:
        with self._lock:
            bucket = self._bucket(tenant, self._clock())
            bucket.tokens = min(self.burst, bucket.tokens + cost)

    async def charge(self, tenant: str, cost: float) -> None:
        self.acquire(tenant, cost)

    async def refund(self, tenant: str, cost: float) -> None:
        self.give_back(tenant, cost)

    async def close(self) -> None:
        return None

    def _prune(self, now: float) -> None:
        full = [t for t, b in self._buckets.items() if b.tokens + (now - b.stamp) * self.rate >= self.burst]
        for tenant in full:
            del self._buckets[tenant]


# KEYS[1] = the tenant's bucket; ARGV = rate, burst, cost (negative: a refund), ttl ms.
# Returns {1, ""} when granted, else {0, seconds to wait}. Numbers cross as strings: Redis would
# truncate Lua floats to integers.
_BUCKET_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(saved[1]) or burst
local stamp = tonumber(saved[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local granted = 1
if cost < 0 then
  tokens = math.min(burst, tokens - cost)
elseif tokens >= cost then
  tokens = tokens - cost
else
  granted = 0
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if granted == 1 then return {1, ''} end
return {0, tostring((cost - tokens) / rate)}
"""


class RedisQuota:
    """Token buckets in Redis shared by every replica; one atomic script call per charge or refund."""

    KEY_PREFIX = "face3d:quota:"

    def __init__(self, url: str, rate_per_s: float, burst: int, client: Any = None) -> None:
        if client is None:
            try:
                import redis.asyncio as aioredis
            except ImportError:
                raise RuntimeError("quota_redis_url needs redis-py: pip install 'face3d[redis]'") from None
            client = aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.client = client
        self.rate = rate_per_s
        self.burst = float(burst)
        # A bucket left alone refills completely in burst / rate seconds; keep it a little longer.
        self._ttl_ms = str(int(1000 * (2 * self.burst / self.rate + 60)))
        self._script = client.register_script(_BUCKET_SCRIPT)

    async def _call(self, tenant: str, cost: float) -> tuple[bool, float]:
        from redis.exceptions import RedisError

        try:
            args = [repr(self.rate), repr(self.burst), repr(cost), self._ttl_ms]
            granted, wait = await self._script(keys=[self.KEY_PREFIX + tenant], args=args)
        except (RedisError, OSError):
            log.error("the quota store (Redis) is unreachable")
            raise Problem(
                "unavailable", "the quota service is unreachable; retry", headers={"Retry-After": "2"}
            ) from None
        return bool(int(granted)), float(wait or 0)

    async def charge(self, tenant: str, cost: float) -> None:
        if cost > self.burst:
            raise _too_costly(cost, self.burst)
        granted, wait = await self._call(tenant, cost)
        if not granted:
            raise _exhausted(self.rate, self.burst, wait)

    async def refund(self, tenant: str, cost: float) -> None:
        try:
            await self._call(tenant, -cost)
        except Problem:  # a lost refund is the client's loss of a few units, not a failed request
            log.warning("a quota refund of %g units for a tenant was lost", cost)

    async def close(self) -> None:
        await self.client.aclose()


def make_quota(settings: Settings) -> Quota:
    """Redis when ``quota_redis_url`` is set, else in this process."""
    if settings.quota_redis_url:
        return RedisQuota(settings.quota_redis_url, settings.quota_rate_per_s, settings.quota_burst)
    return LocalQuota(settings.quota_rate_per_s, settings.quota_burst)
