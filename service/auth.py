"""Bearer-token auth and per-tenant quota as plain functions: no web framework in here.

Security rules enforced in one place:
* the accepted algorithms come from Settings, never from the token header (no ``alg: none``, no
  HS/RS confusion: a public-key server never treats its public key as an HMAC secret);
* ``exp``, ``aud`` and ``iss`` are required and checked, with a small configurable leeway;
* the signing key is the HS* secret, a PEM public key file, or the JWKS entry named by ``kid``.

Failures are ``Problem``s: 401 ``unauthorized`` for a missing/bad/expired token, 403 ``forbidden``
for a valid token without the needed scope, 429 ``quota-exceeded`` with ``Retry-After``.
The FastAPI dependency built on these lives in service/deps.py.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from face3d.service.config import Settings
from face3d.service.problems import Problem

SCOPE_RECONSTRUCT = "reconstruct"
SCOPE_RESULTS_READ = "results:read"
SCOPE_ADMIN = "admin"
SCOPES = frozenset({SCOPE_RECONSTRUCT, SCOPE_RESULTS_READ, SCOPE_ADMIN})

_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant that owns quota and results, and what the token allows."""

    tenant: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """``admin`` implies every other scope."""
        return scope in self.scopes or SCOPE_ADMIN in self.scopes


DEV_PRINCIPAL = Principal(tenant="dev", scopes=SCOPES)
"""The caller assumed for every request when ``auth_disabled_dev`` is on."""


def unauthorized(detail: str) -> Problem:
    return Problem("unauthorized", detail, headers=dict(_BEARER_CHALLENGE))


def require_scope(principal: Principal, scope: str) -> None:
    """Raise 403 ``forbidden`` unless ``principal`` holds ``scope`` (or ``admin``)."""
    if not principal.allows(scope):
        raise Problem("forbidden", f"the token lacks the {scope!r} scope")


@lru_cache(maxsize=8)
def _public_key(path: Path, mtime_ns: int) -> Any:
    """Parsed PEM key, re-read when the file changes (mtime in the cache key) so keys can rotate."""
    return load_pem_public_key(path.read_bytes())


@lru_cache(maxsize=8)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    """One client per URL: it caches the key set and refetches only for an unknown ``kid``."""
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)


def _verification_key(token: str, settings: Settings) -> Any:
    if settings.uses_hmac:
        return settings.jwt_secret.get_secret_value()
    if settings.jwt_jwks_url:
        return _jwks_client(settings.jwt_jwks_url).get_signing_key_from_jwt(token).key
    assert settings.jwt_public_key_file is not None  # Settings validation guarantees one of the two
    path = settings.jwt_public_key_file
    return _public_key(path, path.stat().st_mtime_ns)


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    """Scopes from ``scope`` (space-separated, RFC 8693) and/or ``scopes`` (a list)."""
    found: set[str] = set()
    scope = claims.get("scope", "")
    scopes = claims.get("scopes", [])
    if (
        not isinstance(scope, str)
        or not isinstance(scopes, list)
        or not all(isinstance(s, str) for s in scopes)
    ):
        raise unauthorized("malformed scope claim")
    found.update(scope.split())
    found.update(scopes)
    return frozenset(found)


def verify_token(token: str, settings: Settings) -> Principal:
    """Check ``token``'s signature and claims against ``settings``; return its Principal.

    May fetch the JWKS over the network (cached), so call it from a worker thread, not the event loop.
    """
    if not token:
        raise unauthorized("missing bearer token")
    try:
        key = _verification_key(token, settings)
        claims = jwt.decode(
            token,
            key,
            algorithms=list(settings.jwt_algorithms),
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_s,
            options={"require": ["exp", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("token expired") from None
    except jwt.PyJWTError as exc:
        raise unauthorized(f"invalid token: {exc}") from None
    tenant = claims.get(settings.tenant_claim)
    if not isinstance(tenant, str) or not tenant:
        raise unauthorized(f"token has no {settings.tenant_claim!r} claim naming the tenant")
    return Principal(tenant=tenant, scopes=_scopes(claims))


def mint_token(
    settings: Settings,
    subject: str,
    scopes: Iterable[str],
    ttl_s: float,
    private_key: str | None = None,
    now: float | None = None,
) -> str:
    """A token this server accepts: for HS* signed with the secret, else with ``private_key`` (PEM).

    Used by ``face3d token`` and by tests; production tokens normally come from an identity provider.
    """
    unknown = set(scopes) - SCOPES
    if unknown:
        raise ValueError(
            f"unknown scope(s) {', '.join(sorted(unknown))}; choose from {', '.join(sorted(SCOPES))}"
        )
    if ttl_s <= 0:
        raise ValueError("the token lifetime must be positive")
    if settings.uses_hmac:
        key: str = settings.jwt_secret.get_secret_value()
    elif private_key:
        key = private_key
    else:
        raise ValueError(f"{settings.jwt_algorithms[0]} tokens need the private key (--key FILE) to sign")
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        settings.tenant_claim: subject,
        "scope": " ".join(sorted(set(scopes))),
        "iat": issued,
        "exp": issued + math.ceil(ttl_s),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=settings.jwt_algorithms[0])


def log_auth_mode(settings: Settings) -> None:
    """One start-up line saying how callers are authenticated; a loud warning when nobody is."""
    if settings.auth_disabled_dev:
        log.warning(
            "AUTHENTICATION IS DISABLED (auth_disabled_dev=true): every request is accepted as tenant "
            "'dev' with all scopes. Never run like this outside development."
        )
        return
    source = (
        "shared secret"
        if settings.uses_hmac
        else (settings.jwt_jwks_url or str(settings.jwt_public_key_file))
    )
    log.info(
        "JWT bearer authentication on",
        extra={
            "algorithms": list(settings.jwt_algorithms),
            "key_source": source,
            "audience": settings.jwt_audience,
        },
    )


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class QuotaLimiter:
    """Per-tenant token buckets: ``burst`` images at once, refilled at ``rate_per_s``.

    In memory and per API process (each replica enforces its own share). A lock guards the buckets;
    the critical section is a few float operations, so it is safe to call from the event loop too.
    """

    _PRUNE_AT = 10_000  # tenants tracked before idle (full) buckets are forgotten

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, tenant: str, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from ``tenant``'s bucket or raise 429 with ``Retry-After`` seconds."""
        if cost > self.burst:
            raise Problem(
                "quota-exceeded", f"a request for {cost:g} images exceeds the quota burst of {self.burst:g}"
            )
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(tenant)
            if bucket is None:
                if len(self._buckets) >= self._PRUNE_AT:
                    self._prune(now)
                bucket = self._buckets[tenant] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return
            wait = (cost - bucket.tokens) / self.rate
        raise Problem(
            "quota-exceeded",
            f"tenant quota is {self.rate:g} images/s (burst {self.burst:g}); retry in {wait:.1f} s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )

    def _prune(self, now: float) -> None:
        full = [t for t, b in self._buckets.items() if b.tokens + (now - b.stamp) * self.rate >= self.burst]
        for tenant in full:
            del self._buckets[tenant]
