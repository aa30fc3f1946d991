"""Reconstruction -> file bytes: OBJ+MTL, texture PNG/JPEG, GLB, result JSON and a preview PNG.

Everything is built in memory (no disk I/O) so the same code serves the CLI, which writes the
files, and the service, which hands them to its result store. File names for one image:

* one face: ``face.obj``, ``face.mtl``, ``face.png`` (``face.jpg`` for JPEG textures), ``face.glb``
* several faces: the same with the face index, ``face0.obj``, ``face1.obj`` ... (largest face first)
* ``result.json`` (all faces, and the list of every file written) and ``preview.png``

Units and axes: OBJ vertices are in centimetres in the model space documented in
models/reconstruction.py (right-handed, +Y up, +Z out of the face). GLB uses the same axes, which
are glTF's own, but metres, because glTF fixes its unit to the metre and AR/3D viewers rely on it.
"""

from __future__ import annotations

import io
import json
import time
from typing import TYPE_CHECKING, Any, Literal

import fpng
import numpy as np
import pygltflib as gl
from PIL import Image

from face3d.models.backends.ict.export import model_json, to_head_glb, to_head_obj
from face3d.models.backends.ict.topology import HeadTopology
from face3d.models.export.preview import render_preview
from face3d.models.export.serialize import pad4, rounded
from face3d.models.geometry.ibug68 import ibug68
from face3d.models.geometry.normals import vertex_normals
from face3d.models.reconstruction import Face, Reconstruction

if TYPE_CHECKING:
    from face3d.models.backends.facemesh.topology import Topology

TextureFormat = Literal["png", "jpeg"]
FORMATS = frozenset({"obj", "png", "glb", "json", "preview"})
TEXTURE_EXT = {"png": "png", "jpeg": "jpg"}
TEXTURE_MIME = {"png": "image/png", "jpeg": "image/jpeg"}
RESULT_SCHEMA = "face3d.result/1"

_OBJ_HEADER = """\
# face3d reconstructed face: {nv} vertices, {nf} triangles
# units: centimetres (eye centres 6.3 cm apart)
# axes: right-handed, +Y up, +X towards the subject's left, +Z out of the face (towards the camera)
# the mesh is the subject's shape in a frontal pose; the head pose is in result.json ("pose")
# texture coordinates: v = 0 at the bottom of the texture image
"""


def encode_texture(texture: np.ndarray, fmt: TextureFormat = "png", quality: int = 90) -> bytes:
    """(S, S, 3) uint8 RGB -> PNG (fpng: lossless, ~20x faster than Pillow's zlib) or JPEG bytes."""
    if texture.dtype != np.uint8 or texture.ndim != 3 or texture.shape[2] != 3:
        raise ValueError(f"texture must be (H, W, 3) uint8, got {texture.shape} {texture.dtype}")
    if fmt == "png":
        return fpng.from_ndarray(np.ascontiguousarray(texture))
    if fmt == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(texture).save(buf, "JPEG", quality=quality, subsampling=0 if quality >= 90 else 2)
        return buf.getvalue()
    raise ValueError(f"unknown texture format {fmt!r}; use 'png' or 'jpeg'")


def _rows(line: str, values: np.ndarray) -> str:
    """``line`` (a %-format of one row) for every row, in a single % operation: no Python loop per row."""
    return (line * values.shape[0]) % tuple(values.ravel().tolist())


def to_obj(face: Face, topology: Topology, texture_name: str, mtl_name: str) -> tuple[bytes, bytes]:
    """Wavefront OBJ + MTL: v, vt, vn per vertex (one UV per vertex, so one index serves all three)."""
    vertices = np.asarray(face.vertices, dtype=np.float64)
    triangles = np.asarray(topology.triangles, dtype=np.int64)
    normals = vertex_normals(vertices, triangles)
    corner = triangles + 1  # OBJ indices are 1-based
    text = "".join(
        (
            _OBJ_HEADER.format(nv=len(vertices), nf=len(triangles)),
            f"mtllib {mtl_name}\no face\n",
            _rows("v %.5f %.5f %.5f\n", vertices),
            _rows("vt %.6f %.6f\n", np.asarray(topology.uvs, dtype=np.float64)),
            _rows("vn %.5f %.5f %.5f\n", normals.astype(np.float64)),
            "usemtl face\ns off\n",
            _rows("f %d/%d/%d %d/%d/%d %d/%d/%d\n", np.repeat(corner, 3, axis=1)),
        )
    )
    mtl = (
        f"# face3d material\nnewmtl face\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {texture_name}\n"
    )
    return text.encode("ascii"), mtl.encode("ascii")


def to_glb(face: Face, topology: Topology, texture_bytes: bytes, mime: str) -> bytes:
    """Binary glTF 2.0: one textured, double-sided mesh (positions in metres, normals, UVs, indices).

    glTF's texture v axis points down the image, so v is flipped from the topology's v-up layout.
    The face mask is an open surface, hence double-sided so it does not vanish when seen from behind.
    """
    positions = (np.asarray(face.vertices, dtype=np.float32) * np.float32(0.01)).astype("<f4")
    triangles = np.asarray(topology.triangles)
    normals = vertex_normals(positions, triangles).astype("<f4")
    uvs = np.asarray(topology.uvs, dtype=np.float32).copy()
    uvs[:, 1] = 1.0 - uvs[:, 1]
    index_type = gl.UNSIGNED_SHORT if len(positions) < 65536 else gl.UNSIGNED_INT
    indices = triangles.astype("<u2" if index_type == gl.UNSIGNED_SHORT else "<u4").ravel()

    # (payload, bufferView target) in blob order; each view starts 4-byte aligned.
    parts = [
        (indices.tobytes(), gl.ELEMENT_ARRAY_BUFFER),
        (positions.tobytes(), gl.ARRAY_BUFFER),
        (normals.tobytes(), gl.ARRAY_BUFFER),
        (uvs.astype("<f4").tobytes(), gl.ARRAY_BUFFER),
        (texture_bytes, None),
    ]
    views, blob, offset = [], [], 0
    for payload, target in parts:
        views.append(gl.BufferView(buffer=0, byteOffset=offset, byteLength=len(payload), target=target))
        padded = pad4(payload)
        blob.append(padded)
        offset += len(padded)
    n = len(positions)
    accessors = [
        gl.Accessor(bufferView=0, componentType=index_type, count=indices.size, type=gl.SCALAR),
        gl.Accessor(
            bufferView=1, componentType=gl.FLOAT, count=n, type=gl.VEC3,
            min=positions.min(axis=0).tolist(), max=positions.max(axis=0).tolist(),
        ),
        gl.Accessor(bufferView=2, componentType=gl.FLOAT, count=n, type=gl.VEC3),
        gl.Accessor(bufferView=3, componentType=gl.FLOAT, count=n, type=gl.VEC2),
    ]  # fmt: skip
    material = gl.Material(
        name="face",
        pbrMetallicRoughness=gl.PbrMetallicRoughness(
            baseColorTexture=gl.TextureInfo(index=0), metallicFactor=0.0, roughnessFactor=1.0
        ),
        doubleSided=True,
    )
    primitive = gl.Primitive(
        attributes=gl.Attributes(POSITION=1, NORMAL=2, TEXCOORD_0=3), indices=0, material=0, mode=gl.TRIANGLES
    )
    gltf = gl.GLTF2(
        asset=gl.Asset(generator="face3d", version="2.0"),
        scene=0,
        scenes=[gl.Scene(nodes=[0])],
        nodes=[gl.Node(mesh=0, name="face")],
        meshes=[gl.Mesh(name="face", primitives=[primitive])],
        accessors=accessors,
        bufferViews=views,
        buffers=[gl.Buffer(byteLength=offset)],
        images=[gl.Image(bufferView=4, mimeType=mime, name="texture")],
        samplers=[
            gl.Sampler(
                magFilter=gl.LINEAR,
                minFilter=gl.LINEAR_MIPMAP_LINEAR,
                wrapS=gl.CLAMP_TO_EDGE,
                wrapT=gl.CLAMP_TO_EDGE,
            )
        ],
        textures=[gl.Texture(sampler=0, source=0)],
        materials=[material],
    )
    gltf.set_binary_blob(b"".join(blob))
    return b"".join(gltf.save_to_bytes())


def face_prefix(index: int, count: int) -> str:
    """File stem of one face: ``face`` when the image has one face, else ``face<index>``."""
    return "face" if count == 1 else f"face{index}"


def _face_json(face: Face, prefix: str, files: list[str], neutral: bool = False) -> dict[str, Any]:
    pose = face.pose
    doc = {
        "bbox": rounded(face.bbox, 2),
        "score": round(float(face.score), 4),
        "landmarks": rounded(face.landmarks, 2),
        "landmarks_68": rounded(ibug68(np.asarray(face.landmarks)), 2),
        "pose": {
            "rotation": rounded(pose.rotation, 6),
            "yaw": round(float(pose.yaw), 3),
            "pitch": round(float(pose.pitch), 3),
            "roll": round(float(pose.roll), 3),
            "scale": round(float(pose.scale), 5),
            "translation": rounded(pose.translation, 3),
        },
        "texture_coverage": round(float(face.coverage), 4),
        "files": [name for name in files if name.rsplit(".", 1)[0] == prefix],
    }
    if face.blendshapes is not None:  # MediaPipe's 52 ARKit-named scores (478-point landmark nets)
        doc["blendshapes"] = {name: round(float(v), 4) for name, v in face.blendshapes.items()}
    if face.model is not None:  # morphable-model backends (ict): parameters, model landmarks, fit
        doc.update(model_json(face.model, neutral))
    return doc


def result_json(
    rec: Reconstruction, model_info: dict[str, Any] | None, files: list[str], neutral: bool = False
) -> dict[str, Any]:
    """The machine-readable result: per face bbox, score, landmarks (all + iBUG 68), pose, coverage;
    with a morphable model also identity, expression, blendshapes, model landmarks and fit residual.

    ``files`` names every file of this result (result.json included); each face also lists its own.
    ``neutral`` says the meshes carry the identity with a neutral expression (ict only).
    """
    count = len(rec.faces)
    return {
        "schema": RESULT_SCHEMA,
        "image": {"width": rec.width, "height": rec.height},
        "coordinates": {
            "image": "pixels of the EXIF-corrected photo, origin top-left, x right, y down, "
            "z depth in pixel scale (smaller = closer)",
            "mesh": "centimetres, right-handed, +Y up, +Z out of the face (GLB: metres)",
            "landmarks_68": "iBUG 300-W order, see models/ibug68.py",
        },
        "model": dict(model_info or {}),
        "timings_ms": {k: round(float(v), 3) for k, v in rec.timings_ms.items()},
        "faces": [
            _face_json(face, face_prefix(i, count), files, neutral) for i, face in enumerate(rec.faces)
        ],
        "files": list(files),
    }


def dump_json(doc: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON bytes of a result document."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def export_files(
    rec: Reconstruction,
    image: np.ndarray,
    topology: Topology,
    formats: set[str] | frozenset[str],
    texture_format: TextureFormat = "png",
    model_info: dict[str, Any] | None = None,
    jpeg_quality: int = 90,
    neutral: bool = False,
) -> dict[str, bytes]:
    """All requested files of one reconstruction, by file name (see the module docstring).

    ``formats`` picks from FORMATS: "obj" (OBJ + MTL + texture), "png" (the texture; ``face.jpg``
    with texture_format="jpeg"), "glb", "json" (result.json), "preview" (preview.png). Each texture
    is encoded once and shared by the texture file, the OBJ material and the GLB. ``neutral`` (heads
    of a morphable model only) writes the identity with a neutral expression.
    """
    unknown = set(formats) - FORMATS
    if unknown:
        raise ValueError(f"unknown output formats {sorted(unknown)}; choose from {sorted(FORMATS)}")
    if texture_format not in TEXTURE_EXT:
        raise ValueError(f"unknown texture format {texture_format!r}; use 'png' or 'jpeg'")
    start = time.perf_counter()
    files: dict[str, bytes] = {}
    count = len(rec.faces)
    for i, face in enumerate(rec.faces):
        prefix = face_prefix(i, count)
        texture_name = f"{prefix}.{TEXTURE_EXT[texture_format]}"
        if not formats & {"obj", "png", "glb"}:
            continue
        texture = encode_texture(face.texture, texture_format, jpeg_quality)
        if formats & {"obj", "png"}:
            files[texture_name] = texture
        head = isinstance(topology, HeadTopology)
        if "obj" in formats and head:
            files[f"{prefix}.obj"], files[f"{prefix}.mtl"] = to_head_obj(
                face, topology, texture_name, f"{prefix}.mtl", neutral
            )
        elif "obj" in formats:
            files[f"{prefix}.obj"], files[f"{prefix}.mtl"] = to_obj(
                face, topology, texture_name, f"{prefix}.mtl"
            )
        if "glb" in formats and head:
            files[f"{prefix}.glb"] = to_head_glb(
                face, topology, texture, TEXTURE_MIME[texture_format], neutral
            )
        elif "glb" in formats:
            files[f"{prefix}.glb"] = to_glb(face, topology, texture, TEXTURE_MIME[texture_format])
    if "preview" in formats:
        files["preview.png"] = render_preview(image, rec, topology)
    if "json" in formats:
        doc = result_json(rec, model_info, [*files, "result.json"], neutral)
        doc["timings_ms"]["export"] = round((time.perf_counter() - start) * 1000.0, 3)
        files["result.json"] = dump_json(doc)
    return files
