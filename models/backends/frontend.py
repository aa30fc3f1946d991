"""What every backend built on the shared front end (models/nets/frontend.py) does alike.

Such a backend locates faces with the front end, fits its own mesh to them and bakes its own texture
atlas from the photo. The rest is the same for all of them and lives here once: the front end built
from the backend's config, the reconstruct loop (locate -> fit -> bake -> host), one baker per
(uv_size, sample_size), the rule that picks each face's sample size and the bake grouped by it,
warmup, the device -> host copy of what every face reports, and the nets' compile hooks.
"""

from __future__ import annotations

import math
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch
from torch import Tensor

from face3d.models.backends.base import BackendConfig, ReconstructionBackend
from face3d.models.geometry.pose import PoseFit
from face3d.models.nets.blendshapes import as_dict as blendshape_dict
from face3d.models.nets.frontend import FrontEnd, Located, StageClock
from face3d.models.reconstruction import Face, FaceModel, Reconstruction, face_from_host, per_image
from face3d.models.runtime.aot import CompileUnit, Runner

SAMPLE_STEP = 256
CPU_MAX_SAMPLE = 1024

BakerT = TypeVar("BakerT")
Faces = Tensor | slice  # which faces of a batch a bake call covers: an index, or all of them


@dataclass(frozen=True)
class Fitted:
    """A backend's fit of a batch's faces, on the device: what every face reports, plus the backend's
    own per-face arrays (copied to the host as float32 under their keys, for ``_face_model``)."""

    landmarks: Tensor  # (F, N, 3) image space, as reported with each face
    vertices: Tensor  # (F, V, 3) model space
    pose: PoseFit
    own: dict[str, Tensor] = field(default_factory=dict)


class FrontEndBackend(ReconstructionBackend, Generic[BakerT]):
    """Base of the backends on the shared front end (``facemesh``, ``ict``).

    A subclass loads its own model in ``load`` (after ``load_front_end``) and implements ``_fit``,
    ``_bake`` (usually through ``bake_by_size``) and ``_new_baker``; ``_face_model`` where its faces
    carry a morphable-model fit.
    """

    atlas_per_face_px: ClassVar[float] = 1.0
    """Atlas texels a CPU bake samples per photo pixel across the face (1.0: one each, for a mesh that
    spans its atlas as facemesh's does; a face covering less of its atlas needs more)."""
    max_gpu_sample: ClassVar[int | None] = None
    """The largest sample size on GPUs, which otherwise sample at the full ``uv_size``."""
    device: torch.device  # set by ``load_front_end``

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.front_end: FrontEnd | None = None
        self._bakers: dict[tuple[int, int], BakerT] = {}

    def load_front_end(self, device: str) -> FrontEnd:
        """Build the shared front end from this backend's config on ``device`` (what ``load`` starts with)."""
        cfg = self.config
        self.front_end = FrontEnd(
            cache_dir=cfg.cache_dir,
            device=device,
            cuda_graphs=cfg.cuda_graphs,
            buckets=cfg.buckets,
            dtype=getattr(torch, cfg.dtype),
            landmark_model=cfg.landmark_model,
            max_faces=cfg.max_faces,
        )
        self.device = self.front_end.device
        self._bakers.clear()
        return self.front_end

    def _front(self) -> FrontEnd:
        if self.front_end is None:
            raise RuntimeError("load() the backend on a device first")
        return self.front_end

    # --- the backend's own stages -------------------------------------------------------------

    @abstractmethod
    def _fit(self, found: Located) -> Fitted:
        """The backend's mesh fitted to the located faces (at least one face)."""

    @abstractmethod
    def _bake(self, found: Located, fitted: Fitted, uv_size: int, lighting: str) -> tuple[Tensor, Tensor]:
        """Textures (F, uv_size, uv_size, 3) uint8 and coverage (F,) of the fitted faces (``lighting``:
        see ``reconstruct``)."""

    @abstractmethod
    def _new_baker(self, uv_size: int, sample_size: int) -> BakerT:
        """A baker for one size pair (``baker`` keeps it)."""

    def _face_model(self, host: dict[str, Any], k: int) -> FaceModel | None:
        """Face ``k``'s morphable-model fit from the host copies; none by default."""
        return None

    # --- bakes ------------------------------------------------------------------------------------

    def baker(self, uv_size: int, sample_size: int) -> BakerT:
        """The baker for one size pair, built on first use and kept (it depends only on the layout)."""
        key = (uv_size, sample_size)
        if key not in self._bakers:
            self._bakers[key] = self._new_baker(uv_size, sample_size)
        return self._bakers[key]

    @property
    def _adaptive(self) -> bool:
        """CPU bakes sample each face at the size its pixels call for; GPUs at one size per uv_size."""
        return self.device.type == "cpu"

    def _gpu_sample(self, uv_size: int) -> int:
        return uv_size if self.max_gpu_sample is None else min(uv_size, self.max_gpu_sample)

    def sample_sizes(self, uv_size: int) -> list[int]:
        """Every sample size a bake at ``uv_size`` may use on this device (what warmup builds)."""
        if not self._adaptive:
            return [self._gpu_sample(uv_size)]
        top = min(uv_size, CPU_MAX_SAMPLE)
        return sorted({*range(SAMPLE_STEP, top + 1, SAMPLE_STEP), top})

    def sample_size(self, face_px: float, uv_size: int) -> int:
        """The resolution at which to sample the photo for a face ``face_px`` photo pixels across.

        On CPU: the smallest multiple of 256 that gives every source pixel of the face at least one
        texel (``atlas_per_face_px`` texels per pixel), capped at ``CPU_MAX_SAMPLE``; the bake then
        upscales (uint8 bilinear) to ``uv_size``. Why: sampling the photo more finely than it has
        pixels adds no detail, only cost. GPUs sample at full size (up to ``max_gpu_sample``).
        """
        if not self._adaptive:
            return self._gpu_sample(uv_size)
        needed = SAMPLE_STEP * math.ceil(max(face_px * self.atlas_per_face_px, 1.0) / SAMPLE_STEP)
        return min(uv_size, CPU_MAX_SAMPLE, needed)

    def bake_by_size(
        self, points: Tensor, uv_size: int, bake: Callable[[BakerT, Faces], tuple[Tensor, Tensor]]
    ) -> tuple[Tensor, Tensor]:
        """Bake every face at the sample size its own extent calls for: one ``bake(baker, faces)``
        call per size. ``points`` (F, P, 3) image space set each face's extent.

        Per face, not per batch, so a photo's texture never depends on what it was batched with.
        """
        if not self._adaptive:
            return bake(self.baker(uv_size, self._gpu_sample(uv_size)), slice(None))
        extent = (points[..., :2].amax(dim=1) - points[..., :2].amin(dim=1)).amax(dim=1)
        samples = [self.sample_size(px, uv_size) for px in extent.tolist()]
        if len(set(samples)) == 1:  # the usual case: one call, no copy of the textures
            return bake(self.baker(uv_size, samples[0]), slice(None))
        textures = torch.empty((len(points), uv_size, uv_size, 3), dtype=torch.uint8, device=self.device)
        coverage = torch.empty(len(points), device=self.device)
        for sample in sorted(set(samples)):
            group = torch.tensor([k for k, s in enumerate(samples) if s == sample], device=self.device)
            baked, covered = bake(self.baker(uv_size, sample), group)
            textures.index_copy_(0, group, baked)  # whole-texture copies (advanced indexing is per element)
            coverage.index_copy_(0, group, covered)
        return textures, coverage

    # --- the interface ----------------------------------------------------------------------------

    @torch.inference_mode()
    def warmup(self, uv_sizes: Sequence[int] = (2048,)) -> float:
        """Run every bucket of every net and build the bakers of every sample size; returns seconds."""
        start = time.perf_counter()
        self._front().warm()
        for uv_size in uv_sizes:
            for sample in self.sample_sizes(uv_size):
                self.baker(uv_size, sample)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start

    @torch.inference_mode()
    def reconstruct(
        self,
        images: Sequence[np.ndarray],
        uv_size: int = 2048,
        all_faces: bool = False,
        lighting: str = "remove",
    ) -> list[Reconstruction]:
        """Reconstruct the faces of each (H, W, 3) uint8 RGB image; one Reconstruction per image.

        ``all_faces`` keeps up to ``max_faces`` faces per image (largest first), else the largest.
        Stage timings are each image's share of the call (total / number of images).
        """
        if not images:
            return []
        clock = StageClock(self.device)
        found = self._front().locate(images, all_faces, clock)
        faces: list[list[Face]] = [[] for _ in images]
        if len(found.face_image):
            fitted = self._fit(found)
            clock.mark("landmarks")
            textures, coverage = self._bake(found, fitted, uv_size, lighting)
            clock.mark("bake")
            host = to_host(found, fitted, textures, coverage)
            clock.mark("bake")  # device -> host copies (the textures' above all) belong to the bake
            for k, index in enumerate(host["image"]):
                faces[index].append(face_from_host(host, k, self._face_model(host, k)))
        return per_image(images, faces, clock.ms)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, **self._front().describe()}

    def compile_units(self) -> list[CompileUnit]:
        return self._front().runners.units()

    def install_compiled(self, name: str, runner: Runner) -> None:
        self._front().runners.install(name, runner)

    def compiled_status(self) -> dict[str, bool]:
        return self._front().runners.status()


def to_host(found: Located, fitted: Fitted, textures: Tensor, coverage: Tensor) -> dict[str, Any]:
    """Every per-face array in one device -> host copy each (the keys ``face_from_host`` reads,
    plus the backend's ``own``); floats as float32."""
    pose = fitted.pose
    arrays = {
        "boxes": found.boxes,
        "scores": found.scores,
        "landmarks": fitted.landmarks,
        "vertices": fitted.vertices,
        "rotation": pose.rotation,
        "euler": pose.euler_degrees(),
        "scale": pose.scale,
        "translation": pose.translation,
        "coverage": coverage,
        **fitted.own,
    }
    host: dict[str, Any] = {key: value.float().cpu().numpy() for key, value in arrays.items()}
    host["image"] = found.face_image.cpu().tolist()
    host["textures"] = textures.cpu().numpy()
    host["blendshapes"] = None if found.blendshapes is None else blendshape_dict(found.blendshapes)
    return host
