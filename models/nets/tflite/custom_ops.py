"""MediaPipe's three custom TFLite ops of the 478-point attention mesh, as torch modules.

``Landmarks2TransformMatrix``, ``TransformTensorBilinear`` and ``TransformLandmarks`` (version 2)
crop attention regions around the lips and eyes inside the net. They are implemented from the
semantics of MediaPipe's reference kernels (mediapipe/util/tflite/operations/*.cc); shapes are fixed
at load so the modules compile whole.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Landmarks2TransformMatrix(nn.Module):
    """MediaPipe ``Landmarks2TransformMatrix`` v2: (B, N, 3) landmarks -> (B, 4, 4) crop transform.

    The crop is the bounding box of a landmark subset in a frame rotated so that the line from the
    left to the right rotation landmark is at ``target_rotation_radians``, scaled by ``scale_x/y``.
    The matrix maps output-crop pixel coordinates to input coordinates.
    """

    def __init__(self, options: dict) -> None:
        super().__init__()
        self.register_buffer("subset", torch.tensor(options["subset_idxs"], dtype=torch.long))
        self.left, self.right = int(options["left_rotation_idx"]), int(options["right_rotation_idx"])
        self.target = float(options["target_rotation_radians"])
        self.out_w, self.out_h = int(options["output_width"]), int(options["output_height"])
        self.scale_x, self.scale_y = float(options["scale_x"]), float(options["scale_y"])

    def forward(self, landmarks: Tensor) -> Tensor:
        delta = landmarks[:, self.right, :2] - landmarks[:, self.left, :2]
        rotation = self.target - torch.atan2(delta[:, 1], delta[:, 0])
        cos, sin = torch.cos(rotation)[:, None], torch.sin(rotation)[:, None]
        pts = landmarks.index_select(1, self.subset)
        x, y = pts[..., 0], pts[..., 1]
        rx, ry = cos * x - sin * y, sin * x + cos * y
        rx_min, rx_max, ry_min, ry_max = rx.amin(1), rx.amax(1), ry.amin(1), ry.amax(1)
        cos, sin = cos[:, 0], sin[:, 0]
        mid_x, mid_y = (rx_min + rx_max) / 2, (ry_min + ry_max) / 2
        centre_x, centre_y = cos * mid_x + sin * mid_y, cos * mid_y - sin * mid_x  # rotate back by -rotation
        scale_x = self.scale_x * (rx_max - rx_min) / self.out_w
        scale_y = self.scale_y * (ry_max - ry_min) / self.out_h
        a00, a01, a10, a11 = cos * scale_x, sin * scale_y, -sin * scale_x, cos * scale_y
        tx = centre_x - (a00 * self.out_w + a01 * self.out_h) / 2
        ty = centre_y - (a10 * self.out_w + a11 * self.out_h) / 2
        zero, one = torch.zeros_like(a00), torch.ones_like(a00)
        rows = (a00, a01, zero, tx, a10, a11, zero, ty, zero, zero, one, zero, zero, zero, zero, one)
        return torch.stack(rows, 1).view(-1, 4, 4)


class TransformTensorBilinear(nn.Module):
    """MediaPipe ``TransformTensorBilinear`` v2: resample a feature map through a (B, 4, 4) transform.

    Output pixel centres (x+0.5, y+0.5) are mapped by the matrix, shifted back by half a pixel and
    sampled bilinearly; samples whose position falls outside [0, W-1] x [0, H-1] are zero.
    """

    def __init__(self, out_h: int, out_w: int, in_h: int, in_w: int) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(torch.arange(out_h) + 0.5, torch.arange(out_w) + 0.5, indexing="ij")
        self.register_buffer("centres", torch.stack((xs, ys), -1).reshape(-1, 2))
        self.out_h, self.out_w, self.in_h, self.in_w = out_h, out_w, in_h, in_w

    def forward(self, features: Tensor, matrix: Tensor) -> Tensor:
        pos = self.centres @ matrix[:, :2, :2].transpose(1, 2) + (matrix[:, None, :2, 3] - 0.5)
        px, py = pos[..., 0], pos[..., 1]
        inside = (px >= 0) & (px <= self.in_w - 1) & (py >= 0) & (py <= self.in_h - 1)
        grid = torch.stack((px * (2 / (self.in_w - 1)) - 1, py * (2 / (self.in_h - 1)) - 1), -1)
        grid = grid.view(-1, self.out_h, self.out_w, 2)
        # contiguous(): CPU grid_sample returns NaNs on channels_last fp16/bf16 input (torch 2.13).
        out = F.grid_sample(
            features.contiguous(), grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )
        return out * inside.view(-1, 1, self.out_h, self.out_w).to(out.dtype)


class TransformLandmarks(nn.Module):
    """MediaPipe ``TransformLandmarks`` v2: apply a (B, 4, 4) transform to (B, N, 2|3) points' x, y."""

    def forward(self, landmarks: Tensor, matrix: Tensor) -> Tensor:
        xy = landmarks[..., :2] @ matrix[:, :2, :2].transpose(1, 2) + matrix[:, None, :2, 3]
        return torch.cat((xy, landmarks[..., 2:]), -1)
