"""The HTTP API: app factory, lifespan and thin routes over the worker pool and the result store.

Routes only validate, admit and translate: authentication lives in service/deps.py, the batching
and the models in the worker processes behind service/pool.py, errors are ``Problem``s rendered
by service/problems.py. Uploads are read with a byte budget enforced while streaming, and the
image header is sniffed here (cheap) so that an oversized or non-image upload never costs a
worker slot.

Run it with ``face3d serve`` (which also sets up JSON logging and the graceful-shutdown timeout).
SIGTERM: uvicorn stops accepting, lets open requests finish, then the lifespan drains the pool and
stops the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import time
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import MutableHeaders, UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from face3d.models.export import FORMATS
from face3d.models.imageio import ImageError, sniff
from face3d.service import logs, metrics
from face3d.service.auth import SCOPE_ADMIN, QuotaLimiter, require_scope
from face3d.service.config import Settings, check_uv_size, load_settings
from face3d.service.deps import (
    CurrentPrincipal,
    ReconstructCaller,
    ResultsReader,
    charge_quota,
    current_principal,
)
from face3d.service.pool import WorkerPool
from face3d.service.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from face3d.service.problems import Problem, install_handlers
from face3d.service.storage import ResultNotFound, ResultStore, make_store
from face3d.service.worker import JobDone, JobOptions

log = logging.getLogger("face3d.api")

RAW_IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "application/octet-stream"}
DEFAULT_FORMATS = "obj,png,glb,json"
# ?format=... -> the outputs the worker must build and the one file (or zip) streamed back.
ARTIFACT_FORMATS: dict[str, frozenset[str]] = {
    "glb": frozenset({"glb"}),
    "obj": frozenset({"obj"}),
    "zip": frozenset({"obj", "json"}),
}
MEDIA_TYPES = {
    ".glb": "model/gltf-binary",
    ".obj": "model/obj",
    ".mtl": "model/mtl",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".json": "application/json",
}
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_bearer = HTTPBearer(auto_error=False)
MAX_MULTIPART_FILES = 1000
WORKER_STOP_S = 5.0


# --------------------------------------------------------------------------- middleware
class RequestContext:
    """Pure ASGI middleware: request id in and out, in-flight gauge, latency by route template.

    Pure ASGI rather than ``BaseHTTPMiddleware`` so the upload stream reaches the route untouched.
    The route template (``/v1/results/{result_id}/{name}``) keeps the metric's label set bounded.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else logs.new_request_id()
        token = logs.request_id.set(request_id)
        status = 500
        start = time.perf_counter()

        problem = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, problem
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.append("X-Request-ID", request_id)
                problem = headers.get("content-type", "").startswith(PROBLEM_MEDIA_TYPE)
            elif message["type"] == "http.response.body" and problem:
                problem = False
                count_problem(message.get("body", b""))
            await send(message)

        metrics.INFLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics.INFLIGHT.dec()
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - start
            metrics.REQUEST_DURATION.labels(route=template, status=str(status)).observe(elapsed)
            if template not in ("/livez", "/readyz", "/metrics"):
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": template,
                        "status": status,
                        "ms": round(elapsed * 1e3, 1),
                    },
                )
            logs.request_id.reset(token)


def count_problem(body: bytes) -> None:
    """face3d_errors_total{type}: every problem answer is counted here, whichever layer raised it."""
    try:
        slug = str(json.loads(body)["type"]).rsplit("/", 1)[-1]
    except (ValueError, KeyError, TypeError):
        slug = "unknown"
    metrics.ERRORS.labels(type=slug).inc()


# --------------------------------------------------------------------------- uploads
async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing with 413 as soon as it exceeds ``limit`` bytes.

    A declared Content-Length above the limit is refused before reading anything; a chunked or
    lying client is cut off at the first chunk that crosses the limit, so memory stays bounded.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem("too-large", f"the body is {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem("too-large", f"the body exceeds the limit of {limit} bytes")
    return bytes(body)


async def read_uploads(request: Request, field: str, settings: Settings) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every upload: multipart field ``field``, or the raw body as one image.

    Multipart is parsed only after the whole body passed the byte budget, from the buffered copy.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data" and content_type not in RAW_IMAGE_TYPES:
        raise Problem(
            "unsupported-type", "send multipart/form-data or a raw image/jpeg, image/png or image/webp body"
        )
    body = await read_body(request, settings.max_body_bytes)
    if content_type != "multipart/form-data":
        return [("image", body)]

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    # The body is already bounded by max_body_bytes; parse generously and let the route count files,
    # so too many images is always a 413, not Starlette's own 400.
    form = await Request(request.scope, replay).form(max_files=MAX_MULTIPART_FILES, max_fields=64)
    try:
        uploads = [v for v in form.getlist(field) if isinstance(v, UploadFile)]
        if not uploads:
            raise Problem("validation", f"multipart field {field!r} with an image file is required")
        return [(u.filename or field, await u.read()) for u in uploads]
    finally:
        await form.close()


def check_image(data: bytes, settings: Settings) -> None:
    """Header-only sniff: right type and pixel budget, before a worker ever sees the bytes."""
    try:
        sniff(data, settings.max_pixels)
    except ImageError as exc:
        raise Problem(exc.kind, str(exc)) from None


# --------------------------------------------------------------------------- options
def job_options(
    settings: Settings, uv_size: int | None, formats: str, texture: str, all_faces: bool
) -> JobOptions:
    """Validate the query options; powers of two only, so the per-size UV bake maps stay few."""
    size = uv_size or settings.uv_size
    try:
        check_uv_size(size, settings.max_uv_size)
    except ValueError as exc:
        raise Problem("validation", str(exc)) from None
    chosen = frozenset(f.strip() for f in formats.split(",") if f.strip())
    if not chosen or chosen - FORMATS:
        raise Problem("validation", f"formats must be a comma list from {','.join(sorted(FORMATS))}")
    return JobOptions(size, chosen, texture, all_faces)


def file_urls(settings: Settings, result_id: str, names: list[str]) -> dict[str, str]:
    base = settings.public_base_url.rstrip("/")
    return {name: f"{base}/v1/results/{result_id}/{name}" for name in names}


def media_type(name: str) -> str:
    return MEDIA_TYPES.get(name[name.rfind(".") :], "application/octet-stream")


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """One in-memory zip; images are stored as they are (already compressed), text is deflated."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            packed = name.endswith((".png", ".jpg", ".glb"))
            zf.writestr(name, data, compress_type=zipfile.ZIP_STORED if packed else zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def artifact_response(done: JobDone, artifact: str) -> Response:
    """Stream one artifact: the (largest) face's GLB or OBJ, or a zip of OBJ, MTL, texture and result.json."""
    if artifact == "zip":
        name, data, kind = "face.zip", zip_bytes(done.files), "application/zip"
    else:
        name = next(n for n in done.files if n.endswith(f".{artifact}"))
        data, kind = done.files[name], media_type(name)
    return Response(data, media_type=kind, headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --------------------------------------------------------------------------- app
def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app; with no argument settings come from api_config.yaml and ``FACE3D_*``."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = WorkerPool(settings)
        app.state.pool = pool
        await pool.start()
        sweeper = asyncio.create_task(
            _sweep(app.state.store, settings.sweep_interval_s), name="face3d-sweeper"
        )
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
            log.info("drained and stopped")

    app = FastAPI(
        title="face3d",
        version="0.1.0",
        summary="One face photo in, a textured 3D face mesh out.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.quota = QuotaLimiter(settings.quota_rate_per_s, settings.quota_burst)
    app.state.store = make_store(settings)
    install_handlers(app)
    app.add_middleware(RequestContext)
    _routes(app, settings)
    return app


async def _sweep(store: ResultStore, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            removed = await asyncio.to_thread(store.sweep_expired)
            if removed:
                log.info("expired results removed", extra={"count": removed})
        except Exception:  # a storage hiccup must not end the sweeper for the life of the process
            log.exception("result sweep failed")


def _open_or(flag: bool, scope: str | None) -> Any:
    """Dependency: nothing when ``flag`` (endpoint open), else a verified caller (with ``scope``)."""

    def guard(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        if flag:
            return
        principal = current_principal(request, credentials)
        if scope:
            require_scope(principal, scope)

    return Depends(guard)


def _routes(app: FastAPI, settings: Settings) -> None:
    health = [_open_or(settings.open_health, None)]

    def pool_of(request: Request) -> WorkerPool:
        return request.app.state.pool

    @app.get("/livez", dependencies=health, tags=["health"])
    async def livez() -> dict[str, str]:
        """The process is up and serving HTTP (it says nothing about the workers)."""
        return {"status": "ok"}

    @app.get("/readyz", dependencies=health, tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        """200 once every worker is warmed; 503 while warming, after a crash, or while draining."""
        pool = pool_of(request)
        body = {
            "status": "ready" if pool.ready else "draining" if pool.draining else "warming",
            "workers": pool.status(),
        }
        return JSONResponse(body, status_code=200 if pool.ready else 503)

    @app.get("/metrics", dependencies=[_open_or(settings.open_metrics, SCOPE_ADMIN)], tags=["health"])
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/models", tags=["models"])
    async def models(request: Request, caller: CurrentPrincipal) -> dict[str, Any]:
        """What is loaded (model id, version, weight hashes, device, dtype) and each worker's state."""
        pool = pool_of(request)
        return {
            "model": pool.model_info(),
            "workers": pool.status(),
            "limits": {
                "uv_size": settings.uv_size,
                "max_uv_size": settings.max_uv_size,
                "max_body_bytes": settings.max_body_bytes,
                "max_pixels": settings.max_pixels,
                "max_batch_items": settings.max_batch_items,
                "formats": sorted(FORMATS),
            },
        }

    async def store_result(request: Request, tenant: str, done: JobDone) -> dict[str, Any]:
        """Persist the files and describe them: id, faces, URLs, timings."""
        await asyncio.to_thread(
            request.app.state.store.put, done.job_id, tenant, done.files, settings.result_ttl_s
        )
        return {
            "id": done.job_id,
            "image": done.summary.get("image"),
            "faces": done.summary.get("faces", []),
            "files": file_urls(settings, done.job_id, list(done.files)),
            "timings_ms": {k: round(v, 2) for k, v in done.timings_ms.items()},
            "expires_in_s": settings.result_ttl_s,
        }

    @app.post("/v1/reconstruct", tags=["reconstruct"])
    @app.post("/reconstruct", include_in_schema=False)
    async def reconstruct(
        request: Request,
        caller: ReconstructCaller,
        uv_size: Annotated[int | None, Query(description="texture size, a power of two")] = None,
        formats: Annotated[
            str, Query(description="comma list of obj,png,glb,json,preview")
        ] = DEFAULT_FORMATS,
        texture: Annotated[Literal["png", "jpeg"], Query()] = "png",
        all_faces: bool = False,
        format: Annotated[Literal["json", "glb", "obj", "zip"], Query(description="response body")] = "json",
    ) -> Response:
        """One image (multipart field ``image`` or a raw image body) -> result JSON or one artifact."""
        chosen = formats if format == "json" else ",".join(ARTIFACT_FORMATS[format])
        options = job_options(settings, uv_size, chosen, texture, all_faces)
        charge_quota(request, caller, 1)
        data = (await read_uploads(request, "image", settings))[0][1]
        check_image(data, settings)
        done = await pool_of(request).submit(data, options)
        if format != "json":
            return artifact_response(done, format)
        return JSONResponse(await store_result(request, caller.tenant, done))

    @app.post("/v1/reconstruct/batch", tags=["reconstruct"])
    async def reconstruct_batch(
        request: Request,
        caller: ReconstructCaller,
        uv_size: int | None = None,
        formats: str = DEFAULT_FORMATS,
        texture: Literal["png", "jpeg"] = "png",
        all_faces: bool = False,
    ) -> dict[str, Any]:
        """Several images (multipart fields ``images``); one entry per image, each a result or a problem."""
        options = job_options(settings, uv_size, formats, texture, all_faces)
        uploads = await read_uploads(request, "images", settings)
        if len(uploads) > settings.max_batch_items:
            raise Problem(
                "too-large", f"at most {settings.max_batch_items} images per batch, got {len(uploads)}"
            )
        charge_quota(request, caller, len(uploads))

        async def one(index: int, filename: str, data: bytes) -> dict[str, Any]:
            try:
                check_image(data, settings)
                done = await pool_of(request).submit(data, options)
                return {
                    "index": index,
                    "filename": filename,
                    **await store_result(request, caller.tenant, done),
                }
            except Problem as problem:
                metrics.ERRORS.labels(type=problem.slug).inc()
                return {"index": index, "filename": filename, "error": problem.to_dict()}
            except Exception:  # e.g. the result store is down: this item fails, the others stand
                log.exception("batch item %d failed", index)
                metrics.ERRORS.labels(type="internal").inc()
                problem = Problem("internal", "the result could not be stored")
                return {"index": index, "filename": filename, "error": problem.to_dict()}

        items = await asyncio.gather(*(one(i, name, data) for i, (name, data) in enumerate(uploads)))
        return {"items": items, "succeeded": sum("error" not in item for item in items)}

    @app.get("/v1/results/{result_id}/{name}", tags=["results"])
    async def result_file(request: Request, caller: ResultsReader, result_id: str, name: str) -> Response:
        """One stored file of a result owned by the caller's tenant (404 otherwise)."""
        try:
            data = await asyncio.to_thread(request.app.state.store.get, result_id, name, caller.tenant)
        except ResultNotFound:
            raise Problem("not-found", "no such result or file (it may have expired)") from None
        return Response(data, media_type=media_type(name))

    @app.delete("/v1/results/{result_id}", status_code=204, tags=["results"])
    async def delete_result(request: Request, caller: ResultsReader, result_id: str) -> Response:
        """Delete a result now instead of waiting for its expiry."""
        try:
            await asyncio.to_thread(request.app.state.store.delete, result_id, caller.tenant)
        except ResultNotFound:
            raise Problem("not-found", "no such result (it may have expired)") from None
        return Response(status_code=204)
