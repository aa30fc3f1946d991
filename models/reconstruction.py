"""Result types shared by the backends, the exporters, the CLI and the service.

Coordinate conventions (documented once, used everywhere):

* Image space: pixels of the EXIF-corrected input, origin top-left, x right, y down.
  ``landmarks[:, 2]`` is depth in the same pixel scale, smaller = closer to the camera
  (MediaPipe's convention), relative to the face centre.
* Model space (OBJ/GLB vertices): right-handed, +Y up, +X towards the subject's left
  (viewer's right), +Z out of the face towards the camera; units are centimetres, the template
  being scaled so that the distance between the eye centres is 6.3 cm (facemesh; the ict backend's
  head is in the ICT model's own centimetres, the scale the fit estimates). Vertices are the
  subject's own shape in a frontal pose; the head pose lives separately in ``Pose``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Pose:
    """Similarity transform mapping model space to image space: ``img ≈ s · R · v + t``.

    ``rotation`` is expressed in a Y-up camera frame (x right, y up, z towards the camera);
    yaw/pitch/roll are intrinsic Y-X-Z Euler angles of it, in degrees (yaw > 0: the subject
    turns towards the image's right... see models/geometry/pose.py for the exact definition).
    ``translation`` is in image pixels (x, y of the mesh origin; z relative depth).
    """

    rotation: np.ndarray  # (3, 3) float
    yaw: float
    pitch: float
    roll: float
    scale: float  # image pixels per model centimetre
    translation: np.ndarray  # (3,) float


@dataclass(frozen=True)
class FaceModel:
    """A morphable-model fit of one face (backend ``ict``): what the parameters and exports need.

    ``vertices`` of the ``Face`` are ``base_vertices`` plus the expression shapes at ``expression``
    weights (the fitted head); ``base_vertices`` are the identity alone with a neutral expression,
    the base mesh a GLB's morph targets apply to.
    """

    identity: np.ndarray  # (100,) float32 coefficients, a priori N(0, 1)
    expression: np.ndarray  # (53,) float32 weights in [0, 1], in ``expression_names`` order
    expression_names: tuple[str, ...]
    base_vertices: np.ndarray  # (V, 3) float32 model space: identity only, neutral expression
    landmarks_68: np.ndarray  # (68, 3) float32 image space: the model's 68 landmark vertices, posed
    fit_residual_px: float  # mean image-plane distance of the fitted landmarks to the net's, pixels
    lighting: np.ndarray | None = None  # (3, 9) the photo's SH lighting (models/backends/ict/lighting.py)
    lighting_removed: bool = True  # the texture is evenly lit (lighting="remove") or as photographed


@dataclass
class Face:
    """One reconstructed face."""

    bbox: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    score: float  # detector confidence, 0..1
    landmarks: np.ndarray  # (N, 3) float32, image space; N = 468 or 478 (with irises)
    vertices: np.ndarray  # (V, 3) float32, model space (see module docstring); V = 468 for facemesh
    pose: Pose
    texture: np.ndarray  # (uv_size, uv_size, 3) uint8 RGB, UV layout of the backend's topology
    coverage: float  # fraction of the face's UV area that saw the photo directly, 0..1
    model: FaceModel | None = None  # morphable-model backends only; vertices then follow its layout
    blendshapes: dict[str, float] | None = None  # MediaPipe's 52 ARKit-named scores (478-point nets)


@dataclass
class Reconstruction:
    """Everything a backend found in one input image."""

    width: int
    height: int
    faces: list[Face]  # largest first; empty when no face was found
    timings_ms: dict[str, float] = field(default_factory=dict)  # per stage, amortised over the batch


def face_from_host(host: dict[str, Any], k: int, model: FaceModel | None = None) -> Face:
    """Face ``k`` of a batch whose per-face arrays were copied to the host in one go (every backend
    copies the same keys: boxes, scores, landmarks, vertices, rotation, euler, scale, translation,
    textures, coverage, blendshapes)."""
    yaw, pitch, roll = (float(a) for a in host["euler"][k])
    return Face(
        bbox=tuple(float(v) for v in host["boxes"][k]),
        score=float(host["scores"][k]),
        landmarks=host["landmarks"][k],
        vertices=host["vertices"][k],
        pose=Pose(
            rotation=host["rotation"][k],
            yaw=yaw,
            pitch=pitch,
            roll=roll,
            scale=float(host["scale"][k]),
            translation=host["translation"][k],
        ),
        texture=host["textures"][k],
        coverage=float(host["coverage"][k]),
        model=model,
        blendshapes=None if host["blendshapes"] is None else host["blendshapes"][k],
    )


def per_image(
    images: Sequence[np.ndarray], faces: Sequence[list[Face]], stage_ms: dict[str, float]
) -> list[Reconstruction]:
    """One Reconstruction per image of a batched call; stage timings are each image's share."""
    share = {stage: ms / len(images) for stage, ms in stage_ms.items()}
    return [
        Reconstruction(int(im.shape[1]), int(im.shape[0]), found, dict(share))
        for im, found in zip(images, faces, strict=True)
    ]


PhotoStatus = Literal["fitted", "no-face", "outlier"]
"""A person-mode photo's part in the head: ``fitted`` (in the joint fit and the bake), ``no-face`` (none
found) or ``outlier`` (its own identity lies far from the other photos': left out, not averaged in)."""


@dataclass
class PersonPhoto:
    """One photo of a person-mode reconstruction (several photos of one person, one head).

    ``face`` is the photo's own face: for a fitted photo its landmarks, pose and expression with the
    person's joint identity; for an outlier its single-photo fit (what made it an outlier); none
    without a face. Its ``texture`` is empty: the head has the one texture, baked from every fitted photo.
    """

    width: int
    height: int
    status: PhotoStatus
    name: str = ""  # the photo's file name as uploaded (set by whoever read it)
    face: Face | None = None
    identity_distance_mm: float | None = None  # RMS at the landmarks, own identity vs the photos' median
    texture_share: float = 0.0  # share of the head's photo-backed texels this photo supplies, 0..1


@dataclass
class PersonReconstruction(Reconstruction):
    """Several photos of one person as one head: ``faces`` holds that head alone (the reference photo's
    landmarks, pose and expression, the joint identity, the texture baked from every fitted photo);
    ``width`` and ``height`` are the reference photo's. ``photos`` has one entry per input, in order."""

    photos: list[PersonPhoto] = field(default_factory=list)
    reference: int = 0  # the input whose pose and expression the head carries (the most frontal)
    seen_share: float = 0.0  # share of the head's texels that some photo shows (weight >= 0.5)
    reference_seen_share: float = 0.0  # the same from the reference photo alone
