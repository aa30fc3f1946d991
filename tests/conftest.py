"""Shared test set-up: a clean FACE3D_* environment, the facemesh backend loaded once per session,
and the HS256 settings the auth tests sign against."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from face3d.service.config import Settings, default_cache_dir
from tests.auth_helpers import SECRET


@pytest.fixture(autouse=True)
def _clean_face3d_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell settings must not change what the tests see (the weights cache stays)."""
    for key in list(os.environ):
        if key.startswith("FACE3D_") and key != "FACE3D_CACHE_DIR":
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def weights_cache() -> Path:
    """The weights cache the service would use (``$FACE3D_CACHE_DIR`` or ~/.cache/face3d)."""
    return default_cache_dir()


@pytest.fixture(scope="session")
def facemesh(weights_cache: Path):
    """One eager CPU facemesh backend for every test that needs real reconstructions."""
    from face3d.models.backends.base import BackendConfig
    from face3d.models.backends.facemesh.backend import FacemeshBackend

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    backend = FacemeshBackend(BackendConfig(cache_dir=weights_cache))
    backend.load("cpu")
    return backend


@pytest.fixture
def hs() -> Settings:
    """Settings that verify HS256 tokens signed with tests/auth_helpers.py's SECRET."""
    return Settings(jwt_secret=SECRET)
