"""What the sync and the async client share: how a call is spelled, how an answer is read, when to retry.

The two client classes (``face3d.client.Client`` and ``AsyncClient``) only move bytes and sleep; every
decision lives here, once, as plain functions over httpx's request arguments and responses.
"""

from __future__ import annotations

import email.utils
import io
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
import numpy as np
from pydantic import BaseModel, ValidationError

from face3d.models.errors import ImageError
from face3d.models.imageio import sniff
from face3d.service.api.schemas import ProblemDetails, ValidationProblem

Image: TypeAlias = str | os.PathLike[str] | bytes | np.ndarray
"""A photo: a file path, its encoded bytes (JPEG, PNG or WebP), or an RGB / grey uint8 array."""

RETRY_STATUSES = frozenset({429, 503})
PROBLEM_MEDIA_TYPE = "application/problem+json"
_MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}

Model = TypeVar("Model", bound=BaseModel)


class ProblemError(Exception):
    """The service answered with an RFC 9457 problem: ``problem.type`` is the stable thing to switch on
    (``slug`` is its last part: no-face, quota-exceeded, ...), ``detail`` is for people."""

    def __init__(self, problem: ProblemDetails, retry_after_s: float | None = None) -> None:
        super().__init__(
            f"{problem.status} {problem.title}" + (f": {problem.detail}" if problem.detail else "")
        )
        self.problem = problem
        self.status = problem.status
        self.slug = problem.type.rsplit("/", 1)[-1]
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Upload:
    """One photo ready to send: its bytes, a file name and its media type."""

    data: bytes
    filename: str = "photo"
    media_type: str = "application/octet-stream"

    def part(self) -> tuple[str, bytes, str]:
        return (self.filename, self.data, self.media_type)


def upload(image: Image) -> Upload:
    """A path, bytes or an array as an ``Upload`` (an array is sent as a lossless PNG)."""
    if isinstance(image, np.ndarray):
        from PIL import Image as PILImage

        buf = io.BytesIO()
        PILImage.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, "PNG", compress_level=1)
        return Upload(buf.getvalue(), "photo.png", "image/png")
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        return Upload(data, "photo", _media_type(data))
    path = Path(os.fspath(image))
    data = path.read_bytes()
    return Upload(data, path.name, _media_type(data))


def _media_type(data: bytes) -> str:
    """The photo's type as the service's own header reader sees it; anything else goes as octet-stream
    (the service answers it with its problem, as for any upload)."""
    try:
        return _MEDIA_TYPES[sniff(data).format]
    except ImageError:
        return "application/octet-stream"


def options_query(
    uv_size: int | None = None,
    formats: Iterable[str] | str | None = None,
    texture: str | None = None,
    all_faces: bool | None = None,
    neutral: bool | None = None,
    lighting: str | None = None,
    **more: str | int | bool | None,
) -> dict[str, str]:
    """The reconstruct options as query parameters (unset ones are left to the server's defaults);
    ``more`` passes options this client does not name yet."""
    given: dict[str, Any] = {
        "uv_size": uv_size,
        "formats": formats if formats is None or isinstance(formats, str) else ",".join(formats),
        "texture": texture,
        "all_faces": all_faces,
        "neutral": neutral,
        "lighting": lighting,
        **more,
    }
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in given.items() if v is not None}


@dataclass
class Call:
    """One request as httpx's keyword arguments; ``uploads`` become multipart parts named ``field``."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    field: str = "image"

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"params": self.params}
        if self.uploads:
            out["files"] = [(self.field, up.part()) for up in self.uploads]
        return out


def result_path(result_id: str, name: str | None = None) -> str:
    path = f"/v1/results/{quote(result_id, safe='')}"
    return path if name is None else f"{path}/{quote(name, safe='')}"


def retry_after_s(response: httpx.Response, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None when absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """Retry 429 and 503 answers, waiting what ``Retry-After`` asks (``default_wait_s`` without it),
    at most ``max_retries`` times and never longer than ``max_wait_s`` per wait; a longer wait is
    not retried (the error is raised at once, with its ``retry_after_s``)."""

    max_retries: int = 3
    max_wait_s: float = 30.0
    default_wait_s: float = 1.0

    def wait_s(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying after ``attempt`` failed tries, or None: do not retry."""
        if response.status_code not in RETRY_STATUSES or attempt > self.max_retries:
            return None
        wait = retry_after_s(response)
        wait = self.default_wait_s * 2 ** (attempt - 1) if wait is None else wait
        return wait if wait <= self.max_wait_s else None


def problem_of(response: httpx.Response) -> ProblemError:
    """The error an unsuccessful answer stands for (a problem document, or one made from the status)."""
    try:
        problem: ProblemDetails = ValidationProblem.model_validate_json(response.content)
    except ValidationError:
        problem = ProblemDetails(
            type="about:blank", title=response.reason_phrase or "error", status=response.status_code
        )
    return ProblemError(problem, retry_after_s(response))


def checked(response: httpx.Response) -> httpx.Response:
    """``response`` when it succeeded, else raise its ``ProblemError`` (the body must have been read)."""
    if response.is_success:
        return response
    raise problem_of(response)


def parsed(response: httpx.Response, model: type[Model]) -> Model:
    return model.model_validate_json(checked(response).content)


def reconstruct_call(image: Image, options: dict[str, Any]) -> Call:
    return Call("POST", "/v1/reconstruct", options_query(**options), [upload(image)])


def artifact_call(image: Image, format: str, options: dict[str, Any]) -> Call:
    params = {**options_query(**options), "format": format}
    return Call("POST", "/v1/reconstruct/artifact", params, [upload(image)])


def batch_call(images: Iterable[Image], options: dict[str, Any]) -> Call:
    uploads = [upload(image) for image in images]
    return Call("POST", "/v1/reconstruct/batch", options_query(**options), uploads, field="images")


def person_call(images: Iterable[Image], options: dict[str, Any]) -> Call:
    """Several photos of one person, one head (``all_faces`` does not apply there)."""
    uploads = [upload(image) for image in images]
    return Call("POST", "/v1/reconstruct/person", options_query(**options), uploads, field="images")


def headers_for(token: str | None, headers: dict[str, str] | None) -> dict[str, str]:
    out = {"User-Agent": "face3d-client", **(headers or {})}
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out
