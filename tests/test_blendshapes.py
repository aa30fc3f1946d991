"""Blendshapes: MediaPipe's landmark subset and names, agreement with MediaPipe's own Face Landmarker
scores (tests/data/face_landmarker_reference.json), and behaviour on real photos: smiles, neutral
faces, mirrored photos."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from face3d.models.nets.blendshapes import (
    BLENDSHAPE_NAMES,
    LANDMARK_SUBSET,
    BlendshapeNet,
    as_dict,
    load_blendshapes,
    mirrored_name,
)
from face3d.service.config import default_cache_dir
from scripts.annotated_photos import all_photos
from tests.front_ends import locate

REFERENCE = Path(__file__).parent / "data" / "face_landmarker_reference.json"
TARGET = 0.05  # the bound on |ours - MediaPipe| per score (measured worst: 0.018)
SIDES = np.array([BLENDSHAPE_NAMES.index(mirrored_name(n)) for n in BLENDSHAPE_NAMES])


@cache
def net() -> BlendshapeNet:
    return load_blendshapes(default_cache_dir()).eval()


@cache
def reference() -> dict:
    return json.loads(REFERENCE.read_text())["photos"]


@cache
def pipeline_scores(name: str, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Our landmarks (F,478,3) and blendshape scores (F,52) of a photo, faces largest first: what
    the front end hands every backend."""
    image = all_photos()[name][:, ::-1] if mirrored else all_photos()[name]
    found = locate("v2", [image])
    assert found.blendshapes is not None
    return found.landmarks.numpy(), found.blendshapes.numpy()


def reference_faces(name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """MediaPipe's (landmarks (478,3), scores (52,)) per face of a photo."""
    return [
        (np.asarray(face["landmarks"]), np.array([face["blendshapes"][n] for n in BLENDSHAPE_NAMES]))
        for face in reference()[name]["faces"]
    ]


def scores_of(landmarks: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net()(torch.as_tensor(landmarks, dtype=torch.float32))[0].numpy()


def test_names_and_subset_are_mediapipes() -> None:
    assert len(BLENDSHAPE_NAMES) == 52 == len(set(BLENDSHAPE_NAMES))
    assert BLENDSHAPE_NAMES[:4] == ("_neutral", "browDownLeft", "browDownRight", "browInnerUp")
    assert BLENDSHAPE_NAMES[-2:] == ("noseSneerLeft", "noseSneerRight")
    assert len(LANDMARK_SUBSET) == 146 == len(set(LANDMARK_SUBSET)) and max(LANDMARK_SUBSET) == 477
    assert list(LANDMARK_SUBSET) == sorted(LANDMARK_SUBSET)
    for name, entry in reference().items():
        for face in entry["faces"]:
            assert list(face["blendshapes"]) == list(BLENDSHAPE_NAMES), name
    assert mirrored_name("eyeBlinkLeft") == "eyeBlinkRight" and mirrored_name("jawOpen") == "jawOpen"
    assert as_dict(torch.zeros(2, 52))[1]["mouthSmileLeft"] == 0.0


@pytest.mark.parametrize("name", [n for n in json.loads(REFERENCE.read_text())["photos"] if n != "einstein"])
def test_matches_mediapipe_scores(name: str) -> None:
    """From MediaPipe's own landmarks the net matches MediaPipe's scores to rounding; from our V2
    landmarks within the issue's 0.05."""
    landmarks, scores = pipeline_scores(name)
    for mp_landmarks, mp_scores in reference_faces(name):
        assert np.abs(scores_of(mp_landmarks[None])[0] - mp_scores).max() <= 2e-3
        k = int(np.argmin(np.linalg.norm(landmarks[:, :, :2].mean(1) - mp_landmarks[:, :2].mean(0), axis=1)))
        difference = np.abs(scores[k] - mp_scores)
        worst = f"{BLENDSHAPE_NAMES[difference.argmax()]}: {difference.max():.3f}"
        assert difference.max() <= TARGET, worst


def test_scores_ignore_where_and_how_large_the_face_is() -> None:
    """The net centres the points and divides by their spread, so pixel conventions (offsets) and
    image scale do not matter; only the shape does."""
    landmarks = reference_faces("astronaut")[0][0][None]
    moved = landmarks * 3.7 + np.array([100.5, -40.25, 7.0])
    np.testing.assert_allclose(scores_of(moved), scores_of(landmarks), atol=1e-4)
    squashed = landmarks * np.array([1.0, 0.7, 1.0])
    assert np.abs(scores_of(squashed) - scores_of(landmarks)).max() > 0.05


def test_batched_equals_single() -> None:
    faces = np.stack([f[0] for name in ("astronaut", "breakingbad", "lenna") for f in reference_faces(name)])
    together = scores_of(faces)
    singles = np.concatenate([scores_of(face[None]) for face in faces])
    np.testing.assert_allclose(together, singles, atol=1e-5)


def test_a_broad_smile_scores_high_and_neutral_faces_low() -> None:
    smile = BLENDSHAPE_NAMES.index("mouthSmileLeft"), BLENDSHAPE_NAMES.index("mouthSmileRight")
    assert (pipeline_scores("astronaut")[1][0, list(smile)] > 0.7).all()  # a broad, toothy smile
    for name in ("image00021", "merge_action", "lenna", "breakingbad"):  # closed-mouth, straight faces
        assert (pipeline_scores(name)[1][:, list(smile)] < 0.1).all(), name


@pytest.mark.parametrize("name", ["merge_action", "lenna", "tongue", "breakingbad"])
def test_a_mirrored_photo_swaps_left_and_right(name: str) -> None:
    """On these photos the eyes look sideways (and tongue's smile is lopsided). Mirrored, the gaze
    scores must swap sides, and the whole score vector must match the original better with Left and
    Right swapped than as it is. (The pipeline is not exactly mirror-symmetric: on symmetric
    faces single scores move by up to ~0.3 when the photo is mirrored, so only strong signals and
    the whole vector are compared.)"""
    original = pipeline_scores(name)[1][0]
    mirrored = pipeline_scores(name, mirrored=True)[1][0]
    gaze = [i for i, n in enumerate(BLENDSHAPE_NAMES) if n.startswith("eyeLook")]
    looking = [i for i in gaze if original[i] - original[SIDES[i]] > 0.3]
    assert looking, "the eyes must look sideways"
    for i in looking:
        assert mirrored[SIDES[i]] - mirrored[i] > 0.3, BLENDSHAPE_NAMES[i]
    swapped, unswapped = np.abs(mirrored[SIDES] - original).sum(), np.abs(mirrored - original).sum()
    assert swapped < unswapped, (swapped, unswapped)


def test_half_precision_does_not_overflow() -> None:
    """In float16 the net's own normalisation would overflow on large faces (squared offsets over
    65504); BlendshapeNet normalises in float32 first."""
    faces = np.stack([f[0] for name in ("tongue", "breakingbad") for f in reference_faces(name)])
    half = load_blendshapes(default_cache_dir()).eval().half()
    with torch.no_grad():
        scores = half(torch.as_tensor(faces, dtype=torch.float32))[0].numpy()
    assert np.abs(scores - scores_of(faces)).max() <= 0.01
