"""facemesh's export hooks: its 468-vertex layout (one UV per vertex, an open, double-sided mask) and
a preview wireframe drawn over the landmark net's own points."""

from __future__ import annotations

from functools import cache

import numpy as np

from face3d.models.backends.facemesh.topology import load_topology
from face3d.models.export.mesh import MeshExport, MeshLayout, PreviewMarks, mesh_edges
from face3d.models.reconstruction import Face

OBJ_HEADER = """\
# face3d reconstructed face: {nv} vertices, {nf} triangles
# units: centimetres (eye centres 6.3 cm apart)
# axes: right-handed, +Y up, +X towards the subject's left, +Z out of the face (towards the camera)
# the mesh is the subject's shape in a frontal pose; the head pose is in result.json ("pose")
# texture coordinates: v = 0 at the bottom of the texture image
"""


class FacemeshExport(MeshExport):
    """The mask's mesh is the landmark net's first 468 points, so the preview draws those as found."""

    def preview(self, face: Face) -> PreviewMarks:
        points = np.asarray(face.landmarks, dtype=np.float64)[:, :2]
        return PreviewMarks(points[mesh_edges(self.layout)].reshape(-1, 4))


@cache
def facemesh_export() -> FacemeshExport:
    """The hooks, built once per process."""
    topology = load_topology()
    layout = MeshLayout.single_uv(
        "face", topology.triangles, topology.uvs, obj_header=OBJ_HEADER, double_sided=True
    )
    hooks = FacemeshExport(layout)
    hooks.prepare()
    return hooks
