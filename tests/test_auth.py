"""JWT verification against every known attack shape, scopes, quota, and the FastAPI dependency."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI

from face3d.service.auth import (
    MAX_TOKEN_BYTES,
    Principal,
    mint_token,
    require_scope,
    verify_token,
)
from face3d.service.config import Settings
from face3d.service.deps import ReconstructCaller, TenantQuota
from face3d.service.keys import JwksKeys, check_signing_keys
from face3d.service.logs import JsonFormatter
from face3d.service.problems import Problem, install_handlers
from face3d.service.quota import LocalQuota as QuotaLimiter
from tests.jwks_endpoint import JwksEndpoint

SECRET = "s3cr3t-" * 6


@pytest.fixture
def hs() -> Settings:
    return Settings(jwt_secret=SECRET)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem_private(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pem_public(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def rs(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Settings:
    path = tmp_path / "public.pem"
    path.write_bytes(pem_public(rsa_key))
    return Settings(jwt_algorithms=("RS256",), jwt_public_key_file=path)


def claims(**over) -> dict:
    now = int(time.time())
    return {"iss": "face3d", "aud": "face3d", "sub": "alice", "exp": now + 60, "scope": "reconstruct"} | over


def rejected(token: str, settings: Settings, message: str = "") -> Problem:
    with pytest.raises(Problem) as info:
        verify_token(token, settings)
    assert info.value.status == 401 and info.value.slug == "unauthorized"
    assert info.value.headers["WWW-Authenticate"].startswith("Bearer")
    assert message.lower() in info.value.detail.lower()
    return info.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


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


@pytest.fixture
def jwks_setup() -> Iterator[tuple[Settings, ec.EllipticCurvePrivateKey, JwksEndpoint]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    server = JwksEndpoint([jwk | {"kid": "k1", "use": "sig", "alg": "ES256"}])
    yield Settings(jwt_algorithms=("ES256",), jwt_jwks_url=server.url), key, server
    server.close()


def test_jwks(jwks_setup: tuple[Settings, ec.EllipticCurvePrivateKey, JwksEndpoint]) -> None:
    settings, key, server = jwks_setup
    token = jwt.encode(claims(), key, algorithm="ES256", headers={"kid": "k1"})
    assert verify_token(token, settings).tenant == "alice"
    assert verify_token(token, settings).tenant == "alice"
    assert server.hits == 1  # the key set is cached
    rejected(jwt.encode(claims(), key, algorithm="ES256", headers={"kid": "unknown"}), settings)
    impostor = ec.generate_private_key(ec.SECP256R1())
    rejected(
        jwt.encode(claims(), impostor, algorithm="ES256", headers={"kid": "k1"}), settings, "invalid token"
    )


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

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.post(path, headers=headers) for headers in headers_list]

    return asyncio.run(go())


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
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/crash")

    response = asyncio.run(go())
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


def _jwk(key, kid: str) -> dict:
    return json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())) | {"kid": kid, "use": "sig"}


def test_jwks_keys_expire_with_the_key_set() -> None:
    """PyJWKClient(cache_keys=True) trusted a revoked key until restart; here it lasts cache_s."""
    key = ec.generate_private_key(ec.SECP256R1())
    served = {"keys": [_jwk(key, "k1")]}
    now = [0.0]
    keys = JwksKeys(
        "https://idp.test/jwks", cache_s=300, refetch_s=30, fetch=lambda: served, clock=lambda: now[0]
    )
    assert keys.key("k1") is not None and keys.fetches == 1
    served = {"keys": [_jwk(ec.generate_private_key(ec.SECP256R1()), "k2")]}  # k1 revoked at the IdP
    now[0] = 299.0
    assert keys.key("k1") is not None  # still within the key set's lifetime
    now[0] = 300.0
    with pytest.raises(Problem) as info:
        keys.key("k1")
    assert info.value.status == 401 and keys.fetches == 2
    assert keys.key("k2") is not None and keys.fetches == 2


def test_jwks_unknown_kids_refetch_at_most_once_per_cooldown() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = [0.0]
    keys = JwksKeys(
        "https://idp.test/jwks", cache_s=300, refetch_s=30, fetch=lambda: {"keys": [_jwk(key, "k1")]},
        clock=lambda: now[0],
    )  # fmt: skip
    for i in range(1000):
        now[0] = i * 0.01  # a flood over 10 s
        with pytest.raises(Problem):
            keys.key(f"random-{i}")
    assert keys.fetches == 1
    now[0] = 31.0
    with pytest.raises(Problem):
        keys.key("random-again")
    assert keys.fetches == 2


def test_jwks_outage_never_extends_trust() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    weak_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    up = [True]

    def fetch() -> dict:
        if not up[0]:
            raise jwt.PyJWKClientConnectionError("down")
        weak = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(weak_rsa.public_key())) | {"kid": "weak"}
        return {"keys": [_jwk(key, "k1"), weak]}

    now = [0.0]
    keys = JwksKeys("https://idp.test/jwks", cache_s=60, refetch_s=10, fetch=fetch, clock=lambda: now[0])
    assert keys.key("k1") is not None
    with pytest.raises(Problem) as weak:
        keys.key("weak")  # a 1024-bit RSA key in the set is ignored
    assert weak.value.status == 401
    up[0] = False
    now[0] = 61.0
    with pytest.raises(Problem) as info:
        keys.key("k1")
    assert info.value.status == 503 and info.value.headers["Retry-After"]


@pytest.mark.parametrize("kid", [None, 7, "", "x" * 129, "has space", "tab\t"])
def test_odd_kids_never_reach_the_jwks(
    jwks_setup: tuple[Settings, ec.EllipticCurvePrivateKey, JwksEndpoint], kid: object
) -> None:
    settings, key, server = jwks_setup
    _, payload, signature = jwt.encode(claims(), key, algorithm="ES256", headers={"kid": "k1"}).split(".")
    header = {"alg": "ES256", "typ": "JWT"} | ({} if kid is None else {"kid": kid})
    rejected(f"{b64(json.dumps(header).encode())}.{payload}.{signature}", settings, "invalid token")
    assert server.hits == 0
