"""The face mesh's fixed topology: triangles, UV layout, left/right mirror map and template shape.

Everything here is generated once by ``scripts/make_topology.py`` and shipped as
``models/data/topology.npz`` so that the runtime never recomputes (or depends on) how the
layout was derived. UV convention: OBJ/glTF style, ``v = 0`` at the bottom of the texture; texel
``(row, col)`` of an ``S x S`` texture has its centre at ``u = (col + 0.5) / S``,
``v = 1 - (row + 0.5) / S`` (row 0 is the top of the image).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

TOPOLOGY_FILE = Path(__file__).parents[2] / "data" / "topology.npz"


@dataclass(frozen=True)
class Topology:
    """The 468-vertex face mesh shared by every reconstruction.

    triangles: (852, 3) int64, counter-clockwise seen from outside the face (+Z).
    uvs: (468, 2) float32 in [0, 1], v up; ``u[mirror[i]] = 1 - u[i]`` and ``v[mirror[i]] = v[i]``.
    mirror: (468,) int64 left/right counterpart of each vertex, an involution (midline maps to itself).
    template: (468, 3) float32 model-space shape in cm (right-handed, +Y up, +Z out of the face,
      +X towards the subject's left), symmetric, eye centres 6.3 cm apart.
    """

    triangles: np.ndarray
    uvs: np.ndarray
    mirror: np.ndarray
    template: np.ndarray


@cache
def load_topology() -> Topology:
    """The shipped topology (read once per process)."""
    with np.load(TOPOLOGY_FILE) as data:
        arrays = {k: data[k] for k in ("triangles", "uvs", "mirror", "template")}
    for arr in arrays.values():
        arr.setflags(write=False)
    return Topology(**arrays)


def signed_areas(uvs: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(T,) signed UV areas; positive means counter-clockwise (not flipped) in the v-up plane."""
    a, b, c = (uvs[triangles[:, k]].astype(np.float64) for k in range(3))
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def rasterize_uv(
    uvs: np.ndarray, triangles: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texel -> triangle map of the UV layout at ``size x size``.

    Returns ``owner`` (S, S) int64 (triangle index, -1 outside the atlas), ``bary`` (S, S, 3)
    float32 barycentric weights of the texel centre in its owner, and ``hits`` (S, S) int64 the
    number of triangles whose interior strictly contains the texel centre (> 1 means overlap).
    Texel centres on a shared edge belong to the first triangle that contains them.
    Vectorised per triangle over its bounding box: ~852 small numpy ops, run once per size.
    """
    pix = uvs.astype(np.float64) * size
    pix[:, 1] = size - pix[:, 1]  # v up -> row down
    owner = np.full((size, size), -1, dtype=np.int64)
    bary = np.zeros((size, size, 3), dtype=np.float32)
    hits = np.zeros((size, size), dtype=np.int64)
    eps = 1e-9
    for t, (i, j, k) in enumerate(triangles):
        p = pix[[i, j, k]]
        c0, r0 = np.floor(p.min(0) - 0.5).astype(int).clip(0, size - 1)
        c1, r1 = np.ceil(p.max(0) - 0.5).astype(int).clip(0, size - 1)
        cols = np.arange(c0, c1 + 1) + 0.5
        rows = np.arange(r0, r1 + 1) + 0.5
        x, y = np.meshgrid(cols, rows)
        det = (p[1, 0] - p[0, 0]) * (p[2, 1] - p[0, 1]) - (p[1, 1] - p[0, 1]) * (p[2, 0] - p[0, 0])
        if det == 0:
            continue
        w1 = ((x - p[0, 0]) * (p[2, 1] - p[0, 1]) - (y - p[0, 1]) * (p[2, 0] - p[0, 0])) / det
        w2 = ((p[1, 0] - p[0, 0]) * (y - p[0, 1]) - (p[1, 1] - p[0, 1]) * (x - p[0, 0])) / det
        w0 = 1 - w1 - w2
        inside = (w0 >= -eps) & (w1 >= -eps) & (w2 >= -eps)
        hits[r0 : r1 + 1, c0 : c1 + 1] += (w0 > eps) & (w1 > eps) & (w2 > eps)
        region = owner[r0 : r1 + 1, c0 : c1 + 1]
        new = inside & (region < 0)
        region[new] = t
        bary[r0 : r1 + 1, c0 : c1 + 1][new] = np.stack([w0, w1, w2], axis=-1)[new]
    return owner, bary, hits
