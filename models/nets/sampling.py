"""Sampling uint8 photos at sub-pixel points the way MediaPipe's OpenCV warps do, batched in torch.

Why a module of its own: the detector's letterbox and both landmark nets' ROI crops read the photo
with the same conventions (pixel k's centre at k, bilinear, BORDER_ZERO or BORDER_REPLICATE, 8-bit
results), and the nets were made with inputs produced exactly that way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def sample_bilinear(images: Tensor, image_index: Tensor, sizes: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Bilinear samples of uint8 images at pixel positions (pixel k's centre at k), as float 0..255;
    pixels outside an image read 0 (OpenCV's BORDER_ZERO, what MediaPipe's letterbox pads with).

    Why not ``grid_sample``: it wants the whole (padded) batch in float, while the letterbox reads a
    sparse grid over the whole photo; gathering the four neighbours straight from the uint8 tensor
    costs memory in proportion to the samples only, and the per-image bounds give each image of a
    padded batch its own border. images (B,C,H,W) uint8; image_index (F,) long; sizes (B,2) (w,h);
    x, y (F,P). Returns (F,C,P) float32.
    """
    _, channels, height, width = images.shape
    w = sizes[image_index, 0:1]
    h = sizes[image_index, 1:2]
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    xi = torch.stack([x0, x0 + 1, x0, x0 + 1])  # the four taps, (4,F,P)
    yi = torch.stack([y0, y0, y0 + 1, y0 + 1])
    weight = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    weight = torch.where((xi >= 0) & (xi < w) & (yi >= 0) & (yi < h), weight, 0.0)
    # One row per pixel, channels together: a view when the batch is channels-last (pad_images);
    # index_select of whole rows is several times faster than advanced indexing.
    rows = images.permute(0, 2, 3, 1).reshape(-1, channels)
    index = image_index[:, None] * (height * width) + yi.clamp(0, height - 1).long() * width
    index = index + xi.clamp(0, width - 1).long()
    taps = rows.index_select(0, index.view(-1)).view(*index.shape, channels)
    # Channels first before the arithmetic: broadcasting over a trailing dim of 3 is slow.
    return (taps.permute(3, 0, 1, 2).float() * weight).sum(dim=1).transpose(0, 1)


def sample_replicated(images: Tensor, image_index: Tensor, sizes: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Bilinear samples like ``sample_bilinear``, but outside points take the image's edge pixel
    (OpenCV's BORDER_REPLICATE, what MediaPipe's landmark crops use). (F,C,P) float32.

    Why a window per face: a landmark crop reads a dense grid over the face only, so converting just
    the box its points span to float and running ``grid_sample`` there is ~3x faster than four
    gathers. The window is clipped to the image, so ``grid_sample``'s border clamping is the image's.
    One host sync for the boxes; faces loop in Python (a handful per batch).
    """
    boxes = torch.stack([x.amin(1), y.amin(1), x.amax(1), y.amax(1)], dim=1).tolist()
    limits = sizes[image_index].tolist()
    out = x.new_empty((len(x), images.shape[1], x.shape[1]))
    for k, (image, (bx0, by0, bx1, by1), (w, h)) in enumerate(
        zip(image_index.tolist(), boxes, limits, strict=True)
    ):
        x0 = min(max(math.floor(bx0), 0), int(w) - 1)
        y0 = min(max(math.floor(by0), 0), int(h) - 1)
        x1 = min(max(math.floor(bx1) + 2, x0 + 1), int(w))
        y1 = min(max(math.floor(by1) + 2, y0 + 1), int(h))
        window = images[image : image + 1, :, y0:y1, x0:x1].float()
        # Pixel k's centre sits at k; with align_corners=False, -1 and 1 are the outer pixel edges.
        grid = torch.stack(
            [(x[k] - x0 + 0.5) * (2 / (x1 - x0)) - 1, (y[k] - y0 + 0.5) * (2 / (y1 - y0)) - 1], -1
        )
        out[k] = F.grid_sample(window, grid[None, None], align_corners=False, padding_mode="border")[0, :, 0]
    return out


def crop_quads(
    images: Tensor,
    sizes: Tensor,
    face_image: Tensor,
    origin: Tensor,
    x_axis: Tensor,
    y_axis: Tensor,
    size: int,
) -> Tensor:
    """Crops (F,3,size,size) in [0, 1] of each face's quadrilateral, borders replicated.

    Crop pixel (i, j) samples ``origin + (i / size) * x_axis + (j / size) * y_axis``: MediaPipe's
    corner-to-corner warp (both landmark nets' ROIs; origin and edge vectors (F,2) in image pixels).
    """
    steps = torch.arange(size, device=images.device, dtype=torch.float32) / size
    v, u = torch.meshgrid(steps, steps, indexing="ij")
    u, v = u.reshape(1, -1, 1), v.reshape(1, -1, 1)
    points = origin[:, None, :] + u * x_axis[:, None, :] + v * y_axis[:, None, :]  # (F,P,2)
    # MediaPipe warps the 8-bit photo into an 8-bit crop (cv::warpAffine), then converts to float: the
    # rounding to whole levels is part of the input the nets were made with. Measured against the
    # Face Landmarker on the reference photos: V2 landmarks of tongue.jpg 1.92 -> 0.06 px median,
    # the worst blendshape difference over all photos 0.058 -> 0.018 (scripts/ reference, tests).
    pixels = sample_replicated(images, face_image, sizes, points[..., 0], points[..., 1]).add_(0.5).floor_()
    return (pixels / 255).reshape(len(origin), 3, size, size)
