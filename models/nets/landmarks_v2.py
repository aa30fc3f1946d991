"""FaceMesh V2 (MediaPipe Face Landmarker's landmark net), batched over faces: crops in, points out.

The Face Landmarker task graph differs from the legacy FaceMesh graph that ``models/nets/landmarks.py``
follows, and the net was trained on *its* crops, so its conventions are taken from MediaPipe 0.10.21's
task graphs (mediapipe/tasks/cc/vision/face_detector/face_detector_graph.cc and
face_landmarker/face_landmarks_detector_graph.cc). models/nets/landmark_spec.py holds them with V1's:

* Detection: the same BlazeFace short-range net and letterbox (the task's face_detector.tflite has the
  same graph and weights as face_detection_short_range.tflite), but weighted NMS merges boxes
  overlapping by IoU > 0.5 (``min_suppression_threshold`` default) instead of 0.3.
* ROI: the detection box turned by the eye-to-eye angle (keypoints 0 -> 1, target 0°) and scaled
  1.5x in width and height *without* squaring it (RectTransformationCalculator, no square_long).
* Crop: the rotated ROI rectangle stretched onto the net's 256x256 input (ImageToTensorCalculator
  without keep_aspect_ratio, BORDER_REPLICATE), values in [0, 1] (model metadata: mean 0, std 255).
  Sample positions are float, unlike OpenCV's uint8 warp on MediaPipe's CPU path (1/32-pixel
  steps): emulating those moves results a little closer to MediaPipe's but makes them jump with
  sub-pixel changes (e.g. up to 0.03 px between a photo alone and in a batch). The samples are
  rounded to 8 bits as MediaPipe's are (models/nets/sampling.py says why).
* Net outputs: 478 (x, y, z) in 256-pixel crop units (mesh + irises, no extra assembly), a
  face-presence logit (sigmoid; faces under 0.5 are dropped, ``min_face_presence_confidence``) and a
  tongue-out score, unused here.
* Projection: crop -> image through the same rotated rectangle (LandmarkProjectionCalculator with
  IMAGE_DIMENSIONS, exact for non-square ROIs); z scaled by the ROI's width, like x.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from face3d.models.nets.assets import asset_path
from face3d.models.nets.detector import module_dtype
from face3d.models.nets.tflite.loader import load_tflite

INPUT_SIZE = 256
NUM_LANDMARKS = 478
MODEL_FILE = "face_landmarks_detector.tflite"


class FaceMeshV2Net(nn.Module):
    """Landmark net: crops (F,3,256,256) in [0, 1] -> (points (F,478,3) in crop pixels, presence (F,)).

    The same call signature as models/nets/landmarks.py's ``FaceMeshNet``, so either can drive the front end.
    Fixed shapes and no host syncs: ``torch.compile`` takes it whole.
    """

    num_landmarks = NUM_LANDMARKS
    input_size = INPUT_SIZE

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, crops: Tensor) -> tuple[Tensor, Tensor]:
        mesh, presence_logit, _tongue_out = self.net(crops.to(module_dtype(self.net)))
        points = mesh.float().reshape(crops.shape[0], NUM_LANDMARKS, 3)  # a SymInt under export
        return points, torch.sigmoid(presence_logit.float().reshape(-1))


def load_face_mesh_v2(cache_dir: Path) -> FaceMeshV2Net:
    """FaceMesh V2 built from the pinned, verified face_landmarks_detector.tflite."""
    return FaceMeshV2Net(load_tflite(asset_path(MODEL_FILE, cache_dir)))
