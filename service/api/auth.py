"""Bearer-token auth as plain functions: no web framework in here.

Security rules enforced in one place:
* the accepted algorithms come from Settings, never from the token header (no ``alg: none``, no
  HS/RS confusion: a public-key server never treats its public key as an HMAC secret);
* ``exp``, ``aud`` (one string, exactly ours) and ``iss`` are required and checked, with a small
  configurable leeway; ``nbf``/``iat`` in the future and lifetimes over ``jwt_max_lifetime_s`` fail;
* the signing key is the HS* secret, a PEM public key file, or the JWKS entry named by ``kid``; RSA
  keys under 2048 bits and EC keys under 256 bits are refused; JWKS keys expire with their key set
  (service/api/keys.py);
* tokens over 8 KB are refused unparsed; error details never echo library messages.

Failures are ``Problem``s: 401 ``unauthorized`` for a missing/bad/expired token, 403 ``forbidden``
for a valid token without the needed scope. The per-tenant quota is service/api/quota.py; the FastAPI
dependencies built on these live in service/api/deps.py.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from face3d.service.api.keys import jwks_keys, public_key
from face3d.service.api.problems import unauthorized
from face3d.service.config import Settings
from face3d.service.errors import Problem

SCOPE_RECONSTRUCT = "reconstruct"
SCOPE_RESULTS_READ = "results:read"
SCOPE_RESULTS_DELETE = "results:delete"
SCOPE_ADMIN = "admin"
SCOPES = frozenset({SCOPE_RECONSTRUCT, SCOPE_RESULTS_READ, SCOPE_RESULTS_DELETE, SCOPE_ADMIN})

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


def require_scope(principal: Principal, scope: str) -> None:
    """Raise 403 ``forbidden`` unless ``principal`` holds ``scope`` (or ``admin``)."""
    if not principal.allows(scope):
        raise Problem("forbidden", f"the token lacks the {scope!r} scope")


MAX_TOKEN_BYTES = 8192
"""Longer bearer tokens are refused before any parsing (real ones are well under 2 KB)."""
MAX_KID_CHARS = 128
_KID = re.compile(rf"[\x21-\x7e]{{1,{MAX_KID_CHARS}}}")  # printable ASCII, no spaces
# PyJWT's exception -> the detail clients see. Fixed strings: the library's own messages are not echoed.
_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "invalid token: not valid yet (nbf or iat in the future)"),
    (jwt.InvalidAudienceError, "invalid token: wrong audience"),
    (jwt.InvalidIssuerError, "invalid token: wrong issuer"),
    (jwt.InvalidSignatureError, "invalid token: bad signature"),
    (jwt.InvalidAlgorithmError, "invalid token: algorithm not accepted"),
    (jwt.DecodeError, "invalid token: malformed"),
)


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"invalid token: missing the {exc.claim!r} claim"  # the claim name is one of ours
    return next((text for kind, text in _REASONS if isinstance(exc, kind)), "invalid token")


def _verification_key(token: str, settings: Settings) -> Any:
    if settings.uses_hmac:
        return settings.jwt_secret.get_secret_value()
    if settings.jwt_jwks_url:
        kid = jwt.get_unverified_header(token).get("kid")
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise unauthorized("invalid token: missing or malformed key id (kid)")
        return jwks_keys(settings).key(kid)
    assert settings.jwt_public_key_file is not None  # Settings validation guarantees one of the two
    path = settings.jwt_public_key_file
    try:
        return public_key(path, path.stat().st_mtime_ns)
    except (OSError, ValueError) as exc:  # rotated to a missing, unreadable or weak key while running
        log.error("jwt_public_key_file %s is unusable: %s", path, exc)
        raise Problem("internal", "the server cannot verify tokens right now") from None


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


def _check_lifetime(claims: dict[str, Any], settings: Settings) -> None:
    """A token may live at most ``jwt_max_lifetime_s``: from its ``iat`` when present, else from now."""
    try:  # PyJWT accepted them as numbers (it calls int()), but they may still be numeric strings
        expires = float(claims["exp"])
        start = float(claims["iat"]) if "iat" in claims else time.time()
    except (TypeError, ValueError):
        raise unauthorized("invalid token: malformed exp or iat") from None
    if expires - start > settings.jwt_max_lifetime_s + settings.jwt_leeway_s:
        raise unauthorized(f"invalid token: lifetime exceeds {settings.jwt_max_lifetime_s} s")


def verify_token(token: str, settings: Settings) -> Principal:
    """Check ``token``'s signature and claims against ``settings``; return its Principal.

    May fetch the JWKS over the network (cached), so call it from a worker thread, not the event loop.
    Details name the failed rule in our own words; library messages are never echoed to clients.
    """
    if not token:
        raise unauthorized("missing bearer token")
    if len(token) > MAX_TOKEN_BYTES:
        raise unauthorized(f"invalid token: longer than {MAX_TOKEN_BYTES} bytes")
    try:
        key = _verification_key(token, settings)
        claims = jwt.decode(
            token,
            key,
            algorithms=list(settings.jwt_algorithms),
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_s,
            # strict_aud: "aud" must be exactly our audience, not a list that happens to contain it.
            options={"require": ["exp", "aud", "iss"], "strict_aud": True},
        )
    except jwt.PyJWTError as exc:
        raise unauthorized(_reason(exc)) from None
    _check_lifetime(claims, settings)
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
    if ttl_s > settings.jwt_max_lifetime_s:
        raise ValueError(f"the token lifetime exceeds jwt_max_lifetime_s ({settings.jwt_max_lifetime_s} s)")
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
