"""``face3d.client``: a small typed client for the face3d REST API, sync (``Client``) and async
(``AsyncClient``), on httpx.

    from face3d.client import Client

    with Client("https://face3d.example.com", token) as api:
        result = api.reconstruct("photo.jpg", uv_size=1024)      # a path, bytes or an RGB array
        face = result.faces[0]                                  # FaceResult: identity, expression, ...
        glb = api.download(result.id, "face.glb")               # bytes of any listed file
        api.save(result, "out/")                                # every file into a folder
        with api.stream_artifact("photo.jpg", "glb") as chunks:  # ?format=glb, streamed, nothing stored
            ...
        api.delete(result.id)

Answers are the service's own pydantic models (``ReconstructResult``, ``ResultDocument``, ...: the
same classes the server answers with); an error is a ``ProblemError`` carrying the RFC 9457 problem.
429 and 503 are retried after their ``Retry-After``, a bounded number of times (``RetryPolicy``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx

from face3d.models.export.document import FaceResult, ResultDocument
from face3d.service.api.schemas import (
    BatchResult,
    ModelsInfo,
    PersonReconstructResult,
    ProblemDetails,
    ReconstructResult,
)

from .core import (
    Call,
    Image,
    ProblemError,
    RetryPolicy,
    artifact_call,
    batch_call,
    checked,
    headers_for,
    parsed,
    person_call,
    problem_of,
    reconstruct_call,
    result_path,
)

__all__ = [
    "AsyncClient",
    "BatchResult",
    "Client",
    "FaceResult",
    "Image",
    "ModelsInfo",
    "PersonReconstructResult",
    "ProblemDetails",
    "ProblemError",
    "ReconstructResult",
    "ResultDocument",
    "RetryPolicy",
]

DEFAULT_TIMEOUT_S = 180.0


def _write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / Path(name).name  # a listed name, never a path out of the folder
    path.write_bytes(data)
    return path


class _Connection:
    """A base URL, a token, a timeout and a retry policy over one httpx connection pool."""

    _http_class: type[httpx.Client] | type[httpx.AsyncClient]

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.http = self._http_class(
            base_url=base_url,
            headers=headers_for(token, headers),
            timeout=timeout_s,
            transport=transport,  # type: ignore[arg-type]
        )


class Client(_Connection):
    """The face3d API over one httpx connection pool. ``base_url``: the service's root URL;
    ``token``: a bearer JWT (``face3d token``); options are the query parameters of README "REST API"
    (``uv_size``, ``formats``, ``texture``, ``all_faces``, ``neutral``, ``lighting``)."""

    _http_class = httpx.Client
    http: httpx.Client

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            response = self.http.request(call.method, call.path, **call.kwargs())
            wait = self.retry.wait_s(response, attempt)
            if wait is None:
                return response
            time.sleep(wait)

    def reconstruct(self, image: Image, **options: Any) -> ReconstructResult:
        """One photo -> its stored result (id, faces, file URLs)."""
        return parsed(self._send(reconstruct_call(image, options)), ReconstructResult)

    def reconstruct_batch(self, images: Iterable[Image], **options: Any) -> BatchResult:
        """Several photos in one request; one item per photo, a result or a problem."""
        return parsed(self._send(batch_call(images, options)), BatchResult)

    def reconstruct_person(self, images: Iterable[Image], **options: Any) -> PersonReconstructResult:
        """2-8 photos of one person -> one stored head, with every photo's part in it (``person``)."""
        return parsed(self._send(person_call(images, options)), PersonReconstructResult)

    def reconstruct_artifact(self, image: Image, format: str = "glb", **options: Any) -> bytes:
        """One photo -> one file's bytes, nothing stored (``glb``, ``obj`` or ``zip``: README)."""
        return checked(self._send(artifact_call(image, format, options))).content

    @contextmanager
    def stream_artifact(self, image: Image, format: str = "glb", **options: Any) -> Iterator[Iterator[bytes]]:
        """``reconstruct_artifact`` as chunks, for writing a large artifact without holding it."""
        call = artifact_call(image, format, options)
        attempt = 0
        while True:
            attempt += 1
            with self.http.stream(call.method, call.path, **call.kwargs()) as response:
                wait = self.retry.wait_s(response, attempt)
                if wait is None:
                    if not response.is_success:
                        response.read()
                        raise problem_of(response)
                    yield response.iter_bytes()
                    return
            time.sleep(wait)

    def result_document(self, result_id: str) -> ResultDocument:
        """A stored result's result.json, typed."""
        return parsed(self._send(Call("GET", result_path(result_id, "result.json"))), ResultDocument)

    def download(self, result_id: str, name: str) -> bytes:
        """One stored file's bytes (``name``: a key of the result's ``files``)."""
        return checked(self._send(Call("GET", result_path(result_id, name)))).content

    def save(self, result: ReconstructResult, folder: str | Path) -> dict[str, Path]:
        """Every file of ``result`` into ``folder``; name -> path written."""
        return {name: _write(Path(folder), name, self.download(result.id, name)) for name in result.files}

    def delete(self, result_id: str) -> None:
        checked(self._send(Call("DELETE", result_path(result_id))))

    def models_info(self) -> ModelsInfo:
        """Backend, model, weights, workers and this server's limits."""
        return parsed(self._send(Call("GET", "/v1/models")), ModelsInfo)


class AsyncClient(_Connection):
    """``Client`` for asyncio: the same methods, awaited."""

    _http_class = httpx.AsyncClient
    http: httpx.AsyncClient

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            response = await self.http.request(call.method, call.path, **call.kwargs())
            wait = self.retry.wait_s(response, attempt)
            if wait is None:
                return response
            await asyncio.sleep(wait)

    async def reconstruct(self, image: Image, **options: Any) -> ReconstructResult:
        return parsed(await self._send(reconstruct_call(image, options)), ReconstructResult)

    async def reconstruct_batch(self, images: Iterable[Image], **options: Any) -> BatchResult:
        return parsed(await self._send(batch_call(images, options)), BatchResult)

    async def reconstruct_person(self, images: Iterable[Image], **options: Any) -> PersonReconstructResult:
        return parsed(await self._send(person_call(images, options)), PersonReconstructResult)

    async def reconstruct_artifact(self, image: Image, format: str = "glb", **options: Any) -> bytes:
        return checked(await self._send(artifact_call(image, format, options))).content

    @asynccontextmanager
    async def stream_artifact(
        self, image: Image, format: str = "glb", **options: Any
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        call = artifact_call(image, format, options)
        attempt = 0
        while True:
            attempt += 1
            async with self.http.stream(call.method, call.path, **call.kwargs()) as response:
                wait = self.retry.wait_s(response, attempt)
                if wait is None:
                    if not response.is_success:
                        await response.aread()
                        raise problem_of(response)
                    yield response.aiter_bytes()
                    return
            await asyncio.sleep(wait)

    async def result_document(self, result_id: str) -> ResultDocument:
        return parsed(await self._send(Call("GET", result_path(result_id, "result.json"))), ResultDocument)

    async def download(self, result_id: str, name: str) -> bytes:
        return checked(await self._send(Call("GET", result_path(result_id, name)))).content

    async def save(self, result: ReconstructResult, folder: str | Path) -> dict[str, Path]:
        datas = await asyncio.gather(*(self.download(result.id, name) for name in result.files))
        return {
            name: _write(Path(folder), name, data) for name, data in zip(result.files, datas, strict=True)
        }

    async def delete(self, result_id: str) -> None:
        checked(await self._send(Call("DELETE", result_path(result_id))))

    async def models_info(self) -> ModelsInfo:
        return parsed(await self._send(Call("GET", "/v1/models")), ModelsInfo)
