"""Backend ``facemesh``: MediaPipe's detector and face-mesh nets rebuilt in torch, a 468-vertex face
mesh posed by a similarity fit and textured from the photo (models/nets/frontend.py does the work)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from face3d.models.backends.facemesh.topology import Topology, load_topology
from face3d.models.backends.frontend import EngineBackend
from face3d.models.backends.registry import register
from face3d.models.reconstruction import Reconstruction


@register
class FacemeshBackend(EngineBackend):
    """The MediaPipe face mesh as the result mesh: fast, a face mask (no head, open eyes and mouth)."""

    name = "facemesh"

    @classmethod
    def load_topology(cls) -> Topology:
        return load_topology()

    def load(self, device: str) -> None:
        self.load_engine(device)

    def warmup(self, uv_sizes: Sequence[int]) -> float:
        return self._engine().warmup(uv_sizes=tuple(uv_sizes))

    def reconstruct(
        self, images: Sequence[np.ndarray], uv_size: int, all_faces: bool
    ) -> list[Reconstruction]:
        return self._engine().reconstruct(images, uv_size=uv_size, all_faces=all_faces)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, **self._engine().model_info()}
