"""Files of an ``ict`` result: OBJ/MTL, GLB with named morph targets (Khronos validator), JSON, preview.

The faces here are built from the model itself (a random identity and expression, a synthetic
texture and pose), so these tests need no weights or photos; tests/test_ict_backend.py covers real ones.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pygltflib as gl
import pytest
from PIL import Image

from face3d.models.backends.ict.export import ARKIT_NAMES, IctExport, ict_export
from face3d.models.backends.ict.model import load_ict_model
from face3d.models.backends.ict.topology import HeadTopology, load_head_topology
from face3d.models.export.document import result_json
from face3d.models.export.files import encode_texture, export_files
from face3d.models.export.glb import SPARSE_MIN_CM, to_glb
from face3d.models.export.obj import to_obj
from face3d.models.nets.blendshapes import BLENDSHAPE_NAMES
from face3d.models.reconstruction import Face, FaceModel, Pose, Reconstruction
from tests.glb_reader import read_morphed
from tests.gltf_validator import validator_issues

# ARKit's 52 (ARFaceAnchor.BlendShapeLocation) sorted, as MediaPipe and the JSON's blendshapes order them;
# written out here, not imported, so that the test checks the export's list against an independent one.
ARKIT_ORDER = sorted([
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight", "tongueOut",
])  # fmt: skip


@pytest.fixture(scope="module")
def topo() -> HeadTopology:
    return load_head_topology()


@pytest.fixture(scope="module")
def face(topo: HeadTopology) -> Face:
    model = load_ict_model()
    rng = np.random.default_rng(3)
    identity = rng.standard_normal(100).astype(np.float32)
    expression = np.zeros(53, np.float32)
    expression[[model.expression_names.index(n) for n in ("jawOpen", "mouthSmile_L")]] = 0.6
    expression[[model.expression_names.index(n) for n in ("browInnerUp_L", "browInnerUp_R")]] = 0.4
    base = model.shape(identity)
    vertices = model.shape(identity, expression)
    texture = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    pose = Pose(
        rotation=np.eye(3), yaw=0.0, pitch=0.0, roll=0.0, scale=10.0, translation=np.array([200.0, 200.0, 0])
    )
    lm68 = vertices[model.landmarks68] * np.array([10, -10, -10]) + np.array([200, 200, 0])
    return Face(
        bbox=(120.0, 100.0, 280.0, 300.0), score=0.9, landmarks=np.zeros((478, 3), np.float32),
        vertices=vertices, pose=pose, texture=texture, coverage=0.5,
        model=FaceModel(identity=identity, expression=expression, expression_names=model.expression_names,
                        base_vertices=base, landmarks_68=lm68, fit_residual_px=1.25),
        blendshapes=dict.fromkeys(BLENDSHAPE_NAMES, 0.1),
    )  # fmt: skip


def test_obj_is_the_whole_head_in_centimetres(face: Face, topo: HeadTopology) -> None:
    obj, mtl = _obj(face)
    lines = obj.decode("ascii").splitlines()
    kinds = [line.split(" ", 1)[0] for line in lines if line and not line.startswith("#")]
    assert kinds.count("v") == topo.vertex_count == kinds.count("vn")
    assert kinds.count("vt") == len(topo.uvs) and kinds.count("f") == len(topo.triangles)
    assert "# units: centimetres" in lines and "mtllib face.mtl" in lines
    v = np.array([line.split()[1:] for line in lines if line.startswith("v ")], float)
    np.testing.assert_allclose(v, face.vertices, atol=6e-6)
    first_face = next(line for line in lines if line.startswith("f "))
    corner = [int(i) for i in first_face.split()[1].split("/")]
    assert corner == [topo.triangles[0, 0] + 1, topo.triangle_uvs[0, 0] + 1, topo.triangles[0, 0] + 1]
    assert b"map_Kd face.png" in mtl
    neutral, _ = _obj(face, neutral=True)
    v0 = np.array(
        [line.split()[1:] for line in neutral.decode().splitlines() if line.startswith("v ")], float
    )
    np.testing.assert_allclose(v0, face.model.base_vertices, atol=6e-6)


def _obj(face: Face, neutral: bool = False) -> tuple[bytes, bytes]:
    hooks: IctExport = ict_export()
    return to_obj(hooks.layout, hooks.mesh(face, neutral), "face.png", "face.mtl")


def _glb(face: Face, topo: HeadTopology, neutral: bool = False) -> bytes:
    hooks = ict_export()
    return to_glb(hooks.layout, hooks.mesh(face, neutral), encode_texture(face.texture), "image/png")


def test_glb_carries_arkit_morph_targets_at_the_fitted_weights(face: Face, topo: HeadTopology) -> None:
    glb = read_morphed(_glb(face, topo))
    assert tuple(ARKIT_ORDER) == ARKIT_NAMES and len(ARKIT_ORDER) == 52
    # exactly ARKit's names, in the order of the JSON's blendshapes; ICT has no tongue shape
    assert glb.names == [name for name in ARKIT_ORDER if name != "tongueOut"] and len(glb.names) == 51
    weights = dict(zip(glb.names, glb.weights, strict=True))
    assert weights["jawOpen"] == pytest.approx(0.6) and weights["mouthSmileLeft"] == pytest.approx(0.6)
    assert weights["browInnerUp"] == pytest.approx(0.4) and weights["mouthSmileRight"] == 0.0
    np.testing.assert_allclose(glb.base, face.model.base_vertices[topo.gl_vertex] * 0.01, atol=1e-7)
    # base + sum of weights x targets (sparse accessors) = the fitted head, within the sparse cut
    np.testing.assert_allclose(
        glb.shaped, face.vertices[topo.gl_vertex] * 0.01, atol=2 * SPARSE_MIN_CM * 0.01
    )
    # one browInnerUp target is ICT's two halves together: weight 1 raises both brows
    model = load_ict_model()
    halves = [model.expression_names.index(n) for n in ("browInnerUp_L", "browInnerUp_R")]
    raised = read_morphed(_glb(face, topo), [float(n == "browInnerUp") for n in glb.names]).shaped
    both = face.model.base_vertices + model.expression[halves].sum(axis=0)
    np.testing.assert_allclose(raised, both[topo.gl_vertex] * 0.01, atol=2 * SPARSE_MIN_CM * 0.01)
    assert read_morphed(_glb(face, topo, neutral=True)).weights == [0.0] * 51


def test_uneven_halves_export_at_their_mean(face: Face, topo: HeadTopology) -> None:
    """Where the fit moved a pair's halves apart, the merged target takes their mean: the GLB's head
    moves by at most half the difference times the halves' largest disagreement."""
    model = load_ict_model()
    expression = face.model.expression.copy()
    left, right = (model.expression_names.index(n) for n in ("cheekPuff_L", "cheekPuff_R"))
    expression[[left, right]] = 0.5, 0.3
    vertices = model.shape(face.model.identity, expression)
    uneven = replace(face, vertices=vertices, model=replace(face.model, expression=expression))
    glb = read_morphed(_glb(uneven, topo))
    assert dict(zip(glb.names, glb.weights, strict=True))["cheekPuff"] == pytest.approx(0.4)
    moved = np.linalg.norm(glb.shaped - vertices[topo.gl_vertex] * 0.01, axis=1)
    bound = 0.5 * 0.2 * np.linalg.norm(model.expression[left] - model.expression[right], axis=1).max() * 0.01
    assert 0 < moved.max() <= bound + 2e-6
    (doc,) = json.loads(export_files(Reconstruction(400, 400, [uneven], {}), None, ict_export(), {"json"})[
        "result.json"])["faces"]  # fmt: skip
    assert doc["expression"]["cheekPuff"] == pytest.approx(0.4)


def test_glb_passes_the_khronos_validator(
    face: Face, topo: HeadTopology, weights_cache: Path, tmp_path: Path
):
    issues = validator_issues(_glb(face, topo), weights_cache, tmp_path)
    assert issues["numErrors"] == 0, issues["messages"][:5]
    assert issues["numWarnings"] == 0, issues["messages"][:5]


def test_json_and_preview_of_an_ict_result(face: Face, topo: HeadTopology) -> None:
    rec = Reconstruction(400, 400, [face], {"detect": 1.0})
    image = np.full((400, 400, 3), 90, np.uint8)
    files = export_files(rec, image, ict_export(), {"json", "preview", "glb", "obj", "png"}, neutral=True)
    assert {"face.obj", "face.mtl", "face.png", "face.glb", "preview.png", "result.json"} == set(files)
    (doc,) = json.loads(files["result.json"])["faces"]
    assert len(doc["identity"]) == 100 and len(doc["expression"]) == 51
    # the same names in the same order as blendshapes (less MediaPipe's _neutral score): copyable
    assert list(doc["expression"]) == [n for n in doc["blendshapes"] if n in doc["expression"]]
    assert list(doc["expression"]) == list(doc["blendshapes"])[1:]
    assert doc["expression"]["jawOpen"] == pytest.approx(0.6)
    assert len(doc["landmarks_68_model"]) == 68 and doc["fit_residual_px"] == 1.25
    assert doc["neutral"] is True and len(doc["blendshapes"]) == 52
    assert len(doc["landmarks_68"]) == 68  # the net-mapped ones stay beside the model's
    preview = np.asarray(Image.open(io.BytesIO(files["preview.png"])).convert("RGB")).astype(int)
    drawn = np.abs(preview - 90).max(axis=2) > 20
    assert drawn[150:260, 150:250].mean() > 0.2  # the head's wireframe over the face
    fields = [ict_export().json_fields(face, neutral=False)]
    assert result_json(rec, {}, ["x"], fields).faces[0].neutral is False  # a declared member (FaceResult)


def test_neutral_option_reaches_the_files(face: Face, topo: HeadTopology) -> None:
    from face3d.models.pipeline import ReconstructOptions, export_result
    from face3d.service.cli.main import build_parser

    options = ReconstructOptions.parse(formats="glb,json", neutral=True)
    assert options.neutral and options.batch_key == ReconstructOptions.parse(formats="glb").batch_key
    rec = Reconstruction(400, 400, [face], {})
    exported = export_result(rec, None, options, ict_export(), {"backend": "ict"})
    assert gl.GLTF2.load_from_bytes(exported.files["face.glb"]).meshes[0].weights == [0.0] * 51
    assert exported.document.faces[0].neutral is True
    args = build_parser().parse_args(["reconstruct", "x.jpg", "-o", "out", "--neutral"])
    assert args.neutral is True
