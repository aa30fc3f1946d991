"""RFC 9457 problem details: one error shape for every failure the service reports.

A ``Problem`` is plain data (slug, status, detail, headers) and an exception at the same time, so a
worker process can raise it, send it back through a pipe (it pickles), and the API re-raises it
unchanged; the one handler installed by ``install_handlers`` turns it into an
``application/problem+json`` response. Clients switch on the stable ``type`` URI, never on ``detail``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from face3d.models.errors import ModelError

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://face3d.dev/problems/"

# slug -> (default HTTP status, title). The slugs are the API contract: never rename one.
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "invalid-image": (400, "The upload is not a readable image"),
    "unsupported-type": (415, "Unsupported image type"),
    "too-large": (413, "Payload or image too large"),
    "no-face": (422, "No face found in the image"),
    "validation": (422, "Invalid request"),
    "unauthorized": (401, "Missing or invalid credentials"),
    "forbidden": (403, "Not allowed"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "quota-exceeded": (429, "Quota exceeded"),
    "overloaded": (503, "Service overloaded"),
    "unavailable": (503, "Service unavailable"),
    "timeout": (504, "Request timed out"),
    "request-timeout": (408, "Request body not received in time"),
    "headers-too-large": (431, "Request header fields too large"),
    "internal": (500, "Internal error"),
}

# Status codes Starlette/FastAPI raise on their own (routing, HTTPException) -> our slug.
_STATUS_SLUGS = {
    400: "validation",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    413: "too-large",
    415: "unsupported-type",
    422: "validation",
    429: "quota-exceeded",
    431: "headers-too-large",
    503: "unavailable",
    504: "timeout",
}


@dataclass(eq=False)
class Problem(Exception):
    """An RFC 9457 problem; raise it anywhere, in any process, and the API renders it.

    ``slug`` must be a key of ``PROBLEM_TYPES``; ``status`` defaults to that type's status.
    ``headers`` carries e.g. ``Retry-After`` or ``WWW-Authenticate``; ``extra`` adds members to
    the JSON body (RFC 9457 extension members, e.g. ``{"errors": [...]}``).
    """

    slug: str
    detail: str = ""
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.slug not in PROBLEM_TYPES:
            raise ValueError(f"unknown problem type {self.slug!r}")
        if not self.status:
            self.status = PROBLEM_TYPES[self.slug][0]
        super().__init__(self.slug, self.detail)

    def __reduce__(self):  # Exception's own pickling would replay only args; keep every field.
        return (Problem, (self.slug, self.detail, self.status, self.headers, self.extra))

    def __str__(self) -> str:
        return f"{self.slug}: {self.detail}" if self.detail else self.slug

    @property
    def type_uri(self) -> str:
        return TYPE_BASE + self.slug

    @property
    def title(self) -> str:
        return PROBLEM_TYPES[self.slug][1]

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        """The JSON body; ``instance`` is the request path the problem occurred on."""
        body: dict[str, Any] = {"type": self.type_uri, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def unauthorized(detail: str) -> Problem:
    """401 with the Bearer challenge RFC 6750 asks for: every token or key failure answers this way."""
    return Problem("unauthorized", detail, headers=dict(BEARER_CHALLENGE))


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    """Render ``problem`` as an ``application/problem+json`` response with its headers."""
    return JSONResponse(
        problem.to_dict(instance), status_code=problem.status, headers=problem.headers, media_type=MEDIA_TYPE
    )


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc, request.url.path)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    slug = _STATUS_SLUGS.get(exc.status_code, "internal" if exc.status_code >= 500 else "validation")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    problem = Problem(slug, detail, status=exc.status_code, headers=dict(exc.headers or {}))
    return problem_response(problem, request.url.path)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Only location, message and type: echoing the rejected "input" could reflect uploaded bytes.
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    problem = Problem("validation", "The request did not match the API schema", extra={"errors": errors})
    return problem_response(problem, request.url.path)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # A bug: answer in the one error shape without leaking internals; Starlette re-raises it
    # afterwards, so the server still logs the traceback.
    return problem_response(Problem("internal", "unexpected server error"), request.url.path)


def install_handlers(app: FastAPI) -> None:
    """Make every ``Problem``, ``HTTPException``, validation error and crash answer as problem+json."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)


def problem_from_error(exc: ModelError) -> Problem:
    """A models/ error as the problem clients see: its kind is the problem type, its message the
    detail; failures that are the service's own (weights, bugs) are 500s without internals."""
    if exc.kind in PROBLEM_TYPES and exc.kind != "internal":
        return Problem(exc.kind, str(exc))
    return Problem("internal", "the reconstruction failed")
