"""Health and metrics: /livez, /readyz and /metrics (open unless the config closes them)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from face3d.service import metrics
from face3d.service.deps import HealthGuard, MetricsGuard, Pool
from face3d.service.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/livez", dependencies=[HealthGuard], response_model=Health)
async def livez() -> Health:
    """The process is up and serving HTTP (it says nothing about the workers)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    dependencies=[HealthGuard],
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "warming, no worker can serve, or draining"}},
)
async def readyz(pool: Pool) -> JSONResponse:
    """200 once every worker is warmed; 503 while warming, after a crash, or while draining."""
    status = "ready" if pool.ready else "draining" if pool.draining else "warming"
    body = Readiness(status=status, workers=pool.readiness())
    return JSONResponse(body.model_dump(), status_code=200 if pool.ready else 503)


@router.get(
    "/metrics",
    dependencies=[MetricsGuard],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}},
)
async def prometheus() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
