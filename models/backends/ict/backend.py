"""Backend ``ict``: the ICT-FaceKit morphable head fitted to MediaPipe's landmarks, textured from the photo.

Data path of one call (B images, F faces), on the backend's device:

    FrontEnd.locate (models/nets/frontend.py: the detector and landmark nets facemesh uses too, shared
       code and compile units; with 478-point nets also the 52 ARKit blendshape scores)
    -> IctFitter: pose + identity (100) + expression (53), started from the blendshapes
    -> dense head (24,591 vertices) in model space and posed into the photo
    -> HeadBaker: visibility-weighted photo samples with the photo's SH light divided out (lighting.py),
       mirror and push-pull fill on the head's atlas

The result mesh is the whole kept head (face, head and neck, mouth and eye sockets, gums, tongue,
teeth, eyeballs) in the project's model space (cm, right-handed, +Y up, +Z out of the face; ICT's own
frame) with ``Pose`` mapping it into the photo like facemesh's. ``Face.model`` carries the
coefficients, the identity-only base mesh (the GLB's morph targets apply to it) and the 68 model
landmarks projected into the photo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from face3d.models.backends.frontend import Faces, Fitted, FrontEndBackend
from face3d.models.backends.ict.bake import SKIN_PARTS, HeadBaker
from face3d.models.backends.ict.export import IctExport, ict_export
from face3d.models.backends.ict.fill import PushPullFill
from face3d.models.backends.ict.fit import IctFit, IctFitter
from face3d.models.backends.ict.model import IctModel, load_ict_model, load_mediapipe_correspondence
from face3d.models.backends.ict.person import PersonReconstructor
from face3d.models.backends.ict.topology import load_head_topology
from face3d.models.backends.registry import register
from face3d.models.geometry.zbuffer import DepthTest
from face3d.models.nets.frontend import Located
from face3d.models.nets.hands import covered_by_hands, load_hand_finder
from face3d.models.reconstruction import FaceModel, PersonReconstruction

MODEL_VERSION = "ict-facekit-light-da5f95a"
# Photo pixels across the face -> atlas texels on CPU: the face proper spans ~45 % of the atlas side
# (3/4 for the face tile, of which it covers ~60 %), so 1.6 samples it at ~70 % of the photo's own
# resolution: visibly as sharp after the upscale to uv_size, at half the texels (the bake's cost) of 1:1.
ATLAS_PER_FACE_PX = 1.6


def expression_prior(model: IctModel) -> np.ndarray:
    """(53,) τ per expression: how far the fit may move each weight from its blendshape score.

    Why tighter for the eyes: ICT's eyeLook*/eyeWide* shapes move the eyelids by a millimetre or two,
    about the size of the landmark net's own bias around the eyes, so with the general τ = 0.5 the
    fit drove them to 0.8-1.0 on every test photo (wide, upward-staring eyes) for a fit residual
    better by 0.01 px; at 0.1/0.15 they stay near the net's blendshape scores (0.2-0.3).
    """
    prior = {"eyeLook": 0.1, "eyeWide": 0.15}
    return np.array(
        [next((v for k, v in prior.items() if n.startswith(k)), 0.5) for n in model.expression_names]
    )


@register
class IctBackend(FrontEndBackend[HeadBaker]):
    """A dense morphable head per face: shape and expression parameters, ARKit morph targets, full texture."""

    name = "ict"
    atlas_per_face_px = ATLAS_PER_FACE_PX
    # GPUs sample the head's atlas at up to 2048 and upscale beyond: the cap facemesh's bake.py's
    # default_sample_size puts on its own (4096's per-size index maps cost four times 2048's).
    max_gpu_sample = 2048

    @classmethod
    def mesh_export(cls) -> IctExport:
        return ict_export()

    def load(self, device: str) -> None:
        self.load_front_end(device)
        model = load_ict_model()
        self.topology_ = load_head_topology()
        self.fitter = IctFitter(
            model, load_mediapipe_correspondence(), device=self.device, expression_std=expression_prior(model)
        )
        self.fill = PushPullFill(model.neutral, model.vertex_part, model.part_names, self.device)
        topology = self.topology_
        skin = np.isin(
            topology.vertex_part[topology.triangles[:, 0]], [topology.part_names.index(p) for p in SKIN_PARTS]
        )
        self.depth = DepthTest(
            torch.from_numpy(topology.triangles.copy()).to(self.device),
            torch.from_numpy(skin).to(self.device),
        )
        self.person_ = PersonReconstructor(self)  # holds only its per-size weight maps, built on first use
        self.hands = load_hand_finder(self.config.cache_dir, self.device) if self.config.hands else None

    def _fit(self, found: Located) -> Fitted:
        landmarks = found.landmarks.float()
        scores = found.blendshapes  # the expression's starting point (None for 468-point nets)
        return self.fitted(landmarks, self.fitter.fit(landmarks, scores, with_vertices=False))

    def fitted(self, landmarks: Tensor, fit: IctFit) -> Fitted:
        """The dense heads and the per-face arrays every result reports, of a fit of ``landmarks``
        (one photo's fit, or a person's joint fit: models/backends/ict/person.py)."""
        vertices, base = self.fitter.heads(fit.identity, fit.expression)
        lm68 = self.fitter.project_landmarks68(fit)  # the jaw on the silhouette at the fitted pose
        own = {
            "base": base,
            "identity": fit.identity,
            "expression": fit.expression,
            "lm68": lm68,
            "residual": fit.residual_px,
        }
        return Fitted(landmarks, vertices, fit.pose, own)

    def _bake(self, found: Located, fitted: Fitted, uv_size: int, lighting: str) -> tuple[Tensor, Tensor]:
        textures, coverage, _ = self.bake_views(found, fitted, uv_size, lighting)
        return textures, coverage

    def bake_views(
        self, found: Located, fitted: Fitted, uv_size: int, lighting: str
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``_bake``'s textures and coverage, and (F, V) each vertex's photo weight (the person mode
        picks each texel's photo by them: models/backends/ict/person.py)."""
        posed, landmarks = fitted.pose.to_image(fitted.vertices), fitted.landmarks  # the head in the photo
        light = torch.zeros((len(posed), 3, 9), device=posed.device)  # each face's SH lighting
        weight = torch.zeros(posed.shape[:2], device=posed.device)
        handed = self.hands_over(found, posed)

        def bake(baker: HeadBaker, faces: Faces) -> tuple[Tensor, Tensor]:
            textures, coverage, sources = baker.bake(
                found.batch, found.sizes, found.face_image[faces], posed[faces], landmarks[faces], lighting,
                None if handed is None else handed[faces],
            )  # fmt: skip
            light[faces], weight[faces] = sources.lighting, sources.weight
            return textures, coverage

        textures, coverage = self.bake_by_size(landmarks, uv_size, bake)
        fitted.own["lighting"] = light  # copied to the host with the rest (``_face_model``)
        fitted.own["lighting_removed"] = torch.full(
            (len(posed),), float(lighting == "remove"), device=posed.device
        )
        return textures, coverage, weight

    def hands_over(self, found: Located, posed: Tensor) -> Tensor | None:
        """(F, V) 0..1 how far each posed vertex lies under a hand in its photo (None when hands are not
        looked for): the palm and hand-landmark nets run once per photo that has a face."""
        if self.hands is None:
            return None
        covered = posed.new_zeros(posed.shape[:2])
        images = found.face_image.tolist()
        sizes = found.sizes.tolist()
        for image in sorted(set(images)):
            width, height = (int(v) for v in sizes[image])
            hands = self.hands.find(found.batch[image, :, :height, :width])
            if len(hands):
                for face in (k for k, i in enumerate(images) if i == image):
                    covered[face] = covered_by_hands(posed[face, :, :2].float(), hands.to(posed.device))
        return covered

    def _new_baker(self, uv_size: int, sample_size: int) -> HeadBaker:
        return HeadBaker(self.topology_, self.fill, self.depth, uv_size, sample_size, self.device)

    def _face_model(self, host: dict[str, Any], k: int) -> FaceModel:
        return FaceModel(
            identity=host["identity"][k],
            expression=host["expression"][k],
            expression_names=self.fitter.model.expression_names,
            base_vertices=host["base"][k],
            landmarks_68=host["lm68"][k],
            fit_residual_px=float(host["residual"][k]),
            lighting=host["lighting"][k] if "lighting" in host else None,  # none: a photo not baked
            lighting_removed=bool(host["lighting_removed"][k]) if "lighting" in host else True,
        )

    supports_person = True

    def reconstruct_person(
        self, images: Sequence[np.ndarray], uv_size: int, lighting: str = "remove"
    ) -> PersonReconstruction:
        """One head from several photos of one person (models/backends/ict/person.py)."""
        return self.person_.reconstruct(list(images), uv_size, lighting)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        return {
            **info,
            "model": f"ict-head+{info['model']}",
            "version": f"{MODEL_VERSION}+{info['version']}",
            "morphable_model": {
                "name": "ICT Face Model Light",
                "licence": "MIT",
                "vertices": self.topology_.vertex_count,
                "identity": self.fitter.n_identity,
                "expressions": list(self.fitter.model.expression_names),
            },
        }
