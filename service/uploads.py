"""Upload parsing: the body under a byte budget enforced while streaming, multipart or a raw image,
and a header-only sniff so that an oversized or non-image upload never costs a worker slot."""

from __future__ import annotations

import asyncio

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message

from face3d.models.errors import ImageError
from face3d.models.imageio import sniff
from face3d.service.config import Settings
from face3d.service.problems import Problem

RAW_IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "application/octet-stream"}
MAX_MULTIPART_FILES = 1000


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


def _sniff(data: bytes, max_pixels: int) -> None:
    try:
        sniff(data, max_pixels)
    except ImageError as exc:
        raise Problem(exc.kind, str(exc)) from None


async def check_image(data: bytes, settings: Settings) -> None:
    """Header-only sniff, off the event loop: right type and pixel budget, before a worker sees it."""
    await asyncio.to_thread(_sniff, data, settings.max_pixels)
