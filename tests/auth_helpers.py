"""Shared pieces of the auth tests (tests/test_auth*.py): a signing secret (the ``hs`` settings
fixture in conftest.py verifies with it), claim sets, PEM helpers, and the one way a rejected token
must look (401 problem, Bearer challenge, a message that names the reason)."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from face3d.service.api.auth import verify_token
from face3d.service.config import Settings
from face3d.service.errors import Problem

SECRET = "s3cr3t-" * 6


def pem_private(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pem_public(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def jwk_of(key, kid: str) -> dict:
    """The public JWK of an EC private key, as a JWKS endpoint lists it (``kid``, ``use``: sig)."""
    return json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())) | {"kid": kid, "use": "sig"}


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
