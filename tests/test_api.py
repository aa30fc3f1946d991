"""The real service over real HTTP: `face3d serve` in a subprocess on a free port, httpx as the client.

What a client of a healthy server sees, all on one server start-up (``server``, tests/api_helpers.py, the
roomy base config): health and models, the reconstruct endpoint and its output formats, every input/auth
error, quotas, tenant isolation of results, the batch endpoint and dynamic batching.

Capacity and failure (a killed worker, full queue, deadlines, SIGTERM drain) are in
tests/test_api_capacity.py: those tests freeze, kill and stop servers, so they run on servers of their own.
"""

from __future__ import annotations

import io
import json
import select
import socket
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jwt
import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.api_helpers import server  # noqa: F401  (a fixture)
from tests.serving import (  # noqa: F401  (start_server: a fixture, the one ``server`` builds on)
    Server,
    assert_problem,
    astronaut,
    blank_png,
    mesh_sizes,
    post_image,
    post_raw,
    start_server,
)

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------ happy paths
def test_health_models_and_request_id(server: Server) -> None:  # noqa: F811
    assert httpx.get(f"{server.url}/livez").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert "pid" not in ready.text  # the open port tells no internals
    with server.client() as client:
        models = client.get("/v1/models", headers={"X-Request-ID": "trace-123"})
    assert models.status_code == 200 and models.headers["x-request-id"] == "trace-123"
    body = models.json()
    assert body["model"]["device"] == "cpu"
    assert body["workers"][0]["ready"] and body["workers"][0]["pid"] > 0
    assert httpx.get(f"{server.url}/livez").headers["x-request-id"]  # generated when absent


def test_reconstruct_json_then_fetch_every_file(server: Server) -> None:  # noqa: F811
    with server.client() as client:
        response = post_image(client, astronaut())
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["image"] == {"width": 512, "height": 512}
        [face] = body["faces"]
        x0, y0, x1, y1 = face["bbox"]
        assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
        assert face["score"] > 0.5 and len(face["landmarks"]) == 478
        assert {"yaw", "pitch", "roll"} <= set(face["pose"])
        assert set(body["files"]) == {"face.obj", "face.mtl", "face.png", "face.glb", "result.json"}
        assert {"queue", "decode", "detect", "encode"} <= set(body["timings_ms"])
        files = {name: client.get(url) for name, url in body["files"].items()}
    assert all(r.status_code == 200 for r in files.values())
    texture = Image.open(io.BytesIO(files["face.png"].content))
    assert texture.size == (256, 256)
    assert np.asarray(texture).std() > 10  # a real photo texture, not a flat fill
    mesh = trimesh.load(io.BytesIO(files["face.glb"].content), file_type="glb", force="mesh")
    assert len(mesh.vertices) >= 468 and len(mesh.faces) == mesh_sizes()[1]
    assert json.loads(files["result.json"].content)["faces"][0]["bbox"] == face["bbox"]
    assert files["face.glb"].headers["content-type"] == "model/gltf-binary"


def test_raw_body_on_the_short_alias(server: Server) -> None:  # noqa: F811
    with server.client() as client:
        response = client.post("/reconstruct", content=astronaut(), headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    assert len(response.json()["faces"]) == 1


@pytest.mark.parametrize("artifact", ["glb", "usdz", "obj", "zip"])
def test_single_artifact_formats(server: Server, artifact: str, tmp_path: Path) -> None:  # noqa: F811
    with server.client() as client:
        response = post_image(client, astronaut(), format=artifact)
    assert response.status_code == 200, response.text
    data = response.content
    if artifact == "glb":
        assert data[:4] == b"glTF" and response.headers["content-type"] == "model/gltf-binary"
        assert len(trimesh.load(io.BytesIO(data), file_type="glb", force="mesh").faces) == mesh_sizes()[1]
        return
    if artifact == "usdz":  # a zip package: the usdc layer first, then the texture
        assert response.headers["content-type"] == "model/vnd.usdz+zip"
        assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["face.usdc", "face.png"]
        return
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        zf.extractall(tmp_path)
        names = set(zf.namelist())
    if artifact == "obj":
        # Usable as it is: the OBJ's mtllib and the MTL's map_Kd name files that are in the zip.
        assert names == {"face.obj", "face.mtl", "face.png"}
        obj = (tmp_path / "face.obj").read_text()
        vertices, triangles, _ = mesh_sizes()
        assert obj.count("\nv ") == vertices and obj.count("\nf ") == triangles
        assert "mtllib face.mtl" in obj and "map_Kd face.png" in (tmp_path / "face.mtl").read_text()
        mesh = trimesh.load(tmp_path / "face.obj", force="mesh")
        assert len(mesh.faces) == triangles and mesh.visual.material.image is not None  # texture found
    else:  # every format the request asked for (default obj,png,glb,json): the GLB too
        assert names == {"face.obj", "face.mtl", "face.png", "face.glb", "result.json"}


def test_zip_holds_the_requested_formats(server: Server) -> None:  # noqa: F811
    with server.client() as client:
        response = post_image(client, astronaut(), format="zip", formats="glb,json", texture="jpeg")
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        assert set(zf.namelist()) == {"face.glb", "result.json"}


# ------------------------------------------------------------------------------------ errors
def test_input_errors(server: Server) -> None:  # noqa: F811
    counted_before = server.metric("face3d_errors_total", type="no-face")
    with server.client("errors") as client:
        assert_problem(post_raw(client, b"not an image at all", "image/jpeg"), 400, "invalid-image")
        assert_problem(post_raw(client, b"hello", "text/plain"), 415, "unsupported-type")
        gif = b"GIF89a" + b"\x01\x00\x01\x00" + b"\x00" * 20
        assert_problem(post_image(client, gif), 415, "unsupported-type")
        too_big = b"\xff\xd8" + b"\x00" * 2_100_000
        assert_problem(post_image(client, too_big), 413, "too-large")  # declared Content-Length
        assert_problem(post_image(client, blank_png(2100)), 413, "too-large")  # 4.4 MP > max_pixels
        assert_problem(post_image(client, blank_png()), 422, "no-face")
        assert_problem(post_image(client, astronaut(), uv_size=300), 422, "validation")
        assert_problem(post_image(client, astronaut(), uv_size=0), 422, "validation")  # never "the default"
        assert_problem(post_image(client, astronaut(), formats="obj,stl"), 422, "validation")
        assert_problem(post_image(client, astronaut(), formats="obj,,png"), 422, "validation")
        assert_problem(post_image(client, astronaut(), all_faces="yes"), 422, "validation")
        assert_problem(post_image(client, astronaut(), uv_sise=512), 422, "validation")  # typo: not ignored
        assert_problem(
            client.post("/v1/reconstruct", files={"other": ("a.jpg", astronaut())}), 422, "validation"
        )
    assert server.metric("face3d_errors_total", type="no-face") == counted_before + 1


def test_streamed_body_is_cut_off_at_the_limit(server: Server) -> None:  # noqa: F811
    """A chunked upload with no Content-Length gets 413 once it crosses max_body_bytes, not at its end."""
    host, port = server.url.removeprefix("http://").split(":")
    token = server.token("streamer")["Authorization"]
    chunk = b"\xff" * 65536
    planned = 200 * 1024 * 1024
    sent = 0
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"POST /v1/reconstruct HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
            "Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        sock.settimeout(2)
        while sent < planned and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        head = sock.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 413"), head[:200]
    assert sent < planned / 4  # refused long before the end of the upload


def test_auth_errors(server: Server) -> None:  # noqa: F811
    url = f"{server.url}/v1/reconstruct"
    files = {"image": ("a.jpg", astronaut(), "image/jpeg")}
    assert_problem(httpx.post(url, files=files), 401, "unauthorized")
    tampered = server.token("mallory")["Authorization"][:-4] + "AAAA"
    assert_problem(httpx.post(url, files=files, headers={"Authorization": tampered}), 401, "unauthorized")
    reader = server.token("reader", ("results:read",))
    assert_problem(httpx.post(url, files=files, headers=reader), 403, "forbidden")
    secret = server.settings.jwt_secret.get_secret_value()
    now = int(time.time())
    good = {"sub": "eve", "aud": server.settings.jwt_audience, "iss": server.settings.jwt_issuer,
            "exp": now + 600, "scope": "reconstruct"}  # fmt: skip
    forged = {
        "expired": jwt.encode({**good, "exp": now - 3600}, secret, "HS256"),
        "wrong aud": jwt.encode({**good, "aud": "someone-else"}, secret, "HS256"),
        "wrong iss": jwt.encode({**good, "iss": "evil"}, secret, "HS256"),
        "no exp": jwt.encode({k: v for k, v in good.items() if k != "exp"}, secret, "HS256"),
        "alg none": jwt.encode(good, None, "none"),
        "other key": jwt.encode(good, "x" * 40, "HS256"),
    }
    for case, token in forged.items():
        response = httpx.post(url, files=files, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, case
        assert response.headers["content-type"].startswith("application/problem+json"), case


def test_quota_gives_429_with_retry_after(server: Server) -> None:  # noqa: F811
    """Work is charged (a photo without a face still ran detection); refusals before work are not."""
    burst = server.settings.quota_burst
    with server.client("greedy") as client:
        refused = [post_raw(client, b"junk", "image/png").status_code for _ in range(burst + 4)]
        refused += [post_raw(client, b"x", "text/plain").status_code for _ in range(4)]
        assert refused == [400] * (burst + 4) + [415] * 4  # refunded: no 429 however many
        with ThreadPoolExecutor(8) as threads:  # charged faster than the bucket refills
            responses = list(threads.map(lambda _: post_image(client, blank_png(64)), range(burst + 8)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {422, 429} and statuses.count(422) >= burst, statuses
    response = next(r for r in responses if r.status_code == 429)
    assert_problem(response, 429, "quota-exceeded")
    assert int(response.headers["retry-after"]) >= 1


def test_quota_counts_units_of_work(server: Server) -> None:  # noqa: F811
    """uv_size 1024 and all_faces cost what they cost: units = faces (max_faces) per image."""
    with server.client("heavy") as client:
        heavy = post_image(client, blank_png(64), all_faces="true")  # 4 units (max_faces 4)
        assert_problem(heavy, 422, "no-face")
        for _ in range(2):
            assert_problem(post_image(client, blank_png(64), all_faces="true"), 422, "no-face")
        assert_problem(post_image(client, blank_png(64), all_faces="true"), 429, "quota-exceeded")


# ------------------------------------------------------------------------------------ results and batching
def test_results_are_isolated_per_tenant(server: Server) -> None:  # noqa: F811
    with server.client("alice") as alice, server.client("bob") as bob:
        body = post_image(alice, astronaut(), formats="json").json()
        url = body["files"]["result.json"]
        assert alice.get(url).status_code == 200
        assert_problem(bob.get(url), 404, "not-found")
        assert_problem(bob.delete(f"/v1/results/{body['id']}"), 404, "not-found")
        reader = server.token("alice", ("reconstruct", "results:read"))
        assert_problem(alice.delete(f"/v1/results/{body['id']}", headers=reader), 403, "forbidden")
        assert alice.delete(f"/v1/results/{body['id']}").status_code == 204
        assert_problem(alice.get(url), 404, "not-found")


def test_batch_endpoint_reports_per_item(server: Server) -> None:  # noqa: F811
    images = [("a.jpg", astronaut()), ("blank.png", blank_png()), ("junk.jpg", b"junk")]
    with server.client("batcher") as client:
        response = client.post(
            "/v1/reconstruct/batch", params={"formats": "json"}, files=[("images", item) for item in images]
        )
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert [it["filename"] for it in items] == ["a.jpg", "blank.png", "junk.jpg"]
        assert len(items[0]["faces"]) == 1 and "result.json" in items[0]["files"]
        assert items[1]["error"]["status"] == 422 and items[2]["error"]["status"] == 400
        for extra in (1, 5):
            count = server.settings.max_batch_items + extra
            too_many = [("images", (f"{i}.jpg", b"x")) for i in range(count)]
            assert_problem(client.post("/v1/reconstruct/batch", files=too_many), 413, "too-large")


def test_concurrent_requests_are_batched(server: Server) -> None:  # noqa: F811
    def multi_batches() -> float:
        return server.metric("face3d_batch_size_count") - server.metric("face3d_batch_size_bucket", le="1.0")

    before = multi_batches()
    with server.client("crowd") as client, ThreadPoolExecutor(8) as threads:
        responses = list(threads.map(lambda _: post_image(client, astronaut(), formats="json"), range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert multi_batches() > before
    assert server.metric("face3d_request_duration_seconds_count", route="/v1/reconstruct", status="200") >= 8
    assert server.metric("face3d_stage_duration_seconds_count", stage="detect") >= 8
