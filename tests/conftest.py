"""Shared test set-up: a clean FACE3D_* environment and the engine built once per session."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _clean_face3d_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell settings must not change what the tests see (the weights cache stays)."""
    for key in list(os.environ):
        if key.startswith("FACE3D_") and key != "FACE3D_CACHE_DIR":
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def engine():
    """One eager CPU engine for every test that needs real reconstructions."""
    from models.engine import Engine

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    return Engine(device="cpu", compile=False)
