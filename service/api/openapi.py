"""The OpenAPI document as the server really behaves, so that clients can be generated from it.

Routes declare their own error answers with ``problems(...)`` and their bodies with the request-body
helpers below; ``install_openapi`` then fixes what FastAPI cannot know by itself:

* every error is ``application/problem+json`` (``ProblemDetails``; 422 is ``ValidationProblem``, which
  extends it with ``allOf``), never FastAPI's default ``HTTPValidationError``;
* a parameter that several operations take (the reconstruct options, the result id) and every enum
  live once in ``components``, so generated clients get one ``UvSize``, one ``OutputFormat``, ...;
  ``formats`` is an array of ``OutputFormat`` (``style: form, explode: false``: ``formats=obj,glb``);
* binary answers list ``application/octet-stream`` first, then their own media types, and nothing
  else, so generators return bytes (a JSON and a binary answer are two operations);
* a relative ``servers`` entry, so the document works behind any host or load balancer;
* /livez, /readyz and /metrics need a token only when the config closes them (``open_health``,
  ``open_metrics``), and say so only then;
* limits that are configuration (largest ``uv_size``, images per batch) appear as schema constraints;
* every operation may answer 500 (a bug, no details) and, behind the in-flight limit, 503.

``schemathesis`` runs every check against the live server from this document (tests/test_contract.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_args

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from face3d.models.export.document import ResultDocument
from face3d.models.pipeline import ALL_FORMATS, MIN_PERSON_PHOTOS, TEXTURE_FORMATS, uv_sizes
from face3d.service.api.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from face3d.service.api.schemas import FieldError, ProblemDetails, ValidationProblem
from face3d.service.api.uploads import RAW_IMAGE_TYPES
from face3d.service.config import Settings
from face3d.service.workers.protocol import ArtifactKind

_REF = "#/components/schemas/{model}"
PROBLEM_SCHEMA = {"$ref": _REF.format(model="ProblemDetails")}
VALIDATION_SCHEMA = {"$ref": _REF.format(model="ValidationProblem")}
BINARY = {"type": "string", "format": "binary"}
OCTET_STREAM = "application/octet-stream"
QUIET_ROUTES = ("/livez", "/readyz", "/metrics")
ENUM_SCHEMAS = {
    "uv_size": "UvSize",
    "formats": "OutputFormat",
    "texture": "TextureFormat",
    "format": "ArtifactFormat",
}
"""Component names of the enums that parameters take (any other enum parameter gets its PascalCase name)."""

_WHY = {
    400: "invalid-image: the bytes are not a readable image; validation: a malformed multipart body",
    401: "unauthorized: missing, malformed, expired or otherwise invalid bearer token",
    403: "forbidden: the token lacks the scope this route needs",
    404: "not-found: no such result or file for this tenant (or it expired)",
    408: "request-timeout: the body did not arrive within body_timeout_s",
    413: "too-large: body bytes, pixel count, or too many images (photos)",
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
    array when ``many``), or (for one image) the raw image as the whole body.

    The raw body is documented as ``application/octet-stream``, the binary media type every generator
    supports (openapi-python-client drops ``image/*`` bodies with a warning); the server also takes it
    as ``image/jpeg``, ``image/png`` or ``image/webp`` and reads the image's own header either way."""
    part = {"type": "array", "items": BINARY, "minItems": 1} if many else BINARY
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {"type": "object", "required": [field], "properties": {field: part}},
            "encoding": {field: {"contentType": ", ".join(sorted(RAW_IMAGE_TYPES))}},
        }
    }
    if not many:
        content[OCTET_STREAM] = {"schema": {**BINARY, "description": _RAW_BODY}}
    return {"requestBody": {"required": True, "content": content}}


_RAW_BODY = (
    "the image itself as the whole body; also accepted as image/jpeg, image/png or image/webp "
    "(the server reads the image's own header)"
)


def binary(description: str, media_types: Iterable[str]) -> dict[str, Any]:
    """A ``responses=`` entry for bytes: ``application/octet-stream`` first (what generators key on),
    then the media types the server actually sends."""
    types = [OCTET_STREAM, *sorted(set(media_types) - {OCTET_STREAM})]
    return {"description": description, "content": {media: {"schema": BINARY} for media in types}}


def _model_schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in (ProblemDetails, FieldError, ValidationProblem):
        schema = model.model_json_schema(ref_template=_REF)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    # result.json (GET /v1/results/{id}/result.json), in the family of the API's result models.
    document = ResultDocument.model_json_schema(ref_template=_REF, mode="serialization")
    for name, schema in document.pop("$defs", {}).items():
        out.setdefault(name, schema)
    out["ResultDocument"] = document
    # One family: a ValidationProblem is a ProblemDetails with ``errors`` (allOf, not a copy of it).
    own = {
        k: v
        for k, v in out["ValidationProblem"]["properties"].items()
        if k not in ProblemDetails.model_fields
    }
    out["ValidationProblem"] = {
        "title": "ValidationProblem",
        "description": ValidationProblem.__doc__,
        "allOf": [PROBLEM_SCHEMA, {"type": "object", "properties": own}],
    }
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


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _enum_schemas(settings: Settings) -> dict[str, dict[str, Any]]:
    """The enums of the reconstruct options, from ReconstructOptions' own constants (models/pipeline.py)
    and this deployment's ``max_uv_size``."""
    sizes = uv_sizes(settings.max_uv_size)
    return {
        "UvSize": {
            "type": "integer",
            "enum": sizes,
            "x-enum-varnames": [f"PX_{size}" for size in sizes],
            "description": "a texture edge in pixels: a power of two up to this server's max_uv_size",
        },
        "OutputFormat": {
            "type": "string",
            "enum": sorted(ALL_FORMATS),
            "description": "a kind of output file",
        },
        "TextureFormat": {
            "type": "string",
            "enum": sorted(TEXTURE_FORMATS),
            "description": "texture image format",
        },
        "ArtifactFormat": {
            "type": "string",
            "enum": sorted(get_args(ArtifactKind)),
            "description": "glb (the largest face's GLB), obj (a zip of the OBJ, MTL and texture) or zip "
            "(every file the request's formats produce)",
        },
    }


def _param_schema(name: str, schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without FastAPI's ``anyOf [.., null]`` (an absent parameter is not null)
    and with its enum as a component."""
    schema = {k: v for k, v in schema.items() if k != "title"}
    options = [s for s in schema.pop("anyOf", []) if s.get("type") != "null"]
    if len(options) == 1:
        schema = {**options[0], **schema}
    if name == "formats":  # an array of OutputFormat, sent as formats=obj,glb
        return {"type": "array", "items": {"$ref": _REF.format(model="OutputFormat")}, "minItems": 1}
    component = ENUM_SCHEMAS.get(name, _pascal(name))
    if "enum" in schema or component in ENUM_SCHEMAS.values():
        if component not in schemas:
            schemas[component] = {k: v for k, v in schema.items() if k != "default"}
        return {"$ref": _REF.format(model=component)}
    return schema


def _share_parameters(document: dict[str, Any]) -> None:
    """Each parameter once in ``components.parameters`` when several operations take it, every enum
    once in ``components.schemas``; operations refer to them."""
    schemas = document["components"]["schemas"]
    operations = _operations(document)
    seen: dict[tuple[str, str], int] = {}
    for _, _, operation in operations:
        for param in operation.get("parameters", []):
            seen[param["name"], param["in"]] = seen.get((param["name"], param["in"]), 0) + 1
    shared = document["components"].setdefault("parameters", {})
    for _, _, operation in operations:
        params = []
        for param in operation.get("parameters", []):
            param = {**param, "schema": _param_schema(param["name"], param["schema"], schemas)}
            if param["name"] == "formats":
                param.update(style="form", explode=False)
            if seen[param["name"], param["in"]] > 1:
                key = _pascal(param["name"])
                shared.setdefault(key, param)
                param = {"$ref": f"#/components/parameters/{key}"}
            params.append(param)
        if params:
            operation["parameters"] = params


def _apply_settings(path: str, operation: dict[str, Any], settings: Settings) -> None:
    if path == "/v1/reconstruct/batch":
        form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
        form["properties"]["images"]["maxItems"] = settings.max_batch_items
    body = operation.get("requestBody")
    if path == "/v1/reconstruct/person":
        images = body["content"]["multipart/form-data"]["schema"]["properties"]["images"]
        images.update(minItems=MIN_PERSON_PHOTOS, maxItems=settings.max_person_photos)
        body["description"] = (
            f"{MIN_PERSON_PHOTOS} to {settings.max_person_photos} photos of one person, at most "
            f"{settings.max_person_body_bytes} bytes together and {settings.max_pixels} pixels per photo"
        )
    elif body is not None:
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
    for name, schema in _model_schemas().items():
        schemas.setdefault(name, schema)  # FastAPI's own schema of a model shared with a route wins
    schemas.update(_enum_schemas(settings))
    document["servers"] = [{"url": "/", "description": "this server (relative: any host, port or proxy)"}]
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
    _share_parameters(document)
    uv_size = document["components"]["parameters"].get("UvSize")
    if uv_size is not None:
        uv_size["description"] = (
            f"texture edge in pixels (default: this server's uv_size, {settings.uv_size})"
        )
    return document


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve ``build_openapi``'s document at /openapi.json (built once, on first request)."""
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cache:
            cache.update(build_openapi(app, settings))
        return cache

    app.openapi = openapi  # type: ignore[method-assign]
