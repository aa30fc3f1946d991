"""The shared front end: photos in, faces located (detect -> landmarks -> blendshapes), on one device.

Every backend built on MediaPipe's nets starts from here (models/backends/frontend.py loads one per
backend); what a backend then makes of the located faces (its mesh fit, its texture bake) is its own.
Data path of one ``locate`` call (B images, F faces), all on the front end's device:

    uint8 images -> padded batch -> letterbox 128² -> BlazeFace (bucketed) -> weighted NMS
    [-> letterbox 192² -> full-range BlazeFace -> weighted NMS: images with no face found so far]
    -> ROI crops (the landmark net's, models/nets/landmark_spec.py) -> landmark net (bucketed)
    [-> retry ROIs -> landmark net: faces the net rejected]
    -> back-projection to image pixels -> blendshape net (478-point nets, bucketed)

The nets run through ``self.runners`` (models/runtime/runners.py): eager modules from the start,
compiled AOTInductor packages (models/runtime/aot.py) once someone installs them. Why buckets: padding
every net input up to one of a few fixed batch sizes (1, 2, 4, 8, ...) keeps the shapes few and known,
so ``warm`` covers them all and, on CUDA, each bucket replays one captured CUDA graph.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from face3d.models.nets.assets import MEDIAPIPE_VERSION, weight_hashes, weight_inventory
from face3d.models.nets.blendshapes import BLENDSHAPE_NAMES, BlendshapeNet, load_blendshapes
from face3d.models.nets.blendshapes import MODEL_FILE as BLENDSHAPES_FILE
from face3d.models.nets.detector import (
    FULL_RANGE,
    SHORT_RANGE,
    Detections,
    DetectorSpec,
    letterbox,
    load_face_detector,
    pad_images,
    select_faces,
)
from face3d.models.nets.landmark_spec import landmark_spec
from face3d.models.runtime.aot import net_layout
from face3d.models.runtime.runners import Net, NetRunners


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
    """The faces found in a padded batch: what ``FrontEnd.locate`` hands to a backend's own stages.

    Faces the landmark net rejects (presence under the spec's threshold) are already dropped.
    """

    batch: Tensor  # (B, 3, H, W) uint8 padded images on the device
    sizes: Tensor  # (B, 2) width, height of each image
    face_image: Tensor  # (F,) index of each face's image in the batch
    boxes: Tensor  # (F, 4) x0, y0, x1, y1 pixels
    scores: Tensor  # (F,) detector confidence
    landmarks: Tensor  # (F, N, 3) image space (models/nets/landmark_spec.py conventions)
    presence: Tensor  # (F,) the landmark net's face-presence probability
    rois: Tensor  # (F, 5) the landmark crops' ROIs (centre x, centre y, width, height, angle)
    blendshapes: Tensor | None = None  # (F, 52) MediaPipe's scores, for 478-point landmark nets


class FrontEnd:
    """Detector, landmark and blendshape nets on one device, bucketed. Not thread-safe: one per worker."""

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
        extended: bool = True,
    ) -> None:
        """``extended``: beyond MediaPipe's graphs, for faces turned to profile, occluded or far (the
        full-range detector where the short-range one finds nothing, ROI retries where the landmark
        net rejects a face); False runs MediaPipe's graphs as they are (the baseline
        bench/detection_rate.py measures against)."""
        self.device = torch.device(device)
        # The fp16-dequantised weights produce denormal floats, which x86 CPUs process ~40x slower
        # (measured: 468 net 1.4 s -> 37 ms per face). Process-wide, but one front end owns its process.
        torch.set_flush_denormal(True)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device} requested but CUDA is not available")
        if dtype != torch.float32 and self.device.type == "cpu":
            raise ValueError("reduced precision is only supported on CUDA devices")
        self.buckets = tuple(sorted({int(b) for b in buckets}))
        if not self.buckets or self.buckets[0] < 1:
            raise ValueError("buckets must be positive batch sizes")
        self.dtype = dtype
        self.max_faces = max_faces
        self.spec = landmark_spec(landmark_model)
        # runner name -> spec; the full-range net runs only on photos the short-range one finds no face on
        self.detectors: dict[str, DetectorSpec] = {"detector": SHORT_RANGE}
        self.extended = extended
        if extended:
            self.detectors["detector-full"] = FULL_RANGE
        detectors = {name: load_face_detector(cache_dir, spec) for name, spec in self.detectors.items()}
        for detector in detectors.values():
            detector.to(self.device).eval().net.to(dtype)
        self.mesh = self.spec.load(cache_dir).to(self.device).eval()
        self.mesh.net.to(dtype)
        self.blendshapes: BlendshapeNet | None = None
        if self.spec.has_blendshapes:
            self.blendshapes = load_blendshapes(cache_dir).to(self.device).eval()
            self.blendshapes.net.to(dtype)
        hashes = weight_hashes()
        side = self.spec.input_size
        self._mesh_net = f"mesh-{landmark_model}"
        nets = {
            name: Net(detectors[name], (3, spec.input_size, spec.input_size), hashes[spec.weights_file])
            for name, spec in self.detectors.items()
        }
        nets[self._mesh_net] = Net(self.mesh, (3, side, side), hashes[self.spec.weights_file])
        if self.blendshapes is not None:  # eager it costs more than the landmark net's crop
            nets["blendshapes"] = Net(self.blendshapes, (478, 3), hashes[BLENDSHAPES_FILE])
        self.runners = NetRunners(nets, self.device, self.buckets, cuda_graphs)

    @property
    def landmark_model(self) -> str:
        return self.spec.name

    def describe(self) -> dict[str, Any]:
        """The nets, their weights and how they run: the part of a backend's ``describe`` (for
        /v1/models and every result.json) that the front end knows; the backend adds its own name."""
        files = (*(spec.weights_file for spec in self.detectors.values()), *self.spec.weight_files)
        hashes = weight_hashes()
        return {
            "model": f"face-mesh-{self.landmark_model}",
            "version": f"mediapipe-{MEDIAPIPE_VERSION}",
            "weights": {name: hashes[name] for name in files},
            "weight_files": [item for item in weight_inventory() if item["name"] in files],
            "landmarks": self.spec.num_landmarks,
            "landmark_model": self.landmark_model,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "compiled": self.runners.status(),
            "cuda_graphs": self.runners.graphed(),
            "buckets": list(self.buckets),
        }

    @torch.inference_mode()
    def warm(self) -> None:
        """Run every bucket of every net (eager; CUDA graphs captured where enabled). Compiled
        packages are installed separately (``runners.install``)."""
        self.runners.warm()

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

    def _upload(self, image: np.ndarray) -> Tensor:
        if not image.flags.writeable:  # torch.from_numpy needs a writable array (decoders hand out views)
            image = image.copy()
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def _detect(self, name: str, batch: Tensor, sizes: Tensor, max_faces: int) -> Detections:
        """One detector's faces on a padded batch: its letterbox and score threshold, the landmark
        spec's NMS."""
        detector = self.detectors[name]
        x, frames = letterbox(batch, sizes, detector.input_size)
        boxes, keypoints, scores = self._bucketed(self.runners.get(name), x)
        return select_faces(
            boxes, keypoints, scores, frames, max_faces=max_faces,
            score_threshold=detector.score_threshold, iou_threshold=self.spec.nms_iou,
        )  # fmt: skip

    def _retry(
        self,
        batch: Tensor,
        sizes: Tensor,
        face_image: Tensor,
        rois: Tensor,
        points: Tensor,
        presence: Tensor,
        rejected: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The rejected faces' landmark net again in the spec's retry ROIs (models/nets/landmark_spec.py
        says why); each face keeps whichever of its ROIs the net finds the face most present in.
        Returns points, presence and rois of every face, updated where a retry did better."""
        spec = self.spec
        tries = spec.retry_rois(rois[rejected], spec.to_image(points[rejected], rois[rejected]))
        crops = spec.crops(batch, sizes, face_image[rejected].repeat(2), tries)
        retried, again = self._bucketed(self.runners.get(self._mesh_net), crops)
        best = again.view(2, -1).argmax(dim=0) * len(rejected)
        best += torch.arange(len(rejected), device=best.device)
        better = again[best] > presence[rejected]
        chosen, best = rejected[better], best[better]
        points, presence, rois = points.clone(), presence.clone(), rois.clone()
        points[chosen], presence[chosen], rois[chosen] = retried[best], again[best], tries[best]
        return points, presence, rois

    @torch.inference_mode()
    def locate(
        self, images: Sequence[np.ndarray], all_faces: bool = False, clock: StageClock | None = None
    ) -> Located:
        """Detection, landmarks and blendshapes of (H, W, 3) uint8 RGB images; ``all_faces`` keeps up
        to ``max_faces`` faces per image (largest first), else the largest. Marks ``detect`` on the
        clock; the caller marks ``landmarks`` once it has used them."""
        spec = self.spec
        batch, sizes = pad_images([self._upload(im) for im in images])
        count = self.max_faces if all_faces else 1
        detections = self._detect("detector", batch, sizes, count)
        if self.extended:
            unseen = (~detections.valid[:, 0]).nonzero().flatten()  # one host sync
            if len(unseen):  # small faces far from the camera: none on a photo with a face found
                far = self._detect("detector-full", batch[unseen], sizes[unseen], count)
                detections = detections.replaced(unseen, far)
        face_image, boxes, keypoints, scores = detections.flatten()
        if clock is not None:
            clock.mark("detect")
        landmarks = boxes.new_zeros((0, spec.num_landmarks, 3))
        presence, rois = boxes.new_zeros((0,)), boxes.new_zeros((0, 5))
        if len(face_image):
            rois = spec.rois(boxes, keypoints)
            crops = spec.crops(batch, sizes, face_image, rois)
            points, presence = self._bucketed(self.runners.get(self._mesh_net), crops)
            if self.extended:
                rejected = (presence < spec.presence_threshold).nonzero().flatten()  # one host sync
                if len(rejected):  # none on a photo whose faces the net finds at once
                    points, presence, rois = self._retry(
                        batch, sizes, face_image, rois, points, presence, rejected
                    )
            keep = presence >= spec.presence_threshold  # the net may reject every detection
            face_image, boxes, scores, presence, rois = (
                t[keep] for t in (face_image, boxes, scores, presence, rois)
            )
            landmarks = spec.to_image(points[keep], rois)
        blendshapes = None
        if self.blendshapes is not None:
            blendshapes = landmarks.new_zeros((0, len(BLENDSHAPE_NAMES)))
            if len(landmarks):
                (blendshapes,) = self._bucketed(self.runners.get("blendshapes"), landmarks)
        return Located(batch, sizes, face_image, boxes, scores, landmarks, presence, rois, blendshapes)
