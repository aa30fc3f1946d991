"""What a backend hands the exporters: its mesh layout once, and per face the meshes, JSON members and
preview marks. ``models/export/`` writes files from these alone and never names a backend.

Why a layout object built once per process: a backend's connectivity, UVs and morph targets are the
same for every result, so the OBJ and GLB writers format and pack them once (``functools.cache`` on
the layout, which hashes by identity) and each request formats only what its face changes.

Units and axes as every face3d mesh (models/reconstruction.py): centimetres, right-handed, +Y up,
+Z out of the face; UVs OBJ-style (v = 0 at the bottom of the texture).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from face3d.models.geometry.normals import normal_plan, vertex_normals
from face3d.models.reconstruction import Face, Pose


@dataclass(frozen=True, eq=False)
class MeshLayout:
    """The fixed part of every mesh one backend writes (hashable by identity: writers cache on it).

    OBJ indexes positions and UVs separately (``triangles`` / ``triangle_uvs``); glTF needs one UV per
    vertex, so ``gl_vertex`` lists the mesh vertex behind each GLB vertex (vertices on UV seams are
    split) and ``gl_triangles`` indexes those. A mesh with one UV per vertex has all three equal to
    the identity / ``triangles``: see ``MeshLayout.single_uv``.
    """

    name: str  # OBJ object and material, glTF node, mesh and material
    vertex_count: int
    triangles: np.ndarray  # (T, 3) vertex ids, counter-clockwise seen from outside
    triangle_uvs: np.ndarray  # (T, 3) ids into ``uvs``
    uvs: np.ndarray  # (U, 2) float32, v up
    gl_vertex: np.ndarray  # (G,) vertex id of each GLB vertex
    gl_uvs: np.ndarray  # (G, 2) float32, v up
    gl_triangles: np.ndarray  # (T, 3) ids into the GLB vertices
    obj_header: str  # comment lines; ``{nv}``, ``{nf}`` and ``{expression}`` are filled per file
    smooth: bool = False  # OBJ smoothing group ("s 1") or none ("s off")
    double_sided: bool = False  # an open surface (a face mask) must not vanish from behind
    morph_names: tuple[str, ...] = ()  # glTF ``extras.targetNames``
    morph_deltas: np.ndarray | None = None  # (M, V, 3) float32 cm, applied to ``FaceMesh.base``

    @classmethod
    def single_uv(cls, name: str, triangles: np.ndarray, uvs: np.ndarray, **kwargs: Any) -> MeshLayout:
        """A layout whose every vertex has exactly one UV (no seams to split)."""
        ids = np.arange(len(uvs), dtype=np.int64)
        return cls(name, len(uvs), triangles, triangles, uvs, ids, uvs, triangles, **kwargs)


@dataclass(frozen=True)
class FaceMesh:
    """One face's meshes: what the OBJ carries, and the GLB's base mesh with its morph weights."""

    vertices: np.ndarray  # (V, 3) cm: the OBJ's mesh
    base: np.ndarray  # (V, 3) cm: the GLB's base mesh, which the layout's morph targets apply to
    weights: Sequence[float] = ()  # one per morph target
    expression: str = ""  # the OBJ header's words for the expression it shows


@dataclass(frozen=True)
class PreviewMarks:
    """What the preview draws for one face, in photo pixels: line segments and dots."""

    segments: np.ndarray  # (K, 4) x0, y0, x1, y1
    line_rgba: tuple[int, int, int, int] = (0, 255, 120, 140)
    dots: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (P, 2) x, y
    dot_rgba: tuple[int, int, int, int] = (255, 60, 60, 230)


class MeshExport:
    """A backend's export hooks. The defaults serve a plain mesh: the face's vertices in every file,
    no morph targets, no extra JSON, and the mesh's wireframe posed over the photo; backends with
    more (morph targets, model parameters) subclass it in their own folder."""

    def __init__(self, layout: MeshLayout) -> None:
        self.layout = layout

    def mesh(self, face: Face, neutral: bool) -> FaceMesh:
        """The meshes of ``face``'s files; ``neutral`` asks for the expression-free identity where the
        backend has one (ignored here)."""
        vertices = np.asarray(face.vertices, np.float32)
        return FaceMesh(vertices, vertices)

    def json_fields(self, face: Face, neutral: bool) -> dict[str, Any]:
        """Members this backend adds to the face's entry in result.json (none by default)."""
        return {}

    def preview(self, face: Face) -> PreviewMarks:
        """Every edge of the posed mesh."""
        points = posed_points(face.pose, face.vertices)[:, :2]
        return PreviewMarks(points[mesh_edges(self.layout)].reshape(-1, 4))

    def prepare(self) -> None:
        """Build the writers' per-process caches now (encoders call it at start, not in a request)."""
        from face3d.models.export.glb import prepare_glb
        from face3d.models.export.obj import prepare_obj

        prepare_obj(self.layout)
        prepare_glb(self.layout)


def posed_points(pose: Pose, vertices: np.ndarray) -> np.ndarray:
    """(N, 3) image-space positions of model-space ``vertices`` under ``pose`` (models/geometry/pose.py's
    similarity in its Y-up camera frame, flipped to the image's y-down, z-away axes)."""
    flip = np.array([1.0, -1.0, -1.0])
    cam = pose.scale * np.asarray(vertices, np.float64) @ np.asarray(pose.rotation, np.float64).T
    return (cam + np.asarray(pose.translation, np.float64) * flip) * flip


@cache
def mesh_edges(layout: MeshLayout) -> np.ndarray:
    """(E, 2) unique vertex pairs of the layout's triangles, sorted."""
    pairs = np.asarray(layout.triangles)[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    return np.unique(np.sort(pairs, axis=1), axis=0)


@cache
def layout_normal_plan(layout: MeshLayout) -> tuple[np.ndarray, np.ndarray]:
    """geometry.normals.vertex_normals' plan for the layout's triangles, made once."""
    return normal_plan(layout.triangles, layout.vertex_count)


_LAST: tuple[np.ndarray, MeshLayout, np.ndarray] | None = None  # vertices (a copy), layout, normals


def mesh_normals(layout: MeshLayout, vertices: np.ndarray) -> np.ndarray:
    """Unit vertex normals of ``vertices`` on the layout, computed once when the OBJ and the GLB write
    the same mesh: the last result is kept with a copy of its vertices and reused for the very same
    bytes only (a dense head's normals cost several milliseconds)."""
    global _LAST
    v, last = np.ascontiguousarray(vertices, np.float32), _LAST
    if last and last[1] is layout and np.array_equal(last[0].view(np.uint8), v.view(np.uint8)):
        return last[2]
    normals = vertex_normals(v, layout.triangles, layout_normal_plan(layout))
    normals.setflags(write=False)  # shared by the OBJ and the GLB writers
    _LAST = (v.copy(), layout, normals)
    return normals
