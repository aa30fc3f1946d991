"""Stored results: fetch one file, or delete a result before it expires. Tenants see only their own."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Response

from face3d.service.api.deps import ResultsDeleter, ResultsReader, Store, StrictQuery
from face3d.service.api.openapi import BINARY, problems
from face3d.service.errors import Problem
from face3d.service.storage import ResultNotFound
from face3d.service.workers.artifacts import MEDIA_TYPES
from face3d.service.workers.artifacts import media_type as media_type_of

router = APIRouter(tags=["results"], dependencies=[StrictQuery])

ResultId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{8,64}$", description="the result's id")]
FileName = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="a key of the result's `files`")
]
_FILE_TYPES = {m: {"schema": BINARY} for m in sorted({*MEDIA_TYPES.values(), "application/octet-stream"})}
_FILE_TYPES["application/json"] = {"schema": {"type": "object", "description": "result.json (README)"}}


@router.get(
    "/v1/results/{result_id}/{name}",
    operation_id="get_result_file",
    response_class=Response,
    responses={200: {"description": "the file", "content": _FILE_TYPES}, **problems(401, 403, 404, 422)},
)
async def result_file(store: Store, caller: ResultsReader, result_id: ResultId, name: FileName) -> Response:
    """One stored file of a result owned by the caller's tenant (404 otherwise)."""
    try:
        data = await asyncio.to_thread(store.get, result_id, name, caller.tenant)
    except ResultNotFound:
        raise Problem("not-found", "no such result or file (it may have expired)") from None
    return Response(data, media_type=media_type_of(name))


@router.delete(
    "/v1/results/{result_id}",
    operation_id="delete_result",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "deleted"}, **problems(401, 403, 404, 422)},
)
async def delete_result(store: Store, caller: ResultsDeleter, result_id: ResultId) -> Response:
    """Delete a result now instead of waiting for its expiry (scope ``results:delete``)."""
    try:
        await asyncio.to_thread(store.delete, result_id, caller.tenant)
    except ResultNotFound:
        raise Problem("not-found", "no such result (it may have expired)") from None
    return Response(status_code=204)
