"""models/nets/tflite/loader.py on the Face Landmarker's nets (FaceMesh V2, blendshapes) against the TFLite
interpreter (ai-edge-litert), on random and real inputs; batching, torch.compile, and the bundle's
face detector being the short-range BlazeFace already in use."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from ai_edge_litert.interpreter import Interpreter

from face3d.models.nets.assets import asset_path, sha256_file
from face3d.models.nets.blendshapes import LANDMARK_SUBSET
from face3d.models.nets.tflite.loader import load_tflite
from face3d.service.config import default_cache_dir
from scripts.photos import PHOTO_NAMES, photo
from tests.front_ends import front_end

MESH_V2, BLENDSHAPES = "face_landmarks_detector.tflite", "face_blendshapes.tflite"
REFERENCE = Path(__file__).parent / "data" / "face_landmarker_reference.json"
TOLERANCE = 1e-3


@cache
def _torch_model(model: str) -> torch.nn.Module:
    return load_tflite(asset_path(model, default_cache_dir())).eval()


@cache
def _interpreter(model: str) -> Interpreter:
    interpreter = Interpreter(model_path=str(asset_path(model, default_cache_dir())))
    interpreter.allocate_tensors()
    return interpreter


def _run_reference(model: str, batch: np.ndarray) -> list[np.ndarray]:
    """The interpreter, one sample at a time (its graphs have batch 1), stacked along a new batch axis
    where the graph squeezes its own away (the blendshape net's (52,) output)."""
    ref = _interpreter(model)
    per_sample = []
    for x in batch:
        ref.set_tensor(ref.get_input_details()[0]["index"], x[None])
        ref.invoke()
        per_sample.append([ref.get_tensor(d["index"]) for d in ref.get_output_details()])
    return [
        np.concatenate(outs) if outs[0].shape[:1] == (1,) else np.stack(outs)
        for outs in zip(*per_sample, strict=True)
    ]


def _run_torch(model: str, batch: np.ndarray) -> list[np.ndarray]:
    x = torch.from_numpy(batch)
    with torch.inference_mode():
        return [o.numpy() for o in _torch_model(model)(x.permute(0, 3, 1, 2) if x.ndim == 4 else x)]


@cache
def _face_crops() -> np.ndarray:
    """(4, 256, 256, 3) V2 crops of the test photos in [0, 1], cut where the front end's ``locate``
    put each photo's face."""
    fe = front_end("v2")
    found = fe.locate([photo(n) for n in PHOTO_NAMES])
    crops = fe.spec.crops(found.batch, found.sizes, found.face_image, found.rois)
    return crops.permute(0, 2, 3, 1).numpy()


def _inputs(model: str, kind: str) -> np.ndarray:
    rng = np.random.default_rng(1234)
    if model == MESH_V2:
        return rng.uniform(0, 1, (3, 256, 256, 3)).astype(np.float32) if kind == "random" else _face_crops()
    if kind == "random":  # landmark-like clouds of points in pixels, at several scales and offsets
        return (rng.uniform(0, 1, (5, 146, 2)) * rng.uniform(50, 900, (5, 1, 1))).astype(np.float32)
    faces = [f["landmarks"] for p in json.loads(REFERENCE.read_text())["photos"].values() for f in p["faces"]]
    return np.asarray(faces, np.float32)[:, LANDMARK_SUBSET, :2]


@pytest.mark.parametrize("model", [MESH_V2, BLENDSHAPES])
@pytest.mark.parametrize("kind", ["random", "real"])
def test_matches_tflite_batched_and_per_sample(model: str, kind: str) -> None:
    batch = _inputs(model, kind)
    expected = _run_reference(model, batch)
    batched = _run_torch(model, batch)
    assert [o.shape for o in batched] == [e.shape for e in expected]
    for got, want in zip(batched, expected, strict=True):
        assert np.abs(got - want).max() <= TOLERANCE
    singles = [_run_torch(model, batch[i : i + 1]) for i in range(len(batch))]
    for k, got in enumerate(batched):
        np.testing.assert_allclose(np.concatenate([s[k] for s in singles]), got, rtol=1e-5, atol=1e-4)


def test_outputs_are_named_and_shaped_as_mediapipe_reads_them() -> None:
    mesh = _torch_model(MESH_V2)
    assert mesh.input_shape == (1, 3, 256, 256)
    assert mesh.output_names == ("Identity", "Identity_1", "Identity_2")  # mesh, presence logit, tongue
    blendshapes = _torch_model(BLENDSHAPES)
    assert blendshapes.input_shape == (1, 146, 2)
    scores = blendshapes(torch.rand(3, 146, 2) * 200)[0]
    assert scores.shape == (3, 52) and bool(((scores >= 0) & (scores <= 1)).all())


def test_real_face_crops_are_faces() -> None:
    _, presence_logit, _ = _run_torch(MESH_V2, _face_crops())
    assert (presence_logit > 0).all()


def test_bundled_detector_is_the_short_range_blazeface() -> None:
    """face_landmarker.task's detector is another file (metadata) holding the same net and weights."""
    cache_dir = default_cache_dir()
    task, legacy = (
        asset_path("face_detector.tflite", cache_dir),
        asset_path("face_detection_short_range.tflite", cache_dir),
    )
    assert sha256_file(task) != sha256_file(legacy)
    a, b = load_tflite(task), load_tflite(legacy)
    assert [type(m) for m in a.ops] == [type(m) for m in b.ops] and a.wiring == b.wiring
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


@pytest.mark.slow
@pytest.mark.parametrize(("model", "backend"), [(BLENDSHAPES, "inductor"), (MESH_V2, "eager")])
def test_compiles_without_graph_breaks(model: str, backend: str) -> None:
    """fullgraph=True fails loudly on any graph break. The blendshape net (all the new ops) goes
    through inductor; V2 (V1's op set plus LOGISTIC, already compiled by test_tflite_parity) through
    dynamo only, which is where graph breaks show, to keep the 2-core CI time reasonable."""
    module = _torch_model(model)
    compiled = torch.compile(module, fullgraph=True, backend=backend, dynamic=False)
    batch = torch.from_numpy(_inputs(model, "random")[:2])
    batch = batch.permute(0, 3, 1, 2) if batch.ndim == 4 else batch
    with torch.inference_mode():
        for got, want in zip(compiled(batch), module(batch), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
