"""A third backend from outside models/ (tests/toy_backend.py) runs through the pipeline and the HTTP
API to files that real readers accept: the backend interface and the exporters are generic."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pygltflib
import trimesh
from PIL import Image

from face3d.models.backends import BackendConfig, backend_names, create_backend
from face3d.models.pipeline import Pipeline, ReconstructOptions
from tests import toy_backend
from tests.gltf_validator import validator_issues
from tests.serving import launch, post_image


def _photo() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((240, 320, 3), (200, 120, 40), np.uint8)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _check_files(files: dict[str, bytes], tmp_path: Path, weights_cache: Path) -> None:
    """The toy's OBJ (trimesh, with its texture) and GLB (trimesh, pygltflib, the Khronos validator)."""
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    mesh = trimesh.load(tmp_path / "face.obj", process=False, maintain_order=True)
    assert mesh.vertices.shape == (5, 3) and np.array_equal(mesh.faces, toy_backend.TRIANGLES)
    np.testing.assert_allclose(mesh.vertices, toy_backend.VERTICES, atol=1e-5)
    (glb_mesh,) = trimesh.load(tmp_path / "face.glb", process=False).geometry.values()
    np.testing.assert_allclose(glb_mesh.vertices, toy_backend.VERTICES * 0.01, atol=1e-7)  # metres
    gltf = pygltflib.GLTF2.load_from_bytes(files["face.glb"])
    assert gltf.meshes[0].name == "pyramid" and gltf.materials[0].name == "pyramid"
    issues = validator_issues(files["face.glb"], weights_cache, tmp_path)
    assert issues["numErrors"] == 0, issues["messages"][:5]


def test_toy_backend_through_the_pipeline(tmp_path: Path, weights_cache: Path) -> None:
    assert "toy" in backend_names()
    backend = create_backend("toy", BackendConfig(cache_dir=tmp_path))
    backend.load("cpu")
    options = ReconstructOptions(uv_size=256, formats=frozenset({"obj", "glb", "json", "preview"}))
    (item,) = Pipeline(backend, max_pixels=10_000_000).run([_photo()], options)
    assert item.error is None and item.exported is not None
    files = item.exported.files
    assert {"face.obj", "face.mtl", "face.png", "face.glb", "result.json", "preview.png"} == set(files)
    (face,) = item.exported.document.faces
    assert (face.model_extra or {})["toy_apex_cm"] == 4.0 and item.exported.document.model.backend == "toy"
    _check_files(files, tmp_path, weights_cache)


def test_toy_backend_through_the_http_api(tmp_path: Path, weights_cache: Path) -> None:
    server = launch(tmp_path / "server", backend="toy", backend_modules=["tests.toy_backend"])
    try:
        server.wait_ready(timeout_s=120)
        with server.client() as client:
            assert client.get("/v1/models").json()["model"]["backend"] == "toy"
            response = post_image(client, _photo(), format="zip")
            assert response.status_code == 200, response.text
            with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
                files = {name: archive.read(name) for name in archive.namelist()}
            glb = post_image(client, _photo(), format="glb")
            assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
            document = post_image(client, _photo()).json()
    finally:
        server.stop()
    assert json.loads(files["result.json"])["faces"][0]["toy_apex_cm"] == 4.0
    assert document["faces"][0]["score"] == 1.0
    files["face.glb"] = glb.content
    _check_files(files, tmp_path, weights_cache)
