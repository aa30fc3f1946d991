"""/v1/models: what is loaded (backend, model, weight hashes, device, dtype, buckets) and the limits."""

from __future__ import annotations

from fastapi import APIRouter

from face3d.models.export.document import ModelInfo
from face3d.models.pipeline import ALL_FORMATS
from face3d.service.api.deps import AppSettings, CurrentPrincipal, Pool, StrictQuery
from face3d.service.api.openapi import problems
from face3d.service.api.schemas import Limits, ModelsInfo

router = APIRouter(tags=["service"], dependencies=[StrictQuery])


@router.get("/v1/models", operation_id="get_models_info", response_model=ModelsInfo, responses=problems(401))
async def models(pool: Pool, settings: AppSettings, caller: CurrentPrincipal) -> ModelsInfo:
    """The backend's self-description as the first ready worker reports it, and each worker's state."""
    return ModelsInfo(
        model=ModelInfo.model_validate(pool.model_info()),
        workers=pool.status(),
        limits=Limits(
            uv_size=settings.uv_size,
            max_uv_size=settings.max_uv_size,
            max_body_bytes=settings.max_body_bytes,
            max_pixels=settings.max_pixels,
            max_batch_items=settings.max_batch_items,
            max_person_photos=settings.max_person_photos,
            max_person_body_bytes=settings.max_person_body_bytes,
            formats=sorted(ALL_FORMATS),
        ),
    )
