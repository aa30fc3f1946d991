"""FaceMesh V2 (MediaPipe Face Landmarker's landmark net), batched over faces: ROI, crop, net, projection.

The Face Landmarker task graph differs from the legacy FaceMesh graph that ``models/nets/landmarks.py``
follows, and the net was trained on *its* crops, so its conventions are taken from MediaPipe 0.10.21's
task graphs (mediapipe/tasks/cc/vision/face_detector/face_detector_graph.cc and
face_landmarker/face_landmarks_detector_graph.cc):

* Detection: the same BlazeFace short-range net and letterbox (the task's face_detector.tflite has the
  same graph and weights as face_detection_short_range.tflite), but weighted NMS merges boxes
  overlapping by IoU > 0.5 (``min_suppression_threshold`` default) instead of 0.3.
* ROI: the detection box turned by the eye-to-eye angle (keypoints 0 -> 1, target 0°) and scaled
  1.5x in width and height *without* squaring it (RectTransformationCalculator, no square_long).
* Crop: the rotated ROI rectangle stretched onto the net's 256x256 input (ImageToTensorCalculator
  without keep_aspect_ratio, BORDER_REPLICATE), values in [0, 1] (model metadata: mean 0, std 255).
  Sampled in float, unlike OpenCV's uint8 warp on MediaPipe's CPU path (positions in 1/32-pixel
  steps, samples rounded): emulating that moves results a little closer to MediaPipe's but makes
  them jump with sub-pixel changes (e.g. up to 0.03 px between a photo alone and in a batch).
* Net outputs: 478 (x, y, z) in 256-pixel crop units (mesh + irises, no extra assembly), a
  face-presence logit (sigmoid; faces under 0.5 are dropped, ``min_face_presence_confidence``) and a
  tongue-out score, unused here.
* Projection: crop -> image through the same rotated rectangle (LandmarkProjectionCalculator with
  IMAGE_DIMENSIONS, exact for non-square ROIs); z scaled by the ROI's width, like x. MediaPipe's
  z (normalised, times the image width) differs from that by sqrt(cos²θ + (sinθ·W/H)²) for a face
  turned by θ in a W×H image: it scales z by the ROI's x axis measured in normalised coordinates.
  That factor (up to 1.05 on the test photos) is an artefact of the normalisation, so it is not copied.

Output units as in models/nets/landmarks.py: image pixels (pixel k's centre at k), z in x's pixel scale,
smaller = closer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from face3d.models.nets.assets import asset_path
from face3d.models.nets.detector import module_dtype
from face3d.models.nets.landmarks import face_rois
from face3d.models.nets.sampling import crop_quads
from face3d.models.nets.tflite.loader import load_tflite

INPUT_SIZE = 256
NUM_LANDMARKS = 478
ROI_SCALE = 1.5
PRESENCE_THRESHOLD = 0.5
NMS_IOU_THRESHOLD = 0.5
MODEL_FILE = "face_landmarks_detector.tflite"


class FaceMeshV2Net(nn.Module):
    """Landmark net: crops (F,3,256,256) in [0, 1] -> (points (F,478,3) in crop pixels, presence (F,)).

    The same call signature as ``models.landmarks.FaceMeshNet``, so either can drive the pipeline.
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


def face_rois_v2(boxes: Tensor, keypoints: Tensor) -> Tensor:
    """Landmark ROIs (F,5) = (centre x, centre y, width, height, angle in radians) in image pixels:
    the detection box scaled 1.5x on each side (not squared), turned so the eyes come out level."""
    centre_and_angle = face_rois(boxes, keypoints)  # V1's centre and eye angle; its square side unused
    size = (boxes[:, 2:] - boxes[:, :2]) * ROI_SCALE
    return torch.cat([centre_and_angle[:, :2], size, centre_and_angle[:, 3:4]], dim=1)


def _roi_axes(rois: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Origin (F,2) of the ROI's top-left corner and its full-length x and y edge vectors (F,2)."""
    cos, sin = torch.cos(rois[:, 4]), torch.sin(rois[:, 4])
    x_axis = torch.stack([cos, sin], dim=1) * rois[:, 2:3]
    y_axis = torch.stack([-sin, cos], dim=1) * rois[:, 3:4]
    origin = rois[:, :2] - (x_axis + y_axis) / 2
    return origin, x_axis, y_axis


def crop_rois(
    images: Tensor, sizes: Tensor, face_image: Tensor, rois: Tensor, size: int = INPUT_SIZE
) -> Tensor:
    """Rotated rectangular crops (F,3,size,size) in [0, 1] of each face's ROI, borders replicated.

    images: padded (B,3,H,W) uint8 batch, sizes (B,2) (w, h); face_image (F,) picks each face's image.
    Crop pixel (i, j) samples ``origin + (i / size) * x_axis + (j / size) * y_axis``: MediaPipe's
    corner-to-corner warp, as in models/nets/landmarks.py, with the rectangle stretched to the square.
    """
    return crop_quads(images, sizes, face_image, *_roi_axes(rois), size)


def rois_to_image(points: Tensor, rois: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """Crop-frame landmarks (F,N,3) in ``size``-pixel units -> image pixels; z scaled by the ROI width."""
    origin, x_axis, y_axis = _roi_axes(rois)
    uv = points[..., :2] / size
    xy = origin[:, None, :] + uv[..., 0:1] * x_axis[:, None, :] + uv[..., 1:2] * y_axis[:, None, :]
    z = points[..., 2:3] * (rois[:, None, 2:3] / size)
    return torch.cat([xy, z], dim=-1)
