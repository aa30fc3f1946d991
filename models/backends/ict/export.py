"""ict's export hooks: the head's layout for the generic writers (models/export/), and per face the
meshes, the morphable-model members of result.json and the preview's wireframe.

Files: the OBJ carries the fitted head (or, with ``neutral``, the identity alone); the GLB's base mesh
is the identity with a neutral expression and the expression shapes are its morph targets, named in
``mesh.extras.targetNames``, with the fitted weights set, so a viewer shows the fitted face and an app
can animate it. The morph targets do not depend on identity, so the GLB writer packs them once per
process (sparse accessors). Units and axes as every face3d mesh (models/reconstruction.py).

Names: the fit works in ICT's 53 shapes (``browDown_L`` ...); everything a client sees speaks ARKit
(``browDownLeft`` ...; both name sides after the subject), in the order of the JSON's ``blendshapes``
(MediaPipe's, which is ARKit's 52 sorted, ``tongueOut`` last), so ``expression`` and ``blendshapes``
can be copied into one another and into an ARKit / Live Link / MediaPipe stream. ICT splits
``browInnerUp`` and ``cheekPuff`` into halves: each pair becomes one target, the sum of the halves'
deltas (weight 1 raises both), at the mean of the halves' fitted weights. ``tongueOut`` is written
only when the model has a shape for it that moves a vertex (ICT Face Model Light has none): 51 targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from face3d.models.backends.ict.lighting import lighting_fields
from face3d.models.backends.ict.model import mediapipe_name_for
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
from face3d.models.nets.blendshapes import BLENDSHAPE_NAMES
from face3d.models.reconstruction import Face

ARKIT_NAMES: tuple[str, ...] = (*BLENDSHAPE_NAMES[1:], "tongueOut")
"""ARKit's 52 blendshapes in the JSON ``blendshapes``' order (MediaPipe's, less its ``_neutral`` score)."""

OBJ_HEADER = """\
# face3d reconstructed head (ICT Face Model Light, MIT licence): {nv} vertices, {nf} triangles
# units: centimetres
# axes: right-handed, +Y up, +X towards the subject's left, +Z out of the face (towards the camera)
# the mesh is the subject's head in a frontal pose; the head pose is in result.json ("pose")
# expression: {expression}
# texture coordinates: v = 0 at the bottom of the texture (one atlas, see models/ict_topology.py)
"""


@dataclass(frozen=True)
class ArkitShapes:
    """ICT's expression shapes as ARKit's: ``members[k, j]`` is 1 where ICT shape j is (half of) ARKit
    shape ``names[k]``; deltas add up over a target's members, weights average over them."""

    names: tuple[str, ...]
    members: np.ndarray  # (K, 53) float32, 0/1

    @classmethod
    def of(cls, ict_names: tuple[str, ...], ict_deltas: np.ndarray) -> ArkitShapes:
        arkit = [mediapipe_name_for(name) for name in ict_names]
        members = np.array([[float(a == name) for a in arkit] for name in ARKIT_NAMES], np.float32)
        moves = np.abs(np.einsum("kj,jvc->kvc", members, ict_deltas)).reshape(len(members), -1).max(axis=1)
        keep = np.flatnonzero(moves > 0)  # tongueOut: only with a shape that moves something
        if members[keep].sum(axis=0).tolist() != [1.0] * len(ict_names):
            raise ValueError(f"ICT shapes without exactly one ARKit target: {ict_names}")
        return cls(tuple(ARKIT_NAMES[k] for k in keep), members[keep])

    def deltas(self, ict_deltas: np.ndarray) -> np.ndarray:
        """(K, V, 3) float32: each target's members' deltas summed."""
        return np.einsum("kj,jvc->kvc", self.members, np.asarray(ict_deltas, np.float32)).astype(np.float32)

    def weights(self, ict_weights: np.ndarray) -> np.ndarray:
        """(K,) the mean of each target's members' weights."""
        w = np.asarray(ict_weights, np.float64)
        return self.members.astype(np.float64) @ w / self.members.sum(axis=1)


class IctExport(MeshExport):
    """The head with its expression morph targets, its parameters in the JSON, its wireframe posed."""

    def __init__(self, layout: MeshLayout, topology: HeadTopology, shapes: ArkitShapes) -> None:
        super().__init__(layout)
        self.topology = topology
        self.shapes = shapes

    def mesh(self, face: Face, neutral: bool) -> FaceMesh:
        model = face.model
        if model is None:  # not an ict face: nothing to animate
            vertices = np.asarray(face.vertices, np.float32)
            return FaceMesh(vertices, vertices, [0.0] * len(self.layout.morph_names), "neutral")
        base = np.asarray(model.base_vertices, np.float32)
        if neutral:
            return FaceMesh(base, base, [0.0] * len(self.layout.morph_names), "neutral")
        weights = [float(w) for w in self.shapes.weights(model.expression)]
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
            "expression": dict(
                zip(self.shapes.names, rounded(self.shapes.weights(model.expression), 4), strict=True)
            ),
            "landmarks_68_model": rounded(model.landmarks_68, 2),
            "fit_residual_px": round(float(model.fit_residual_px), 3),
            "neutral": bool(neutral),
            **lighting_fields(model),
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
    shapes = ArkitShapes.of(topology.expression_names, topology.expression)
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
        morph_names=shapes.names,
        morph_deltas=shapes.deltas(topology.expression),
    )
    hooks = IctExport(layout, topology, shapes)
    hooks.prepare()
    return hooks
