"""Files of an ``ict`` result (models/ict_topology.py layout): OBJ/MTL, GLB with ARKit morph targets, JSON.

Units and axes as every face3d mesh (models/reconstruction.py): OBJ in centimetres, GLB in metres,
right-handed, +Y up, +Z out of the face; the head is frontal, its pose in result.json.

GLB: one primitive (one material, the atlas texture). Its base mesh is the fitted identity with a
neutral expression; the 53 expression shapes are morph targets named in ``mesh.extras.targetNames``
(ICT's ARKit names, ``_L``/``_R`` = the subject's left/right) and ``mesh.weights`` are the fitted
expression weights, so a viewer shows the fitted face and an app can animate it. Morph targets are
the same for every result (ICT's expressions do not depend on identity), so their bytes are built
once per process; they are stored as sparse accessors holding only the vertices a shape moves by
more than ``SPARSE_MIN_CM`` (0.05 mm): ~3.6 MB instead of 17 MB dense.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pygltflib as gl

from face3d.models.fasttext import fixed_rows, index_rows
from face3d.models.ict_topology import HeadTopology
from face3d.models.reconstruction import Face, FaceModel

SPARSE_MIN_CM = 0.005

_OBJ_HEADER = """\
# face3d reconstructed head (ICT Face Model Light, MIT licence): {nv} vertices, {nf} triangles
# units: centimetres
# axes: right-handed, +Y up, +X towards the subject's left, +Z out of the face (towards the camera)
# the mesh is the subject's head in a frontal pose; the head pose is in result.json ("pose")
# expression: {expression}
# texture coordinates: v = 0 at the bottom of the texture (one atlas, see models/ict_topology.py)
"""


def head_vertices(face: Face, neutral: bool) -> np.ndarray:
    """The mesh a result's files carry: the fitted head, or its identity alone when ``neutral``."""
    if neutral and face.model is not None:
        return np.asarray(face.model.base_vertices, np.float32)
    return np.asarray(face.vertices, np.float32)


def normals_of(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (bincount: ~10x faster than np.add.at on 48k triangles)."""
    v = vertices.astype(np.float64)
    corners = v[triangles]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    ids = triangles.ravel()
    normals = np.stack(
        [np.bincount(ids, np.repeat(face_normals[:, c], 3), minlength=len(v)) for c in range(3)], axis=1
    )
    return (normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@cache
def _obj_static(topology: HeadTopology) -> tuple[bytes, bytes]:
    """The OBJ's fixed parts (texture coordinates and faces), formatted once per process."""
    vt = fixed_rows("vt ", topology.uvs, 6)
    corners = np.stack([topology.triangles + 1, topology.triangle_uvs + 1, topology.triangles + 1], axis=2)
    faces = index_rows("f ", corners.reshape(len(corners), 9), "// // //")
    return vt, b"usemtl head\ns 1\n" + faces


def to_head_obj(
    face: Face, topology: HeadTopology, texture_name: str, mtl_name: str, neutral: bool = False
) -> tuple[bytes, bytes]:
    """Wavefront OBJ + MTL of the head: v and vn per vertex, vt per atlas UV (seams split UVs only)."""
    vertices = head_vertices(face, neutral)
    normals = normals_of(vertices, topology.triangles)
    vt, faces = _obj_static(topology)
    expression = "neutral" if neutral or face.model is None else "as fitted (result.json expression)"
    header = _OBJ_HEADER.format(nv=len(vertices), nf=len(topology.triangles), expression=expression)
    text = b"".join(
        (
            header.encode("ascii"),
            f"mtllib {mtl_name}\no head\n".encode("ascii"),
            fixed_rows("v ", vertices, 5),
            vt,
            fixed_rows("vn ", normals, 5),
            faces,
        )
    )
    mtl = (
        f"# face3d material\nnewmtl head\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {texture_name}\n"
    )
    return text, mtl.encode("ascii")


def _pad4(blob: bytes) -> bytes:
    return blob + b"\x00" * (-len(blob) % 4)


@cache
def _morph_targets(topology: HeadTopology) -> tuple[list[tuple[bytes, bytes, int, list, list]], int]:
    """Per expression: (sparse index bytes, value bytes, count, min, max) in metres over GLB vertices."""
    index_type = "<u2" if len(topology.gl_vertex) < 65536 else "<u4"
    out = []
    for deltas in topology.expression:
        moved = deltas[topology.gl_vertex].astype(np.float32) * np.float32(0.01)
        keep = np.flatnonzero(np.abs(moved).max(axis=1) > SPARSE_MIN_CM * 0.01)
        values = moved[keep]
        # min/max cover the whole accessor: the listed values and the zeros of every other vertex.
        listed = np.concatenate([values, np.zeros((int(len(keep) < len(moved)), 3), np.float32)])
        lo, hi = listed.min(axis=0).tolist(), listed.max(axis=0).tolist()
        out.append((keep.astype(index_type).tobytes(), values.astype("<f4").tobytes(), len(keep), lo, hi))
    component = gl.UNSIGNED_SHORT if index_type == "<u2" else gl.UNSIGNED_INT
    return out, component


def to_head_glb(
    face: Face, topology: HeadTopology, texture_bytes: bytes, mime: str, neutral: bool = False
) -> bytes:
    """Binary glTF 2.0: the head (metres), its atlas texture and the 53 expression morph targets."""
    model = face.model
    base = np.asarray(model.base_vertices if model is not None else face.vertices, np.float32)
    positions = (base[topology.gl_vertex] * np.float32(0.01)).astype("<f4")
    normals = normals_of(base, topology.triangles)[topology.gl_vertex].astype("<f4")
    uvs = np.array(topology.gl_uvs, dtype="<f4")
    uvs[:, 1] = 1.0 - uvs[:, 1]  # glTF's v points down the image
    index_type = gl.UNSIGNED_SHORT if len(positions) < 65536 else gl.UNSIGNED_INT
    indices = topology.gl_triangles.astype("<u2" if index_type == gl.UNSIGNED_SHORT else "<u4").ravel()
    targets, sparse_type = _morph_targets(topology)
    parts: list[tuple[bytes, int | None]] = [
        (indices.tobytes(), gl.ELEMENT_ARRAY_BUFFER),
        (positions.tobytes(), gl.ARRAY_BUFFER),
        (normals.tobytes(), gl.ARRAY_BUFFER),
        (uvs.tobytes(), gl.ARRAY_BUFFER),
        (texture_bytes, None),
    ]
    for index_bytes, value_bytes, *_ in targets:
        parts += [(index_bytes, None), (value_bytes, None)]
    views, blob, offset = [], [], 0
    for payload, target in parts:
        views.append(gl.BufferView(buffer=0, byteOffset=offset, byteLength=len(payload), target=target))
        blob.append(_pad4(payload))
        offset += len(blob[-1])
    n = len(positions)
    accessors = [
        gl.Accessor(bufferView=0, componentType=index_type, count=indices.size, type=gl.SCALAR),
        gl.Accessor(bufferView=1, componentType=gl.FLOAT, count=n, type=gl.VEC3,
                    min=positions.min(axis=0).tolist(), max=positions.max(axis=0).tolist()),
        gl.Accessor(bufferView=2, componentType=gl.FLOAT, count=n, type=gl.VEC3),
        gl.Accessor(bufferView=3, componentType=gl.FLOAT, count=n, type=gl.VEC2),
    ]  # fmt: skip
    for k, (_, _, count, lo, hi) in enumerate(targets):
        sparse = gl.Sparse(
            count=count,
            indices=gl.AccessorSparseIndices(bufferView=5 + 2 * k, componentType=sparse_type),
            values=gl.AccessorSparseValues(bufferView=6 + 2 * k),
        )
        accessors.append(
            gl.Accessor(
                byteOffset=None, componentType=gl.FLOAT, count=n, type=gl.VEC3, min=lo, max=hi, sparse=sparse
            )
        )
    weights = [0.0] * len(targets) if neutral or model is None else [float(w) for w in model.expression]
    primitive = gl.Primitive(
        attributes=gl.Attributes(POSITION=1, NORMAL=2, TEXCOORD_0=3),
        indices=0,
        material=0,
        mode=gl.TRIANGLES,
        targets=[gl.Attributes(POSITION=4 + k) for k in range(len(targets))],
    )
    material = gl.Material(
        name="head",
        pbrMetallicRoughness=gl.PbrMetallicRoughness(
            baseColorTexture=gl.TextureInfo(index=0), metallicFactor=0.0, roughnessFactor=1.0
        ),
    )
    gltf = gl.GLTF2(
        asset=gl.Asset(generator="face3d", version="2.0"),
        scene=0,
        scenes=[gl.Scene(nodes=[0])],
        nodes=[gl.Node(mesh=0, name="head")],
        meshes=[
            gl.Mesh(
                name="head",
                primitives=[primitive],
                weights=weights,
                extras={"targetNames": list(topology.expression_names)},
            )
        ],
        accessors=accessors,
        bufferViews=views,
        buffers=[gl.Buffer(byteLength=offset)],
        images=[gl.Image(bufferView=4, mimeType=mime, name="texture")],
        samplers=[gl.Sampler(magFilter=gl.LINEAR, minFilter=gl.LINEAR_MIPMAP_LINEAR,
                             wrapS=gl.CLAMP_TO_EDGE, wrapT=gl.CLAMP_TO_EDGE)],
        textures=[gl.Texture(sampler=0, source=0)],
        materials=[material],
    )  # fmt: skip
    gltf.set_binary_blob(b"".join(blob))
    return b"".join(gltf.save_to_bytes())


def _round(values: Any, digits: int) -> Any:
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


def model_json(model: FaceModel, neutral: bool) -> dict[str, Any]:
    """The morphable-model members of one face in result.json (the blendshape scores, which every
    478-point landmark net gives, are written for all backends by models/export.py)."""
    doc: dict[str, Any] = {
        "identity": _round(model.identity, 4),
        "expression": dict(zip(model.expression_names, _round(model.expression, 4), strict=True)),
        "landmarks_68_model": _round(model.landmarks_68, 2),
        "fit_residual_px": round(float(model.fit_residual_px), 3),
        "neutral": bool(neutral),
    }
    return doc


def posed_points(face: Face, vertices: np.ndarray) -> np.ndarray:
    """(N, 3) image-space positions of model-space ``vertices`` under the face's pose (models/pose.py)."""
    pose = face.pose
    flip = np.array([1.0, -1.0, -1.0])
    cam = pose.scale * np.asarray(vertices, np.float64) @ np.asarray(pose.rotation, np.float64).T
    return (cam + np.asarray(pose.translation, np.float64) * flip) * flip


def draw_head(draw: Any, face: Face, topology: HeadTopology, sx: float, sy: float) -> None:
    """The fitted head's camera-facing wireframe (face, head and neck) and its 68 model landmarks."""
    points = posed_points(face, face.vertices)
    facing = normals_of(points, topology.triangles)[:, 2] < 0  # image z points away from the camera
    edges = topology.preview_edges[facing[topology.preview_edges].all(axis=1)]
    xy = points[:, :2] * (sx, sy)
    for segment in xy[edges].reshape(-1, 4).tolist():
        draw.line(segment, fill=(0, 255, 120, 70), width=1)
    if face.model is not None:
        r = 2
        for x, y in (np.asarray(face.model.landmarks_68)[:, :2] * (sx, sy)).tolist():
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 60, 60, 230))
