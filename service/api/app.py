"""The ASGI app: factory, lifespan (worker pool, result sweeper), middleware, error handlers, routers.

Routes live in service/api/routes/ (one router per area), auth in service/api/deps.py, uploads in
service/api/uploads.py, the request context in service/api/middleware.py. Run it with ``face3d serve``
(which also sets up JSON logging and the graceful-shutdown timeout). SIGTERM: uvicorn stops
accepting, lets open requests finish, then the lifespan drains the pool and stops the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from face3d.service.api.keys import check_signing_keys
from face3d.service.api.middleware import RequestContext
from face3d.service.api.openapi import install_openapi
from face3d.service.api.problems import install_handlers
from face3d.service.api.quota import make_quota
from face3d.service.api.routes import health, models, person, reconstruct, results, web
from face3d.service.api.uploads import UploadBudget
from face3d.service.config import Settings, load_settings
from face3d.service.storage import ResultStore, make_store
from face3d.service.workers.pool import WorkerPool

log = logging.getLogger("face3d.api")

WORKER_STOP_S = 5.0


async def _sweep(store: ResultStore, interval_s: float) -> None:
    """Remove expired results every ``interval_s``; a storage hiccup never ends the sweeper."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            removed = await asyncio.to_thread(store.sweep_expired)
            if removed:
                log.info("expired results removed", extra={"count": removed})
        except Exception:
            log.exception("result sweep failed")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the workers and the sweeper; at shutdown drain the pool within WORKER_STOP_S."""
    settings: Settings = app.state.settings
    pool = WorkerPool(settings)
    app.state.pool = pool
    await pool.start()
    sweeper = asyncio.create_task(_sweep(app.state.store, settings.sweep_interval_s), name="face3d-sweeper")
    try:
        yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        # uvicorn has already given open requests drain_timeout_s (timeout_graceful_shutdown) before
        # the lifespan ends, so nobody awaits what is left: stop the workers within a short grace
        # and keep the whole shutdown inside drain_timeout_s + WORKER_STOP_S.
        await pool.drain(wait_s=WORKER_STOP_S)
        await app.state.quota.close()
        log.info("drained and stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app; with no argument settings come from api_config.yaml and ``FACE3D_*``."""
    settings = settings or load_settings()
    check_signing_keys(settings)  # a weak or unreadable public key fails the start, not each request
    app = FastAPI(
        title="face3d",
        version="0.1.0",
        summary="One face photo in, a textured 3D face mesh out.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.quota = make_quota(settings)
    app.state.uploads = UploadBudget(settings.upload_buffer_bytes)
    app.state.store = make_store(settings)
    install_handlers(app)
    app.add_middleware(RequestContext, max_inflight=settings.max_inflight_requests)
    for router in (health.router, models.router, reconstruct.router, person.router, results.router):
        app.include_router(router)
    if settings.web_ui:
        app.include_router(web.router)  # the page at / (service/web/); production manifests may turn it off
    install_openapi(app, settings)
    return app
