"""FastAPI dependencies that turn service/auth.py's functions into typed route parameters.

Routes declare what they need and get the caller, already checked::

    @router.post("/v1/reconstruct")
    def reconstruct(caller: ReconstructCaller, request: Request): ...

The app factory must set ``app.state.settings`` (Settings) and ``app.state.quota`` (QuotaLimiter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from face3d.service.auth import (
    DEV_PRINCIPAL,
    SCOPE_RECONSTRUCT,
    SCOPE_RESULTS_READ,
    Principal,
    QuotaLimiter,
    require_scope,
    unauthorized,
    verify_token,
)
from face3d.service.config import Settings

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
