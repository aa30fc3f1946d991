"""The OpenAPI document matches the server: structure checks here, then schemathesis with every check
against the live server (bounded in CI, long in `make reliability`: RELIABILITY_LONG=1)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from face3d.service.api.app import create_app
from face3d.service.config import Settings
from tests.figures import record
from tests.serving import ROOT, SECRET, Server, astronaut, hardened  # noqa: F401  (hardened: a fixture)

LONG = os.environ.get("RELIABILITY_LONG") == "1"
PROBLEM = "application/problem+json"


def _document(**settings: Any) -> dict[str, Any]:
    return create_app(Settings(jwt_secret=SECRET, **settings)).openapi()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return _document(max_uv_size=2048, max_batch_items=5)


def test_uploads_are_documented_request_bodies(document: dict[str, Any]) -> None:
    for path in ("/v1/reconstruct", "/v1/reconstruct/artifact"):
        single = document["paths"][path]["post"]["requestBody"]
        assert single["required"] is True
        # the raw image as application/octet-stream: the binary body every generator supports
        assert list(single["content"]) == ["multipart/form-data", "application/octet-stream"]
        assert single["content"]["application/octet-stream"]["schema"]["format"] == "binary"
        form = single["content"]["multipart/form-data"]["schema"]
        assert form["required"] == ["image"] and form["properties"]["image"]["format"] == "binary"
    batch = document["paths"]["/v1/reconstruct/batch"]["post"]["requestBody"]["content"]
    images = batch["multipart/form-data"]["schema"]["properties"]["images"]
    assert images["type"] == "array" and images["maxItems"] == 5


def test_every_error_is_a_documented_problem(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and {"ProblemDetails", "ValidationProblem"} <= set(schemas)
    assert schemas["ValidationProblem"]["allOf"][0] == {"$ref": "#/components/schemas/ProblemDetails"}
    expected = {
        ("/v1/reconstruct", "post"): {400, 401, 403, 408, 413, 415, 422, 429, 500, 503, 504},
        ("/v1/reconstruct/artifact", "post"): {400, 401, 403, 408, 413, 415, 422, 429, 500, 503, 504},
        ("/v1/reconstruct/batch", "post"): {400, 401, 403, 408, 413, 415, 422, 429, 500, 503, 504},
        ("/v1/results/{result_id}/result.json", "get"): {401, 403, 404, 422, 500, 503},
        ("/v1/results/{result_id}/{name}", "get"): {401, 403, 404, 422, 500, 503},
        ("/v1/results/{result_id}", "delete"): {401, 403, 404, 422, 500, 503},
        ("/v1/models", "get"): {401, 500, 503},
    }
    for (path, method), statuses in expected.items():
        responses = document["paths"][path][method]["responses"]
        errors = {int(s) for s in responses if int(s) >= 400}
        assert errors == statuses, (path, errors)
        for status in statuses:
            content = responses[str(status)]["content"]
            assert list(content) == [PROBLEM], (path, status)
            ref = content[PROBLEM]["schema"]["$ref"]
            assert ref.endswith("ValidationProblem" if status == 422 else "ProblemDetails")
        assert "Retry-After" in responses["503"]["headers"]


def test_success_bodies_have_schemas(document: dict[str, Any]) -> None:
    paths = document["paths"]
    ok = paths["/v1/reconstruct"]["post"]["responses"]["200"]
    assert list(ok["content"]) == ["application/json"]  # JSON only: the artifacts are their own operation
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("ReconstructResult")
    assert {"GetResultDocument", "GetResultFile", "DeleteResult"} <= set(ok["links"])
    for path, model in (
        ("/v1/models", "ModelsInfo"), ("/livez", "Health"), ("/readyz", "Readiness"),
        ("/v1/results/{result_id}/result.json", "ResultDocument"),
    ):  # fmt: skip
        content = paths[path]["get"]["responses"]["200"]["content"]
        assert list(content) == ["application/json"], path
        assert content["application/json"]["schema"]["$ref"].endswith(model)
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    assert "content" not in paths["/v1/results/{result_id}"]["delete"]["responses"]["204"]


def test_binary_answers_declare_only_binary_types(document: dict[str, Any]) -> None:
    """Generators key on the first media type they know: octet-stream first, no JSON, so they return bytes."""
    for path, method in (("/v1/results/{result_id}/{name}", "get"), ("/v1/reconstruct/artifact", "post")):
        content = document["paths"][path][method]["responses"]["200"]["content"]
        assert next(iter(content)) == "application/octet-stream", path
        assert all(not m.endswith("json") and c["schema"]["format"] == "binary" for m, c in content.items())
    artifact = document["paths"]["/v1/reconstruct/artifact"]["post"]["responses"]["200"]["content"]
    assert {"model/gltf-binary", "application/zip"} <= set(artifact)


def test_face_fields_are_declared(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    face = schemas["FaceResult"]["properties"]
    members = (
        "blendshapes",
        "identity",
        "expression",
        "neutral",
        "fit_residual_px",
        "landmarks_68_model",
        "lighting",
    )
    for name in members:
        assert face[name].get("description"), name
    assert schemas["ResultDocument"]["properties"]["faces"]["items"]["$ref"].endswith("FaceResult")
    assert schemas["ResultDocument"]["properties"]["model"]["$ref"].endswith("ModelInfo")
    assert schemas["ModelsInfo"]["properties"]["model"]["$ref"].endswith("ModelInfo")


def test_shared_parameters_and_enums_live_in_components(document: dict[str, Any]) -> None:
    components = document["components"]
    assert {"UvSize", "OutputFormat", "TextureFormat", "ArtifactFormat"} <= set(components["schemas"])
    assert {"UvSize", "Formats", "Texture", "AllFaces", "Neutral", "ResultId"} <= set(
        components["parameters"]
    )
    for path in ("/v1/reconstruct", "/v1/reconstruct/artifact", "/v1/reconstruct/batch"):
        params = document["paths"][path]["post"]["parameters"]
        refs = {p["$ref"].rsplit("/", 1)[1] for p in params if "$ref" in p}
        assert {"UvSize", "Formats", "Texture", "AllFaces", "Neutral"} <= refs, path
    assert [server["url"] for server in document["servers"]] == ["/"]  # relative: any host or proxy
    operations = [op for item in document["paths"].values() for op in item.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids)) and "models" not in ids
    assert "models" not in {tag for op in operations for tag in op["tags"]}


def test_query_constraints(document: dict[str, Any]) -> None:
    schemas, shared = document["components"]["schemas"], document["components"]["parameters"]
    assert schemas["UvSize"]["enum"] == [256, 512, 1024, 2048]  # this deployment's max_uv_size
    assert schemas["ArtifactFormat"]["enum"] == ["glb", "obj", "usdz", "zip"]
    assert set(schemas["OutputFormat"]["enum"]) >= {"obj", "png", "glb", "usdz", "json", "preview"}
    formats = shared["Formats"]
    assert formats["schema"]["type"] == "array" and formats["schema"]["minItems"] == 1
    assert formats["style"] == "form" and formats["explode"] is False
    artifact = document["paths"]["/v1/reconstruct/artifact"]["post"]["parameters"]
    assert any(p.get("name") == "format" and p["required"] for p in artifact)
    assert all(p.get("name") != "format" for p in document["paths"]["/v1/reconstruct"]["post"]["parameters"])


def test_open_routes_need_no_token_unless_closed(document: dict[str, Any]) -> None:
    for path in ("/livez", "/readyz", "/metrics"):
        assert "security" not in document["paths"][path]["get"], path
    assert document["paths"]["/v1/models"]["get"]["security"] == [{"HTTPBearer": []}]
    closed = _document(open_health=False, open_metrics=False)
    for path in ("/livez", "/readyz", "/metrics"):
        operation = closed["paths"][path]["get"]
        assert operation["security"] == [{"HTTPBearer": []}] and "401" in operation["responses"], path


@pytest.mark.slow
@pytest.mark.reliability
def test_schemathesis_every_check_passes(hardened: Server, tmp_path: Path) -> None:  # noqa: F811
    """Coverage, fuzzing and stateful phases, every check, against the running server: 0 failures."""
    photo = tmp_path / "face.jpg"
    photo.write_bytes(astronaut())
    token = hardened.token("contract")["Authorization"]
    examples = 60 if LONG else 12
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", "tests/contract/schemathesis.toml", "run",
        f"{hardened.url}/openapi.json", "--checks", "all", "--header", f"Authorization: {token}",
        "--max-examples", str(examples), "--seed", "20261126", "--workers", "1", "--no-color",
    ]  # fmt: skip
    env = {**os.environ, "CONTRACT_PHOTO": str(photo)}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    output = run.stdout + run.stderr
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert run.returncode == 0 and cases, output[-6000:]
    generated, passed = int(cases.group(1)), int(cases.group(2))
    record("contract", "schemathesis cases", generated)
    record("contract", "schemathesis failures", generated - passed)
    assert generated >= 300 and passed == generated, output[-3000:]
