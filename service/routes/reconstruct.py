"""POST /v1/reconstruct (one image) and /v1/reconstruct/batch (several): validate, admit, submit,
answer. The worker stores the files (or streams the one artifact asked for); only a summary comes back.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from face3d.models.errors import OptionsError
from face3d.models.pipeline import ReconstructOptions
from face3d.service import metrics
from face3d.service.config import Settings
from face3d.service.deps import AppSettings, Pool, ReconstructCaller, charge_quota
from face3d.service.problems import Problem
from face3d.service.protocol import ARTIFACT_FORMATS, JobDone
from face3d.service.schemas import BatchResult, ImageSize, ReconstructResult
from face3d.service.storage import new_result_id
from face3d.service.uploads import check_image, read_uploads

log = logging.getLogger("face3d.api")

router = APIRouter(tags=["reconstruct"])

UvSize = Annotated[int | None, Query(description="texture size, a power of two (default: uv_size)")]
Formats = Annotated[
    str | None, Query(description="comma list of obj,png,glb,json,preview (default: obj,png,glb,json)")
]
Texture = Annotated[Literal["png", "jpeg"], Query(description="texture image format")]
ArtifactQuery = Annotated[
    Literal["json", "glb", "obj", "zip"], Query(description="response body: the result JSON or one file")
]


@dataclass
class OptionsQuery:
    """The query parameters both reconstruct routes share (a class dependency: one definition)."""

    uv_size: UvSize = None
    formats: Formats = None
    texture: Texture = "png"
    all_faces: bool = False

    def options(self, settings: Settings, formats: Any = None) -> ReconstructOptions:
        """Under the pipeline's rules (``formats`` overrides the query's); violations are 422s."""
        try:
            return ReconstructOptions.parse(
                uv_size=self.uv_size,
                formats=self.formats if formats is None else formats,
                texture_format=self.texture,
                all_faces=self.all_faces,
                default_uv_size=settings.uv_size,
                max_uv_size=settings.max_uv_size,
            )
        except OptionsError as exc:
            raise Problem("validation", str(exc)) from None


OptionsParams = Annotated[OptionsQuery, Depends()]


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


@router.post("/v1/reconstruct", response_model=ReconstructResult)
@router.post("/reconstruct", include_in_schema=False)
async def reconstruct(
    request: Request,
    caller: ReconstructCaller,
    settings: AppSettings,
    pool: Pool,
    query: OptionsParams,
    format: ArtifactQuery = "json",
) -> Response:
    """One image (multipart field ``image`` or a raw image body) -> result JSON or one artifact."""
    options = query.options(settings, None if format == "json" else ARTIFACT_FORMATS[format])
    charge_quota(request, caller, 1)
    data = (await read_uploads(request, "image", settings))[0][1]
    await check_image(data, settings)
    artifact = None if format == "json" else format
    done = await pool.submit(data, options, caller.tenant, new_result_id(), artifact)
    if done.artifact is not None:
        disposition = f'attachment; filename="{done.artifact.name}"'
        return Response(
            done.artifact.data,
            media_type=done.artifact.media_type,
            headers={"Content-Disposition": disposition},
        )
    return JSONResponse(result_body(settings, done).model_dump(mode="json"))


@router.post("/v1/reconstruct/batch", response_model=BatchResult)
async def reconstruct_batch(
    request: Request,
    caller: ReconstructCaller,
    settings: AppSettings,
    pool: Pool,
    query: OptionsParams,
) -> JSONResponse:
    """Several images (multipart fields ``images``); one entry per image, each a result or a problem."""
    options = query.options(settings)
    uploads = await read_uploads(request, "images", settings)
    if len(uploads) > settings.max_batch_items:
        raise Problem("too-large", f"at most {settings.max_batch_items} images per batch, got {len(uploads)}")
    charge_quota(request, caller, len(uploads))

    async def one(index: int, filename: str, data: bytes) -> dict[str, Any]:
        try:
            await check_image(data, settings)
            done = await pool.submit(data, options, caller.tenant, new_result_id())
            body = result_body(settings, done).model_dump(mode="json")
            return {"index": index, "filename": filename, **body}
        except Problem as problem:
            metrics.ERRORS.labels(type=problem.slug).inc()
            return {"index": index, "filename": filename, "error": problem.to_dict()}

    items = await asyncio.gather(*(one(i, name, data) for i, (name, data) in enumerate(uploads)))
    return JSONResponse({"items": items, "succeeded": sum("error" not in item for item in items)})
