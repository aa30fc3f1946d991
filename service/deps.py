"""FastAPI dependencies that turn service/auth.py's functions into typed route parameters.

Routes declare what they need and get the caller, already checked::

    @router.post("/v1/reconstruct")
    def reconstruct(caller: ReconstructCaller, request: Request): ...

The app factory (service/app.py) sets ``app.state.settings``, ``.quota``, ``.store`` and ``.pool``;
the typed dependencies below are the only readers of ``app.state``. This is the one auth guard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from face3d.service.auth import (
    DEV_PRINCIPAL,
    SCOPE_ADMIN,
    SCOPE_RECONSTRUCT,
    SCOPE_RESULTS_READ,
    Principal,
    QuotaLimiter,
    require_scope,
    unauthorized,
    verify_token,
)
from face3d.service.config import Settings
from face3d.service.pool import WorkerPool
from face3d.service.storage import ResultStore

_bearer = HTTPBearer(auto_error=False, description="JWT from `face3d token` or your identity provider")


def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The verified caller. A plain ``def`` on purpose: FastAPI runs it in a thread, so a JWKS fetch
    never blocks the event loop."""
    settings: Settings = request.app.state.settings
    if settings.auth_disabled_dev:
        return DEV_PRINCIPAL
    if credentials is None:
        raise unauthorized("missing bearer token (Authorization: Bearer <token>)")
    return verify_token(credentials.credentials, settings)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def _scoped(scope: str) -> Callable[[Principal], Principal]:
    def check(principal: CurrentPrincipal) -> Principal:
        require_scope(principal, scope)
        return principal

    return check


ReconstructCaller = Annotated[Principal, Depends(_scoped(SCOPE_RECONSTRUCT))]
ResultsReader = Annotated[Principal, Depends(_scoped(SCOPE_RESULTS_READ))]


def charge_quota(request: Request, principal: Principal, images: int = 1) -> None:
    """Take ``images`` from the caller's quota or raise 429; call it once the item count is known."""
    quota: QuotaLimiter = request.app.state.quota
    quota.acquire(principal.tenant, images)


def _open_unless(flag: str, scope: str | None) -> Callable[..., None]:
    """Guard for endpoints a deployment may open: nothing when ``settings.<flag>`` is true, else a
    verified caller (holding ``scope``, when given)."""

    def guard(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        settings: Settings = request.app.state.settings
        if getattr(settings, flag):
            return
        principal = current_principal(request, credentials)
        if scope:
            require_scope(principal, scope)

    return guard


HealthGuard = Depends(_open_unless("open_health", None))
MetricsGuard = Depends(_open_unless("open_metrics", SCOPE_ADMIN))


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _pool(request: Request) -> WorkerPool:
    return request.app.state.pool


def _store(request: Request) -> ResultStore:
    return request.app.state.store


AppSettings = Annotated[Settings, Depends(_settings)]
Pool = Annotated[WorkerPool, Depends(_pool)]
Store = Annotated[ResultStore, Depends(_store)]
