"""Wavefront OBJ + MTL of any backend's mesh (models/export/mesh.py): ``v`` and ``vn`` per vertex,
``vt`` per UV of the layout (seams split UVs only), faces ``f v/vt/vn``.

Numbers are fixed-point text from models/export/decimal_text.py (positions and normals 5 decimals,
UVs 6): a dense head's 24,591 vertices format in milliseconds where ``%`` formatting took ~70 ms. The
layout's UVs and faces are formatted once per process (``functools.cache`` on the layout).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from face3d.models.export.decimal_text import fixed_rows, index_rows
from face3d.models.export.mesh import FaceMesh, MeshLayout, mesh_normals

_MTL = "# face3d material\nnewmtl {name}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {texture}\n"


@cache
def _obj_static(layout: MeshLayout) -> tuple[bytes, bytes]:
    """The OBJ's fixed parts (texture coordinates, and faces with their material line)."""
    vt = fixed_rows("vt ", layout.uvs, 6)
    corners = np.stack([layout.triangles + 1, layout.triangle_uvs + 1, layout.triangles + 1], axis=2)
    faces = index_rows("f ", corners.reshape(len(corners), 9), "// // //")  # OBJ indices are 1-based
    smooth = "1" if layout.smooth else "off"
    return vt, f"usemtl {layout.name}\ns {smooth}\n".encode("ascii") + faces


def prepare_obj(layout: MeshLayout) -> None:
    """Format the layout's fixed OBJ parts now, not in the first request."""
    _obj_static(layout)


def to_obj(layout: MeshLayout, mesh: FaceMesh, texture_name: str, mtl_name: str) -> tuple[bytes, bytes]:
    """OBJ + MTL bytes of ``mesh.vertices``; the MTL maps ``texture_name``."""
    vertices = np.asarray(mesh.vertices, np.float32)
    normals = mesh_normals(layout, vertices)
    vt, faces = _obj_static(layout)
    header = layout.obj_header.format(nv=len(vertices), nf=len(layout.triangles), expression=mesh.expression)
    text = b"".join(
        (
            header.encode("ascii"),
            f"mtllib {mtl_name}\no {layout.name}\n".encode("ascii"),
            fixed_rows("v ", vertices, 5),
            vt,
            fixed_rows("vn ", normals, 5),
            faces,
        )
    )
    return text, _MTL.format(name=layout.name, texture=texture_name).encode("ascii")
