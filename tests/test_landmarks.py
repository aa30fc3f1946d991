"""FaceMesh V1 landmarks through the front end's ``locate``: ROI geometry, crop/back-projection
agreement, and parity with MediaPipe itself.

tests/data/mediapipe_reference.json holds MediaPipe 0.10.21's own FaceMesh output on the test
photos (scripts/record_mediapipe_reference.py); our torch pipeline must land on the same points.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from face3d.models.nets.frontend import Located
from face3d.models.nets.landmark_spec import SPECS, landmark_spec
from face3d.models.nets.landmarks import load_face_mesh
from face3d.service.config import default_cache_dir
from scripts.photos import PHOTO_NAMES, photo
from tests.front_ends import as_batch, front_end, locate

REFERENCE = Path(__file__).parent / "data" / "mediapipe_reference.json"
MEDIAN_TOLERANCE_PX = 1.5
MAX_TOLERANCE_PX = 4.0


SPEC = SPECS["468"]  # the geometry of both V1 nets (468 and 478 share their graph's conventions)


@cache
def photos_result(model: str) -> Located:
    """All test photos in one batch, once per model (shared by the tests below)."""
    return locate(model, [photo(name) for name in PHOTO_NAMES])


@pytest.mark.parametrize("model", ["468", "478"])
@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_matches_mediapipe_reference(model: str, name: str) -> None:
    expected = json.loads(REFERENCE.read_text())["photos"][name][f"landmarks_{model}"]
    result = photos_result(model)
    ours = result.landmarks[result.face_image == PHOTO_NAMES.index(name)].numpy()
    assert len(ours) == len(expected) >= 1
    assert ours.shape[1] == int(model)
    for reference in map(np.asarray, expected):
        centroid = reference[:, :2].mean(axis=0)
        match = ours[np.argmin([np.linalg.norm(face[:, :2].mean(axis=0) - centroid) for face in ours])]
        error = np.linalg.norm(match - reference, axis=1)
        assert np.median(error) <= MEDIAN_TOLERANCE_PX, f"median {np.median(error):.2f} px"
        assert error.max() <= MAX_TOLERANCE_PX, f"worst point {error.argmax()} off by {error.max():.2f} px"


@pytest.mark.parametrize("model", ["468", "478"])
def test_landmarks_lie_on_the_detected_face(model: str) -> None:
    result = photos_result(model)
    assert result.face_image.tolist() == [0, 1, 2, 3]
    assert torch.all(result.presence > 0.9)
    for box, points in zip(result.boxes, result.landmarks, strict=True):
        xy = points[:, :2]
        inside = ((xy >= box[:2]) & (xy <= box[2:])).all(dim=1).float().mean()
        assert inside >= 0.9  # the box ends at the brows: only the forehead edge may stick out
        half_roi = (box[2:] - box[:2]).max() * 0.75
        assert torch.all((xy - (box[:2] + box[2:]) / 2).abs() <= half_roi)


def test_irises_sit_inside_their_eyes() -> None:
    points = photos_result("478").landmarks
    for iris_centre, eye_corners, eye_lids in ((468, (33, 133), (159, 145)), (473, (263, 362), (386, 374))):
        centre = points[:, iris_centre, :2]
        xs = points[:, list(eye_corners), 0]
        ys = points[:, list(eye_lids), 1]
        assert torch.all((centre[:, 0] > xs.min(1).values) & (centre[:, 0] < xs.max(1).values))
        assert torch.all((centre[:, 1] > ys.min(1).values - 2) & (centre[:, 1] < ys.max(1).values + 2))


def test_batched_equals_single() -> None:
    """Equal up to float noise, which the 8-bit crops (models/nets/sampling.py crop_quads) can turn into
    one level at a pixel whose value sits on .5: measured at most 0.004 px."""
    together = photos_result("478")
    for k, name in enumerate(PHOTO_NAMES):
        alone = locate("478", [photo(name)])
        assert torch.allclose(alone.landmarks, together.landmarks[together.face_image == k], atol=0.01)
        assert torch.allclose(alone.presence, together.presence[together.face_image == k], atol=1e-5)


def test_no_face_gives_empty_result() -> None:
    noise = np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    result = locate("468", [noise])
    assert result.landmarks.shape == (0, 468, 3) and result.face_image.shape == (0,)


def test_presence_separates_faces_from_noise() -> None:
    batch, sizes = as_batch([photo("astronaut")])
    face = torch.tensor([[225.0, 131.0, 144.0, 144.0, 0.0]])  # roughly the astronaut's face ROI
    crops = SPEC.crops(batch, sizes, torch.tensor([0]), face)
    side = SPEC.input_size
    noise = torch.rand((1, 3, side, side), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, presence = front_end("468").mesh(torch.cat([crops, noise]))
    assert presence[0] > 0.9 and presence[1] < 0.5


def test_roi_is_the_enlarged_square_turned_to_the_eyes() -> None:
    boxes = torch.tensor([[10.0, 20.0, 110.0, 60.0]])
    eyes = torch.tensor([[[40.0, 30.0], [80.0, 70.0], *[[0.0, 0.0]] * 4]])
    for spec in (SPECS["468"], SPECS["478"]):
        roi = spec.rois(boxes, eyes)[0]
        assert roi[:4].tolist() == pytest.approx([60.0, 40.0, 150.0, 150.0])
        assert roi[4].item() == pytest.approx(math.pi / 4)
        flipped = spec.rois(boxes, eyes.flip(1).roll(-4, dims=1))[0]  # eyes swapped: upside down
        assert flipped[4].item() == pytest.approx(-3 * math.pi / 4)


def test_crop_and_back_projection_agree() -> None:
    """A pixel of the crop must show the image point that the spec's to_image maps it back to."""
    height, width = 200, 250
    ys, xs = np.mgrid[0:height, 0:width]
    gradient = np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint8)  # value = coordinate
    batch, sizes = as_batch([gradient])
    rois = torch.tensor([[120.0, 100.0, 120.0, 120.0, 0.3]])
    crop = SPEC.crops(batch, sizes, torch.tensor([0]), rois)[0] * 255
    grid = torch.stack(torch.meshgrid(torch.arange(192.0), torch.arange(192.0), indexing="xy"), dim=-1)
    points = torch.cat([grid.reshape(1, -1, 2), torch.full((1, 192 * 192, 1), 96.0)], dim=-1)
    image_points = SPEC.to_image(points, rois)[0]
    # crops are 8-bit like MediaPipe's: each value within half a level of the point's coordinate
    assert torch.allclose(crop[0].reshape(-1), image_points[:, 0], atol=0.5 + 1e-3)
    assert torch.allclose(crop[1].reshape(-1), image_points[:, 1], atol=0.5 + 1e-3)
    assert torch.allclose(image_points[:, 2], torch.tensor(96.0 * 120 / 192))
    assert torch.allclose(image_points[192 * 96 + 96, :2], torch.tensor([120.0, 100.0]))


def test_unknown_model_is_refused() -> None:
    with pytest.raises(ValueError, match="468"):
        load_face_mesh("500", default_cache_dir())
    with pytest.raises(ValueError, match="468, 478, v2"):
        landmark_spec("500")
