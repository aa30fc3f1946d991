"""Upload handling: the body under a byte budget, a deadline and a process-wide memory budget,
multipart parsed off the event loop, and a header-only sniff, so that an oversized, slow or
non-image upload never costs a worker slot and never stalls the event loop.

Order inside a request (see service/api/routes/reconstruct.py): admission and quota come first, then
``receive`` reserves memory in the ``UploadBudget`` and reads the body, then ``parse_images`` and
``check_image`` run in threads. The reservation lasts until the response is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from face3d.models.errors import ImageError
from face3d.models.imageio import sniff
from face3d.service.config import Settings
from face3d.service.errors import Problem

RAW_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "application/octet-stream"})
MULTIPART = "multipart/form-data"
EXTRA_PARTS = 16
"""Multipart parts beyond the images a route accepts (other fields are ignored, up to this many)."""
MAX_PART_HEADER_BYTES = 4096
MAX_PART_HEADERS = 8


def _busy(detail: str) -> Problem:
    return Problem("overloaded", detail, headers={"Retry-After": "1"})


class UploadBudget:
    """Bytes of request bodies held in this process at once, over all requests: a hard memory bound.

    ``take`` never waits: a request that does not fit is refused with 503 at once (queueing uploads
    would hold their connections and sockets instead). Thread-safe.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> None:
        with self._lock:
            if self.used + size > self.limit:
                raise _busy("too many uploads are being received; retry shortly")
            self.used += size

    def give(self, size: int) -> None:
        with self._lock:
            self.used = max(0, self.used - size)


LINGER_BYTES = 1_000_000
LINGER_S = 1.0


@asynccontextmanager
async def refusing_early(request: Request) -> AsyncIterator[None]:
    """Refusals before the body is read (type, admission, quota) first read and drop a small body.

    An answer sent while the client is still uploading makes the server close the connection with
    unread bytes in it, and the TCP reset that follows can destroy the answer in the client's buffer
    before it is read: the client sees a connection error instead of 503 + Retry-After. Bodies up to
    ``LINGER_BYTES`` are cheap to drain (``LINGER_S`` at most); larger ones are cut off as before.
    """
    try:
        yield
    except Problem:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) <= LINGER_BYTES:
            with contextlib.suppress(TimeoutError, ClientDisconnect):
                async with asyncio.timeout(LINGER_S):
                    async for _ in request.stream():
                        pass
        raise


def content_type(request: Request) -> str:
    """The media type, lowercased, without parameters; 415 unless multipart or a raw image type."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != MULTIPART and media not in RAW_IMAGE_TYPES:
        raise Problem(
            "unsupported-type", "send multipart/form-data or a raw image/jpeg, image/png or image/webp body"
        )
    return media


@dataclass
class _Reservation:
    budget: UploadBudget
    held: int = 0
    chunks: list[bytes] = field(default_factory=list)

    def grow(self, size: int) -> None:
        if size > self.held:
            self.budget.take(size - self.held)
            self.held = size


@asynccontextmanager
async def receive(
    request: Request, settings: Settings, budget: UploadBudget, limit: int | None = None
) -> AsyncIterator[bytes]:
    """The whole body, holding its bytes in ``budget`` until the block exits.

    413 as soon as the body exceeds ``limit`` (default ``max_body_bytes``; a declared Content-Length
    before reading anything); 408 when it has not fully arrived within ``body_timeout_s``; 503 when the
    process's upload memory is spoken for. A declared length is reserved up front, a chunked body as it
    comes.
    """
    limit = settings.max_body_bytes if limit is None else limit
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem("too-large", f"the body is {declared} bytes; the limit is {limit}")
    lease = _Reservation(budget)
    try:
        if declared is not None and declared.isdigit():
            lease.grow(int(declared))
        body = await _read(request, limit, settings.body_timeout_s, lease)
        yield body
    finally:
        budget.give(lease.held)


async def _read(request: Request, limit: int, timeout_s: float, lease: _Reservation) -> bytes:
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Problem("too-large", f"the body exceeds the limit of {limit} bytes")
                lease.grow(size)
                lease.chunks.append(chunk)
    except TimeoutError:
        raise Problem("request-timeout", f"the body did not arrive within {timeout_s:g} s") from None
    except ClientDisconnect:
        raise Problem("validation", "the client disconnected before the body was complete") from None
    body = b"".join(lease.chunks)
    lease.chunks.clear()
    return body


def _parse_multipart(body: bytes, header: str, field_name: str, max_files: int) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every part named ``field_name``; runs in a thread (it is pure CPU).

    More than ``max_files`` such parts is a 413 (counted while parsing, so 1,001 parts cost no
    more than one over); more than ``EXTRA_PARTS`` other parts, a part with oversized or too many
    headers, or a malformed body is a 400-class ``validation`` problem.
    """
    _, params = parse_options_header(header)
    boundary = params.get(b"boundary")
    if not boundary:
        raise Problem("validation", "multipart/form-data needs a boundary parameter")
    found: list[tuple[str, bytes]] = []
    others = 0
    header_name = bytearray()
    header_value = bytearray()
    headers: dict[bytes, bytes] = {}
    pieces: list[memoryview] = []

    def on_part_begin() -> None:
        headers.clear()
        pieces.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_name).strip().lower()] = bytes(header_value).strip()
        header_name.clear()
        header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        pieces.append(memoryview(data)[start:end])  # a view of the body: one copy per part, at its end

    def on_part_end() -> None:
        nonlocal others
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("latin-1")
        if name != field_name:
            others += 1
            if others > EXTRA_PARTS:
                raise Problem("validation", f"more than {EXTRA_PARTS} unexpected multipart fields")
            return
        if b"filename" not in options:  # a plain form field, not a file: the schema's "binary" is a file
            raise Problem("validation", f"multipart field {field_name!r} must be a file (with a filename)")
        if len(found) >= max_files:
            raise Problem("too-large", f"at most {max_files} images per request")
        filename = options[b"filename"].decode("utf-8", "replace")[:256] or field_name
        found.append((filename, b"".join(pieces)))
        pieces.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
        max_header_count=MAX_PART_HEADERS,
        max_header_size=MAX_PART_HEADER_BYTES,
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError:
        raise Problem("validation", "the multipart body is malformed") from None
    if not found:
        raise Problem("validation", f"multipart field {field_name!r} with an image file is required")
    return found


async def parse_images(
    request: Request, body: bytes, media: str, field_name: str, max_files: int
) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every upload: multipart field ``field_name``, or the raw body as one image."""
    if media != MULTIPART:
        return [(field_name, body)]
    header = request.headers.get("content-type", "")
    return await asyncio.to_thread(_parse_multipart, body, header, field_name, max_files)


def _sniff(data: bytes, max_pixels: int) -> None:
    try:
        sniff(data, max_pixels)
    except ImageError as exc:
        raise Problem(exc.kind, str(exc)) from None


async def check_image(data: bytes, settings: Settings) -> None:
    """Header-only sniff, off the event loop: right type and pixel budget, before a worker sees it."""
    await asyncio.to_thread(_sniff, data, settings.max_pixels)
