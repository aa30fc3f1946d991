"""Files of an ``ict`` result (topology.py's layout): OBJ/MTL, GLB with ARKit morph targets, JSON.

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

import json
import struct
from functools import cache, partial
from typing import Any

import numpy as np

from face3d.models.backends.ict.topology import HeadTopology
from face3d.models.export.decimal_text import fixed_rows, index_rows
from face3d.models.export.serialize import pad4, rounded
from face3d.models.geometry.normals import normal_plan, vertex_normals
from face3d.models.reconstruction import Face, FaceModel

SPARSE_MIN_CM = 0.005
_json = partial(json.dumps, separators=(",", ":"))  # compact JSON text

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


@cache
def _topology_plan(topology: HeadTopology) -> tuple[np.ndarray, np.ndarray]:
    return normal_plan(topology.triangles, topology.vertex_count)


_LAST: tuple[np.ndarray, HeadTopology, np.ndarray] | None = None  # vertices (a copy), topology, normals


def head_normals(vertices: np.ndarray, topology: HeadTopology) -> np.ndarray:
    """vertex_normals, once when the OBJ and the GLB write the same mesh (``neutral``: both the identity
    base; by default the OBJ has the fitted head, the GLB the base and morph targets): the last
    result is kept with a copy of its vertices and reused for the very same bytes only."""
    global _LAST
    v, last = np.ascontiguousarray(vertices, np.float32), _LAST
    if last and last[1] is topology and np.array_equal(last[0].view(np.uint8), v.view(np.uint8)):
        return last[2]
    normals = vertex_normals(v, topology.triangles, _topology_plan(topology))
    normals.setflags(write=False)  # shared by the OBJ and the GLB writers
    _LAST = (v.copy(), topology, normals)
    return normals


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
    normals = head_normals(vertices, topology)
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


_FLOAT, _USHORT, _UINT = 5126, 5123, 5125
_ARRAY, _ELEMENTS = 34962, 34963


def _buffer_view(offset: int, size: int, target: int | None) -> dict[str, int]:
    """One glTF buffer view into the single buffer; ``target`` only for vertex and index data."""
    view = {"buffer": 0, "byteOffset": offset, "byteLength": size}
    return view if target is None else view | {"target": target}


@cache
def _static_glb(topology: HeadTopology) -> tuple[bytes, list[dict], list[dict], int]:
    """What every head GLB shares, built once per process: the leading part of the binary chunk
    (triangle indices, UVs, the morph targets' sparse indices and values) with its buffer views and
    accessors (accessor 0: indices, 1: UVs, 2..54: the 53 morph targets), and the GLB index type."""
    n = len(topology.gl_vertex)
    index_dtype, index_type = ("<u2", _USHORT) if n < 65536 else ("<u4", _UINT)
    uvs = np.array(topology.gl_uvs, dtype="<f4")
    uvs[:, 1] = 1.0 - uvs[:, 1]  # glTF's v points down the image
    payloads = [(topology.gl_triangles.astype(index_dtype).tobytes(), _ELEMENTS), (uvs.tobytes(), _ARRAY)]
    accessors: list[dict] = [
        {"bufferView": 0, "componentType": index_type, "count": topology.gl_triangles.size, "type": "SCALAR"},
        {"bufferView": 1, "componentType": _FLOAT, "count": n, "type": "VEC2"},
    ]
    for deltas in topology.expression:
        moved = deltas[topology.gl_vertex].astype(np.float32) * np.float32(0.01)
        keep = np.flatnonzero(np.abs(moved).max(axis=1) > SPARSE_MIN_CM * 0.01)
        values = moved[keep]
        # min/max cover the whole accessor: the listed values and the zeros of every other vertex.
        listed = np.concatenate([values, np.zeros((int(len(keep) < n), 3), np.float32)])
        view = len(payloads)
        payloads += [(keep.astype(index_dtype).tobytes(), None), (values.astype("<f4").tobytes(), None)]
        accessors.append({
            "componentType": _FLOAT, "count": n, "type": "VEC3",
            "min": listed.min(axis=0).tolist(), "max": listed.max(axis=0).tolist(),
            "sparse": {"count": len(keep), "indices": {"bufferView": view, "componentType": index_type},
                       "values": {"bufferView": view + 1}},
        })  # fmt: skip
    views, blob, offset = [], [], 0
    for payload, target in payloads:
        views.append(_buffer_view(offset, len(payload), target))
        blob.append(pad4(payload))
        offset += len(blob[-1])
    return b"".join(blob), views, accessors, offset


@cache
def _static_json(topology: HeadTopology) -> tuple[str, str, np.ndarray]:
    """The static accessors' and buffer views' JSON (list items, as json.dumps writes them inside
    the document) and the flat ``take`` index of GLB vertex coordinates (gl_vertex * 3 + axis)."""
    _, views, accessors, _ = _static_glb(topology)
    take = (np.asarray(topology.gl_vertex, np.int64)[:, None] * 3 + np.arange(3)).ravel()
    return _json(accessors)[1:-1], _json(views)[1:-1], take


def to_head_glb(
    face: Face, topology: HeadTopology, texture_bytes: bytes, mime: str, neutral: bool = False
) -> bytes:
    """Binary glTF 2.0: the head (metres), its atlas texture and the 53 expression morph targets.

    Written directly (JSON + binary chunk): the document is small and mostly the same for every
    head, and a generic glTF object model costs more time than the rest of the export. The static
    parts (binary and JSON text) are built once per process; each request formats only positions,
    normals, weights and the texture's view, and copies the big byte strings once (one join).
    """
    model = face.model
    base = np.asarray(model.base_vertices if model is not None else face.vertices, np.float32)
    static, static_views, static_accessors, offset = _static_glb(topology)
    accessors_json, views_json, take = _static_json(topology)
    positions = (base.ravel().take(take) * np.float32(0.01)).astype("<f4", copy=False).reshape(-1, 3)
    normals = head_normals(base, topology).ravel().take(take).astype("<f4", copy=False)
    views = []
    for size, target in ((positions.nbytes, _ARRAY), (normals.nbytes, _ARRAY), (len(texture_bytes), None)):
        views.append(_buffer_view(offset, size, target))
        offset += size + (-size % 4)
    n, first = len(positions), len(static_views)
    accessors = [
        {"bufferView": first, "componentType": _FLOAT, "count": n, "type": "VEC3",
         "min": positions.min(axis=0).tolist(), "max": positions.max(axis=0).tolist()},
        {"bufferView": first + 1, "componentType": _FLOAT, "count": n, "type": "VEC3"},
    ]  # fmt: skip
    position, normal = len(static_accessors), len(static_accessors) + 1
    targets = range(2, len(static_accessors))
    weights = [0.0] * len(targets) if neutral or model is None else [float(w) for w in model.expression]
    doc = {
        "asset": {"generator": "face3d", "version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "head"}],
        "meshes": [{
            "name": "head",
            "primitives": [{
                "attributes": {"POSITION": position, "NORMAL": normal, "TEXCOORD_0": 1},
                "indices": 0, "material": 0, "mode": 4,
                "targets": [{"POSITION": k} for k in targets],
            }],
            "weights": weights,
            "extras": {"targetNames": list(topology.expression_names)},
        }],
        "materials": [{
            "name": "head",
            "pbrMetallicRoughness": {
                "baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": 1.0,
            },
        }],
        "textures": [{"sampler": 0, "source": 0}],
        "samplers": [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}],
        "images": [{"bufferView": first + 2, "mimeType": mime, "name": "texture"}],
    }  # fmt: skip
    # The same text as json.dumps of the whole document with accessors, bufferViews and buffers last.
    tail = f',"accessors":[{accessors_json},{_json(accessors)[1:-1]}],"bufferViews":[{views_json},'
    tail += f'{_json(views)[1:-1]}],"buffers":[{{"byteLength":{offset}}}]}}'
    text = pad4((_json(doc)[:-1] + tail).encode("utf-8"), b" ")
    binary = (static, positions, normals, texture_bytes, bytes(-len(texture_bytes) % 4))
    total = 12 + 8 + len(text) + 8 + offset
    return b"".join((
        struct.pack("<4sII", b"glTF", 2, total),
        struct.pack("<I4s", len(text), b"JSON"), text,
        struct.pack("<I4s", offset, b"BIN\x00"), *binary,
    ))  # fmt: skip


def prepare(topology: HeadTopology) -> None:
    """Build the per-process caches of the OBJ and GLB writers now (~0.5 s), not in the first request."""
    _obj_static(topology)
    _static_glb(topology)
    _static_json(topology)


def model_json(model: FaceModel, neutral: bool) -> dict[str, Any]:
    """The morphable-model members of one face in result.json (the blendshape scores, which every
    478-point landmark net gives, are written for all backends by models/export/files.py)."""
    doc: dict[str, Any] = {
        "identity": rounded(model.identity, 4),
        "expression": dict(zip(model.expression_names, rounded(model.expression, 4), strict=True)),
        "landmarks_68_model": rounded(model.landmarks_68, 2),
        "fit_residual_px": round(float(model.fit_residual_px), 3),
        "neutral": bool(neutral),
    }
    return doc


def posed_points(face: Face, vertices: np.ndarray) -> np.ndarray:
    """(N, 3) image-space positions of model-space ``vertices`` under the face's pose (geometry/pose.py)."""
    pose = face.pose
    flip = np.array([1.0, -1.0, -1.0])
    cam = pose.scale * np.asarray(vertices, np.float64) @ np.asarray(pose.rotation, np.float64).T
    return (cam + np.asarray(pose.translation, np.float64) * flip) * flip


def draw_head(draw: Any, face: Face, topology: HeadTopology, sx: float, sy: float) -> None:
    """The fitted head's camera-facing wireframe (face, head and neck) and its 68 model landmarks."""
    points = posed_points(face, face.vertices)
    plan = _topology_plan(topology)
    facing = vertex_normals(points, topology.triangles, plan)[:, 2] < 0  # image z points away from the camera
    edges = topology.preview_edges[facing[topology.preview_edges].all(axis=1)]
    xy = points[:, :2] * (sx, sy)
    for segment in xy[edges].reshape(-1, 4).tolist():
        draw.line(segment, fill=(0, 255, 120, 70), width=1)
    if face.model is not None:
        r = 2
        for x, y in (np.asarray(face.model.landmarks_68)[:, :2] * (sx, sy)).tolist():
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 60, 60, 230))
