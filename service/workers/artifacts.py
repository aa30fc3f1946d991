"""Media types of result files and the one-file artifacts (``?format=glb|usdz|obj|zip``) streamed back.

Built where the files are encoded (an encoder thread or process), never on the API's event loop.
"""

from __future__ import annotations

import io
import zipfile

from face3d.service.workers.protocol import Artifact, ArtifactKind

MEDIA_TYPES = {
    ".glb": "model/gltf-binary",
    ".usdz": "model/vnd.usdz+zip",
    ".obj": "model/obj",
    ".mtl": "model/mtl",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".json": "application/json",
    ".zip": "application/zip",
}


def media_type(name: str) -> str:
    return MEDIA_TYPES.get(name[name.rfind(".") :], "application/octet-stream")


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """One in-memory zip; images are stored as they are (already compressed), text is deflated."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            packed = name.endswith((".png", ".jpg", ".glb", ".usdz"))
            zf.writestr(name, data, compress_type=zipfile.ZIP_STORED if packed else zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def build_artifact(kind: ArtifactKind, files: dict[str, bytes]) -> Artifact:
    """What ``?format=`` streams back instead of storing:

    * ``glb``: the (largest) face's GLB, one self-contained file;
    * ``usdz``: the (largest) face's USDZ (AR Quick Look), one self-contained package;
    * ``obj``: a zip of every OBJ with the MTL and texture it names (``mtllib``/``map_Kd`` are
      relative names, so an OBJ alone would point at files the client does not have);
    * ``zip``: a zip of every file the request's ``formats`` produced.
    """
    if kind == "zip":
        return Artifact("face.zip", media_type(".zip"), zip_bytes(files))
    if kind == "obj":
        return Artifact("face-obj.zip", media_type(".zip"), zip_bytes(files))
    name = next(n for n in files if n.endswith(f".{kind}"))
    return Artifact(name, media_type(name), files[name])
