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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI, Request

from face3d.service.auth import (
    Principal,
    QuotaLimiter,
    mint_token,
    require_scope,
    verify_token,
)
from face3d.service.config import Settings
from face3d.service.deps import ReconstructCaller, charge_quota
from face3d.service.logs import JsonFormatter
from face3d.service.problems import Problem, install_handlers

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


class _JwksServer:
    """A JWKS endpoint on 127.0.0.1 serving one public key, counting how often it is fetched."""

    def __init__(self, jwks: dict) -> None:
        body = json.dumps(jwks).encode()
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def jwks_setup() -> Iterator[tuple[Settings, ec.EllipticCurvePrivateKey, _JwksServer]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    server = _JwksServer({"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "ES256"}]})
    yield Settings(jwt_algorithms=("ES256",), jwt_jwks_url=server.url), key, server
    server.close()


def test_jwks(jwks_setup: tuple[Settings, ec.EllipticCurvePrivateKey, _JwksServer]) -> None:
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
    def reconstruct(caller: ReconstructCaller, request: Request) -> dict:
        charge_quota(request, caller, 1)
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
