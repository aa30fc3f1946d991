"""Stored results: the result document, one file's bytes, or delete a result before it expires.
Tenants see only their own.

result.json has its own operation (typed ``ResultDocument``, the bytes as stored); every other file
comes from ``get_result_file`` as bytes, documented with binary media types only, so generated
clients return bytes instead of trying to parse them. The literal path is routed first.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Response

from face3d.service.api.deps import ResultsDeleter, ResultsReader, Store, StrictQuery
from face3d.service.api.openapi import binary, problems
from face3d.service.errors import Problem
from face3d.service.storage import ResultNotFound
from face3d.service.workers.artifacts import MEDIA_TYPES
from face3d.service.workers.artifacts import media_type as media_type_of

router = APIRouter(tags=["results"], dependencies=[StrictQuery])

ResultId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{8,64}$", description="the result's id")]
FileName = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="a key of the result's `files`")
]
DOCUMENT = "result.json"
_FILE = binary("the file's bytes", set(MEDIA_TYPES.values()) - {media_type_of(DOCUMENT)})


async def _stored(store: Store, caller: ResultsReader, result_id: str, name: str) -> Response:
    try:
        data = await asyncio.to_thread(store.get, result_id, name, caller.tenant)
    except ResultNotFound:
        raise Problem("not-found", "no such result or file (it may have expired)") from None
    return Response(data, media_type=media_type_of(name))


@router.get(
    f"/v1/results/{{result_id}}/{DOCUMENT}",
    operation_id="get_result_document",
    response_class=Response,
    responses={
        200: {
            "description": "result.json as stored (absent when the request's formats left out json)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ResultDocument"}}},
        },
        **problems(401, 403, 404, 422),
    },
)
async def result_document(store: Store, caller: ResultsReader, result_id: ResultId) -> Response:
    """A result's result.json: image size, model, timings, faces and files (README "What you get")."""
    return await _stored(store, caller, result_id, DOCUMENT)


@router.get(
    "/v1/results/{result_id}/{name}",
    operation_id="get_result_file",
    response_class=Response,
    responses={200: _FILE, **problems(401, 403, 404, 422)},
)
async def result_file(store: Store, caller: ResultsReader, result_id: ResultId, name: FileName) -> Response:
    """One stored file of a result owned by the caller's tenant (404 otherwise); result.json has its
    own operation, ``get_result_document``."""
    return await _stored(store, caller, result_id, name)


@router.delete(
    "/v1/results/{result_id}",
    operation_id="delete_result",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "deleted (no body)"}, **problems(401, 403, 404, 422)},
)
async def delete_result(store: Store, caller: ResultsDeleter, result_id: ResultId) -> Response:
    """Delete a result now instead of waiting for its expiry (scope ``results:delete``)."""
    try:
        await asyncio.to_thread(store.delete, result_id, caller.tenant)
    except ResultNotFound:
        raise Problem("not-found", "no such result (it may have expired)") from None
    return Response(status_code=204)
