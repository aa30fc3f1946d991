"""Reconstruction -> file bytes: OBJ+MTL, texture PNG/JPEG, GLB, USDZ, result JSON and a preview PNG.

Everything is built in memory (no disk I/O) so the same code serves the CLI, which writes the
files, and the service, which hands them to its result store. File names for one image:

* one face: ``face.obj``, ``face.mtl``, ``face.png`` (``face.jpg`` for JPEG textures), ``face.glb``,
  ``face.usdz`` (opt-in: the texture and a usdc layer in one package, for Apple's AR Quick Look)
* several faces: the same with the face index, ``face0.obj``, ``face1.obj`` ... (largest face first)
* ``result.json`` (all faces, and the list of every file written) and ``preview.png``

Units and axes: OBJ vertices are in centimetres in the model space documented in
models/reconstruction.py (right-handed, +Y up, +Z out of the face). GLB uses the same axes, which
are glTF's own, but metres, because glTF fixes its unit to the metre and AR/3D viewers rely on it;
USDZ too (``metersPerUnit = 1``, ``upAxis = Y``).
"""

from __future__ import annotations

import io
import time
from typing import Any, Literal

import fpng
import numpy as np
from PIL import Image

from face3d.models.export.document import add_result_json, face_prefix
from face3d.models.export.glb import to_glb
from face3d.models.export.mesh import MeshExport
from face3d.models.export.obj import to_obj
from face3d.models.export.preview import render_preview
from face3d.models.export.usdz import to_usdz
from face3d.models.reconstruction import Reconstruction

TextureFormat = Literal["png", "jpeg"]
FORMATS = frozenset({"obj", "png", "glb", "usdz", "json", "preview"})
TEXTURE_EXT = {"png": "png", "jpeg": "jpg"}
TEXTURE_MIME = {"png": "image/png", "jpeg": "image/jpeg"}


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


def export_files(
    rec: Reconstruction,
    image: np.ndarray | None,
    exporter: MeshExport,
    formats: set[str] | frozenset[str],
    texture_format: TextureFormat = "png",
    model_info: dict[str, Any] | None = None,
    jpeg_quality: int = 90,
    neutral: bool = False,
) -> dict[str, bytes]:
    """All requested files of one reconstruction, by file name (see the module docstring).

    ``formats`` (checked by models/pipeline.py's ReconstructOptions) picks from FORMATS: "obj" (OBJ +
    MTL + texture), "png" (the texture; ``face.jpg`` with texture_format="jpeg"), "glb", "usdz", "json"
    (result.json), "preview" (preview.png). Each texture is encoded once and shared by the texture
    file, the OBJ material, the GLB and the USDZ. ``exporter`` is the backend's (its mesh layout and hooks);
    ``neutral`` asks it for the identity with a neutral expression where it has one.
    """
    start = time.perf_counter()
    files: dict[str, bytes] = {}
    layout, count = exporter.layout, len(rec.faces)
    for i, face in enumerate(rec.faces):
        prefix = face_prefix(i, count)
        texture_name = f"{prefix}.{TEXTURE_EXT[texture_format]}"
        if not formats & {"obj", "png", "glb", "usdz"}:
            continue
        texture = encode_texture(face.texture, texture_format, jpeg_quality)
        if formats & {"obj", "png"}:
            files[texture_name] = texture
        mesh = exporter.mesh(face, neutral)
        if "obj" in formats:
            files[f"{prefix}.obj"], files[f"{prefix}.mtl"] = to_obj(
                layout, mesh, texture_name, f"{prefix}.mtl"
            )
        if "glb" in formats:
            files[f"{prefix}.glb"] = to_glb(layout, mesh, texture, TEXTURE_MIME[texture_format])
        if "usdz" in formats:
            files[f"{prefix}.usdz"] = to_usdz(layout, mesh, texture, texture_name, prefix)
    if "preview" in formats:
        if image is None:
            raise ValueError("the preview needs the photo")
        files["preview.png"] = render_preview(image, rec, [exporter.preview(face) for face in rec.faces])
    if "json" in formats:
        fields = [exporter.json_fields(face, neutral) for face in rec.faces]
        add_result_json(files, rec, model_info, fields, start)
    return files
