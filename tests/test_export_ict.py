"""Files of an ``ict`` result: OBJ/MTL, GLB with named morph targets (Khronos validator), JSON, preview.

The faces here are built from the model itself (a random identity and expression, a synthetic
texture and pose), so these tests need no weights or photos; tests/test_ict_backend.py covers real ones.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pygltflib as gl
import pytest
from PIL import Image

from face3d.models.backends.ict.export import IctExport, ict_export
from face3d.models.backends.ict.model import load_ict_model
from face3d.models.backends.ict.topology import HeadTopology, load_head_topology
from face3d.models.export.document import result_json
from face3d.models.export.files import encode_texture, export_files
from face3d.models.export.glb import SPARSE_MIN_CM, to_glb
from face3d.models.export.obj import to_obj
from face3d.models.reconstruction import Face, FaceModel, Pose, Reconstruction
from tests.gltf_validator import validator_issues


@pytest.fixture(scope="module")
def topo() -> HeadTopology:
    return load_head_topology()


@pytest.fixture(scope="module")
def face(topo: HeadTopology) -> Face:
    model = load_ict_model()
    rng = np.random.default_rng(3)
    identity = rng.standard_normal(100).astype(np.float32)
    expression = np.zeros(53, np.float32)
    expression[[model.expression_names.index("jawOpen"), model.expression_names.index("mouthSmile_L")]] = 0.6
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
        blendshapes={f"s{i}": 0.1 for i in range(52)},
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


def test_glb_carries_named_morph_targets_at_the_fitted_weights(face: Face, topo: HeadTopology) -> None:
    doc = gl.GLTF2.load_from_bytes(_glb(face, topo))
    (mesh,) = doc.meshes
    assert mesh.extras["targetNames"] == list(topo.expression_names) and len(topo.expression_names) == 53
    np.testing.assert_allclose(mesh.weights, face.model.expression, atol=1e-6)
    (prim,) = mesh.primitives
    assert len(prim.targets) == 53
    blob = doc.binary_blob()

    def read(accessor: gl.Accessor, dtype: str, width: int) -> np.ndarray:
        view = doc.bufferViews[accessor.bufferView]
        return np.frombuffer(blob, dtype, accessor.count * width, view.byteOffset).reshape(
            accessor.count, width
        )

    base = read(doc.accessors[prim.attributes.POSITION], "<f4", 3)
    np.testing.assert_allclose(base, face.model.base_vertices[topo.gl_vertex] * 0.01, atol=1e-7)
    # base + sum of weights x targets (sparse accessors) = the fitted head, within the sparse cut
    shaped = base.astype(np.float64).copy()
    for weight, target in zip(mesh.weights, prim.targets, strict=True):
        sparse = doc.accessors[target["POSITION"] if isinstance(target, dict) else target.POSITION].sparse
        ids = np.frombuffer(blob, "<u2", sparse.count, doc.bufferViews[sparse.indices.bufferView].byteOffset)
        values = np.frombuffer(
            blob, "<f4", sparse.count * 3, doc.bufferViews[sparse.values.bufferView].byteOffset
        )
        assert (np.diff(ids.astype(int)) > 0).all()
        shaped[ids] += weight * values.reshape(-1, 3)
    np.testing.assert_allclose(shaped, face.vertices[topo.gl_vertex] * 0.01, atol=2 * SPARSE_MIN_CM * 0.01)
    neutral = gl.GLTF2.load_from_bytes(_glb(face, topo, neutral=True))
    assert neutral.meshes[0].weights == [0.0] * 53


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
    assert len(doc["identity"]) == 100 and list(doc["expression"]) == list(topo.expression_names)
    assert doc["expression"]["jawOpen"] == pytest.approx(0.6)
    assert len(doc["landmarks_68_model"]) == 68 and doc["fit_residual_px"] == 1.25
    assert doc["neutral"] is True and len(doc["blendshapes"]) == 52
    assert len(doc["landmarks_68"]) == 68  # the net-mapped ones stay beside the model's
    preview = np.asarray(Image.open(io.BytesIO(files["preview.png"])).convert("RGB")).astype(int)
    drawn = np.abs(preview - 90).max(axis=2) > 20
    assert drawn[150:260, 150:250].mean() > 0.2  # the head's wireframe over the face
    fields = [ict_export().json_fields(face, neutral=False)]
    assert (result_json(rec, {}, ["x"], fields).faces[0].model_extra or {})["neutral"] is False


def test_neutral_option_reaches_the_files(face: Face, topo: HeadTopology) -> None:
    from face3d.models.pipeline import ReconstructOptions, export_result
    from face3d.service.cli.main import build_parser

    options = ReconstructOptions.parse(formats="glb,json", neutral=True)
    assert options.neutral and options.batch_key == ReconstructOptions.parse(formats="glb").batch_key
    rec = Reconstruction(400, 400, [face], {})
    exported = export_result(rec, None, options, ict_export(), {"backend": "ict"})
    assert gl.GLTF2.load_from_bytes(exported.files["face.glb"]).meshes[0].weights == [0.0] * 53
    assert (exported.document.faces[0].model_extra or {})["neutral"] is True
    args = build_parser().parse_args(["reconstruct", "x.jpg", "-o", "out", "--neutral"])
    assert args.neutral is True
