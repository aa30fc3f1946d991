"""RFC 9457 problem details at the HTTP edge: one error shape for every failure the service reports.

A ``Problem`` (service/errors.py) may be raised in any process; the one handler installed by
``install_handlers`` turns it, and FastAPI's and Starlette's own errors, into an
``application/problem+json`` response.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from face3d.service.errors import Problem

MEDIA_TYPE = "application/problem+json"

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
