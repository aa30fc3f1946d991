"""Binary glTF 2.0 of any backend's mesh (models/export/mesh.py): one textured primitive, positions in
metres (glTF's unit), normals, UVs, and the layout's morph targets as sparse accessors.

Why a small writer of our own rather than pygltflib's object model: a result's document is small and
mostly the same for every face of a backend, and building it through a generic glTF object model cost
more than the rest of the export (measured with ``python -m bench.glb_writers``: see README,
Performance). Here the static parts (indices, UVs, morph targets: binary and JSON text) are built once
per layout and process; each file formats only positions, normals, weights and the texture's view,
and copies the big byte strings once (one join). Files load in the Khronos validator, trimesh,
pygltflib, three.js and Blender (tests/test_export*.py).

Morph targets are stored sparse: only the vertices a shape moves by more than ``SPARSE_MIN_CM``
(0.05 mm), ~3.6 MB instead of 17 MB dense for the ICT head's 53 expressions.
"""

from __future__ import annotations

import json
import struct
from functools import cache, partial

import numpy as np

from face3d.models.export.mesh import FaceMesh, MeshLayout, mesh_normals

SPARSE_MIN_CM = 0.005
_FLOAT, _USHORT, _UINT = 5126, 5123, 5125
_ARRAY, _ELEMENTS = 34962, 34963
_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP_TO_EDGE, _TRIANGLES = 9729, 9987, 33071, 4
_json = partial(json.dumps, separators=(",", ":"))  # compact JSON text


def pad4(blob: bytes, fill: bytes = b"\x00") -> bytes:
    """``blob`` padded to a multiple of 4 bytes, as glTF wants every chunk and buffer view (the JSON
    chunk pads with spaces, the binary one with zeros)."""
    return blob + fill * (-len(blob) % 4)


def _buffer_view(offset: int, size: int, target: int | None) -> dict[str, int]:
    """One glTF buffer view into the single buffer; ``target`` only for vertex and index data."""
    view = {"buffer": 0, "byteOffset": offset, "byteLength": size}
    return view if target is None else view | {"target": target}


@cache
def _static_glb(layout: MeshLayout) -> tuple[bytes, list[dict], list[dict], int]:
    """What every GLB of a layout shares: the leading part of the binary chunk (triangle indices, UVs,
    the morph targets' sparse indices and values) with its buffer views and accessors (accessor 0:
    indices, 1: UVs, 2.. the morph targets), and the blob's length."""
    n = len(layout.gl_vertex)
    index_dtype, index_type = ("<u2", _USHORT) if n < 65536 else ("<u4", _UINT)
    uvs = np.array(layout.gl_uvs, dtype="<f4")
    uvs[:, 1] = 1.0 - uvs[:, 1]  # glTF's v points down the image
    payloads = [(layout.gl_triangles.astype(index_dtype).tobytes(), _ELEMENTS), (uvs.tobytes(), _ARRAY)]
    accessors: list[dict] = [
        {"bufferView": 0, "componentType": index_type, "count": layout.gl_triangles.size, "type": "SCALAR"},
        {"bufferView": 1, "componentType": _FLOAT, "count": n, "type": "VEC2"},
    ]
    for deltas in () if layout.morph_deltas is None else layout.morph_deltas:
        moved = deltas[layout.gl_vertex].astype(np.float32) * np.float32(0.01)
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
def _static_json(layout: MeshLayout) -> tuple[str, str, np.ndarray]:
    """The static accessors' and buffer views' JSON (list items, as json.dumps writes them inside
    the document) and the flat ``take`` index of GLB vertex coordinates (gl_vertex * 3 + axis)."""
    _, views, accessors, _ = _static_glb(layout)
    take = (np.asarray(layout.gl_vertex, np.int64)[:, None] * 3 + np.arange(3)).ravel()
    return _json(accessors)[1:-1], _json(views)[1:-1], take


def prepare_glb(layout: MeshLayout) -> None:
    """Build the layout's static GLB parts now (hundreds of ms for a head), not in the first request."""
    _static_json(layout)


def to_glb(layout: MeshLayout, mesh: FaceMesh, texture_bytes: bytes, mime: str) -> bytes:
    """The GLB of one face: ``mesh.base`` (metres) with ``mesh.weights`` on the layout's morph targets.

    glTF's texture v axis points down the image, so v is flipped from the layout's v-up UVs.
    """
    base = np.asarray(mesh.base, np.float32)
    static, static_views, static_accessors, offset = _static_glb(layout)
    accessors_json, views_json, take = _static_json(layout)
    positions = (base.ravel().take(take) * np.float32(0.01)).astype("<f4", copy=False).reshape(-1, 3)
    normals = mesh_normals(layout, base).ravel().take(take).astype("<f4", copy=False)
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
    primitive = {
        "attributes": {"POSITION": position, "NORMAL": normal, "TEXCOORD_0": 1},
        "indices": 0, "material": 0, "mode": _TRIANGLES,
    }  # fmt: skip
    gl_mesh: dict = {"name": layout.name, "primitives": [primitive]}
    if layout.morph_names:
        primitive["targets"] = [{"POSITION": k} for k in range(2, len(static_accessors))]
        gl_mesh["weights"] = [float(w) for w in mesh.weights]
        gl_mesh["extras"] = {"targetNames": list(layout.morph_names)}
    material: dict = {
        "name": layout.name,
        "pbrMetallicRoughness": {
            "baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": 1.0,
        },
    }  # fmt: skip
    if layout.double_sided:
        material["doubleSided"] = True
    doc = {
        "asset": {"generator": "face3d", "version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": layout.name}],
        "meshes": [gl_mesh],
        "materials": [material],
        "textures": [{"sampler": 0, "source": 0}],
        "samplers": [{"magFilter": _LINEAR, "minFilter": _LINEAR_MIPMAP_LINEAR,
                      "wrapS": _CLAMP_TO_EDGE, "wrapT": _CLAMP_TO_EDGE}],
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
