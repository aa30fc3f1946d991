"""BlazeFace detection: anchors, letterbox, weighted NMS, and real detections on the test photos; the
full-range net against the TFLite interpreter (tests/test_profile_detection.py: against MediaPipe)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from face3d.models.nets.assets import asset_path
from face3d.models.nets.detector import (
    FULL_RANGE,
    Detections,
    FaceDetector,
    letterbox,
    load_face_detector,
    pad_images,
    select_faces,
    ssd_anchor_centres,
)
from face3d.models.nets.tflite.loader import load_tflite
from face3d.service.config import default_cache_dir
from scripts.photos import PHOTO_NAMES, photo


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return load_face_detector(default_cache_dir()).eval()


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.copy()).permute(2, 0, 1).contiguous()


@torch.no_grad()
def detect(detector: FaceDetector, images: list[np.ndarray], max_faces: int = 4) -> Detections:
    batch, sizes = pad_images([as_tensor(im) for im in images])
    x, frames = letterbox(batch, sizes)
    return select_faces(*detector(x), frames, max_faces=max_faces)


def test_anchor_layout_matches_short_range_model() -> None:
    anchors = ssd_anchor_centres()
    assert anchors.shape == (896, 2)
    # 16x16 cells x 2 anchors (stride 8), then 8x8 cells x 6 anchors (three stride-16 layers).
    assert torch.equal(anchors[0], anchors[1])
    assert torch.allclose(anchors[0], torch.tensor([0.5 / 16, 0.5 / 16]))
    assert torch.allclose(anchors[2], torch.tensor([1.5 / 16, 0.5 / 16]))
    assert torch.allclose(anchors[512], torch.tensor([0.5 / 8, 0.5 / 8]))
    assert torch.equal(anchors[512:518], anchors[512:513].expand(6, 2))
    assert torch.allclose(anchors[-1], torch.tensor([7.5 / 8, 7.5 / 8]))


def test_letterbox_centres_the_image_on_a_zero_border() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 256, 3), dtype=np.uint8)
    batch, sizes = pad_images([as_tensor(image)])
    x, frames = letterbox(batch, sizes)
    # Side 256 -> scale 2 exactly; the 64-row image is centred (rows 48..79), black above and below.
    assert frames.tolist() == [[256.0, 0.0, -96.0]]
    expected = torch.from_numpy(image[::2, ::2]).permute(2, 0, 1).float() * (2 / 255) - 1
    assert torch.allclose(x[0, :, 48:80], expected, atol=1e-6)
    assert torch.all(x[0, :, :48] == -1) and torch.all(x[0, :, 80:] == -1)


def test_weighted_nms_merges_overlaps_and_orders_by_area() -> None:
    boxes = torch.tensor([[[0.10, 0.10, 0.30, 0.30], [0.12, 0.10, 0.32, 0.30], [0.5, 0.5, 0.9, 0.9],
                           [0.0, 0.0, 1.0, 1.0]]])  # fmt: skip
    keypoints = boxes[:, :, None, :2].expand(-1, -1, 6, -1).clone()
    scores = torch.tensor([[0.9, 0.6, 0.8, 0.3]])  # the last is below the 0.5 threshold
    frames = torch.tensor([[100.0, 10.0, 20.0]])  # side 100, origin (10, 20)
    found = select_faces(boxes, keypoints, scores, frames, max_faces=4)
    assert found.valid.tolist() == [[True, True, False, False]]
    # Largest first: the lone box, then the score-weighted merge of the overlapping pair.
    assert torch.allclose(found.boxes[0, 0], torch.tensor([60.0, 70.0, 100.0, 110.0]))
    merged_x0 = (0.10 * 0.9 + 0.12 * 0.6) / 1.5 * 100 + 10
    assert torch.allclose(found.boxes[0, 1], torch.tensor([merged_x0, 30.0, merged_x0 + 20, 50.0]))
    assert torch.allclose(found.keypoints[0, 1, :, 0], torch.tensor(merged_x0))
    assert found.scores[0, :2].tolist() == pytest.approx([0.8, 0.9])
    only = select_faces(boxes, keypoints, scores, frames, max_faces=1)
    assert only.valid.shape == (1, 1) and torch.equal(only.boxes[0, 0], found.boxes[0, 0])


def test_early_stop_keeps_the_same_faces() -> None:
    """On CPU the NMS rounds stop once every candidate is merged; with max_faces=16 they never stop
    early, so the largest face of each image must be the same both ways."""
    gen = torch.Generator().manual_seed(5)
    centres = torch.rand((3, 4, 2), generator=gen) * 0.7  # four faces per image, 75 anchors each
    corner = centres.repeat_interleave(75, dim=1) + torch.rand((3, 300, 2), generator=gen) * 0.02
    boxes = torch.cat([corner, corner + 0.2 + torch.rand((3, 300, 2), generator=gen) * 0.02], dim=2)
    keypoints = boxes[:, :, None, :2].expand(-1, -1, 6, -1).clone()
    scores = torch.rand((3, 300), generator=gen)
    frames = torch.tensor([[100.0, 0.0, 0.0]]).expand(3, -1)
    every = select_faces(boxes, keypoints, scores, frames, max_faces=16)
    largest = select_faces(boxes, keypoints, scores, frames, max_faces=1)
    assert every.valid[:, 0].all() and torch.equal(largest.boxes[:, 0], every.boxes[:, 0])
    assert torch.equal(largest.scores[:, 0], every.scores[:, 0])


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_one_face_on_each_test_photo(detector: FaceDetector, name: str) -> None:
    image = photo(name)
    found = detect(detector, [image])
    assert found.valid.sum() == 1
    box, points, score = found.boxes[0, 0], found.keypoints[0, 0], found.scores[0, 0]
    height, width = image.shape[:2]
    assert score > 0.8
    assert 0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height
    assert box[2] - box[0] > 0.15 * width
    eyes_mouth_nose = points[:4]
    assert torch.all((eyes_mouth_nose >= box[:2]) & (eyes_mouth_nose <= box[2:]))
    assert points[0, 0] < points[1, 0]  # keypoint 0 (subject's right eye) is on the image's left


def test_largest_face_first_and_max_faces(detector: FaceDetector) -> None:
    face = photo("astronaut")[30:230, 125:325]
    canvas = np.zeros((200, 300, 3), np.uint8)
    canvas[50:150, 200:] = np.asarray(Image.fromarray(face).resize((100, 100)))
    canvas[:, :200] = face
    found = detect(detector, [canvas])
    assert found.valid.sum() == 2
    big, small = found.boxes[0, 0], found.boxes[0, 1]
    assert big[2] <= 200 <= small[0]
    assert (big[2] - big[0]) > 1.8 * (small[2] - small[0])
    one = detect(detector, [canvas], max_faces=1)
    assert torch.equal(one.boxes[0, 0], big)


def test_batched_detection_equals_single(detector: FaceDetector) -> None:
    images = [photo(name) for name in PHOTO_NAMES]
    together = detect(detector, images)
    for k, image in enumerate(images):
        alone = detect(detector, [image])
        assert torch.equal(alone.valid[0], together.valid[k])
        assert torch.allclose(alone.boxes[0], together.boxes[k], atol=1e-3)
        assert torch.allclose(alone.keypoints[0], together.keypoints[k], atol=1e-3)
        assert torch.allclose(alone.scores[0], together.scores[k], atol=1e-5)


def test_no_face_on_blank_or_noise(detector: FaceDetector) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    blank = np.full((256, 256, 3), 128, np.uint8)
    found = detect(detector, [noise, blank])
    assert not found.valid.any()
    image, boxes, points, scores = found.flatten()
    assert scores.shape == (0,)
    assert image.shape == (0,) and boxes.shape == (0, 4) and points.shape == (0, 6, 2)


def test_full_range_anchor_layout() -> None:
    """face_detection_full_range.pbtxt: one 48x48 layer (stride 4 of 192), one anchor per cell."""
    anchors = FULL_RANGE.anchors()
    assert anchors.shape == (2304, 2)
    assert torch.allclose(anchors[0], torch.tensor([0.5 / 48, 0.5 / 48]))
    assert torch.allclose(anchors[1], torch.tensor([1.5 / 48, 0.5 / 48]))
    assert torch.allclose(anchors[48], torch.tensor([0.5 / 48, 1.5 / 48]))
    assert torch.allclose(anchors[-1], torch.tensor([47.5 / 48, 47.5 / 48]))


def test_full_range_net_matches_tflite() -> None:
    """The sparse full-range net (DENSIFY, RESIZE_BILINEAR, DEPTH_TO_SPACE) rebuilt in torch gives
    the TFLite interpreter's outputs, batched."""
    from ai_edge_litert.interpreter import Interpreter

    path = asset_path(FULL_RANGE.weights_file, default_cache_dir())
    inputs = np.random.default_rng(7).uniform(-1, 1, (2, 192, 192, 3)).astype(np.float32)
    inputs[1] = np.asarray(Image.fromarray(photo("astronaut")).resize((192, 192)), np.float32) / 127.5 - 1
    net = load_tflite(path).eval()
    with torch.no_grad():
        ours = dict(zip(net.output_names, net(torch.from_numpy(inputs).permute(0, 3, 1, 2)), strict=True))
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    for k in range(len(inputs)):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], inputs[k : k + 1])
        interpreter.invoke()
        for out in interpreter.get_output_details():
            theirs = interpreter.get_tensor(out["index"])[0]
            assert np.abs(ours[out["name"]][k].numpy() - theirs).max() < 1e-3 * max(1.0, np.abs(theirs).max())


def test_replaced_takes_the_given_images_rows() -> None:
    def filled(value: float) -> Detections:
        return Detections(
            torch.full((3, 2, 4), value), torch.full((3, 2, 6, 2), value), torch.full((3, 2), value),
            torch.full((3, 2), value > 0),
        )  # fmt: skip

    merged = filled(0.0).replaced(torch.tensor([2]), Detections(*(t[:1] for t in vars(filled(1.0)).values())))
    assert merged.scores[:, 0].tolist() == [0.0, 0.0, 1.0] and merged.valid[:, 1].tolist() == [
        False,
        False,
        True,
    ]
