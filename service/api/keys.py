"""Signing keys for token verification: the public key file, the JWKS endpoint, and the strength rules.

Kept apart from service/api/auth.py (the claims) because keys have a lifecycle of their own: a file
re-read when it changes, a key set trusted only for ``jwt_jwks_cache_s`` after each fetch.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from face3d.service.api.problems import unauthorized
from face3d.service.config import Settings
from face3d.service.errors import Problem

log = logging.getLogger("face3d.service.api.auth")

MIN_RSA_BITS = 2048
MIN_EC_BITS = 256


def check_key_strength(key: Any) -> None:
    """Refuse RSA keys under 2048 bits and EC keys under 256 bits (ValueError)."""
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} are required")
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < MIN_EC_BITS:
        raise ValueError(f"EC key of {key.curve.key_size} bits; at least {MIN_EC_BITS} are required")


@lru_cache(maxsize=8)
def public_key(path: Path, mtime_ns: int) -> Any:
    """Parsed PEM key, re-read when the file changes (mtime in the cache key) so keys can rotate."""
    key = load_pem_public_key(path.read_bytes())
    check_key_strength(key)
    return key


def check_signing_keys(settings: Settings) -> None:
    """At start-up: a configured public key file must parse and be strong enough (ValueError)."""
    if settings.auth_disabled_dev or settings.uses_hmac or not settings.jwt_public_key_file:
        return
    path = settings.jwt_public_key_file
    try:
        public_key(path, path.stat().st_mtime_ns)
    except ValueError as exc:
        raise ValueError(f"jwt_public_key_file {path}: {exc}") from None


class JwksKeys:
    """A JWKS endpoint's signing keys by ``kid``, trusted for ``cache_s`` after each fetch.

    Why not PyJWKClient's key cache: its per-key LRU never expires, so a key revoked at the identity
    provider stays trusted until restart. Here the whole set is replaced on each fetch, and keys
    expire with it. An unknown ``kid`` refetches at most once per ``refetch_s`` (a flood of random
    kids costs the identity provider one request per cooldown), as does a failed fetch.
    """

    def __init__(
        self,
        url: str,
        cache_s: float,
        refetch_s: float,
        fetch: Callable[[], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.cache_s = cache_s
        self.refetch_s = refetch_s
        self._fetch = fetch or jwt.PyJWKClient(url, cache_jwk_set=False, timeout=5).fetch_data
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at = -math.inf  # last successful fetch
        self._tried_at = -math.inf  # last attempt, successful or not
        self._lock = threading.Lock()
        self.fetches = 0

    def _refresh(self, now: float) -> None:
        self._tried_at = now
        self.fetches += 1
        try:
            jwk_set = jwt.PyJWKSet.from_dict(self._fetch())
        except (jwt.PyJWTError, ValueError, OSError):  # unreachable, not JSON, no usable key
            log.warning("fetching the JWKS from %s failed", self.url)
            return
        keys: dict[str, Any] = {}
        for jwk in jwk_set.keys:
            if not jwk.key_id or jwk.public_key_use not in ("sig", None):
                continue
            try:
                check_key_strength(jwk.key)
            except ValueError as exc:
                log.warning("JWKS key %r ignored: %s", jwk.key_id, exc)
                continue
            keys[jwk.key_id] = jwk.key
        self._keys, self._fetched_at = keys, now

    def key(self, kid: str) -> Any:
        """The key named ``kid``; 401 when unknown, 503 when no fresh key set can be had."""
        with self._lock:
            now = self._clock()
            stale = now - self._fetched_at >= self.cache_s
            if stale and now - self._tried_at >= min(self.refetch_s, self.cache_s):
                self._refresh(now)
                stale = now - self._fetched_at >= self.cache_s
            if stale:  # expired keys are never used, even when the endpoint is down
                raise Problem(
                    "unavailable", "the signing keys cannot be fetched; retry", headers={"Retry-After": "5"}
                )
            if kid not in self._keys and now - self._tried_at >= self.refetch_s:
                self._refresh(now)
            key = self._keys.get(kid)
        if key is None:
            raise unauthorized("invalid token: unknown signing key")
        return key


_jwks_lock = threading.Lock()
_jwks_sets: dict[tuple[str, float, float], JwksKeys] = {}


def jwks_keys(settings: Settings) -> JwksKeys:
    """One key cache per (URL, timings) in this process."""
    index = (settings.jwt_jwks_url, settings.jwt_jwks_cache_s, settings.jwt_jwks_refetch_s)
    with _jwks_lock:
        if index not in _jwks_sets:
            _jwks_sets[index] = JwksKeys(*index)
        return _jwks_sets[index]
