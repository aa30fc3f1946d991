"""A third backend defined outside models/: a textured pyramid over the centre of every photo.

It exists to show that adding a backend needs no edit under models/: it subclasses the public
``ReconstructionBackend``, registers with ``@register``, and hands the exporters its own mesh
description (``MeshLayout``) and hooks (``MeshExport``: an extra JSON member). The service imports it
through the ``backend_modules`` setting (tests/test_backend_extension.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

from face3d.models.backends import ReconstructionBackend, register
from face3d.models.export.mesh import MeshExport, MeshLayout
from face3d.models.reconstruction import Face, Pose, Reconstruction

# A square pyramid, apex towards the camera (+Z), centimetres; counter-clockwise seen from outside.
VERTICES = np.array([[-5, -5, 0], [5, -5, 0], [5, 5, 0], [-5, 5, 0], [0, 0, 4]], dtype=np.float32)
TRIANGLES = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4], [0, 3, 2], [0, 2, 1]], dtype=np.int64)
UVS = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]], dtype=np.float32)
HEADER = "# toy pyramid: {nv} vertices, {nf} triangles, centimetres, +Y up\n"


class ToyExport(MeshExport):
    """The default hooks plus one JSON member of the toy's own."""

    def json_fields(self, face: Face, neutral: bool) -> dict[str, Any]:
        return {"toy_apex_cm": float(face.vertices[4, 2])}


@register
class ToyBackend(ReconstructionBackend):
    """Puts the pyramid over the middle of each photo, textured with the photo's mean colour."""

    name = "toy"

    @classmethod
    @cache
    def mesh_export(cls) -> ToyExport:
        return ToyExport(MeshLayout.single_uv("pyramid", TRIANGLES, UVS, obj_header=HEADER))

    def load(self, device: str) -> None:
        self.device = device

    def warmup(self, uv_sizes: Sequence[int]) -> float:
        return 0.0

    def reconstruct(
        self, images: Sequence[np.ndarray], uv_size: int, all_faces: bool, lighting: str = "remove"
    ) -> list[Reconstruction]:
        out = []
        for image in images:
            height, width = image.shape[:2]
            scale = min(width, height) / 40.0  # pixels per centimetre: the pyramid spans a quarter
            colour = image.reshape(-1, 3).mean(axis=0).astype(np.uint8)
            pose = Pose(np.eye(3), 0.0, 0.0, 0.0, scale, np.array([width / 2, height / 2, 0.0]))
            half = 5 * scale
            face = Face(
                bbox=(width / 2 - half, height / 2 - half, width / 2 + half, height / 2 + half),
                score=1.0,
                landmarks=np.zeros((0, 3), np.float32),
                vertices=VERTICES.copy(),
                pose=pose,
                texture=np.broadcast_to(colour, (uv_size, uv_size, 3)).copy(),
                coverage=1.0,
            )
            out.append(Reconstruction(width, height, [face], {"detect": 0.0}))
        return out

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha256(VERTICES.tobytes()).hexdigest()  # its only "weights": the vertex table
        return {"backend": self.name, "model": "pyramid", "version": "1", "device": self.device,
                "weights": {"pyramid": digest}}  # fmt: skip
