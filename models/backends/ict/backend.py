"""Backend ``ict``: the ICT-FaceKit morphable head fitted to MediaPipe's landmarks, textured from the photo.

Data path of one call (B images, F faces), on the backend's device:

    Engine.locate (the facemesh backend's detector and landmark nets, shared code and compile units)
       (whose landmark stage also gives the 52 ARKit blendshape scores with 478-point nets)
    -> IctFitter: pose + identity (100) + expression (53), started from the blendshapes
    -> dense head (24,591 vertices) in model space and posed into the photo
    -> HeadBaker: depth-tested photo samples, mirror and push-pull fill on the head's atlas

The result mesh is the whole kept head (face, head and neck, mouth and eye sockets, gums, tongue,
teeth, eyeballs) in the project's model space (cm, right-handed, +Y up, +Z out of the face; ICT's own
frame) with ``Pose`` mapping it into the photo like facemesh's. ``Face.model`` carries the
coefficients, the identity-only base mesh (the GLB's morph targets apply to it) and the 68 model
landmarks projected into the photo.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from face3d.models.backends.frontend import EngineBackend
from face3d.models.backends.ict.bake import SKIN_PARTS, HeadBaker
from face3d.models.backends.ict.export import prepare as prepare_exports
from face3d.models.backends.ict.fill import PushPullFill
from face3d.models.backends.ict.fit import IctFitter
from face3d.models.backends.ict.model import IctModel, load_ict_model, load_mediapipe_correspondence
from face3d.models.backends.ict.topology import HeadTopology, load_head_topology
from face3d.models.backends.registry import register
from face3d.models.geometry.zbuffer import DepthTest
from face3d.models.nets.blendshapes import as_dict as blendshape_dict
from face3d.models.nets.frontend import CPU_MAX_SAMPLE, SAMPLE_STEP, StageClock, sample_size_for
from face3d.models.reconstruction import Face, FaceModel, Reconstruction, face_from_host, per_image

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
class IctBackend(EngineBackend):
    """A dense morphable head per face: shape and expression parameters, ARKit morph targets, full texture."""

    name = "ict"

    @classmethod
    def load_topology(cls) -> HeadTopology:  # type: ignore[override]  (the head's own layout type)
        """The head's layout; also warms the exporters' per-process caches (encoders call this once)."""
        topology = load_head_topology()
        prepare_exports(topology)
        return topology

    def load(self, device: str) -> None:
        self.device = self.load_engine(device).device
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
        self._bakers: dict[tuple[int, int], HeadBaker] = {}

    def baker(self, uv_size: int, sample_size: int) -> HeadBaker:
        key = (uv_size, sample_size)
        if key not in self._bakers:
            self._bakers[key] = HeadBaker(
                self.topology_, self.fill, self.depth, uv_size, sample_size, self.device
            )
        return self._bakers[key]

    def _sample_sizes(self, uv_size: int) -> list[int]:
        if self.device.type != "cpu":
            return [min(uv_size, 2048)]
        top = min(uv_size, CPU_MAX_SAMPLE)
        return sorted({*range(SAMPLE_STEP, top + 1, SAMPLE_STEP), top})

    def _sample_size(self, face_px: float, uv_size: int) -> int:
        if self.device.type != "cpu":
            return min(uv_size, 2048)
        return sample_size_for(face_px * ATLAS_PER_FACE_PX, uv_size, CPU_MAX_SAMPLE)

    def warmup(self, uv_sizes: Sequence[int]) -> float:
        start = time.perf_counter()
        self._engine().runners.warm()
        for uv_size in uv_sizes:
            for sample in self._sample_sizes(uv_size):
                self.baker(uv_size, sample)
        return time.perf_counter() - start

    @torch.inference_mode()
    def reconstruct(
        self, images: Sequence[np.ndarray], uv_size: int, all_faces: bool
    ) -> list[Reconstruction]:
        if not images:
            return []
        engine = self._engine()
        clock = StageClock(self.device)
        found = engine.locate(images, all_faces, clock)
        faces_per_image: list[list[Face]] = [[] for _ in images]
        if len(found.face_image):
            landmarks = found.landmarks.float()
            scores = found.blendshapes  # the expression's starting point (None for 468-point nets)
            fit = self.fitter.fit(landmarks, scores, with_vertices=False)
            vertices, base = self.fitter.heads(fit.identity, fit.expression)
            posed = fit.pose.to_image(vertices)
            lm68 = fit.pose.to_image(self.fitter.landmarks68(fit.identity, fit.expression))
            clock.mark("landmarks")
            textures, coverage = self._bake(found, posed, landmarks, uv_size)
            clock.mark("bake")
            host = {
                "image": found.face_image.cpu().tolist(),
                "boxes": found.boxes.float().cpu().numpy(),
                "scores": found.scores.float().cpu().numpy(),
                "landmarks": landmarks.cpu().numpy(),
                "vertices": vertices.cpu().numpy(),
                "base": base.cpu().numpy(),
                "rotation": fit.pose.rotation.cpu().numpy(),
                "euler": fit.pose.euler_degrees().cpu().numpy(),
                "scale": fit.pose.scale.cpu().numpy(),
                "translation": fit.pose.translation.cpu().numpy(),
                "identity": fit.identity.cpu().numpy(),
                "expression": fit.expression.cpu().numpy(),
                "lm68": lm68.cpu().numpy(),
                "residual": fit.residual_px.cpu().numpy(),
                "blendshapes": None if scores is None else blendshape_dict(scores),
                "textures": textures.cpu().numpy(),
                "coverage": coverage.cpu().numpy(),
            }
            clock.mark("bake")  # device -> host copies belong to the bake, as in facemesh
            for k, index in enumerate(host["image"]):
                faces_per_image[index].append(face_from_host(host, k, self._model(host, k)))
        return per_image(images, faces_per_image, clock.ms)

    def _bake(self, found: Any, posed: torch.Tensor, landmarks: torch.Tensor, uv_size: int):
        """Every face at the sample size its own extent calls for (grouped: one call per size)."""
        extent = (landmarks[..., :2].amax(dim=1) - landmarks[..., :2].amin(dim=1)).amax(dim=1)
        samples = [self._sample_size(px, uv_size) for px in extent.tolist()]
        if len(set(samples)) == 1:  # the usual case: one call, no copy of the textures
            sample = samples[0]
            return self.baker(uv_size, sample).bake(
                found.batch, found.sizes, found.face_image, posed, landmarks
            )
        textures = torch.empty((len(posed), uv_size, uv_size, 3), dtype=torch.uint8, device=self.device)
        coverage = torch.empty(len(posed), device=self.device)
        for sample in sorted(set(samples)):
            group = torch.tensor([k for k, s in enumerate(samples) if s == sample], device=self.device)
            baked, covered = self.baker(uv_size, sample).bake(
                found.batch, found.sizes, found.face_image[group], posed[group], landmarks[group]
            )
            textures.index_copy_(0, group, baked)
            coverage.index_copy_(0, group, covered)
        return textures, coverage

    def _model(self, host: dict[str, Any], k: int) -> FaceModel:
        return FaceModel(
            identity=host["identity"][k],
            expression=host["expression"][k],
            expression_names=self.fitter.model.expression_names,
            base_vertices=host["base"][k],
            landmarks_68=host["lm68"][k],
            fit_residual_px=float(host["residual"][k]),
        )

    def describe(self) -> dict[str, Any]:
        info = self._engine().model_info()
        return {
            **info,
            "backend": self.name,
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
