"""The roomy server of the API tests (tests/test_api.py, tests/test_api_capacity.py): the base config of
tests/serving.py, one start per module that asks for it.

A module using it imports both ``server`` and ``start_server`` (the fixture it builds on) from here and
tests/serving.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.serving import Server


@pytest.fixture(scope="module")
def server(start_server: Callable[..., Server]) -> Server:
    return start_server()
