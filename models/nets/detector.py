"""BlazeFace face detection, short- and full-range, batched in torch, parameter for parameter MediaPipe's.

Why re-implement MediaPipe's graph instead of inventing our own pre/post-processing: the landmark
net was trained on crops made from *these* detections, so letterboxing, anchor layout, box decoding
and weighted NMS have to match MediaPipe's (modules/face_detection/face_detection*.pbtxt and the
SsdAnchors / TensorsToDetections / NonMaxSuppression calculators) for the landmarks to match.

Two nets, one decoding (``DetectorSpec``): the short-range net (128², faces within about 2 m, the
one every MediaPipe face pipeline runs) and the full-range net (192², small faces far from the
camera; MediaPipe's FaceDetection ``model_selection=1``), whose options MediaPipe's
face_detection_full_range.pbtxt sets: one 48x48 anchor layer (stride 4, no interpolated anchor,
2304 anchors), box scale 192, score threshold 0.6. The front end runs it only on photos where the
short-range net finds no face (models/nets/frontend.py).

Coordinates: MediaPipe's pixel convention throughout, where pixel ``k``'s centre sits at ``k`` (its
OpenCV warps sample there). Image pixels of the input, x right, y down.

Call order (what ``models/nets/frontend.py::FrontEnd.locate`` does, bucketed)::

    batch, sizes = pad_images(images)                 # list of (3,H,W) uint8 -> padded batch
    x, frames = letterbox(batch, sizes)               # (B,3,128,128) in [-1, 1] (size: the spec's)
    boxes, keypoints, scores = detector(x)            # nn.Module, fixed shapes: compile this
    detections = select_faces(boxes, keypoints, scores, frames, max_faces=4)  # + spec's threshold
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import Tensor, nn

from face3d.models.nets.assets import asset_path
from face3d.models.nets.sampling import sample_bilinear
from face3d.models.nets.tflite.loader import load_tflite

INPUT_SIZE = 128  # the short-range net's
NUM_KEYPOINTS = 6  # subject's right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion
SCORE_THRESHOLD = 0.5
IOU_THRESHOLD = 0.3
_SCORE_CLIP = 100.0
# Fixed sizes that keep the post-processing shape-static (no host sync until the caller asks):
# at most this many anchors above threshold enter NMS, and this many NMS clusters are formed.
_MAX_CANDIDATES = 128
_MAX_CLUSTERS = 16


def pad_images(images: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack (3,H,W) uint8 images of any sizes into one zero-padded (B,3,Hmax,Wmax) batch.

    Returns the batch and ``sizes`` (B,2) float32 (width, height) on the images' device. The padding
    must stay zero: the letterbox relies on it standing for MediaPipe's BORDER_ZERO. The batch is
    channels-last in memory (decoded photos are HWC anyway) so that sampling reads a pixel's three
    channels from one row. Callers bound the padding with ``plan_batches``.
    """
    height = max(int(im.shape[1]) for im in images)
    width = max(int(im.shape[2]) for im in images)
    single = images[0][None]
    if len(images) == 1 and single.is_contiguous(memory_format=torch.channels_last):
        batch = single  # an HWC photo is a channels-last batch of one already: no copy
    else:  # zeros allocated channels-last at once (new_zeros + contiguous would write it twice)
        batch = images[0].new_zeros((len(images), height, width, 3)).permute(0, 3, 1, 2)
        for k, image in enumerate(images):
            batch[k, :, : image.shape[1], : image.shape[2]] = image
    sizes = torch.tensor([[im.shape[2], im.shape[1]] for im in images], dtype=torch.float32)
    return batch, sizes.to(images[0].device)


def padded_pixels(sizes: Sequence[tuple[int, int]]) -> int:
    """Pixels ``pad_images`` allocates for images of these (height, width): count x tallest x widest."""
    if not sizes:
        return 0
    return len(sizes) * max(h for h, _ in sizes) * max(w for _, w in sizes)


def plan_batches(sizes: Sequence[tuple[int, int]], max_pixels: int) -> list[list[int]]:
    """Indices of images of these (height, width) sizes, grouped so that no group pads past
    ``max_pixels`` (an image that alone exceeds it forms its own group).

    Why: ``pad_images`` pads every image to the batch's tallest x widest, so a 40000x1000 and a
    1000x40000 image in one batch cost 40000x40000 each. Portrait and landscape images are grouped
    apart and by size, so that similar shapes share a call; order within the result is by size.
    """
    order = sorted(range(len(sizes)), key=lambda k: (sizes[k][0] > sizes[k][1], sizes[k][0] * sizes[k][1]))
    groups: list[list[int]] = []
    for k in order:
        if groups and padded_pixels([sizes[j] for j in [*groups[-1], k]]) <= max_pixels:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def letterbox(images: Tensor, sizes: Tensor, size: int = INPUT_SIZE) -> tuple[Tensor, Tensor]:
    """Fit each image, aspect ratio kept and centred, into a detector's size x size input in [-1, 1].

    MediaPipe (keep_aspect_ratio, BORDER_ZERO) maps the square of side L = max(w, h) centred on the
    image onto the tensor, tensor pixel i sampling source position ``x0 + i * L / size``.
    Returns the input (B,3,size,size) float32 and ``frames`` (B,3) = (L, x0, y0) so that a point at
    normalised tensor position t (0..1) lies at image pixel ``(x0, y0) + t * L``.
    """
    side = sizes.max(dim=1).values
    origin = (sizes - side[:, None]) / 2
    steps = torch.arange(size, device=images.device, dtype=torch.float32) / size
    xs = origin[:, 0:1] + steps * side[:, None]  # (B,size)
    ys = origin[:, 1:2] + steps * side[:, None]
    grid_x = xs[:, None, :].expand(-1, size, -1).reshape(len(sizes), -1)
    grid_y = ys[:, :, None].expand(-1, -1, size).reshape(len(sizes), -1)
    index = torch.arange(len(sizes), device=images.device)
    # rounded to 8 bits as MediaPipe's warp makes it (models/nets/sampling.py crop_quads says why)
    pixels = sample_bilinear(images, index, sizes, grid_x, grid_y).add_(0.5).floor_()
    x = (pixels * (2 / 255) - 1).reshape(len(sizes), 3, size, size)
    return x, torch.cat([side[:, None], origin], dim=1)


def ssd_anchor_centres(
    strides: tuple[int, ...] = (8, 16, 16, 16), per_layer: int = 2, size: int = INPUT_SIZE
) -> Tensor:
    """Anchor centres, normalised to the input: (896,2) of face_detection_short_range by default.

    MediaPipe's SsdAnchorsCalculator with fixed_anchor_size (so only centres matter): consecutive
    layers sharing a stride share one feature map, each contributing ``per_layer`` anchors per cell
    (aspect ratio 1, plus the interpolated one where interpolated_scale_aspect_ratio > 0); cells in
    row-major order, anchors innermost.
    """
    centres = []
    layer = 0
    while layer < len(strides):
        group = 1
        while layer + group < len(strides) and strides[layer + group] == strides[layer]:
            group += 1
        cells = size // strides[layer]
        line = (torch.arange(cells, dtype=torch.float32) + 0.5) / cells
        cy, cx = torch.meshgrid(line, line, indexing="ij")
        grid = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2)
        centres.append(grid.expand(-1, group * per_layer, -1).reshape(-1, 2))
        layer += group
    return torch.cat(centres)


@dataclass(frozen=True)
class DetectorSpec:
    """One BlazeFace net as MediaPipe's graph runs it: its file, input side, anchor layout, threshold."""

    weights_file: str
    input_size: int
    strides: tuple[int, ...]
    anchors_per_cell: int
    score_threshold: float

    def anchors(self) -> Tensor:
        return ssd_anchor_centres(self.strides, self.anchors_per_cell, self.input_size)


SHORT_RANGE = DetectorSpec(
    "face_detection_short_range.tflite", INPUT_SIZE, (8, 16, 16, 16), 2, SCORE_THRESHOLD
)
FULL_RANGE = DetectorSpec("face_detection_full_range_sparse.tflite", 192, (4,), 1, 0.6)


class FaceDetector(nn.Module):
    """BlazeFace net plus box/keypoint decoding: (B,3,S,S) in [-1, 1] -> raw detections per anchor.

    Fixed shapes and no host syncs, so ``torch.compile`` can take it whole. Outputs, in normalised
    tensor coordinates (0..1 across the letterboxed input): boxes (B,A,4) xyxy, keypoints
    (B,A,6,2), scores (B,A) = sigmoid of the clipped logit (A anchors: 896 short-range, 2304
    full-range). Decoding runs in float32 whatever dtype the net runs in.
    """

    def __init__(self, net: nn.Module, spec: DetectorSpec = SHORT_RANGE) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self.register_buffer("anchors", spec.anchors(), persistent=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raw, logits = self.net(x.to(module_dtype(self.net)))
        raw = raw.float() / self.spec.input_size  # reverse_output_order: x, y, w, h, then (x, y) per keypoint
        anchors = self.anchors.float()
        centre = raw[..., 0:2] + anchors
        half = raw[..., 2:4] / 2
        boxes = torch.cat([centre - half, centre + half], dim=-1)
        keypoints = raw[..., 4:].reshape(*raw.shape[:2], NUM_KEYPOINTS, 2) + anchors[:, None, :]
        scores = torch.sigmoid(logits.float()[..., 0].clamp(-_SCORE_CLIP, _SCORE_CLIP))
        return boxes, keypoints, scores


def load_face_detector(cache_dir: Path, spec: DetectorSpec = SHORT_RANGE) -> FaceDetector:
    """A BlazeFace detector (short-range by default) built from its pinned, verified TFLite file."""
    return FaceDetector(load_tflite(asset_path(spec.weights_file, cache_dir)), spec)


@dataclass(frozen=True)
class Detections:
    """Faces of a batch, padded to ``max_faces`` per image, in image pixels, largest box first.

    boxes (B,M,4) xyxy, keypoints (B,M,6,2), scores (B,M), valid (B,M) bool; rows past an image's
    face count are zero and invalid.
    """

    boxes: Tensor
    keypoints: Tensor
    scores: Tensor
    valid: Tensor

    def replaced(self, rows: Tensor, other: Detections) -> Detections:
        """These detections with those of images ``rows`` taken from ``other`` (same face slots)."""
        return Detections(
            *(getattr(self, f.name).index_copy(0, rows, getattr(other, f.name)) for f in fields(self))
        )

    def flatten(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The valid faces of all images: (face_image (F,) long, boxes (F,4), keypoints (F,6,2), scores (F,)).

        One host sync (the number of faces decides the shapes downstream).
        """
        image, slot = self.valid.nonzero(as_tuple=True)
        return image, self.boxes[image, slot], self.keypoints[image, slot], self.scores[image, slot]


def _pairwise_iou(boxes: Tensor) -> Tensor:
    """IoU of every pair of boxes within each image: (B,K,4) -> (B,K,K)."""
    low = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    high = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    inter = (high - low).clamp(min=0).prod(-1)
    area = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0).prod(-1)
    union = area[:, :, None] + area[:, None, :] - inter
    return torch.where(union > 0, inter / union, 0.0)


def select_faces(
    boxes: Tensor,
    keypoints: Tensor,
    scores: Tensor,
    frames: Tensor,
    max_faces: int = 4,
    score_threshold: float = SCORE_THRESHOLD,
    iou_threshold: float = IOU_THRESHOLD,
) -> Detections:
    """Threshold, weighted NMS, un-letterbox, keep the ``max_faces`` largest faces of each image.

    Weighted NMS as MediaPipe's NonMaxSuppressionCalculator (WEIGHTED, IoU): the best remaining
    anchor and every remaining anchor overlapping it by more than ``iou_threshold`` form one face,
    whose box and keypoints are their score-weighted mean and whose score is the best one's. Run as
    a fixed number of vectorised rounds over a fixed number of top candidates (module constants),
    batched over images, without host syncs. Largest-first (not MediaPipe's best-score-first)
    because the biggest face is the photo's subject.
    """
    batch = scores.shape[0]
    masked = torch.where(scores >= score_threshold, scores, 0.0)
    top_scores, top = masked.topk(min(_MAX_CANDIDATES, masked.shape[1]), dim=1)  # sorted, best first
    cand_boxes = boxes.gather(1, top[..., None].expand(-1, -1, 4))
    cand_points = keypoints.flatten(2).gather(1, top[..., None].expand(-1, -1, 2 * NUM_KEYPOINTS))
    overlap = _pairwise_iou(cand_boxes)
    remaining = top_scores > 0
    rows = torch.arange(batch, device=scores.device)
    slots = torch.arange(top.shape[1], device=scores.device)
    out_boxes, out_points, out_scores = [], [], []
    on_cpu = scores.device.type == "cpu"  # where a host check costs nothing: stop once all are merged
    for _ in range(_MAX_CLUSTERS):
        if on_cpu and len(out_scores) >= max_faces and not bool(remaining.any()):
            break  # every further round would add an empty cluster (score 0), which is never kept
        best = remaining.int().argmax(dim=1)  # candidates are score-sorted: first remaining = best
        alive = remaining[rows, best]
        members = remaining & ((overlap[rows, best] > iou_threshold) | (slots == best[:, None]))
        weights = top_scores * members
        total = weights.sum(dim=1, keepdim=True).clamp(min=1e-12)
        out_boxes.append((weights[..., None] * cand_boxes).sum(dim=1) / total)
        out_points.append((weights[..., None] * cand_points).sum(dim=1) / total)
        out_scores.append(torch.where(alive, top_scores[rows, best], 0.0))
        remaining = remaining & ~members
    face_scores = torch.stack(out_scores, dim=1)  # (B,C)
    side, origin = frames[:, None, 0:1], frames[:, None, 1:3]
    face_boxes = torch.stack(out_boxes, dim=1) * side + origin.repeat(1, 1, 2)
    face_points = torch.stack(out_points, dim=1).reshape(batch, len(out_points), NUM_KEYPOINTS, 2)
    face_points = face_points * side[..., None] + origin[:, :, None, :]
    area = (face_boxes[..., 2] - face_boxes[..., 0]) * (face_boxes[..., 3] - face_boxes[..., 1])
    order = torch.where(face_scores > 0, area, -1.0).argsort(dim=1, descending=True)[:, :max_faces]
    return Detections(
        boxes=face_boxes.gather(1, order[..., None].expand(-1, -1, 4)),
        keypoints=face_points.gather(1, order[..., None, None].expand(-1, -1, NUM_KEYPOINTS, 2)),
        scores=face_scores.gather(1, order),
        valid=face_scores.gather(1, order) > 0,
    )


def module_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype the module's weights are in: inputs are cast to it, so the front end may
    ``.half()`` a net while pre/post-processing stays float32."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32
