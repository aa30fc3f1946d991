"""The OpenAPI document as the server really behaves, so that clients can be generated from it.

Routes declare their own error answers with ``problems(...)`` and their bodies with the request-body
helpers below; ``install_openapi`` then fixes what FastAPI cannot know by itself:

* every error is ``application/problem+json`` (``ProblemDetails``; 422 is ``ValidationProblem``),
  never FastAPI's default ``HTTPValidationError``;
* /livez, /readyz and /metrics need a token only when the config closes them (``open_health``,
  ``open_metrics``), and say so only then;
* limits that are configuration (largest ``uv_size``, images per batch) appear as schema constraints;
* every operation may answer 500 (a bug, no details) and, behind the in-flight limit, 503.

``schemathesis`` runs every check against the live server from this document (tests/test_contract.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from face3d.models.pipeline import uv_sizes
from face3d.service.api.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from face3d.service.api.schemas import FieldError, ProblemDetails, ValidationProblem
from face3d.service.config import Settings

_REF = "#/components/schemas/{model}"
PROBLEM_SCHEMA = {"$ref": _REF.format(model="ProblemDetails")}
VALIDATION_SCHEMA = {"$ref": _REF.format(model="ValidationProblem")}
BINARY = {"type": "string", "format": "binary"}
RAW_IMAGE_MEDIA = ("image/jpeg", "image/png", "image/webp", "application/octet-stream")
QUIET_ROUTES = ("/livez", "/readyz", "/metrics")

_WHY = {
    400: "invalid-image: the bytes are not a readable image; validation: a malformed multipart body",
    401: "unauthorized: missing, malformed, expired or otherwise invalid bearer token",
    403: "forbidden: the token lacks the scope this route needs",
    404: "not-found: no such result or file for this tenant (or it expired)",
    408: "request-timeout: the body did not arrive within body_timeout_s",
    413: "too-large: body bytes, pixel count, or too many images",
    415: "unsupported-type: not multipart/form-data or a JPEG, PNG or WebP image",
    422: "validation: the request does not match the schema, or no-face: no face in the image",
    429: "quota-exceeded: the tenant's quota is spent (Retry-After says when to retry)",
    500: "internal: a server bug (details only in the server's logs)",
    503: "overloaded or unavailable: queue full, no worker ready, shutting down (Retry-After)",
    504: "timeout: no result within request_timeout_s",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}
_CHALLENGE = {
    "WWW-Authenticate": {"description": 'Bearer error="invalid_token"', "schema": {"type": "string"}}
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=`` entries for its error statuses, all ``application/problem+json``."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        schema = VALIDATION_SCHEMA if status == 422 else PROBLEM_SCHEMA
        content = {PROBLEM_MEDIA_TYPE: {"schema": schema}}
        entry: dict[str, Any] = {"description": _WHY[status], "content": content}
        if status in (429, 503):
            entry["headers"] = dict(_RETRY_AFTER)
        if status == 401:
            entry["headers"] = dict(_CHALLENGE)
        out[status] = entry
    return out


def image_body(field: str, many: bool) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its upload itself: multipart field ``field`` (an
    array when ``many``), or (for one image) the raw image as the whole body."""
    part = {"type": "array", "items": BINARY, "minItems": 1} if many else BINARY
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {"type": "object", "required": [field], "properties": {field: part}},
            "encoding": {field: {"contentType": ", ".join(RAW_IMAGE_MEDIA)}},
        }
    }
    if not many:
        content.update({media: {"schema": BINARY} for media in RAW_IMAGE_MEDIA})
    return {"requestBody": {"required": True, "content": content}}


def _model_schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in (ProblemDetails, FieldError, ValidationProblem):
        schema = model.model_json_schema(ref_template=_REF)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document.get("paths", {}).items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def _param(operation: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((p for p in operation.get("parameters", []) if p["name"] == name), None)


def _apply_settings(path: str, operation: dict[str, Any], settings: Settings) -> None:
    uv_size = _param(operation, "uv_size")
    if uv_size is not None:
        uv_size["schema"] = {
            "type": "integer",
            "enum": uv_sizes(settings.max_uv_size),
            "description": f"texture edge in pixels (default {settings.uv_size})",
        }
    if path == "/v1/reconstruct/batch":
        form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
        form["properties"]["images"]["maxItems"] = settings.max_batch_items
    body = operation.get("requestBody")
    if body is not None:
        body["description"] = (
            f"at most {settings.max_body_bytes} bytes and {settings.max_pixels} pixels per image"
        )
    closed = (path in ("/livez", "/readyz") and not settings.open_health) or (
        path == "/metrics" and not settings.open_metrics
    )
    if closed:
        operation["security"] = [{"HTTPBearer": []}]
        entries = problems(401, 403) if path == "/metrics" else problems(401)
        operation["responses"].update({str(status): entry for status, entry in entries.items()})


def build_openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(_model_schemas())
    document["components"].setdefault("securitySchemes", {}).setdefault(
        "HTTPBearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    for path, _, operation in _operations(document):
        responses = operation.setdefault("responses", {})
        for status, entry in problems(422).items():  # FastAPI's own 422 body is not what we send
            if str(status) in responses:
                responses[str(status)] = entry
        extra = (500,) if path in QUIET_ROUTES else (500, 503)
        for status, entry in problems(*extra).items():
            responses.setdefault(str(status), entry)
        _apply_settings(path, operation, settings)
    return document


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve ``build_openapi``'s document at /openapi.json (built once, on first request)."""
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cache:
            cache.update(build_openapi(app, settings))
        return cache

    app.openapi = openapi  # type: ignore[method-assign]
