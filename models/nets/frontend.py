"""Engine: photos in, Reconstructions out. The one object the CLI and the service workers hold.

Data path of one ``reconstruct`` call (B images, F faces), all on the engine's device:

    uint8 images -> padded batch -> letterbox 128² -> BlazeFace (bucketed)
    -> weighted NMS -> ROI crops 192² -> landmark net (bucketed)
    -> back-projection -> similarity fit to the template -> UV bake -> host

The nets run through ``self.runners`` (models/runtime/runners.py): eager modules from the start, compiled
AOTInductor packages (models/runtime/aot.py) once someone installs them. Why buckets: padding every
net input up to one of a few fixed batch sizes (1, 2, 4, 8, ...) keeps the shapes few and known,
so ``warmup`` covers them all and, on CUDA, each bucket replays one captured CUDA graph.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from face3d.models.backends.facemesh.bake import TextureBaker
from face3d.models.backends.facemesh.topology import load_topology
from face3d.models.geometry.pose import fit_pose
from face3d.models.nets.assets import MEDIAPIPE_VERSION, weight_hashes, weight_inventory
from face3d.models.nets.blendshapes import BLENDSHAPE_NAMES
from face3d.models.nets.blendshapes import MODEL_FILE as BLENDSHAPES_FILE
from face3d.models.nets.blendshapes import as_dict as blendshape_dict
from face3d.models.nets.detector import letterbox, load_face_detector, pad_images, select_faces
from face3d.models.nets.landmark_stage import LandmarkStage
from face3d.models.reconstruction import Face, Reconstruction, face_from_host, per_image
from face3d.models.runtime.aot import net_layout
from face3d.models.runtime.runners import Net, NetRunners

DETECTOR_INPUT = 128
DETECTOR_FILE = "face_detection_short_range.tflite"
MESH_VERTICES = 468
SAMPLE_STEP = 256
CPU_MAX_SAMPLE = 1024


def sample_size_for(face_px: float, uv_size: int, cap: int) -> int:
    """Atlas resolution at which a CPU bake samples the photo for a face ``face_px`` pixels across.

    Sampling the photo more finely than it has pixels adds no detail, only cost: the bake samples
    at the smallest multiple of 256 that gives every source pixel of the face (the mesh spans the
    atlas) at least one texel, then upscales (uint8 bilinear) to ``uv_size``. ``cap`` bounds the
    cost; GPUs skip this and sample at full size.
    """
    needed = SAMPLE_STEP * math.ceil(max(face_px, 1.0) / SAMPLE_STEP)
    return min(uv_size, cap, needed)


class StageClock:
    """Wall time per stage; synchronises CUDA at each mark so the split is truthful."""

    def __init__(self, device: torch.device) -> None:
        self._sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self._last = time.perf_counter()
        self.ms: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        self._sync()
        now = time.perf_counter()
        self.ms[stage] = self.ms.get(stage, 0.0) + (now - self._last) * 1000
        self._last = now


@dataclass(frozen=True)
class Located:
    """The faces found in a padded batch: what ``Engine.locate`` hands to a backend's own stages."""

    batch: Tensor  # (B, 3, H, W) uint8 padded images on the device
    sizes: Tensor  # (B, 2) width, height of each image
    face_image: Tensor  # (F,) index of each face's image in the batch
    boxes: Tensor  # (F, 4) x0, y0, x1, y1 pixels
    scores: Tensor  # (F,) detector confidence
    landmarks: Tensor  # (F, N, 3) image space (models/nets/landmarks.py conventions)
    blendshapes: Tensor | None = None  # (F, 52) MediaPipe's scores, for 478-point landmark nets


class Engine:
    """Batched face reconstruction on one device. Not thread-safe: one engine per worker."""

    def __init__(
        self,
        *,
        cache_dir: Path,
        device: str = "cpu",
        cuda_graphs: bool = True,
        buckets: Sequence[int] = (1, 2, 4, 8),
        dtype: torch.dtype = torch.float32,
        landmark_model: str = "v2",
        max_faces: int = 4,
    ) -> None:
        self.device = torch.device(device)
        # The fp16-dequantised weights produce denormal floats, which x86 CPUs process ~40x slower
        # (measured: 468 net 1.4 s -> 37 ms per face). Process-wide, but one engine owns its process.
        torch.set_flush_denormal(True)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device} requested but CUDA is not available")
        if dtype != torch.float32 and self.device.type == "cpu":
            raise ValueError("reduced precision is only supported on CUDA devices")
        self.buckets = tuple(sorted({int(b) for b in buckets}))
        if not self.buckets or self.buckets[0] < 1:
            raise ValueError("buckets must be positive batch sizes")
        self.dtype = dtype
        self.landmark_model = landmark_model
        self.max_faces = max_faces
        self.detector = load_face_detector(cache_dir).to(self.device).eval()
        self.stage = LandmarkStage(landmark_model, cache_dir, self.device, dtype)
        self.mesh = self.stage.net
        self.detector.net.to(dtype)
        hashes = weight_hashes()
        side = self.stage.input_size
        nets = {
            "detector": Net(self.detector, (3, DETECTOR_INPUT, DETECTOR_INPUT), hashes[DETECTOR_FILE]),
            f"mesh-{landmark_model}": Net(self.mesh, (3, side, side), hashes[self.stage.weights_file]),
        }
        if self.stage.blendshapes is not None:  # eager it costs more than the landmark net's crop
            nets["blendshapes"] = Net(self.stage.blendshapes, (478, 3), hashes[BLENDSHAPES_FILE])
        self.runners = NetRunners(nets, self.device, self.buckets, cuda_graphs)
        self._mesh_net = f"mesh-{landmark_model}"
        self.topology = load_topology()
        self._template = torch.tensor(self.topology.template, device=self.device)
        self._bakers: dict[tuple[int, int], TextureBaker] = {}
        self._adaptive_bake = self.device.type == "cpu"

    def model_info(self) -> dict:
        """What is loaded, for /v1/models and every result.json."""
        files = (DETECTOR_FILE, *self.stage.weight_files)
        hashes = weight_hashes()
        return {
            "backend": "facemesh",
            "model": f"face-mesh-{self.landmark_model}",
            "version": f"mediapipe-{MEDIAPIPE_VERSION}",
            "weights": {name: hashes[name] for name in files},
            "weight_files": [item for item in weight_inventory() if item["name"] in files],
            "landmarks": self.stage.num_landmarks,
            "landmark_model": self.landmark_model,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "compiled": self.runners.status(),
            "cuda_graphs": self.runners.graphed(),
            "buckets": list(self.buckets),
        }

    def baker(self, uv_size: int, sample_size: int) -> TextureBaker:
        """The texel map for one size pair, built on first use and kept (it depends only on the layout)."""
        key = (uv_size, sample_size)
        if key not in self._bakers:
            self._bakers[key] = TextureBaker(self.topology, uv_size, self.device, sample_size=sample_size)
        return self._bakers[key]

    def _sample_sizes(self, uv_size: int) -> list[int]:
        if not self._adaptive_bake:
            return [uv_size]
        top = min(uv_size, CPU_MAX_SAMPLE)
        return sorted({*range(SAMPLE_STEP, top + 1, SAMPLE_STEP), top})

    def _bucket(self, n: int) -> int:
        return next((b for b in self.buckets if b >= n), self.buckets[-1])

    def _bucketed(self, run: Callable[[Tensor], tuple[Tensor, ...]], x: Tensor) -> list[Tensor]:
        """Run ``x`` through ``run`` in bucket-sized, zero-padded chunks; outputs trimmed back to len(x)."""
        outs: list[list[Tensor]] = []
        step = self.buckets[-1]
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            size = self._bucket(len(chunk))
            if size > len(chunk):
                chunk = torch.cat([chunk, chunk.new_zeros((size - len(chunk), *chunk.shape[1:]))])
            outs.append([o[: min(step, len(x) - start)] for o in run(net_layout(chunk))])
        return [torch.cat(parts) for parts in zip(*outs, strict=True)]

    @torch.inference_mode()
    def warmup(self, uv_sizes: Sequence[int] = (2048,)) -> float:
        """Run every bucket of every net (eager; CUDA graphs captured where enabled) and build the
        bakers; returns seconds. Compiled packages are installed separately (``runners.install``)."""
        start = time.perf_counter()
        self.runners.warm()
        for uv_size in uv_sizes:
            for sample in self._sample_sizes(uv_size):
                self.baker(uv_size, sample)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start

    def _bake(self, batch: Tensor, face_image: Tensor, verts: Tensor, uv_size: int) -> tuple[Tensor, Tensor]:
        """Bake every face; on CPU each at the sample size its own pixel extent calls for.

        Per face, not per batch, so a photo's texture never depends on what it was batched with.
        """
        if not self._adaptive_bake:
            return self.baker(uv_size, uv_size).bake(batch, face_image, verts)
        extent = (verts[..., :2].amax(dim=1) - verts[..., :2].amin(dim=1)).amax(dim=1)
        samples = [sample_size_for(px, uv_size, CPU_MAX_SAMPLE) for px in extent.tolist()]
        if len(set(samples)) == 1:
            return self.baker(uv_size, samples[0]).bake(batch, face_image, verts)
        textures = torch.empty((len(verts), uv_size, uv_size, 3), dtype=torch.uint8, device=self.device)
        coverage = torch.empty(len(verts), device=self.device)
        for sample in sorted(set(samples)):
            group = torch.tensor([k for k, s in enumerate(samples) if s == sample], device=self.device)
            baked, covered = self.baker(uv_size, sample).bake(batch, face_image[group], verts[group])
            textures.index_copy_(0, group, baked)  # whole-texture copies (advanced indexing is per element)
            coverage.index_copy_(0, group, covered)
        return textures, coverage

    def _upload(self, image: np.ndarray) -> Tensor:
        if not image.flags.writeable:  # torch.from_numpy needs a writable array (decoders hand out views)
            image = image.copy()
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    @torch.inference_mode()
    def locate(self, images: Sequence[np.ndarray], all_faces: bool, clock: StageClock) -> Located:
        """Detection and landmarks, the stages every MediaPipe-based backend shares (marks ``detect``;
        the caller marks ``landmarks`` once it has used them)."""
        batch, sizes = pad_images([self._upload(im) for im in images])
        x, frames = letterbox(batch, sizes)
        boxes, keypoints, scores = self._bucketed(self.runners.get("detector"), x)
        detections = select_faces(
            boxes, keypoints, scores, frames, max_faces=self.max_faces if all_faces else 1,
            iou_threshold=self.stage.nms_iou,
        )  # fmt: skip
        face_image, boxes, keypoints, scores = detections.flatten()
        clock.mark("detect")
        landmarks = boxes.new_zeros((0, self.stage.num_landmarks, 3))
        if len(face_image):
            rois = self.stage.rois(boxes, keypoints)
            crops = self.stage.crops(batch, sizes, face_image, rois)
            points, presence = self._bucketed(self.runners.get(self._mesh_net), crops)
            keep = presence >= self.stage.presence_threshold  # the net may reject every detection
            face_image, boxes, scores = face_image[keep], boxes[keep], scores[keep]
            landmarks = self.stage.to_image(points[keep], rois[keep])
        blendshapes = None
        if self.stage.blendshapes is not None:
            blendshapes = landmarks.new_zeros((0, len(BLENDSHAPE_NAMES)))
            if len(landmarks):
                (blendshapes,) = self._bucketed(self.runners.get("blendshapes"), landmarks)
        return Located(batch, sizes, face_image, boxes, scores, landmarks, blendshapes)

    @torch.inference_mode()
    def reconstruct(
        self, images: Sequence[np.ndarray], uv_size: int = 2048, all_faces: bool = False
    ) -> list[Reconstruction]:
        """Reconstruct the faces of each (H, W, 3) uint8 RGB image; one Reconstruction per image.

        ``all_faces`` keeps up to ``max_faces`` faces per image (largest first), else the largest.
        Stage timings are each image's share of the call (total / number of images).
        """
        if not images:
            return []
        clock = StageClock(self.device)
        found = self.locate(images, all_faces, clock)
        batch, face_image, boxes, scores = found.batch, found.face_image, found.boxes, found.scores
        if len(face_image):
            landmarks = found.landmarks
            fit = fit_pose(landmarks, self._template)
            vertices = fit.to_model(landmarks[:, :MESH_VERTICES])
            clock.mark("landmarks")
            textures, coverage = self._bake(batch, face_image, landmarks[:, :MESH_VERTICES], uv_size)
            clock.mark("bake")
        faces_per_image: list[list[Face]] = [[] for _ in images]
        if len(face_image):
            host = {
                "image": face_image.cpu().tolist(),
                "boxes": boxes.float().cpu().numpy(),
                "scores": scores.float().cpu().numpy(),
                "landmarks": landmarks.float().cpu().numpy(),
                "vertices": vertices.float().cpu().numpy(),
                "rotation": fit.rotation.float().cpu().numpy(),
                "euler": fit.euler_degrees().float().cpu().numpy(),
                "scale": fit.scale.float().cpu().numpy(),
                "translation": fit.translation.float().cpu().numpy(),
                "textures": textures.cpu().numpy(),
                "coverage": coverage.float().cpu().numpy(),
                "blendshapes": blendshape_dict(found.blendshapes) if found.blendshapes is not None else None,
            }
            clock.mark("bake")  # device -> host copy of the textures belongs to the bake
            for k, index in enumerate(host["image"]):
                faces_per_image[index].append(face_from_host(host, k))
        return per_image(images, faces_per_image, clock.ms)
