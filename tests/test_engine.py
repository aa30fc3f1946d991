"""The facemesh backend end to end on real photos: faces, landmarks, pose, texture, batching, and the
front end it stands on (see also test_compiled)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from face3d.models.backends.base import BackendConfig
from face3d.models.backends.facemesh.backend import FacemeshBackend
from face3d.models.nets.frontend import FrontEnd
from face3d.service.config import default_cache_dir
from scripts.photos import PHOTO_NAMES, photo


def _side_by_side(left: np.ndarray, right: np.ndarray, height: int = 512) -> np.ndarray:
    """Two photos on one canvas, the right one smaller, so two faces of different size are present."""
    a = np.asarray(Image.fromarray(left).resize((height, height)))
    b = np.asarray(Image.fromarray(right).resize((height // 2, height // 2)))
    canvas = np.full((height, height + height // 2, 3), 255, np.uint8)
    canvas[:, :height] = a
    canvas[: height // 2, height:] = b
    return canvas


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_real_photo_gives_one_textured_face(facemesh: FacemeshBackend, name: str) -> None:
    image = photo(name)
    (rec,) = facemesh.reconstruct([image], uv_size=512)
    assert (rec.width, rec.height) == (image.shape[1], image.shape[0])
    assert len(rec.faces) == 1
    face = rec.faces[0]
    x0, y0, x1, y1 = face.bbox
    assert 0.5 < face.score <= 1.0
    assert face.landmarks.shape == (478, 3)
    inside = (
        (face.landmarks[:, 0] > x0 - 0.25 * (x1 - x0))
        & (face.landmarks[:, 0] < x1 + 0.25 * (x1 - x0))
        & (face.landmarks[:, 1] > y0 - 0.5 * (y1 - y0))
        & (face.landmarks[:, 1] < y1 + 0.25 * (y1 - y0))
    )
    assert inside.mean() > 0.98, "landmarks must lie on the detected face"
    assert face.vertices.shape == (468, 3)
    assert abs(face.pose.yaw) < 40 and abs(face.pose.pitch) < 40 and abs(face.pose.roll) < 40
    np.testing.assert_allclose(face.pose.rotation @ face.pose.rotation.T, np.eye(3), atol=1e-4)
    assert face.texture.shape == (512, 512, 3) and face.texture.dtype == np.uint8
    assert 0.6 < face.coverage <= 1.0
    centre = face.texture[192:320, 192:320].reshape(-1, 3).astype(float)
    assert centre.std(axis=0).mean() > 5, "the face region of the texture must carry image detail"
    assert set(rec.timings_ms) >= {"detect", "landmarks", "bake"}


def test_model_space_is_frontal_and_centimetre_sized(facemesh: FacemeshBackend) -> None:
    (rec,) = facemesh.reconstruct([photo("face_001")], uv_size=256)
    v = rec.faces[0].vertices
    width = v[:, 0].max() - v[:, 0].min()
    assert 10 < width < 20, f"a face is ~14 cm wide, got {width:.1f}"
    nose_tip = 1  # MediaPipe index of the nose tip: the most forward point of a frontal face
    assert v[nose_tip, 2] > np.percentile(v[:, 2], 95)


def test_batched_equals_one_by_one(facemesh: FacemeshBackend) -> None:
    images = [photo(n) for n in PHOTO_NAMES]
    together = facemesh.reconstruct(images, uv_size=256)
    for image, rec in zip(images, together, strict=True):
        (alone,) = facemesh.reconstruct([image], uv_size=256)
        np.testing.assert_allclose(rec.faces[0].landmarks, alone.faces[0].landmarks, atol=1e-2)
        assert np.abs(rec.faces[0].texture.astype(int) - alone.faces[0].texture).max() <= 1


def test_blank_image_has_no_face(facemesh: FacemeshBackend) -> None:
    (rec,) = facemesh.reconstruct([np.full((300, 400, 3), 128, np.uint8)], uv_size=256)
    assert rec.faces == []


def test_all_faces_largest_first(facemesh: FacemeshBackend) -> None:
    canvas = _side_by_side(photo("face_001"), photo("image00021"))
    (single,) = facemesh.reconstruct([canvas], uv_size=256)
    (both,) = facemesh.reconstruct([canvas], uv_size=256, all_faces=True)
    assert len(single.faces) == 1 and len(both.faces) == 2
    areas = [(f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]) for f in both.faces]
    assert areas[0] > areas[1]
    assert both.faces[0].bbox[0] < 512 <= both.faces[1].bbox[0]


def test_more_images_than_the_largest_bucket() -> None:
    small = FacemeshBackend(BackendConfig(cache_dir=default_cache_dir(), buckets=(1, 2)))
    small.load("cpu")
    images = [photo("image00021")] * 3 + [np.zeros((64, 64, 3), np.uint8)]
    recs = small.reconstruct(images, uv_size=256)
    assert [len(r.faces) for r in recs] == [1, 1, 1, 0]


def test_reduced_precision_is_refused_on_cpu() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        FrontEnd(dtype=torch.float16, cache_dir=default_cache_dir())


def test_describe_names_weights(facemesh: FacemeshBackend) -> None:
    info = facemesh.describe()
    assert info["backend"] == "facemesh" and "backend" not in facemesh.front_end.describe()
    assert info["landmarks"] == 478 and info["device"] == "cpu"
    assert all(len(h) == 64 for h in info["weights"].values())
    # both detectors, landmark net and (for 478-point nets) the blendshape net, with source and licence
    assert len(info["weights"]) == 4 and {w["name"] for w in info["weight_files"]} == set(info["weights"])
    assert all(w["licence"] and w["source"] for w in info["weight_files"])


def test_faces_the_landmark_net_rejects_are_dropped(
    facemesh: FacemeshBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    front_end = facemesh.front_end
    assert front_end is not None
    strict = dataclasses.replace(front_end.spec, presence_threshold=1.01)  # reject every detection
    monkeypatch.setattr(front_end, "spec", strict)
    (rec,) = facemesh.reconstruct([photo("astronaut")], uv_size=256)
    assert rec.faces == []


def test_texture_does_not_depend_on_batch_mates(facemesh: FacemeshBackend) -> None:
    small = photo("image00021")
    big = np.asarray(Image.fromarray(photo("face_001")).resize((1400, 1400)))
    (alone,) = facemesh.reconstruct([small], uv_size=1024)
    together = facemesh.reconstruct([small, big], uv_size=1024)
    assert np.abs(alone.faces[0].texture.astype(int) - together[0].faces[0].texture).max() <= 1
