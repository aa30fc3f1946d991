"""POST /v1/reconstruct (one image) and /v1/reconstruct/batch (several): validate, admit, submit,
answer. The worker stores the files (or streams the one artifact asked for); only a summary comes back.

What a request may cost happens in order of price: query and media type first, then pool admission
(503 at once when no worker can take it), then quota, and only then is the body read (under the
memory budget), parsed and sniffed off the event loop. Quota is refunded when the request fails
before any work starts.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator

from face3d.models.errors import OptionsError
from face3d.models.pipeline import (
    ALL_FORMATS,
    DEFAULT_FORMATS,
    FORMATS_PATTERN,
    Lighting,
    ReconstructOptions,
    TextureFormat,
)
from face3d.service import metrics
from face3d.service.api.auth import Principal
from face3d.service.api.deps import AppSettings, Pool, ReconstructCaller, StrictQuery, TenantQuota, Uploads
from face3d.service.api.openapi import binary, image_body, problems
from face3d.service.api.quota import Quota, work_units
from face3d.service.api.schemas import BatchResult, ImageSize, ReconstructResult
from face3d.service.api.uploads import (
    check_image,
    content_type,
    parse_images,
    receive,
    refusing_early,
)
from face3d.service.config import Settings
from face3d.service.errors import Problem
from face3d.service.storage import new_result_id
from face3d.service.workers.artifacts import media_type
from face3d.service.workers.protocol import ARTIFACT_FORMATS, ArtifactKind, JobDone

log = logging.getLogger("face3d.api")

router = APIRouter(tags=["reconstruct"], dependencies=[StrictQuery])


def _strict_bool(value: Any) -> Any:
    """Only ``true``/``false``: the schema says boolean, so ``yes``, ``1`` or ``on`` are rejected."""
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise ValueError("must be true or false")
        return value == "true"
    return value


# The rules are ReconstructOptions' (models/pipeline.py): the query's pattern and types come from its
# constants, and the OpenAPI document lists this deployment's uv sizes (service/api/openapi.py).
UvSize = Annotated[int | None, Query(description="texture edge in pixels (default: uv_size)")]
Formats = Annotated[
    list[str] | None,
    Query(
        description=f"output files, from {','.join(sorted(ALL_FORMATS))} "
        f"(default: {','.join(sorted(DEFAULT_FORMATS))}); a comma list (formats=obj,glb) or the "
        "parameter repeated (formats=obj&formats=glb)",
    ),
]
Texture = Annotated[TextureFormat, Query(description="texture image format")]
AllFaces = Annotated[
    bool, BeforeValidator(_strict_bool), Query(description="every face (up to max_faces), largest first")
]
Neutral = Annotated[
    bool,
    BeforeValidator(_strict_bool),
    Query(description="meshes carry the fitted identity with a neutral expression (morphable backends, ict)"),
]
LightingQuery = Annotated[
    Lighting,
    Query(
        description="remove: an evenly lit texture, the photo's estimated light divided out; keep: the "
        "photo's light as photographed; result.json carries the estimated SH lighting either way (ict)"
    ),
]
ArtifactQuery = Annotated[
    ArtifactKind,
    Query(description="the one file to stream back (nothing is stored): glb, usdz, obj (a zip) or zip"),
]
LegacyFormat = Annotated[
    Literal["json"] | ArtifactKind,
    Query(include_in_schema=False),  # /v1/reconstruct?format=glb, from before reconstruct_artifact
]


def _formats(values: list[str] | None) -> list[str] | None:
    """Every value a comma list of known formats (no empty names): ``obj,glb`` or repeated values."""
    if values is not None and not all(re.fullmatch(FORMATS_PATTERN, value) for value in values):
        raise Problem("validation", f"formats must be a comma list from {','.join(sorted(ALL_FORMATS))}")
    return None if values is None else [name for value in values for name in value.split(",")]


@dataclass
class OptionsQuery:
    """The query parameters both reconstruct routes share (a class dependency: one definition)."""

    uv_size: UvSize = None
    formats: Formats = None
    texture: Texture = "png"
    all_faces: AllFaces = False
    neutral: Neutral = False
    lighting: LightingQuery = "remove"

    def options(self, settings: Settings, formats: Any = None) -> ReconstructOptions:
        """Under the pipeline's rules (``formats`` overrides the query's); violations are 422s."""
        try:
            return ReconstructOptions.parse(
                uv_size=self.uv_size,
                formats=_formats(self.formats) if formats is None else formats,
                texture_format=self.texture,
                all_faces=self.all_faces,
                neutral=self.neutral,
                lighting=self.lighting,
                default_uv_size=settings.uv_size,
                max_uv_size=settings.max_uv_size,
            )
        except OptionsError as exc:
            raise Problem("validation", str(exc)) from None


OptionsParams = Annotated[OptionsQuery, Depends()]

_ERRORS = (400, 401, 403, 408, 413, 415, 422, 429, 503, 504)
RESULT_LINKS = {
    "GetResultDocument": {
        "operationId": "get_result_document",
        "parameters": {"result_id": "$response.body#/id"},
        "description": "this result's result.json",
    },
    "GetResultFile": {
        "operationId": "get_result_file",
        "parameters": {"result_id": "$response.body#/id", "name": "$response.body#/faces/0/files/0"},
        "description": "a file of this result (names: the keys of `files`)",
    },
    "DeleteResult": {"operationId": "delete_result", "parameters": {"result_id": "$response.body#/id"}},
}
_ARTIFACT = binary(
    "the artifact's bytes (Content-Disposition names the file)",
    {media_type(f".{kind}") for kind in get_args(ArtifactKind)} | {media_type(".zip")},
)


@asynccontextmanager
async def refunded(quota: Quota, caller: Principal, cost: int) -> AsyncIterator[None]:
    """Refund ``cost`` when the block fails with a problem: it is entered only before work starts."""
    try:
        yield
    except Problem:
        await quota.refund(caller.tenant, cost)
        raise


def result_json_body(settings: Settings, done: JobDone) -> dict[str, Any]:
    """``result_body`` as JSON data: a face has only the optional members it carries (no nulls)."""
    return result_body(settings, done).model_dump(mode="json")


def result_body(settings: Settings, done: JobDone) -> ReconstructResult:
    """The stored result as the client sees it: id, faces, file URLs, timings."""
    summary = done.summary
    assert summary is not None
    base = settings.public_base_url.rstrip("/")
    return ReconstructResult(
        id=summary.result_id,
        image=ImageSize(width=summary.width, height=summary.height),
        faces=summary.faces,
        files={name: f"{base}/v1/results/{summary.result_id}/{name}" for name in summary.files},
        timings_ms={k: round(v, 2) for k, v in done.timings_ms.items()},
        expires_in_s=settings.result_ttl_s,
    )


@dataclass
class OneImage:
    """What the single-image routes take (a class dependency: one parameter list) and do."""

    request: Request
    caller: ReconstructCaller
    settings: AppSettings
    pool: Pool
    quota: TenantQuota
    uploads: Uploads
    query: OptionsParams

    async def answer(self, format: str) -> Response:
        """Admit, charge, read, submit; the stored result as JSON (``json``) or the artifact's bytes."""
        request, caller, settings, pool, quota = (
            self.request,
            self.caller,
            self.settings,
            self.pool,
            self.quota,
        )
        async with refusing_early(request):
            options = self.query.options(settings, ARTIFACT_FORMATS.get(format))
            media = content_type(request)
            pool.check_admission()
            cost = work_units(options.uv_size, options.all_faces, settings.max_faces)
            await quota.charge(caller.tenant, cost)
        async with receive(request, settings, self.uploads) as body:
            async with refunded(quota, caller, cost):
                [(_, data)] = await parse_images(request, body, media, "image", 1)
                await check_image(data, settings)
                pool.check_admission()
            artifact = None if format == "json" else format
            done = await pool.submit(data, options, caller.tenant, new_result_id(), artifact)
        if done.artifact is not None:
            disposition = f'attachment; filename="{done.artifact.name}"'
            return Response(
                done.artifact.data,
                media_type=done.artifact.media_type,
                headers={"Content-Disposition": disposition},
            )
        return JSONResponse(result_json_body(settings, done))


OneImageParams = Annotated[OneImage, Depends()]


@router.post(
    "/v1/reconstruct",
    operation_id="reconstruct",
    response_model=ReconstructResult,
    responses={200: {"links": RESULT_LINKS}, **problems(*_ERRORS)},
    openapi_extra=image_body("image", many=False),
)
@router.post("/reconstruct", include_in_schema=False)
async def reconstruct(one: OneImageParams, format: LegacyFormat = "json") -> Response:
    """One image (multipart field ``image`` or a raw image body) -> its stored result: id, faces and
    the URLs of its files."""
    return await one.answer(format)


@router.post(
    "/v1/reconstruct/artifact",
    operation_id="reconstruct_artifact",
    response_class=Response,
    responses={200: _ARTIFACT, **problems(*_ERRORS)},
    openapi_extra=image_body("image", many=False),
)
async def reconstruct_artifact(one: OneImageParams, format: ArtifactQuery) -> Response:
    """One image -> one file streamed back, nothing stored: ``glb`` the largest face's GLB, ``usdz`` its
    USDZ, ``obj`` a zip of its OBJ, MTL and texture, ``zip`` every file the request's ``formats`` produce."""
    return await one.answer(format)


@router.post(
    "/v1/reconstruct/batch",
    operation_id="reconstruct_batch",
    response_model=BatchResult,
    responses=problems(*_ERRORS),
    openapi_extra=image_body("images", many=True),
)
async def reconstruct_batch(
    request: Request,
    caller: ReconstructCaller,
    settings: AppSettings,
    pool: Pool,
    quota: TenantQuota,
    uploads: Uploads,
    query: OptionsParams,
) -> JSONResponse:
    """Several images (multipart fields ``images``); one entry per image, each a result or a problem."""
    async with refusing_early(request):
        options = query.options(settings)
        if content_type(request) != "multipart/form-data":
            raise Problem("unsupported-type", "send the images as multipart/form-data fields 'images'")
        pool.check_admission()
    unit = work_units(options.uv_size, options.all_faces, settings.max_faces)
    async with receive(request, settings, uploads) as body:
        images = await parse_images(request, body, "multipart/form-data", "images", settings.max_batch_items)
        await quota.charge(caller.tenant, unit * len(images))

        async def one(index: int, filename: str, data: bytes) -> dict[str, Any]:
            try:
                async with refunded(quota, caller, unit):
                    await check_image(data, settings)
                    pool.check_admission()
                done = await pool.submit(data, options, caller.tenant, new_result_id())
                result = result_json_body(settings, done)
                return {"index": index, "filename": filename, **result}
            except Problem as problem:
                metrics.ERRORS.labels(type=problem.slug).inc()
                return {"index": index, "filename": filename, "error": problem.to_dict()}

        items = await asyncio.gather(*(one(i, name, data) for i, (name, data) in enumerate(images)))
    return JSONResponse({"items": items, "succeeded": sum("error" not in item for item in items)})
