"""Health and metrics: /livez, /readyz and /metrics (open unless the config closes them)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from face3d.service import metrics
from face3d.service.api.deps import HealthGuard, MetricsGuard, Pool, StrictQuery
from face3d.service.api.schemas import Health, Readiness

router = APIRouter(tags=["health"], dependencies=[StrictQuery])


@router.get("/livez", operation_id="livez", dependencies=[HealthGuard], response_model=Health)
async def livez() -> Health:
    """The process is up and serving HTTP (it says nothing about the workers)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="readyz",
    dependencies=[HealthGuard],
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "warming, no worker can serve now, or draining"}},
)
async def readyz(pool: Pool) -> JSONResponse:
    """200 once every worker has warmed up and while at least one of them can serve ("degraded" when
    some cannot, e.g. one being replaced); 503 while warming, when none can serve, or while draining.
    No pids or other internals: this port is open."""
    if pool.draining:
        status, code = "draining", 503
    elif pool.ready:
        status, code = "ready", 200
    elif pool.serving and pool.warmed:
        status, code = "degraded", 200
    else:
        status, code = ("unavailable" if pool.warmed else "warming"), 503
    body = Readiness(status=status, workers=pool.readiness())
    return JSONResponse(body.model_dump(), status_code=code)


@router.get(
    "/metrics",
    operation_id="metrics",
    dependencies=[MetricsGuard],
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format",
        }
    },
)
async def prometheus() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
