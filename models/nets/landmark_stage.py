"""The landmark net of an engine, chosen by name, with the ROI and crop conventions it was trained on.

* ``468``: FaceMesh V1 (legacy FaceMesh graph), 192² square crops, 468 points.
* ``478``: FaceMesh V1 with attention (the legacy graph's refine_landmarks), 478 points with irises.
* ``v2``: FaceMesh V2 of MediaPipe's Face Landmarker task, 256² stretched crops, 478 points; its
  detections merge at IoU 0.5 (models/nets/landmarks_v2.py).

All three give image-space points in models/nets/landmarks.py's units. For 478-point nets the stage also
owns the blendshape net (52 ARKit-named scores, models/nets/blendshapes.py), since it reads those points.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from face3d.models.nets import landmarks as v1
from face3d.models.nets import landmarks_v2 as v2
from face3d.models.nets.blendshapes import BlendshapeNet, load_blendshapes
from face3d.models.nets.detector import IOU_THRESHOLD, FaceDetector, letterbox, select_faces
from face3d.models.nets.landmarks import FaceLandmarks

LANDMARK_MODELS = ("468", "478", "v2")


class LandmarkStage:
    """ROI -> crop -> (net run by the caller, bucketed) -> image space; plus blendshapes."""

    def __init__(self, name: str, cache_dir: Path, device: torch.device, dtype: torch.dtype) -> None:
        if name not in LANDMARK_MODELS:
            raise ValueError(f"landmark model must be one of {', '.join(LANDMARK_MODELS)}, not {name!r}")
        self.name = name
        self.v2 = name == "v2"
        net: nn.Module = v2.load_face_mesh_v2(cache_dir) if self.v2 else v1.load_face_mesh(name, cache_dir)
        self.net = net.to(device).eval()
        self.net.net.to(dtype)
        self.input_size = v2.INPUT_SIZE if self.v2 else v1.INPUT_SIZE
        self.weights_file = v2.MODEL_FILE if self.v2 else v1.MODEL_FILES[name]
        self.num_landmarks = 468 if name == "468" else 478
        self.nms_iou = v2.NMS_IOU_THRESHOLD if self.v2 else IOU_THRESHOLD
        self.presence_threshold = v2.PRESENCE_THRESHOLD if self.v2 else v1.PRESENCE_THRESHOLD
        self.blendshapes: BlendshapeNet | None = None
        if self.num_landmarks == 478:
            self.blendshapes = load_blendshapes(cache_dir).to(device).eval()
            self.blendshapes.net.to(dtype)

    @property
    def weight_files(self) -> tuple[str, ...]:
        """The weight files this stage reads (for model_info)."""
        from face3d.models.nets.blendshapes import MODEL_FILE as BLENDSHAPES_FILE

        return (self.weights_file, BLENDSHAPES_FILE) if self.blendshapes is not None else (self.weights_file,)

    def rois(self, boxes: Tensor, keypoints: Tensor) -> Tensor:
        return v2.face_rois_v2(boxes, keypoints) if self.v2 else v1.face_rois(boxes, keypoints)

    def crops(self, batch: Tensor, sizes: Tensor, face_image: Tensor, rois: Tensor) -> Tensor:
        if self.v2:
            return v2.crop_rois(batch, sizes, face_image, rois)
        return v1.crop_faces(batch, sizes, face_image, rois)

    def to_image(self, points: Tensor, rois: Tensor) -> Tensor:
        return v2.rois_to_image(points, rois) if self.v2 else v1.to_image_space(points, rois)

    @torch.no_grad()
    def detect(
        self, images: Tensor, sizes: Tensor, detector: FaceDetector, max_faces: int = 4
    ) -> FaceLandmarks:
        """The landmark path in call order, unbatched by bucket (the engine owns the real
        orchestration; tests and benchmarks use this): detect, ROI, crop, landmark net, projection.
        Faces under the net's presence threshold are dropped, as MediaPipe does.

        images: padded (B,3,H,W) uint8 batch from ``models.detector.pad_images``; sizes (B,2).
        """
        x, frames = letterbox(images, sizes)
        found = select_faces(*detector(x), frames, max_faces=max_faces, iou_threshold=self.nms_iou)
        face_image, boxes, keypoints, scores = found.flatten()
        rois = self.rois(boxes, keypoints)
        points, presence = self.net(self.crops(images, sizes, face_image, rois))
        keep = presence >= self.presence_threshold
        return FaceLandmarks(
            face_image=face_image[keep],
            boxes=boxes[keep],
            scores=scores[keep],
            landmarks=self.to_image(points, rois)[keep],
            presence=presence[keep],
        )
