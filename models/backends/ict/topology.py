"""The ICT head as the ``ict`` backend exports it: one texture atlas, GLB vertices, mirror and preview maps.

ICT's production layout spreads its UVs over UDIM-like tiles (face 0..1, back of head 1..2, gums and
tongue 2..3, teeth 3..4) and gives scleras and irises a 0..1 square of their own material each. A
result carries ONE square texture of ``uv_size``², so the tiles are packed into a 4 x 4 grid of cells:

    +-----------+----------+-----------+---------+     v = 1
    |                                  | sclera L|
    |      face tile (3 x 3 cells):    +---------+
    |      the photo's detail lives    |  teeth  |
    |      here, 75 % of the side      +---------+
    |                                  | gums +  |
    |                                  | tongue  |
    +-----------+----------+-----------+---------+
    |  iris L   | sclera R |  iris R   | back of |
    |           |          |           | head    |
    +-----------+----------+-----------+---------+     v = 0
    u = 0                                  u = 1

Why this and not a 2:1 atlas: the face tile holds nearly everything a photo shows, so it keeps 3/4
of the resolution; the back of the head, mouth interior and eyes are filled or sampled coarsely and
a quarter cell (512² at 2048) is plenty for them. The texture stays square (every texture size
rule and cache of the service stays as it is) and costs no more to encode than facemesh's. Each
tile is inset by ``CELL_MARGIN`` of its cell so bilinear and mip filtering never mix two tiles.

The GLB needs one UV per vertex, so vertices are split where ICT has UV seams (``gl_vertex``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from face3d.models.backends.ict.model import IctModel, load_ict_model

GRID = 4  # cells per atlas side
FACE_CELLS = 3  # the face tile spans 3 x 3 cells
CELL_MARGIN = 0.015  # inset of each tile within its cell, as a fraction of the cell
# material -> (cell column, cell row from the bottom, ICT tile offset along u); the face tile is separate.
CELLS = {
    "M_BackHead": (3, 0, 1.0),
    "M_GumsTongue": (3, 1, 2.0),
    "M_Teeth": (3, 2, 3.0),
    "M_ScleraLeft": (3, 3, 0.0),
    "M_IrisLeft": (0, 0, 0.0),
    "M_ScleraRight": (1, 0, 0.0),
    "M_IrisRight": (2, 0, 0.0),
}
PREVIEW_PARTS = ("face", "head_neck")  # the wireframe drawn over the photo


@dataclass(
    frozen=True, eq=False
)  # identity hash: per-topology caches (models/backends/ict/export.py) key on it
class HeadTopology:
    """Mesh layout of every ``ict`` result (V = 24,591 vertices, T = 48,836 triangles, N GLB vertices).

    Vertices are in ``IctModel`` order; ``triangles`` are counter-clockwise seen from outside. UVs are
    the atlas above (the OBJ/glTF convention: v = 0 at the bottom of the image).
    """

    triangles: np.ndarray  # (T, 3) int64 vertex ids
    triangle_uvs: np.ndarray  # (T, 3) int64 ids into ``uvs``
    uvs: np.ndarray  # (U, 2) float32 atlas coordinates
    triangle_material: np.ndarray  # (T,) int64 into ``material_names``
    material_names: tuple[str, ...]
    vertex_part: np.ndarray  # (V,) int64 into ``part_names``
    part_names: tuple[str, ...]
    gl_vertex: np.ndarray  # (N,) int64 vertex id of each GLB vertex
    gl_uvs: np.ndarray  # (N, 2) float32 atlas UV of each GLB vertex
    gl_triangles: np.ndarray  # (T, 3) int64 ids into the GLB vertices
    mirror: np.ndarray  # (V,) int64 left/right counterpart of each vertex (the head is symmetric)
    expression_names: tuple[str, ...]
    expression: np.ndarray  # (53, V, 3) float32 cm: the morph targets (the model's own array)
    landmarks68: np.ndarray  # (68,) int64 vertex ids
    preview_edges: np.ndarray  # (E, 2) int64 vertex pairs drawn over the photo
    face_tile: tuple[float, float, float, float]  # u0, v0, u1, v1 of the face tile in the atlas

    @property
    def vertex_count(self) -> int:
        return len(self.vertex_part)


def tile_transform(material: str) -> tuple[float, float, float, float]:
    """(offset u, offset v, scale, ICT tile offset) taking a ``material``'s ICT UVs into the atlas."""
    cell = 1.0 / GRID
    if material == "M_Face":
        span = FACE_CELLS * cell
        return span * CELL_MARGIN, 1.0 - span * (1 - CELL_MARGIN), span * (1 - 2 * CELL_MARGIN), 0.0
    col, row, tile = CELLS[material]
    return (col + CELL_MARGIN) * cell, (row + CELL_MARGIN) * cell, cell * (1 - 2 * CELL_MARGIN), tile


def _atlas_uvs(model: IctModel) -> tuple[np.ndarray, np.ndarray]:
    """(triangle_uvs, uvs) in the atlas: one UV id per distinct (ICT UV id, material) pair."""
    corner_uv = model.triangle_uvs.ravel()
    corner_mat = np.repeat(model.triangle_material, 3)
    keys, inverse = np.unique(np.stack([corner_uv, corner_mat], axis=1), axis=0, return_inverse=True)
    uvs = model.uvs[keys[:, 0]].astype(np.float64)
    for m, name in enumerate(model.material_names):
        rows = keys[:, 1] == m
        du, dv, scale, tile = tile_transform(name)
        uvs[rows, 0] = du + scale * (uvs[rows, 0] - tile)
        uvs[rows, 1] = dv + scale * uvs[rows, 1]
    return inverse.reshape(-1, 3).astype(np.int64), uvs.astype(np.float32)


def _mirror(neutral: np.ndarray) -> np.ndarray:
    """Vertex of the x-mirrored position (ICT's head is left/right symmetric to < 0.03 mm)."""
    from scipy.spatial import cKDTree

    _, index = cKDTree(neutral).query(neutral * np.array([-1.0, 1.0, 1.0], np.float32))
    return index.astype(np.int64)


def _preview_edges(model: IctModel) -> np.ndarray:
    parts = [model.part_names.index(p) for p in PREVIEW_PARTS]
    keep = np.isin(model.vertex_part[model.triangles[:, 0]], parts)
    pairs = model.triangles[keep][:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    return np.unique(np.sort(pairs, axis=1), axis=0)


def build_head_topology(model: IctModel) -> HeadTopology:
    triangle_uvs, uvs = _atlas_uvs(model)
    pairs = np.stack([model.triangles.ravel(), triangle_uvs.ravel()], axis=1)
    unique, gl_index = np.unique(pairs, axis=0, return_inverse=True)
    du, dv, scale, _ = tile_transform("M_Face")
    arrays = {
        "triangles": model.triangles,
        "triangle_uvs": triangle_uvs,
        "uvs": uvs,
        "gl_vertex": unique[:, 0].copy(),
        "gl_uvs": uvs[unique[:, 1]],
        "gl_triangles": gl_index.reshape(-1, 3).astype(np.int64),
        "mirror": _mirror(model.neutral),
        "preview_edges": _preview_edges(model),
    }
    for arr in arrays.values():
        arr.setflags(write=False)
    return HeadTopology(
        **arrays,
        triangle_material=model.triangle_material,
        material_names=model.material_names,
        vertex_part=model.vertex_part,
        part_names=model.part_names,
        expression_names=model.expression_names,
        expression=model.expression,
        landmarks68=model.landmarks68,
        face_tile=(du, dv, du + scale, dv + scale),
    )


@cache
def load_head_topology() -> HeadTopology:
    """The ``ict`` results' layout, built once per process from the shipped model (~1 s)."""
    return build_head_topology(load_ict_model())
