"""The landmark nets through the facemesh backend, and the 52 blendshape scores in every output: the
result document (result.json / CLI) and the API response over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from face3d.models.backends.base import BackendConfig
from face3d.models.backends.facemesh.backend import FacemeshBackend
from face3d.models.export.document import dump_json, result_json
from face3d.models.nets.blendshapes import BLENDSHAPE_NAMES
from scripts.photos import photo, photo_bytes
from tests.serving import Server, hardened  # noqa: F401  (the session's shared server fixture)


@pytest.fixture(scope="module")
def engines(weights_cache: Path) -> dict[str, FacemeshBackend]:
    backends = {}
    for name in ("468", "v2"):
        backends[name] = FacemeshBackend(BackendConfig(weights_cache, buckets=(1,), landmark_model=name))
        backends[name].load("cpu")
    return backends


def test_v2_gives_478_points_and_mediapipes_blendshapes(engines: dict[str, FacemeshBackend]) -> None:
    (rec,) = engines["v2"].reconstruct([photo("astronaut")], uv_size=256)
    [face] = rec.faces
    assert face.landmarks.shape == (478, 3) and face.blendshapes is not None
    assert list(face.blendshapes) == list(BLENDSHAPE_NAMES)
    # the astronaut smiles broadly: MediaPipe scores mouthSmileLeft/Right 0.90/0.91 on this photo
    assert face.blendshapes["mouthSmileLeft"] > 0.8 and face.blendshapes["mouthSmileRight"] > 0.8
    doc = result_json(rec, engines["v2"].describe(), ["result.json"])
    assert doc.faces[0].blendshapes is not None
    assert doc.faces[0].blendshapes["mouthSmileLeft"] == pytest.approx(
        face.blendshapes["mouthSmileLeft"], abs=1e-4
    )
    assert doc.model.landmark_model == "v2" and "face_blendshapes.tflite" in (doc.model.weights or {})


def test_the_468_net_has_no_blendshapes(engines: dict[str, FacemeshBackend]) -> None:
    (rec,) = engines["468"].reconstruct([photo("face_001")], uv_size=256)
    assert rec.faces[0].landmarks.shape == (468, 3) and rec.faces[0].blendshapes is None
    doc = result_json(rec, engines["468"].describe(), [])
    assert "blendshapes" not in json.loads(dump_json(doc))["faces"][0]


def test_api_response_carries_blendshapes(hardened: Server) -> None:  # noqa: F811
    with hardened.client() as client:
        response = client.post("/v1/reconstruct", files={"image": ("a.jpg", photo_bytes("astronaut"))})
        assert response.status_code == 200, response.text
        [face] = response.json()["faces"]
        models = client.get("/v1/models").json()["model"]
    assert len(face["blendshapes"]) == 52 and face["blendshapes"]["mouthSmileLeft"] > 0.8
    assert {w["name"] for w in models["weight_files"]} >= {
        "face_landmarks_detector.tflite",
        "face_blendshapes.tflite",
    }
    assert all(w["licence"] == "Apache-2.0" and w["source"] for w in models["weight_files"])
