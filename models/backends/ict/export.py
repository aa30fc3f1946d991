"""ict's export hooks: the head's layout for the generic writers (models/export/), and per face the
meshes, the morphable-model members of result.json and the preview's wireframe.

Files: the OBJ carries the fitted head (or, with ``neutral``, the identity alone); the GLB's base mesh
is the identity with a neutral expression and the 53 expression shapes are its morph targets, named in
``mesh.extras.targetNames`` (ICT's ARKit names, ``_L``/``_R`` = the subject's left/right), with the
fitted weights set, so a viewer shows the fitted face and an app can animate it. The morph targets
do not depend on identity, so the GLB writer packs them once per process (sparse accessors).
Units and axes as every face3d mesh (models/reconstruction.py).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from face3d.models.backends.ict.topology import HeadTopology, load_head_topology
from face3d.models.export.mesh import (
    FaceMesh,
    MeshExport,
    MeshLayout,
    PreviewMarks,
    layout_normal_plan,
    posed_points,
)
from face3d.models.export.serialize import rounded
from face3d.models.geometry.normals import vertex_normals
from face3d.models.reconstruction import Face

OBJ_HEADER = """\
# face3d reconstructed head (ICT Face Model Light, MIT licence): {nv} vertices, {nf} triangles
# units: centimetres
# axes: right-handed, +Y up, +X towards the subject's left, +Z out of the face (towards the camera)
# the mesh is the subject's head in a frontal pose; the head pose is in result.json ("pose")
# expression: {expression}
# texture coordinates: v = 0 at the bottom of the texture (one atlas, see models/ict_topology.py)
"""


class IctExport(MeshExport):
    """The head with its expression morph targets, its parameters in the JSON, its wireframe posed."""

    def __init__(self, layout: MeshLayout, topology: HeadTopology) -> None:
        super().__init__(layout)
        self.topology = topology

    def mesh(self, face: Face, neutral: bool) -> FaceMesh:
        model = face.model
        if model is None:  # not an ict face: nothing to animate
            vertices = np.asarray(face.vertices, np.float32)
            return FaceMesh(vertices, vertices, [0.0] * len(self.layout.morph_names), "neutral")
        base = np.asarray(model.base_vertices, np.float32)
        if neutral:
            return FaceMesh(base, base, [0.0] * len(self.layout.morph_names), "neutral")
        weights = [float(w) for w in model.expression]
        vertices = np.asarray(face.vertices, np.float32)
        return FaceMesh(vertices, base, weights, "as fitted (result.json expression)")

    def json_fields(self, face: Face, neutral: bool) -> dict[str, Any]:
        """The morphable-model members (the blendshape scores, which every 478-point landmark net
        gives, are written for all backends by models/export/files.py)."""
        model = face.model
        if model is None:
            return {}
        return {
            "identity": rounded(model.identity, 4),
            "expression": dict(zip(model.expression_names, rounded(model.expression, 4), strict=True)),
            "landmarks_68_model": rounded(model.landmarks_68, 2),
            "fit_residual_px": round(float(model.fit_residual_px), 3),
            "neutral": bool(neutral),
        }

    def preview(self, face: Face) -> PreviewMarks:
        """The fitted head's camera-facing wireframe (face, head and neck) and its 68 model landmarks."""
        topology = self.topology
        points = posed_points(face.pose, face.vertices)
        facing = (
            vertex_normals(points, topology.triangles, layout_normal_plan(self.layout))[:, 2] < 0
        )  # image z points away from the camera
        edges = topology.preview_edges[facing[topology.preview_edges].all(axis=1)]
        dots = np.zeros((0, 2)) if face.model is None else np.asarray(face.model.landmarks_68)[:, :2]
        return PreviewMarks(points[:, :2][edges].reshape(-1, 4), line_rgba=(0, 255, 120, 70), dots=dots)


@cache
def ict_export() -> IctExport:
    """The hooks, built once per process."""
    topology = load_head_topology()
    layout = MeshLayout(
        "head",
        topology.vertex_count,
        topology.triangles,
        topology.triangle_uvs,
        topology.uvs,
        topology.gl_vertex,
        topology.gl_uvs,
        topology.gl_triangles,
        obj_header=OBJ_HEADER,
        smooth=True,
        morph_names=tuple(topology.expression_names),
        morph_deltas=topology.expression,
    )
    hooks = IctExport(layout, topology)
    hooks.prepare()
    return hooks
