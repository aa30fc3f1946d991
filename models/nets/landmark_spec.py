"""One specification per landmark net, and the one ROI -> crop -> back-projection geometry it drives.

MediaPipe runs each landmark net on crops cut the way its own graph cut them during training, so a
net is usable only together with its graph's conventions. Three nets, two graphs:

* ``468``: FaceMesh V1 (the legacy FaceMesh graph), face_landmark.tflite, 192² crops, 468 points.
* ``478``: FaceMesh V1 with attention (the legacy graph's refine_landmarks), 478 points with irises.
* ``v2``: FaceMesh V2 of the Face Landmarker task (models/nets/landmarks_v2.py), 256² crops, 478 points.

What the two graphs share, done once here:

* ROI: the detection box enlarged ``roi_scale`` (1.5) times and turned by the angle of the line from
  detection keypoint 0 to keypoint 1 (the eyes) so that the eyes come out level in the crop
  (FaceDetectionFrontDetectionToRoi / RectTransformationCalculator).
* Crop: the rotated ROI rectangle warped corner to corner onto the net's input, bilinear with
  replicated borders, 8-bit like MediaPipe's (ImageToTensorCalculator; models/nets/sampling.py).
* Back-projection: crop -> image through the same rectangle (LandmarkProjectionCalculator), z scaled
  by the ROI's width like x.

Where they differ, the spec says so:

* ``square``: the legacy graph squares the box on its long side before enlarging it (square crops);
  the Face Landmarker task does not (``square_long`` unset), so its rectangle is stretched onto the
  square input, and back-projection through the same rectangle undoes the stretch exactly.
* ``nms_iou``: the task's detector merges boxes overlapping by IoU > 0.5 (``min_suppression_threshold``
  default) instead of the legacy graph's 0.3; same BlazeFace net and letterbox otherwise.
* ``presence_threshold``: faces whose face-presence score falls below it are dropped (both 0.5).

Beyond MediaPipe: a face the net rejects in its detection ROI gets two more tries (``retry_rois``:
upright, and from its landmarks), which finds faces turned 60-90° that the eye keypoints' angle
tilts out of the net's reach (bench/detection_rate.py measures it against MediaPipe's pipelines).

ROIs are (F, 5) = (centre x, centre y, width, height, angle in radians) in image pixels; output
points are image pixels (pixel k's centre at k, as in models/nets/detector.py), z in the same pixel
scale as x, smaller = closer (MediaPipe's convention, relative to the face's centre depth).

V2 z differs from MediaPipe's own (normalised, times the image width) by sqrt(cos²θ + (sinθ·W/H)²) for
a face turned by θ in a W×H image: MediaPipe scales z by the ROI's x axis measured in normalised
coordinates. That factor (up to 1.05 on the test photos) is an artefact of the normalisation, so it is
not copied.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from face3d.models.nets import landmarks as v1
from face3d.models.nets import landmarks_v2 as v2
from face3d.models.nets.blendshapes import MODEL_FILE as BLENDSHAPES_FILE
from face3d.models.nets.detector import IOU_THRESHOLD
from face3d.models.nets.sampling import crop_quads


@dataclass(frozen=True)
class LandmarkSpec:
    """Everything the front end needs to know about one landmark net: how to load it, how to cut its
    crops and read its output, and which detections it keeps."""

    name: str  # the ``landmark_model`` config value
    input_size: int  # side of the square net input, pixels
    num_landmarks: int
    square: bool  # ROI squared on the box's long side (square crops) or kept as is (stretched)
    nms_iou: float  # IoU above which the detector's weighted NMS merges boxes
    presence_threshold: float  # faces whose presence score is below this are dropped
    weights_file: str
    load: Callable[[Path], nn.Module]  # cache_dir -> the net (crops -> (points, presence))
    roi_scale: float = 1.5

    @property
    def has_blendshapes(self) -> bool:
        """MediaPipe's blendshape net reads 478 points (irises included): only those nets feed it."""
        return self.num_landmarks == 478

    @property
    def weight_files(self) -> tuple[str, ...]:
        """The weight files the landmark stage reads (the blendshape net's too, where it runs)."""
        return (self.weights_file, BLENDSHAPES_FILE) if self.has_blendshapes else (self.weights_file,)

    def rois(self, boxes: Tensor, keypoints: Tensor) -> Tensor:
        """ROIs (F,5) of detection boxes (F,4) xyxy with their keypoints (F,6,2), in image pixels."""
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        size = boxes[:, 2:] - boxes[:, :2]
        if self.square:
            size = size.max(dim=1, keepdim=True).values.expand(-1, 2)
        angle = _level_angle(keypoints[:, 0], keypoints[:, 1])
        return torch.cat([centre, size * self.roi_scale, angle[:, None]], dim=1)

    def retry_rois(self, rois: Tensor, landmarks: Tensor) -> Tensor:
        """Two more ROIs (2F,5) for faces (F) the net rejected in their detection ROIs: first every
        upright ROI, then every ROI drawn from the rejected landmarks.

        Why: the detection ROI turns the crop by the line between BlazeFace's two eye keypoints,
        which near profile (60-90° yaw) lie a few pixels apart, so its angle is noise (tens of
        degrees) and the net sees a tilted face it calls absent. Upright: the same rectangle, not
        turned (photos are mostly upright). From landmarks: MediaPipe's own tracking ROI
        (FaceLandmarksToRoi: the landmarks' box squared on its long side, enlarged ``roi_scale``,
        turned by the eye corners 33 -> 263), which re-centres a crop the detection box put off the
        face. The presence threshold stays as it is: tests/test_profile_detection.py checks that
        the retries find no face on the no-face photos that MediaPipe's pipeline does not.
        """
        upright = torch.cat([rois[:, :4], torch.zeros_like(rois[:, 4:])], dim=1)
        return torch.cat([upright, self.tracking_rois(landmarks)])

    def tracking_rois(self, landmarks: Tensor) -> Tensor:
        """MediaPipe's tracking ROIs (F,5) of faces' image landmarks (F,N,3): FaceLandmarksToRoi's
        landmark box, squared on its long side, enlarged ``roi_scale``, turned by the eye corners."""
        xy = landmarks[..., :2]
        low, high = xy.min(dim=1).values, xy.max(dim=1).values
        side = (high - low).max(dim=1, keepdim=True).values.expand(-1, 2) * self.roi_scale
        angle = _level_angle(xy[:, _RIGHT_EYE_CORNER], xy[:, _LEFT_EYE_CORNER])
        return torch.cat([(low + high) / 2, side, angle[:, None]], dim=1)

    def crops(self, images: Tensor, sizes: Tensor, face_image: Tensor, rois: Tensor) -> Tensor:
        """Net inputs (F,3,S,S) in [0, 1]: each face's ROI of its image, borders replicated.

        images: padded (B,3,H,W) uint8 batch, sizes (B,2) (w, h); face_image (F,) picks each face's
        image. Crop pixel (i, j) samples ``origin + (i / S) * x_axis + (j / S) * y_axis``.
        """
        return crop_quads(images, sizes, face_image, *_roi_axes(rois), self.input_size)

    def to_image(self, points: Tensor, rois: Tensor) -> Tensor:
        """Crop-frame landmarks (F,N,3) in input-pixel units -> image pixels; z scaled by the ROI width."""
        origin, x_axis, y_axis = _roi_axes(rois)
        uv = points[..., :2] / self.input_size
        xy = origin[:, None, :] + uv[..., 0:1] * x_axis[:, None, :] + uv[..., 1:2] * y_axis[:, None, :]
        z = points[..., 2:3] * (rois[:, None, 2:3] / self.input_size)
        return torch.cat([xy, z], dim=-1)


# The subject's outer eye corners in the FaceMesh topology (all three nets share its first 468 points).
_RIGHT_EYE_CORNER, _LEFT_EYE_CORNER = 33, 263


def _level_angle(right_eye: Tensor, left_eye: Tensor) -> Tensor:
    """The rotation (F,) in [-pi, pi) that brings the subject's right eye level with the left."""
    eyes = left_eye - right_eye
    angle = torch.atan2(eyes[:, 1], eyes[:, 0])
    return angle - 2 * math.pi * torch.floor((angle + math.pi) / (2 * math.pi))


def _roi_axes(rois: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Origin (F,2) of the ROI's top-left corner and its full-length x and y edge vectors (F,2)."""
    cos, sin = torch.cos(rois[:, 4]), torch.sin(rois[:, 4])
    x_axis = torch.stack([cos, sin], dim=1) * rois[:, 2:3]
    y_axis = torch.stack([-sin, cos], dim=1) * rois[:, 3:4]
    origin = rois[:, :2] - (x_axis + y_axis) / 2
    return origin, x_axis, y_axis


def _legacy(name: str) -> LandmarkSpec:
    """A FaceMesh V1 net ("468" or "478"): the legacy graph's square crops and the detector's own NMS."""
    return LandmarkSpec(
        name,
        v1.INPUT_SIZE,
        int(name),
        square=True,
        nms_iou=IOU_THRESHOLD,
        presence_threshold=0.5,
        weights_file=v1.MODEL_FILES[name],
        load=partial(v1.load_face_mesh, name),
    )


SPECS: dict[str, LandmarkSpec] = {
    "468": _legacy("468"),
    "478": _legacy("478"),
    "v2": LandmarkSpec(
        "v2",
        v2.INPUT_SIZE,
        v2.NUM_LANDMARKS,
        square=False,
        nms_iou=0.5,
        presence_threshold=0.5,
        weights_file=v2.MODEL_FILE,
        load=v2.load_face_mesh_v2,
    ),
}
LANDMARK_MODELS = tuple(SPECS)


def landmark_spec(name: str) -> LandmarkSpec:
    """The spec of landmark model ``name`` ("468", "478" or "v2")."""
    if name not in SPECS:
        raise ValueError(f"landmark model must be one of {', '.join(LANDMARK_MODELS)}, not {name!r}")
    return SPECS[name]
