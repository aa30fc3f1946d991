"""Backend ``facemesh``: MediaPipe's face mesh itself as the result mesh, posed and textured.

Data path of one call (B images, F faces), on the backend's device:

    FrontEnd.locate (models/nets/frontend.py: detector, landmark and blendshape nets)
    -> similarity fit of the first 468 landmarks to the template (models/geometry/pose.py): the pose,
       and the landmarks taken into model space as the face's own shape
    -> TextureBaker (bake.py): the photo sampled under the landmark mesh onto the fixed UV layout
"""

from __future__ import annotations

import torch
from torch import Tensor

from face3d.models.backends.facemesh.bake import TextureBaker
from face3d.models.backends.facemesh.export import FacemeshExport, facemesh_export
from face3d.models.backends.facemesh.topology import load_topology
from face3d.models.backends.frontend import Faces, Fitted, FrontEndBackend
from face3d.models.backends.registry import register
from face3d.models.geometry.pose import fit_pose
from face3d.models.nets.frontend import Located

MESH_VERTICES = 468  # the landmark nets' mesh points; 478-point nets add 10 iris points after them


@register
class FacemeshBackend(FrontEndBackend[TextureBaker]):
    """The MediaPipe face mesh as the result mesh: fast, a face mask (no head, open eyes and mouth)."""

    name = "facemesh"

    @classmethod
    def mesh_export(cls) -> FacemeshExport:
        return facemesh_export()

    def load(self, device: str) -> None:
        self.load_front_end(device)
        self._template = torch.tensor(load_topology().template, device=self.device)

    def _fit(self, found: Located) -> Fitted:
        landmarks = found.landmarks
        fit = fit_pose(landmarks, self._template)
        return Fitted(landmarks, fit.to_model(landmarks[:, :MESH_VERTICES]), fit)

    def _bake(self, found: Located, fitted: Fitted, uv_size: int, lighting: str) -> tuple[Tensor, Tensor]:
        """The photo as it is (``lighting`` is not estimated for facemesh's mask)."""
        mesh = fitted.landmarks[:, :MESH_VERTICES]  # the mesh in the photo: the landmarks themselves

        def bake(baker: TextureBaker, faces: Faces) -> tuple[Tensor, Tensor]:
            return baker.bake(found.batch, found.face_image[faces], mesh[faces])

        return self.bake_by_size(mesh, uv_size, bake)

    def _new_baker(self, uv_size: int, sample_size: int) -> TextureBaker:
        return TextureBaker(load_topology(), uv_size, self.device, sample_size=sample_size)
