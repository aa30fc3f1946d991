"""Where the photo shows the eyes and the inside of the mouth: polygons of MediaPipe's landmarks.

The head's eyeballs, eye sockets, mouth socket, gums, tongue and teeth sit a few millimetres behind
the eyelids and lips, closer than a depth buffer can separate reliably, and the fitted model's
openings never match the photo's exactly. What the photo shows of them is simply what lies inside
the eye contours and the inner lip contour, so that decides their visibility; and skin that the
fit places inside those contours is not sampled (it would take the colour of teeth or sclera).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Closed contours through MediaPipe's 468-point mesh, in order (FACEMESH_LIPS inner ring, the eyes).
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
EYE_A = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
EYE_B = (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398)


def inside_polygon(points: Tensor, polygon: Tensor) -> Tensor:
    """(F, P) bool: points (F, P, 2) inside the closed polygons (F, K, 2) (even-odd rule)."""
    a = polygon[:, None, :, :]  # (F, 1, K, 2)
    b = polygon.roll(-1, dims=1)[:, None, :, :]
    p = points[:, :, None, :]  # (F, P, 1, 2)
    straddles = (a[..., 1] > p[..., 1]) != (b[..., 1] > p[..., 1])
    dy = b[..., 1] - a[..., 1]
    dy = torch.where(dy == 0, torch.ones_like(dy), dy)
    x_cross = a[..., 0] + (p[..., 1] - a[..., 1]) * (b[..., 0] - a[..., 0]) / dy
    crossings = (straddles & (p[..., 0] < x_cross)).sum(dim=-1)
    return crossings % 2 == 1


def inside_near(xy: Tensor, polygon: Tensor) -> Tensor:
    """``inside_polygon`` (F, P) for the points within the polygons' bounding boxes only (most are not)."""
    lo, hi = polygon.amin(dim=1, keepdim=True), polygon.amax(dim=1, keepdim=True)
    near = ((xy >= lo) & (xy <= hi)).all(dim=-1)  # (F, P)
    face, point = near.nonzero(as_tuple=True)
    out = torch.zeros_like(near)
    if len(face):
        out[face, point] = inside_polygon(xy[face, point][:, None], polygon[face])[:, 0]
    return out


def openings(points: Tensor, landmarks: Tensor) -> tuple[Tensor, Tensor]:
    """(in an eye, in the mouth), each (F, P) bool, for image-space points (F, P, 2+)."""
    xy = points[..., :2]
    lm = landmarks[..., :2].to(xy)
    eyes = inside_near(xy, lm[:, list(EYE_A)]) | inside_near(xy, lm[:, list(EYE_B)])
    return eyes, inside_near(xy, lm[:, list(INNER_LIPS)])
