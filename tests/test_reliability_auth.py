"""The JWT attack matrix against the real server over HTTP: every forged, stale, confused or oversized
token is refused with 401 problem+json, none reaches a worker, and a flood of random key ids costs
the identity provider at most one JWKS fetch per cooldown."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.auth_helpers import b64, jwk_of, pem_private, pem_public
from tests.figures import record
from tests.jwks_endpoint import JwksEndpoint
from tests.serving import SECRET, Server, astronaut, hardened, launch  # noqa: F401  (hardened: a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": "face3d", "aud": "face3d", "sub": "mallory", "iat": now, "exp": now + 300,
            "scope": "reconstruct results:read"}  # fmt: skip
    return {k: v for k, v in (base | over).items() if v is not None}


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"


def hs(payload: dict[str, Any], key: str = SECRET, **headers: Any) -> str:
    return jwt.encode(payload, key, algorithm="HS256", headers=headers or None)


def tamper_payload(token: str) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{b64(json.dumps(claims(scope='admin')).encode())}.{signature}"


def tamper_signature(token: str) -> str:
    head, _, signature = token.rpartition(".")
    return f"{head}.{signature[:-4]}{'AAAA' if not signature.endswith('AAAA') else 'BBBB'}"


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
NOW = int(time.time())

HS_ATTACKS: dict[str, Callable[[], str]] = {
    "alg none": lambda: unsigned({"alg": "none", "typ": "JWT"}, claims()),
    "alg NONE": lambda: unsigned({"alg": "NONE", "typ": "JWT"}, claims()),
    "RS256 token at an HS server": lambda: jwt.encode(claims(), RSA_KEY, algorithm="RS256"),
    "signed with another secret": lambda: hs(claims(), "y" * 48),
    "expired": lambda: hs(claims(iat=NOW - 7200, exp=NOW - 3600)),
    "nbf in the future": lambda: hs(claims(nbf=NOW + 3600, exp=NOW + 7200)),
    "iat in the future": lambda: hs(claims(iat=NOW + 3600, exp=NOW + 7200)),
    "century-long exp": lambda: hs(claims(exp=NOW + 100 * 365 * 86400)),
    "wrong audience": lambda: hs(claims(aud="billing")),
    "wrong issuer": lambda: hs(claims(iss="evil")),
    "audience as a list": lambda: hs(claims(aud=["face3d", "billing"])),
    "missing exp": lambda: hs(claims(exp=None)),
    "tampered payload": lambda: tamper_payload(hs(claims(scope="reconstruct"))),
    "tampered signature": lambda: tamper_signature(hs(claims())),
    "10 KB token": lambda: hs(claims(pad="x" * 10_000)),
    "unknown kid, forged signature": lambda: tamper_signature(hs(claims(), kid="nope")),
    "oversized kid, forged signature": lambda: tamper_signature(hs(claims(), kid="k" * 4000)),
}


def batches(server: Server) -> float:
    return server.metric("face3d_batch_size_count")


def attack(server: Server, token: str, **kwargs: Any) -> httpx.Response:
    headers = {"Content-Type": "image/jpeg", **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx.post(
        f"{server.url}/v1/reconstruct", content=astronaut(), headers=headers, timeout=30, **kwargs
    )


def refused(response: httpx.Response, statuses: tuple[int, ...] = (401,)) -> None:
    assert response.status_code in statuses, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if response.status_code == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_hs_server_refuses_every_attack(hardened: Server) -> None:  # noqa: F811
    before = batches(hardened)
    timings = []
    for case, make in HS_ATTACKS.items():
        start = time.perf_counter()
        response = attack(hardened, make())
        timings.append(time.perf_counter() - start)
        try:
            refused(response)
        except AssertionError as exc:
            raise AssertionError(case) from exc
    # The token in the query string is never read: refused (unknown parameter), never authenticated.
    good = hardened.token("mallory")["Authorization"].split()[1]
    refused(attack(hardened, "", params={"access_token": good}), (401, 422))
    assert batches(hardened) == before  # none of them reached a worker
    record("auth", "HS attacks refused", len(HS_ATTACKS) + 1)
    record("auth", "slowest refusal (ms)", max(timings) * 1000)


EC_KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_PEM = pem_public(EC_KEY)


@pytest.fixture(scope="module")
def jwks_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, JwksEndpoint]]:
    endpoint = JwksEndpoint([jwk_of(EC_KEY, "k1")])
    server = launch(
        tmp_path_factory.mktemp("jwks"), jwt_secret="", jwt_algorithms=["ES256"], jwt_jwks_url=endpoint.url,
        jwt_jwks_refetch_s=30,
    )  # fmt: skip
    server.private_key = pem_private(EC_KEY)
    server.kid = "k1"
    try:
        server.wait_ready()
        yield server, endpoint
    finally:
        endpoint.close()
        server.stop()


def es(payload: dict[str, Any], kid: Any = "k1") -> str:
    return jwt.encode(payload, EC_KEY, algorithm="ES256", headers={"kid": kid})


def test_jwks_server_refuses_every_attack(jwks_server: tuple[Server, JwksEndpoint]) -> None:
    server, _ = jwks_server
    with server.client("alice", ("results:read",)) as client:  # a real token works (first fetch)
        assert client.get("/v1/models").status_code == 200
    before = batches(server)
    signing_input = unsigned({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims()).rsplit(".", 1)[0]
    confused = hmac.new(PUBLIC_PEM, signing_input.encode(), hashlib.sha256).digest()
    odd_kid = es(claims()).split(".")
    attacks = {
        "HS256 signed with the public key": f"{signing_input}.{b64(confused)}",
        "HS256 token at an ES server": hs(claims(), kid="k1"),
        "alg none with a known kid": unsigned({"alg": "none", "kid": "k1"}, claims()),
        "unknown kid": es(claims(), kid="rotated-away"),
        "oversized kid": es(claims(), kid="k" * 5000),
        "odd kid (a number)": ".".join([b64(json.dumps({"alg": "ES256", "kid": 7}).encode()), *odd_kid[1:]]),
        "tampered signature": tamper_signature(es(claims())),
        "expired": es(claims(iat=NOW - 7200, exp=NOW - 3600)),
        "audience as a list": es(claims(aud=["face3d", "x"])),
    }
    for case, token in attacks.items():
        try:
            refused(attack(server, token))
        except AssertionError as exc:
            raise AssertionError(case) from exc
    assert batches(server) == before
    record("auth", "JWKS attacks refused", len(attacks))


def test_a_flood_of_random_kids_costs_one_fetch_per_cooldown(
    jwks_server: tuple[Server, JwksEndpoint],
) -> None:
    server, endpoint = jwks_server
    hits = endpoint.hits
    tokens = [es(claims(), kid=uuid.uuid4().hex) for _ in range(300)]

    def status(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{server.url}/v1/models", headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(16) as threads:
        statuses = list(threads.map(status, tokens))
    assert statuses == [401] * len(tokens)
    record("auth", "JWKS fetches for 300 random kids", endpoint.hits - hits)
    assert endpoint.hits - hits <= 1
