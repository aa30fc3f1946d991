"""Stored results: fetch one file, or delete a result before it expires. Tenants see only their own."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response

from face3d.service.artifacts import media_type
from face3d.service.deps import ResultsReader, Store
from face3d.service.problems import Problem
from face3d.service.storage import ResultNotFound

router = APIRouter(tags=["results"])


@router.get("/v1/results/{result_id}/{name}", response_class=Response)
async def result_file(store: Store, caller: ResultsReader, result_id: str, name: str) -> Response:
    """One stored file of a result owned by the caller's tenant (404 otherwise)."""
    try:
        data = await asyncio.to_thread(store.get, result_id, name, caller.tenant)
    except ResultNotFound:
        raise Problem("not-found", "no such result or file (it may have expired)") from None
    return Response(data, media_type=media_type(name))


@router.delete("/v1/results/{result_id}", status_code=204, response_class=Response)
async def delete_result(store: Store, caller: ResultsReader, result_id: str) -> Response:
    """Delete a result now instead of waiting for its expiry."""
    try:
        await asyncio.to_thread(store.delete, result_id, caller.tenant)
    except ResultNotFound:
        raise Problem("not-found", "no such result (it may have expired)") from None
    return Response(status_code=204)
