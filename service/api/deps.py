"""FastAPI dependencies that turn service/api/auth.py's functions into typed route parameters.

Routes declare what they need and get the caller, already checked::

    @router.post("/v1/reconstruct")
    def reconstruct(caller: ReconstructCaller, request: Request): ...

The app factory (service/api/app.py) sets ``app.state.settings``, ``.quota``, ``.uploads``, ``.store`` and
``.pool``; the typed dependencies below are the only readers of ``app.state``. This is the one auth
guard. Open endpoints (/livez, /readyz, /metrics when configured open) read the header themselves
rather than through ``HTTPBearer``, so the OpenAPI document does not claim they need a token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.utils import field_annotation_is_sequence
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from face3d.service.api.auth import (
    DEV_PRINCIPAL,
    SCOPE_ADMIN,
    SCOPE_RECONSTRUCT,
    SCOPE_RESULTS_DELETE,
    SCOPE_RESULTS_READ,
    Principal,
    require_scope,
    verify_token,
)
from face3d.service.api.problems import unauthorized
from face3d.service.api.quota import Quota
from face3d.service.api.uploads import UploadBudget
from face3d.service.config import Settings
from face3d.service.errors import Problem
from face3d.service.storage import ResultStore
from face3d.service.workers.pool import WorkerPool

_bearer = HTTPBearer(auto_error=False, description="JWT from `face3d token` or your identity provider")


async def _principal(settings: Settings, token: str | None) -> Principal:
    """Verify ``token``. A signature check is tens of microseconds, so it runs on the event loop;
    with a JWKS URL the key lookup may fetch over the network, so that runs in a thread."""
    if settings.auth_disabled_dev:
        return DEV_PRINCIPAL
    if not token:
        raise unauthorized("missing bearer token (Authorization: Bearer <token>)")
    if settings.jwt_jwks_url:
        return await asyncio.to_thread(verify_token, token, settings)
    return verify_token(token, settings)


async def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The verified caller. Only the Authorization header counts (never a query parameter)."""
    return await _principal(request.app.state.settings, credentials.credentials if credentials else None)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def _scoped(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: CurrentPrincipal) -> Principal:
        require_scope(principal, scope)
        return principal

    return check


ReconstructCaller = Annotated[Principal, Depends(_scoped(SCOPE_RECONSTRUCT))]
ResultsReader = Annotated[Principal, Depends(_scoped(SCOPE_RESULTS_READ))]
ResultsDeleter = Annotated[Principal, Depends(_scoped(SCOPE_RESULTS_DELETE))]


def _header_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _open_unless(flag: str, scope: str | None) -> Callable[..., Awaitable[None]]:
    """Guard for endpoints a deployment may open: nothing when ``settings.<flag>`` is true, else a
    verified caller (holding ``scope``, when given). The OpenAPI document adds the bearer
    requirement to these routes only when they are closed (service/api/openapi.py)."""

    async def guard(request: Request) -> None:
        settings: Settings = request.app.state.settings
        if getattr(settings, flag):
            return
        principal = await _principal(settings, _header_token(request))
        if scope:
            require_scope(principal, scope)

    return guard


HealthGuard = Depends(_open_unless("open_health", None))
MetricsGuard = Depends(_open_unless("open_metrics", SCOPE_ADMIN))


_QUERY_NAMES: dict[int, tuple[frozenset[str], frozenset[str]]] = {}  # id(route) -> (names, lists)


def _query_names(route: APIRoute) -> tuple[frozenset[str], frozenset[str]]:
    """Every query parameter the route and its dependencies declare, and those that take a list."""
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        found: set[str] = set()
        lists: set[str] = set()
        stack = [route.dependant]
        while stack:
            dependant = stack.pop()
            for param in dependant.query_params:
                found.add(param.alias)
                if field_annotation_is_sequence(param.field_info.annotation):
                    lists.add(param.alias)
            stack.extend(dependant.dependencies)
        names = _QUERY_NAMES[id(route)] = (frozenset(found), frozenset(lists))
    return names


async def known_query_only(request: Request) -> None:
    """422 for a query parameter the route does not define, or a single-valued one given twice: a
    typo like ``uv_sise=4096`` must not silently fall back to the default. A list parameter
    (``formats``) may be repeated."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    names, lists = _query_names(route)
    given = request.query_params
    repeated = {name for name in given if len(given.getlist(name)) > 1}
    if any(name not in names for name in given) or repeated - lists:
        raise Problem("validation", "unknown or repeated query parameters (see /openapi.json)")


StrictQuery = Depends(known_query_only)


# The accessors below are ``async def`` only so that FastAPI calls them inline: a plain ``def``
# dependency costs a trip through the thread pool on every request.
async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _pool(request: Request) -> WorkerPool:
    return request.app.state.pool


async def _store(request: Request) -> ResultStore:
    return request.app.state.store


async def _quota(request: Request) -> Quota:
    return request.app.state.quota


async def _uploads(request: Request) -> UploadBudget:
    return request.app.state.uploads


AppSettings = Annotated[Settings, Depends(_settings)]
Pool = Annotated[WorkerPool, Depends(_pool)]
Store = Annotated[ResultStore, Depends(_store)]
TenantQuota = Annotated[Quota, Depends(_quota)]
Uploads = Annotated[UploadBudget, Depends(_uploads)]
