"""Pose fit: recovers known synthetic similarity transforms, batched, with the documented conventions."""

from __future__ import annotations

import math

import pytest
import torch

from face3d.models.backends.facemesh.topology import load_topology
from face3d.models.geometry.pose import PoseFit, camera_to_image, fit_pose, image_to_camera


def euler_to_matrix(yaw: float, pitch: float, roll: float) -> torch.Tensor:
    """R = Ry(yaw) @ Rx(pitch) @ Rz(roll), degrees (the convention models/geometry/pose.py documents)."""
    a, b, c = (math.radians(x) for x in (yaw, pitch, roll))
    ry = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = torch.tensor([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = torch.tensor([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return ry @ rx @ rz


ANGLES = [(0.0, 0.0, 0.0), (35.0, -10.0, 5.0), (-50.0, 20.0, -15.0), (10.0, 40.0, 30.0)]


@pytest.fixture(scope="module")
def template() -> torch.Tensor:
    return torch.from_numpy(load_topology().template.copy())


@pytest.fixture(scope="module")
def truth() -> PoseFit:
    return PoseFit(
        rotation=torch.stack([euler_to_matrix(*a) for a in ANGLES]),
        scale=torch.tensor([12.0, 30.0, 7.5, 55.0]),
        translation_cam=torch.tensor(
            [[100.0, -80.0, 3.0], [640.0, -300.0, -20.0], [50.0, -60.0, 0.0], [900.0, -700.0, 10.0]]
        ),
    )


def test_recovers_rotation_scale_translation(template, truth):
    generator = torch.Generator().manual_seed(0)
    points = truth.to_image(template)
    points = points + 0.2 * torch.randn(points.shape, generator=generator)  # sub-pixel landmark noise
    fit = fit_pose(points, template)
    assert torch.allclose(fit.rotation, truth.rotation, atol=0.02)
    assert torch.allclose(fit.scale, truth.scale, rtol=0.01)
    assert torch.allclose(fit.translation, truth.translation, atol=1.0)
    assert torch.allclose(fit.euler_degrees(), torch.tensor(ANGLES), atol=1.0)
    assert torch.allclose(torch.linalg.det(fit.rotation), torch.ones(4), atol=1e-5)


def test_model_vertices_are_the_frontal_shape(template, truth):
    """A non-rigidly deformed subject comes back frontal, in cm, with its own deformation kept."""
    subject = template * torch.tensor([1.05, 1.0, 0.95])
    subject = subject - subject.mean(0) + template.mean(0)
    fit = fit_pose(truth.to_image(subject), template)
    assert torch.allclose(fit.to_model(truth.to_image(subject)), subject, atol=0.15)
    exact = fit_pose(truth.to_image(template), template)
    assert torch.allclose(exact.to_model(truth.to_image(template)), template.expand(4, -1, -1), atol=1e-3)


def test_euler_signs_match_the_image(template):
    """yaw > 0: nose towards the image's right; pitch > 0: nose down; roll > 0: the face's
    image-right eye goes up (counter-clockwise as seen)."""
    nose, left_eye = 1, 263  # nose tip; the subject's left eye corner (image right, +X)
    base = PoseFit(torch.eye(3)[None], torch.tensor([10.0]), torch.tensor([[0.0, 0.0, 0.0]]))
    frontal = base.to_image(template)[0]

    def posed(yaw: float, pitch: float, roll: float) -> torch.Tensor:
        fit = PoseFit(euler_to_matrix(yaw, pitch, roll)[None], base.scale, base.translation_cam)
        return fit.to_image(template)[0]

    assert posed(30, 0, 0)[nose, 0] > frontal[nose, 0]
    assert posed(0, 30, 0)[nose, 1] > frontal[nose, 1]  # image y grows downwards
    assert posed(0, 0, 30)[left_eye, 1] < frontal[left_eye, 1]
    fit = fit_pose(posed(30, 0, 0)[None], template)
    assert fit.euler_degrees()[0, 0] == pytest.approx(30.0, abs=0.01)


def test_accepts_478_points_and_never_returns_a_reflection(template, truth):
    points = truth.to_image(template)
    irises = points[:, :10] + 1.0
    fit = fit_pose(torch.cat([points, irises], dim=1), template)
    assert torch.allclose(fit.rotation, truth.rotation, atol=1e-3)
    half = fit_pose(points.half(), template)  # half-precision landmarks are fitted in float32
    assert half.rotation.dtype == torch.float32
    assert torch.allclose(half.rotation, truth.rotation, atol=0.01)
    mirrored = points * torch.tensor([-1.0, 1.0, 1.0])  # a left-right flipped face
    assert torch.allclose(torch.linalg.det(fit_pose(mirrored, template).rotation), torch.ones(4), atol=1e-5)


def test_frame_flip_is_an_involution():
    p = torch.tensor([[[1.0, 2.0, 3.0]]])
    assert torch.equal(image_to_camera(p), torch.tensor([[[1.0, -2.0, -3.0]]]))
    assert torch.equal(camera_to_image(image_to_camera(p)), p)
