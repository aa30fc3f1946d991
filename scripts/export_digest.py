"""Fingerprint every file the product writes: each test photo through each backend, every format.

Why: a refactor that moves code must not change a byte of what a client downloads. This prints one
sha256 per (backend, photo, file) — OBJ, MTL, PNG, GLB, result.json (its ``timings_ms`` removed, the
only part that differs run to run) and preview.png, plus the same for ``neutral=true`` and a JPEG
texture — so two commits can be compared with ``diff``:

    python -m scripts.export_digest > before.json    # on the old commit
    python -m scripts.export_digest --against before.json   # on the new one: exit 1 on any change

Besides the bytes, each OBJ and GLB gets a *content* fingerprint that a writer's formatting cannot
change: OBJ lines with white space folded; a GLB's document with every accessor replaced by its
decoded values (rounded to 1e-6, the float32 noise of normals computed in cm or in m) and every image
by its bytes' hash, so buffer order, view offsets and JSON key order drop out. ``--against`` lists
byte changes and content changes apart, and fails only on content.

It drives only the pipeline's public entry points (``create_backend``, ``Pipeline``,
``ReconstructOptions``), which is what the CLI and the workers run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

from face3d.models.backends import BackendConfig, create_backend
from face3d.models.geometry.normals import vertex_normals
from face3d.models.pipeline import Pipeline, ReconstructOptions
from face3d.service.config import default_cache_dir
from scripts.photos import PHOTO_NAMES, photo_bytes

VARIANTS = {
    "default": {"formats": "obj,png,glb,json,preview"},
    "neutral-jpeg": {"formats": "obj,glb,json", "neutral": True, "texture_format": "jpeg"},
}


_COMPONENTS = {5121: "<u1", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


# glTF's defaults (a writer may spell them out or leave them out: the same file to every reader).
_DEFAULTS = {
    "normalized": False, "byteOffset": 0, "texCoord": 0, "alphaMode": "OPAQUE", "doubleSided": False,
    "emissiveFactor": [0.0, 0.0, 0.0], "baseColorFactor": [1.0, 1.0, 1.0, 1.0],
}  # fmt: skip


def _without_defaults(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_defaults(v) for k, v in value.items() if _DEFAULTS.get(k, ...) != v}
    if isinstance(value, list):
        return [_without_defaults(v) for v in value]
    return value


def _view_bytes(doc: dict[str, Any], blob: bytes, index: int) -> bytes:
    view = doc["bufferViews"][index]
    start = view.get("byteOffset", 0)
    return blob[start : start + view["byteLength"]]


def _values(doc: dict[str, Any], blob: bytes, index: int) -> np.ndarray:
    """An accessor's decoded values (dense and sparse parts applied), (count, width) float64."""
    acc = doc["accessors"][index]
    width, dtype = _WIDTH[acc["type"]], _COMPONENTS[acc["componentType"]]
    if "bufferView" in acc:
        raw = _view_bytes(doc, blob, acc["bufferView"])[acc.get("byteOffset", 0) :]
        values = np.frombuffer(raw, dtype, acc["count"] * width).reshape(-1, width).astype(np.float64)
    else:
        values = np.zeros((acc["count"], width))
    if "sparse" in acc:
        sparse = acc["sparse"]
        ids = np.frombuffer(
            _view_bytes(doc, blob, sparse["indices"]["bufferView"]),
            _COMPONENTS[sparse["indices"]["componentType"]],
            sparse["count"],
        )
        sparse_values = np.frombuffer(_view_bytes(doc, blob, sparse["values"]["bufferView"]), dtype)
        values[ids.astype(np.int64)] = sparse_values[: sparse["count"] * width].reshape(-1, width)
    return values


def _hash(values: np.ndarray) -> str:
    return hashlib.sha256(np.round(values, 6).tobytes()).hexdigest()


def _normals_follow_positions(normals: np.ndarray, positions: np.ndarray, triangles: np.ndarray) -> bool:
    """Whether ``normals`` are the area-weighted vertex normals of the mesh (GLB vertices split at UV
    seams merged back by position), to 1e-5: writers may compute them in cm or in m, float32 either way,
    so their last bits differ while their meaning does not."""
    _, merged = np.unique(positions, axis=0, return_inverse=True)
    merged = merged.ravel()
    expected = vertex_normals(positions[np.unique(merged, return_index=True)[1]], merged[triangles])[merged]
    return bool(np.abs(expected - normals).max() < 1e-5)


def _decoded(doc: dict[str, Any], blob: bytes, prim: dict[str, Any]) -> dict[str, str]:
    """The primitive's attributes by meaning: values hashed, normals checked against the geometry."""
    out = {name: _hash(_values(doc, blob, index)) for name, index in prim["attributes"].items()}
    if "NORMAL" in prim["attributes"]:
        triangles = _values(doc, blob, prim["indices"]).astype(np.int64).reshape(-1, 3)
        positions = _values(doc, blob, prim["attributes"]["POSITION"])
        normals = _values(doc, blob, prim["attributes"]["NORMAL"])
        if _normals_follow_positions(normals, positions, triangles):
            out["NORMAL"] = "vertex normals of POSITION"
    return out


def glb_content(data: bytes) -> str:
    """A GLB's meaning, independent of buffer layout and JSON key order."""
    (json_len,) = struct.unpack_from("<I", data, 12)
    doc = json.loads(data[20 : 20 + json_len])
    blob = data[20 + json_len + 8 :]
    meshes = []
    for mesh in doc["meshes"]:
        prims = []
        for prim in mesh["primitives"]:
            prims.append({
                **{k: v for k, v in prim.items() if k not in {"attributes", "indices", "targets"}},
                "attributes": _decoded(doc, blob, prim),
                "indices": _hash(_values(doc, blob, prim["indices"])),
                "targets": [
                    {name: _hash(_values(doc, blob, i)) for name, i in target.items()}
                    for target in prim.get("targets", ())
                ],
            })  # fmt: skip
        meshes.append({**mesh, "primitives": prims})
    images = [
        {**{k: v for k, v in im.items() if k != "bufferView"},
         "sha256": hashlib.sha256(_view_bytes(doc, blob, im["bufferView"])).hexdigest()}
        for im in doc.get("images", [])
    ]  # fmt: skip
    keep = {
        k: v for k, v in doc.items() if k not in {"accessors", "bufferViews", "buffers", "meshes", "images"}
    }
    canonical = _without_defaults({**keep, "meshes": meshes, "images": images})
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def obj_content(data: bytes) -> str:
    """An OBJ's meaning, independent of how its numbers are padded."""
    lines = (" ".join(line.split()) for line in data.decode("ascii").splitlines())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _digest(name: str, data: bytes) -> str:
    if name == "result.json":  # timings are measurements, not output
        doc = json.loads(data)
        doc.pop("timings_ms", None)
        data = json.dumps(doc, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def digests(backends: list[str], uv_size: int) -> dict[str, str]:
    """``backend/variant/photo/file`` -> sha256 of every file written."""
    out: dict[str, str] = {}
    for name in backends:
        backend = create_backend(name, BackendConfig(cache_dir=default_cache_dir()))
        backend.load("cpu")
        pipeline = Pipeline(backend, max_pixels=40_000_000)
        for variant, choice in VARIANTS.items():
            options = ReconstructOptions.parse(uv_size=uv_size, **choice)
            for photo in PHOTO_NAMES:
                (item,) = pipeline.run([photo_bytes(photo)], options)
                if item.exported is None:
                    out[f"{name}/{variant}/{photo}"] = f"error: {item.error}"
                    continue
                for file, data in sorted(item.exported.files.items()):
                    out[f"{name}/{variant}/{photo}/{file}"] = _digest(file, data)
                    if file.endswith((".glb", ".obj")):
                        content = glb_content if file.endswith(".glb") else obj_content
                        out[f"{name}/{variant}/{photo}/{file}#content"] = content(data)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="facemesh,ict")
    parser.add_argument("--uv-size", type=int, default=1024)
    parser.add_argument("--against", type=Path, help="a digest file to compare with; exit 1 on change")
    args = parser.parse_args()
    now = digests(args.backends.split(","), args.uv_size)
    if args.against is None:
        print(json.dumps(now, indent=1, sort_keys=True))
        return 0
    before = json.loads(args.against.read_text())
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    for key in changed:
        print(f"changed: {key}")
    files = [k for k in now if "#" not in k]
    content = [k for k in changed if k.endswith("#content") or f"{k}#content" not in now]
    print(f"{len(files)} files: {len(changed) - len(content)} changed bytes only, {len(content)} content")
    return 1 if content else 0


if __name__ == "__main__":
    sys.exit(main())
