"""A GLB's morph targets read back with pygltflib (independent of face3d's writer): names, weights, and
the mesh they make."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pygltflib as gl


@dataclass(frozen=True)
class Morphed:
    names: list[str]  # extras.targetNames
    weights: list[float]  # mesh.weights
    base: np.ndarray  # (G, 3) metres: POSITION
    shaped: np.ndarray  # (G, 3) metres: base + sum of weights x targets


def read_morphed(glb: bytes, weights: list[float] | None = None) -> Morphed:
    """The GLB's single mesh at its own weights (or at ``weights``); every target must be sparse, with
    strictly increasing indices."""
    doc = gl.GLTF2.load_from_bytes(glb)
    (mesh,) = doc.meshes
    (prim,) = mesh.primitives
    blob = doc.binary_blob()

    def array(view_id: int, dtype: str, count: int, offset: int = 0) -> np.ndarray:
        return np.frombuffer(blob, dtype, count, doc.bufferViews[view_id].byteOffset + offset)

    position = doc.accessors[prim.attributes.POSITION]
    base = array(position.bufferView, "<f4", position.count * 3).reshape(-1, 3)
    index_dtype = "<u2" if position.count < 65536 else "<u4"
    shaped = base.astype(np.float64).copy()
    used = list(mesh.weights or []) if weights is None else weights
    for weight, target in zip(used, prim.targets or [], strict=True):
        sparse = doc.accessors[target["POSITION"] if isinstance(target, dict) else target.POSITION].sparse
        ids = array(sparse.indices.bufferView, index_dtype, sparse.count)
        assert (np.diff(ids.astype(int)) > 0).all()
        shaped[ids] += weight * array(sparse.values.bufferView, "<f4", sparse.count * 3).reshape(-1, 3)
    names = list((mesh.extras or {}).get("targetNames", []))
    return Morphed(names, list(mesh.weights or []), base, shaped)
