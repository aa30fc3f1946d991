"""Head pose: a batched least-squares similarity fit (Umeyama) of image landmarks to the template.

Frames: image space is x right, y down, z away from the camera (MediaPipe; z in pixel scale).
The camera frame used for the rotation is the Y-up frame ``(x, -y, -z)`` of image space, so the
model frame (+Y up, +Z out of the face) and the camera frame coincide for a frontal face.
The fit solves ``cam ≈ s · R · v + t_cam`` for the template vertices ``v``; the reported
translation is ``t_cam`` taken back to image space, i.e. the pixel position (and relative depth)
of the model origin.

Euler angles: ``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)`` (intrinsic Y-X-Z, right-handed, degrees):
  yaw > 0   the face turns towards the image's right (the subject's left);
  pitch > 0 the face tilts down (chin towards the chest);
  roll > 0  the head tilts counter-clockwise as seen in the image (its right side, on the
            image's left, goes down).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_IMG_TO_CAM = (1.0, -1.0, -1.0)


@dataclass(frozen=True)
class PoseFit:
    """Batched similarity fit of F faces: ``cam ≈ scale · rotation @ v + translation_cam``."""

    rotation: torch.Tensor  # (F, 3, 3) model -> Y-up camera frame, det +1
    scale: torch.Tensor  # (F,) image pixels per model centimetre
    translation_cam: torch.Tensor  # (F, 3) camera frame, pixels

    @property
    def translation(self) -> torch.Tensor:
        """(F, 3) model origin in image space: x, y pixels and z relative depth."""
        return self.translation_cam * self.translation_cam.new_tensor(_IMG_TO_CAM)

    def euler_degrees(self) -> torch.Tensor:
        """(F, 3) yaw, pitch, roll in degrees (see the module docstring for the convention)."""
        r = self.rotation
        yaw = torch.atan2(r[:, 0, 2], r[:, 2, 2])
        pitch = torch.asin((-r[:, 1, 2]).clamp(-1.0, 1.0))
        roll = torch.atan2(r[:, 1, 0], r[:, 1, 1])
        return torch.rad2deg(torch.stack([yaw, pitch, roll], dim=1))

    def to_model(self, points_img: torch.Tensor) -> torch.Tensor:
        """(F, N, 3) image-space points -> model space (cm): the subject's shape in frontal pose."""
        cam = image_to_camera(points_img) - self.translation_cam[:, None, :]
        return cam @ self.rotation / self.scale[:, None, None]

    def to_image(self, points_model: torch.Tensor) -> torch.Tensor:
        """(F, N, 3) or (N, 3) model-space points -> (F, N, 3) image space."""
        cam = self.scale[:, None, None] * points_model @ self.rotation.transpose(1, 2)
        return camera_to_image(cam + self.translation_cam[:, None, :])


def image_to_camera(points: torch.Tensor) -> torch.Tensor:
    """Image space (x right, y down, z away) -> Y-up camera frame (x, -y, -z)."""
    return points * points.new_tensor(_IMG_TO_CAM)


def camera_to_image(points: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`image_to_camera` (the flip is its own inverse)."""
    return points * points.new_tensor(_IMG_TO_CAM)


def fit_pose(points_img: torch.Tensor, template: torch.Tensor) -> PoseFit:
    """Umeyama similarity fit of (F, N, 3) image-space landmarks to the (N, 3) template.

    Only the first ``template.shape[0]`` landmarks are used, so 478-point output (with irises)
    can be passed as is. Runs in the landmarks' dtype (float32 is ample: the 3x3 SVD is well
    conditioned for real faces) and device; no host synchronisation. Half-precision input is
    promoted to float32 (the SVD has no half kernels).
    """
    points = points_img.float() if points_img.element_size() < 4 else points_img
    template = template.to(points)
    cam = image_to_camera(points[:, : template.shape[0]])
    mu_p = cam.mean(dim=1)
    mu_t = template.mean(dim=0)
    p = cam - mu_p[:, None, :]
    q = template - mu_t
    cov = p.transpose(1, 2) @ q / q.shape[0]  # (F, 3, 3) = E[p q^T]
    u, sig, vh = torch.linalg.svd(cov)
    # Reflection guard: force det(R) = +1 by flipping the weakest singular direction if needed.
    d = torch.ones_like(sig)
    d[:, 2] = torch.sign(torch.linalg.det(u) * torch.linalg.det(vh))
    rot = (u * d[:, None, :]) @ vh
    var_t = (q**2).sum(dim=1).mean()
    scale = (sig * d).sum(dim=1) / var_t
    trans = mu_p - scale[:, None] * (mu_t @ rot.transpose(1, 2))
    return PoseFit(rotation=rot, scale=scale, translation_cam=trans)
