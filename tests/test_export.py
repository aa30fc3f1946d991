"""models/export/ and geometry/ibug68.py: files reload in independent readers with what was written."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image

from face3d.models.backends.facemesh.export import OBJ_HEADER, facemesh_export
from face3d.models.backends.facemesh.topology import Topology, load_topology
from face3d.models.errors import OptionsError
from face3d.models.export.document import result_json
from face3d.models.export.files import encode_texture, export_files
from face3d.models.export.glb import to_glb
from face3d.models.export.mesh import MeshExport, MeshLayout
from face3d.models.export.obj import to_obj
from face3d.models.export.preview import render_preview
from face3d.models.geometry.ibug68 import IBUG68_FROM_MEDIAPIPE, REGIONS, ibug68
from face3d.models.geometry.normals import vertex_normals
from face3d.models.nets.assets import asset_path
from face3d.models.pipeline import ReconstructOptions
from face3d.models.reconstruction import Face, Pose, Reconstruction
from face3d.service.config import default_cache_dir

ROWS, COLS = 18, 26  # 18 x 26 = 468 vertices, like the MediaPipe mesh


def _cap_topology() -> Topology:
    """A front-facing spherical cap (radius 8 cm) gridded in UV: a small real mesh with known answers."""
    u, v = np.meshgrid(np.linspace(0, 1, COLS), np.linspace(0, 1, ROWS))
    a, b = (u - 0.5) * np.pi * 0.8, (v - 0.5) * np.pi * 0.8
    template = 8.0 * np.stack([np.sin(a) * np.cos(b), np.sin(b), np.cos(a) * np.cos(b)], -1).reshape(-1, 3)
    i = (np.arange(ROWS - 1)[:, None] * COLS + np.arange(COLS - 1)[None, :]).ravel()
    # u grows with +X and v with +Y, so these are counter-clockwise seen from +Z (outside).
    triangles = np.concatenate(
        [np.stack([i, i + 1, i + COLS + 1], 1), np.stack([i, i + COLS + 1, i + COLS], 1)]
    )
    mirror = (np.arange(ROWS)[:, None] * COLS + (COLS - 1 - np.arange(COLS))[None, :]).ravel()
    uvs = np.stack([u, v], -1).reshape(-1, 2)
    return Topology(triangles.astype(np.int64), uvs.astype(np.float32), mirror, template.astype(np.float32))


CAP = _cap_topology()
# The cap through the generic hooks: a mesh from no backend at all, exported like any backend's.
CAP_EXPORT = MeshExport(MeshLayout.single_uv("face", CAP.triangles, CAP.uvs, obj_header=OBJ_HEADER))


def _face(centre: tuple[float, float], size: float, seed: int) -> Face:
    """A face whose landmarks are the cap projected into the photo (y down, z towards the camera < 0)."""
    vertices = CAP.template * np.float32(1.0 + 0.05 * seed)
    cx, cy = centre
    pixels = np.stack([cx + size * vertices[:, 0], cy - size * vertices[:, 1], -size * vertices[:, 2]], -1)
    irises = np.repeat(pixels[:1], 10, axis=0)
    texture = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pose = Pose(np.eye(3), yaw=1.5, pitch=-2.0, roll=0.25, scale=size, translation=np.array([cx, cy, 0.0]))
    x0, y0 = pixels[:, :2].min(0)
    x1, y1 = pixels[:, :2].max(0)
    return Face(
        bbox=(float(x0), float(y0), float(x1), float(y1)),
        score=0.9 - 0.1 * seed,
        landmarks=np.concatenate([pixels, irises]).astype(np.float32),
        vertices=vertices,
        pose=pose,
        texture=texture,
        coverage=0.8,
    )


def _rec(n_faces: int, width: int = 400, height: int = 300) -> Reconstruction:
    faces = [_face((120.0 + 160 * k, 150.0), 8.0, k) for k in range(n_faces)]
    return Reconstruction(width=width, height=height, faces=faces, timings_ms={"detect": 1.25})


def _photo(width: int = 400, height: int = 300) -> np.ndarray:
    return np.full((height, width, 3), 90, np.uint8)


def _mediapipe_connections() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "face_mesh_connections", asset_path("face_mesh_connections.py", default_cache_dir())
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_png_texture_round_trips_exactly_and_jpeg_is_close() -> None:
    texture = _face((0, 0), 1, 0).texture
    png = encode_texture(texture, "png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), texture)
    smooth = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 64, axis=0).repeat(3, axis=2)
    jpeg = Image.open(io.BytesIO(encode_texture(smooth, "jpeg", quality=95)))
    assert jpeg.format == "JPEG" and np.abs(np.asarray(jpeg).astype(int) - smooth).max() < 6
    with pytest.raises(ValueError):
        encode_texture(texture, "gif")  # type: ignore[arg-type]


def test_vertex_normals_point_out_of_the_cap() -> None:
    normals = vertex_normals(CAP.template, CAP.triangles)
    radial = CAP.template / np.linalg.norm(CAP.template, axis=1, keepdims=True)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    assert (np.sum(normals * radial, axis=1) > 0.95).all()


def test_obj_reloads_in_trimesh_with_uvs_normals_and_texture(tmp_path: Path) -> None:
    face = _face((0, 0), 1, 0)
    obj, mtl = to_obj(CAP_EXPORT.layout, CAP_EXPORT.mesh(face, False), "face.png", "face.mtl")
    (tmp_path / "face.obj").write_bytes(obj)
    (tmp_path / "face.mtl").write_bytes(mtl)
    (tmp_path / "face.png").write_bytes(encode_texture(face.texture))
    mesh = trimesh.load(tmp_path / "face.obj", process=False, maintain_order=True)
    assert isinstance(mesh, trimesh.Trimesh)
    assert mesh.vertices.shape == (468, 3) and mesh.faces.shape == (len(CAP.triangles), 3)
    assert np.allclose(mesh.vertices, face.vertices, atol=1e-5)
    assert np.allclose(mesh.visual.uv, CAP.uvs, atol=1e-6)
    assert np.array_equal(np.asarray(mesh.visual.material.image.convert("RGB")), face.texture)
    # Winding and normals agree: every triangle's geometric normal faces the same way as its vn lines.
    lines = obj.decode().splitlines()
    vn = np.array([line.split()[1:] for line in lines if line.startswith("vn ")], dtype=np.float64)
    assert vn.shape == (468, 3) and np.allclose(np.linalg.norm(vn, axis=1), 1.0, atol=1e-4)
    corner_normals = vn[mesh.faces].mean(axis=1)
    assert (np.sum(mesh.face_normals * corner_normals, axis=1) > 0).all()
    assert mesh.face_normals[:, 2].mean() > 0.5  # outward = towards +Z for a face
    header = obj.decode().splitlines()[:5]
    assert any("centimetres" in line for line in header) and any("+Y up" in line for line in header)
    assert b"map_Kd face.png" in mtl


def test_glb_loads_in_trimesh_and_pygltflib() -> None:
    face = _face((0, 0), 1, 1)
    png = encode_texture(face.texture)
    glb = to_glb(CAP_EXPORT.layout, CAP_EXPORT.mesh(face, False), png, "image/png")
    scene = trimesh.load(io.BytesIO(glb), file_type="glb", process=False)
    (mesh,) = scene.geometry.values()
    assert mesh.vertices.shape == (468, 3) and len(mesh.faces) == len(CAP.triangles)
    assert np.allclose(mesh.vertices, face.vertices * 0.01, atol=1e-6)  # metres
    assert np.allclose(mesh.visual.uv, CAP.uvs, atol=1e-6)  # trimesh undoes glTF's v-down flip
    texture = mesh.visual.material.baseColorTexture
    assert np.array_equal(np.asarray(texture.convert("RGB")), face.texture)

    gltf = pygltflib.GLTF2.load_from_bytes(glb)
    primitive = gltf.meshes[0].primitives[0]
    assert gltf.accessors[primitive.attributes.POSITION].count == 468
    assert gltf.accessors[primitive.attributes.TEXCOORD_0].count == 468
    assert gltf.accessors[primitive.indices].count == 3 * len(CAP.triangles)
    image = gltf.images[gltf.textures[0].source]
    assert image.mimeType == "image/png"
    view = gltf.bufferViews[image.bufferView]
    assert gltf.binary_blob()[view.byteOffset : view.byteOffset + view.byteLength] == png
    uv_view = gltf.bufferViews[gltf.accessors[primitive.attributes.TEXCOORD_0].bufferView]
    raw_uv = np.frombuffer(gltf.binary_blob(), "<f4", 468 * 2, uv_view.byteOffset).reshape(-1, 2)
    assert np.allclose(raw_uv[:, 1], 1.0 - CAP.uvs[:, 1])  # glTF v points down


def test_export_one_face_names_and_shared_texture() -> None:
    rec = _rec(1)
    model_info = {"model": "mediapipe-face-landmark", "weights": {"face_landmark.tflite": "ab12"}}
    formats = {"obj", "png", "glb", "json", "preview"}
    files = export_files(rec, _photo(), CAP_EXPORT, formats, model_info=model_info)
    assert set(files) == {"face.obj", "face.mtl", "face.png", "face.glb", "result.json", "preview.png"}
    gltf = pygltflib.GLTF2.load_from_bytes(files["face.glb"])
    view = gltf.bufferViews[gltf.images[0].bufferView]
    assert gltf.binary_blob()[view.byteOffset : view.byteOffset + view.byteLength] == files["face.png"]
    doc = json.loads(files["result.json"])
    assert doc["files"] == list(files)
    assert doc["image"] == {"width": 400, "height": 300}
    assert doc["model"] == model_info
    assert doc["timings_ms"]["detect"] == 1.25 and doc["timings_ms"]["export"] > 0
    (face_doc,) = doc["faces"]
    face = rec.faces[0]
    assert face_doc["files"] == ["face.png", "face.obj", "face.mtl", "face.glb"]
    assert np.allclose(face_doc["landmarks"], face.landmarks, atol=0.005)
    assert np.allclose(face_doc["landmarks_68"], face.landmarks[list(IBUG68_FROM_MEDIAPIPE)], atol=0.005)
    assert np.allclose(face_doc["bbox"], face.bbox, atol=0.005)
    assert face_doc["score"] == pytest.approx(face.score, abs=1e-4)
    assert face_doc["texture_coverage"] == pytest.approx(0.8)
    pose = face_doc["pose"]
    assert pose["rotation"] == np.eye(3).tolist() and pose["yaw"] == 1.5 and pose["pitch"] == -2.0
    assert pose["roll"] == 0.25 and pose["scale"] == 8.0 and pose["translation"] == [120.0, 150.0, 0.0]


def test_export_several_faces_jpeg_textures() -> None:
    files = export_files(_rec(2), _photo(), CAP_EXPORT, {"obj", "png", "json"}, texture_format="jpeg")
    expected = {f"face{k}.{ext}" for k in (0, 1) for ext in ("obj", "mtl", "jpg")} | {"result.json"}
    assert set(files) == expected
    assert b"map_Kd face1.jpg" in files["face1.mtl"] and b"mtllib face1.mtl" in files["face1.obj"]
    assert Image.open(io.BytesIO(files["face0.jpg"])).format == "JPEG"
    doc = json.loads(files["result.json"])
    assert [f["files"] for f in doc["faces"]] == [
        ["face0.jpg", "face0.obj", "face0.mtl"],
        ["face1.jpg", "face1.obj", "face1.mtl"],
    ]
    assert doc["faces"][0]["score"] > doc["faces"][1]["score"]


def test_export_without_faces_and_bad_formats() -> None:
    files = export_files(_rec(0), _photo(), CAP_EXPORT, {"obj", "glb", "json", "preview"})
    assert set(files) == {"result.json", "preview.png"}
    assert json.loads(files["result.json"])["faces"] == []
    assert set(export_files(_rec(1), _photo(), CAP_EXPORT, {"glb"})) == {"face.glb"}
    with pytest.raises(OptionsError, match="formats"):  # checked once, where every request's options are
        ReconstructOptions(formats=frozenset({"stl"}))


def test_result_json_lists_given_files() -> None:
    doc = result_json(_rec(1), None, ["face.glb", "result.json"])
    assert doc.model.model_dump() == {} and doc.files == ["face.glb", "result.json"]
    assert doc.faces[0].files == ["face.glb"]


def test_preview_is_downscaled_and_shows_the_wireframe() -> None:
    rec = _rec(1, width=2000, height=1500)
    rec.faces[0] = _face((1000.0, 700.0), 60.0, 0)
    png = render_preview(_photo(2000, 1500), rec, [CAP_EXPORT.preview(rec.faces[0])])
    preview = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert preview.shape == (768, 1024, 3)
    green = preview[..., 1] - preview[..., 0] > 80  # translucent green over the grey photo
    assert green.sum() > 1000  # mesh edges drawn
    rows, cols = np.nonzero(green)
    scale = 1024 / 2000
    x0, y0, x1, y1 = (np.array(rec.faces[0].bbox) * scale).tolist()
    assert x0 - 2 <= cols.min() and cols.max() <= x1 + 2 and y0 - 2 <= rows.min() and rows.max() <= y1 + 2
    one = _rec(1)
    small = np.asarray(
        Image.open(io.BytesIO(render_preview(_photo(), one, [CAP_EXPORT.preview(one.faces[0])])))
    )
    assert small.shape == (300, 400, 3)  # never upscaled


def test_ibug68_indices_are_68_unique_mesh_vertices() -> None:
    index = np.array(IBUG68_FROM_MEDIAPIPE)
    assert index.shape == (68,) and len(set(index.tolist())) == 68
    assert index.min() >= 0 and index.max() < 468
    assert sum(stop - start for start, stop in REGIONS.values()) == 68
    landmarks = np.arange(478 * 3, dtype=np.float32).reshape(478, 3)
    assert np.array_equal(ibug68(landmarks), landmarks[index])
    with pytest.raises(ValueError):
        ibug68(landmarks[:100])


def test_ibug68_points_lie_on_mediapipe_contours() -> None:
    mp = _mediapipe_connections()

    def points(*contours: frozenset[tuple[int, int]]) -> set[int]:
        return {i for contour in contours for edge in contour for i in edge}

    inner_lips = {78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95}
    expected = {
        "jaw": points(mp.FACEMESH_FACE_OVAL),
        "right_eyebrow": points(mp.FACEMESH_RIGHT_EYEBROW),
        "left_eyebrow": points(mp.FACEMESH_LEFT_EYEBROW),
        "nose_bridge": points(mp.FACEMESH_NOSE),
        "nose_base": points(mp.FACEMESH_NOSE),
        "right_eye": points(mp.FACEMESH_RIGHT_EYE),
        "left_eye": points(mp.FACEMESH_LEFT_EYE),
        "outer_lips": points(mp.FACEMESH_LIPS) - inner_lips,
        "inner_lips": inner_lips,
    }
    assert inner_lips <= points(mp.FACEMESH_LIPS)
    for region, (start, stop) in REGIONS.items():
        assert set(IBUG68_FROM_MEDIAPIPE[start:stop]) <= expected[region], region
    # iBUG corners: 36/39 right eye outer/inner, 42/45 left eye inner/outer, 8 chin, 48/54 mouth corners.
    assert [IBUG68_FROM_MEDIAPIPE[k] for k in (36, 39, 42, 45, 8, 48, 54)] == [
        33,
        133,
        362,
        263,
        152,
        61,
        291,
    ]


# iBUG index -> its left/right counterpart (midline points map to themselves).
IBUG_FLIP = [
    *range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, *range(35, 30, -1),
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,
    64, 63, 62, 61, 60, 67, 66, 65,
]  # fmt: skip


def test_ibug68_is_symmetric_and_ordered_on_the_real_template() -> None:
    topology = load_topology()
    index = np.array(IBUG68_FROM_MEDIAPIPE)
    assert np.array_equal(topology.mirror[index], index[IBUG_FLIP])
    points = topology.template[index]
    assert (np.diff(points[:17, 0]) > 0).all()  # jaw runs from the subject's right (-X) to left (+X)
    assert points[8, 1] == points[:17, 1].min()  # chin is the lowest jaw point
    assert index[30] == topology.template[:, 2].argmax()  # nose tip is the most forward vertex
    assert (points[36:42, 0] < 0).all() and (points[42:48, 0] > 0).all()  # right eye on the subject's right


def test_real_mesh_exports_and_reloads(tmp_path: Path) -> None:
    topology = load_topology()
    face = _face((0, 0), 1, 0)
    face.vertices = topology.template.copy()
    rec = Reconstruction(width=400, height=300, faces=[face])
    files = export_files(rec, _photo(), facemesh_export(), {"obj", "glb"})
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    mesh = trimesh.load(tmp_path / "face.obj", process=False, maintain_order=True)
    assert mesh.vertices.shape == (468, 3) and mesh.faces.shape == (852, 3)
    assert np.array_equal(mesh.faces, topology.triangles)
    assert mesh.face_normals[:, 2].mean() > 0.5  # CCW from outside: normals leave the face towards +Z
    (glb_mesh,) = trimesh.load(tmp_path / "face.glb", process=False).geometry.values()
    assert glb_mesh.vertices.shape == (468, 3) and np.allclose(glb_mesh.visual.uv, topology.uvs, atol=1e-6)
