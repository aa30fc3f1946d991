"""JWT verification against every known attack shape: algorithms, keys, claims, lifetimes, scopes,
tampering, and problem details that never echo the JWT library's own messages. The JWKS key source:
tests/test_auth_jwks.py; the FastAPI dependency and the quota: tests/test_auth_app.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from face3d.service.api.auth import MAX_TOKEN_BYTES, Principal, mint_token, require_scope, verify_token
from face3d.service.api.keys import check_signing_keys
from face3d.service.config import Settings
from face3d.service.errors import Problem
from tests.auth_helpers import SECRET, b64, claims, pem_private, pem_public, rejected


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def rs(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Settings:
    path = tmp_path / "public.pem"
    path.write_bytes(pem_public(rsa_key))
    return Settings(jwt_algorithms=("RS256",), jwt_public_key_file=path)


def test_hs256_round_trip(hs: Settings) -> None:
    token = mint_token(hs, "alice", ["reconstruct", "results:read"], ttl_s=60)
    assert verify_token(token, hs) == Principal("alice", frozenset({"reconstruct", "results:read"}))


def test_rs256_round_trip_and_key_rotation(rs: Settings, rsa_key: rsa.RSAPrivateKey) -> None:
    token = mint_token(rs, "bob", ["admin"], ttl_s=60, private_key=pem_private(rsa_key))
    assert verify_token(token, rs).tenant == "bob"
    with pytest.raises(ValueError, match="private key"):
        mint_token(rs, "bob", ["admin"], ttl_s=60)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert rs.jwt_public_key_file is not None
    rs.jwt_public_key_file.write_bytes(pem_public(other))  # rotated on disk: the old token must fail
    rejected(token, rs, "invalid token")


def test_missing_token(hs: Settings) -> None:
    rejected("", hs, "missing")


def test_expired_token_and_leeway(hs: Settings) -> None:
    rejected(mint_token(hs, "alice", ["reconstruct"], ttl_s=10, now=time.time() - 100), hs, "expired")
    # expired 10 s ago, inside the 30 s leeway
    assert verify_token(mint_token(hs, "alice", ["reconstruct"], ttl_s=10, now=time.time() - 20), hs)


@pytest.mark.parametrize(
    ("override", "message"),
    [({"aud": "someone-else"}, "audience"), ({"iss": "evil"}, "issuer"), ({"exp": None}, "exp")],
)
def test_wrong_or_missing_claims(hs: Settings, override: dict, message: str) -> None:
    payload = {k: v for k, v in claims(**override).items() if v is not None}
    rejected(jwt.encode(payload, SECRET, algorithm="HS256"), hs, message)


def test_missing_tenant_claim(hs: Settings) -> None:
    payload = claims()
    del payload["sub"]
    rejected(jwt.encode(payload, SECRET, algorithm="HS256"), hs, "tenant")


def test_alg_none_is_rejected(hs: Settings) -> None:
    rejected(jwt.encode(claims(), None, algorithm="none"), hs)


def test_wrong_secret(hs: Settings) -> None:
    rejected(jwt.encode(claims(), "x" * 40, algorithm="HS256"), hs, "invalid token")


def test_hs256_signed_with_the_rsa_public_key_fails_on_an_rs256_server(
    rs: Settings, rsa_key: rsa.RSAPrivateKey
) -> None:
    """The classic algorithm-confusion forgery: HMAC keyed with the server's public PEM."""
    signing_input = (
        f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims()).encode())}"
    )
    signature = hmac.new(pem_public(rsa_key), signing_input.encode(), hashlib.sha256).digest()
    rejected(f"{signing_input}.{b64(signature)}", rs)


def test_tampered_payload(hs: Settings) -> None:
    header, _, signature = mint_token(hs, "alice", ["reconstruct"], ttl_s=60).split(".")
    forged = b64(json.dumps(claims(scope="admin")).encode())
    rejected(f"{header}.{forged}.{signature}", hs, "invalid token")


def test_scopes_and_tenant_claim() -> None:
    settings = Settings(jwt_secret=SECRET, tenant_claim="org")
    token = jwt.encode(claims(org="acme", scope="", scopes=["results:read"]), SECRET, algorithm="HS256")
    principal = verify_token(token, settings)
    assert principal == Principal("acme", frozenset({"results:read"}))
    require_scope(principal, "results:read")
    with pytest.raises(Problem) as info:
        require_scope(principal, "reconstruct")
    assert (info.value.status, info.value.slug) == (403, "forbidden")
    require_scope(Principal("root", frozenset({"admin"})), "reconstruct")  # admin implies every scope
    rejected(
        jwt.encode(claims(org="acme", scopes="reconstruct"), SECRET, algorithm="HS256"), settings, "scope"
    )


def test_mint_refuses_unknown_scopes(hs: Settings) -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        mint_token(hs, "alice", ["everything"], ttl_s=60)


# ------------------------------------------------------------------------------------ hardening
@pytest.mark.parametrize(
    ("token", "library_text"),
    [
        ("a.b", "Not enough segments"),
        ("e30.e30.c2ln", "signature"),
        ("!!!.e30.c2ln", "Invalid header padding"),
        (jwt.encode(claims(), "x" * 40, algorithm="HS256"), "Signature verification failed"),
        # built at collection time: an hour of life, so a slow suite cannot let it expire first
        (
            jwt.encode(claims(aud=42, exp=int(time.time()) + 3600), SECRET, algorithm="HS256"),
            "Invalid claim format",
        ),
    ],
)
def test_details_never_echo_library_messages(hs: Settings, token: str, library_text: str) -> None:
    problem = rejected(token, hs)
    assert problem.detail.startswith("invalid token")
    assert library_text.lower() not in problem.detail.lower()


def test_audience_must_be_exactly_ours(hs: Settings) -> None:
    """A token for several audiences is not a token for this service (PyJWT's default accepts it)."""
    rejected(jwt.encode(claims(aud=["face3d", "billing"]), SECRET, algorithm="HS256"), hs, "audience")
    rejected(jwt.encode(claims(aud=["face3d"]), SECRET, algorithm="HS256"), hs, "audience")


def test_token_lifetime_is_bounded(hs: Settings) -> None:
    now = int(time.time())
    century = jwt.encode(claims(iat=now, exp=now + 100 * 365 * 86400), SECRET, algorithm="HS256")
    rejected(century, hs, "lifetime")
    no_iat = jwt.encode(claims(exp=now + 2 * 86400), SECRET, algorithm="HS256")
    rejected(no_iat, hs, "lifetime")
    assert verify_token(jwt.encode(claims(iat=now, exp=now + 3600), SECRET, algorithm="HS256"), hs)
    with pytest.raises(ValueError, match="jwt_max_lifetime_s"):
        mint_token(hs, "alice", ["reconstruct"], ttl_s=hs.jwt_max_lifetime_s + 1)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_tokens_from_the_future_are_refused(hs: Settings, claim: str) -> None:
    later = int(time.time()) + 3600
    rejected(
        jwt.encode(claims(**{claim: later}, exp=later + 60), SECRET, algorithm="HS256"), hs, "not valid yet"
    )


def test_oversized_token_is_refused_unparsed(hs: Settings) -> None:
    huge = jwt.encode(claims(pad="x" * 10_000), SECRET, algorithm="HS256")
    assert len(huge) > MAX_TOKEN_BYTES
    rejected(huge, hs, "longer than")


@pytest.mark.filterwarnings("ignore:The RSA key is 1024 bits")
def test_weak_public_keys_are_refused(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = tmp_path / "weak.pem"
    path.write_bytes(pem_public(weak))
    settings = Settings(jwt_algorithms=("RS256",), jwt_public_key_file=path)
    with pytest.raises(ValueError, match="2048"):
        check_signing_keys(settings)  # at start-up
    token = jwt.encode(claims(), pem_private(weak), algorithm="RS256")
    with pytest.raises(Problem) as info:  # a key rotated to a weak one while running: never trusted
        verify_token(token, settings)
    assert info.value.status == 500 and "2048" not in info.value.detail
