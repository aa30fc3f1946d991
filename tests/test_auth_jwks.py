"""The JWKS key source: keys cached with the key set's lifetime, unknown kids refetched at most once
per cooldown, an outage that never extends trust, weak keys ignored, and odd kids that never reach the
identity provider; against a real HTTP endpoint (tests/jwks_endpoint.py) and a scripted fetch."""

from __future__ import annotations

import json
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from face3d.service.api.auth import verify_token
from face3d.service.api.keys import JwksKeys
from face3d.service.config import Settings
from face3d.service.errors import Problem
from tests.auth_helpers import b64, claims, jwk_of, rejected
from tests.jwks_endpoint import JwksEndpoint


@pytest.fixture
def jwks_setup() -> Iterator[tuple[Settings, ec.EllipticCurvePrivateKey, JwksEndpoint]]:
    key = ec.generate_private_key(ec.SECP256R1())
    server = JwksEndpoint([jwk_of(key, "k1") | {"alg": "ES256"}])
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


def test_jwks_keys_expire_with_the_key_set() -> None:
    """PyJWKClient(cache_keys=True) trusted a revoked key until restart; here it lasts cache_s."""
    key = ec.generate_private_key(ec.SECP256R1())
    served = {"keys": [jwk_of(key, "k1")]}
    now = [0.0]
    keys = JwksKeys(
        "https://idp.test/jwks", cache_s=300, refetch_s=30, fetch=lambda: served, clock=lambda: now[0]
    )
    assert keys.key("k1") is not None and keys.fetches == 1
    served = {"keys": [jwk_of(ec.generate_private_key(ec.SECP256R1()), "k2")]}  # k1 revoked at the IdP
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
        "https://idp.test/jwks", cache_s=300, refetch_s=30, fetch=lambda: {"keys": [jwk_of(key, "k1")]},
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
        return {"keys": [jwk_of(key, "k1"), weak]}

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
