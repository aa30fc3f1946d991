"""52 ARKit-named blendshape scores per face from its 478 landmarks (MediaPipe's blendshape net).

MediaPipe's FaceBlendshapesGraph (mediapipe/tasks/cc/vision/face_landmarker/face_blendshapes_graph.cc,
0.10.21) takes 146 of the 478 landmarks (``LANDMARK_SUBSET``, in that order), converts them with
LandmarksToTensorCalculator (attributes X and Y only, not flattened) — normalised x times the image
width and y times the image height, i.e. image pixels — into a (1, 146, 2) tensor, runs
face_blendshapes.tflite and names the 52 outputs ``BLENDSHAPE_NAMES`` (index 0 ``_neutral``, then
ARKit's names). z is never used.

Our landmarks are already image pixels, so they go in as they are. The net itself starts by
subtracting the 146 points' centroid and dividing by their mean distance to it, so the half-pixel
offset between pixel conventions and the image's scale do not matter; a squashed image would, which
is why MediaPipe scales x and y by width and height separately rather than feeding normalised
coordinates.

Left/Right follow ARKit: the subject's own left and right (``mouthSmileLeft`` is the corner on the
image's right side in a non-mirrored photo).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from face3d.models.nets.assets import asset_path
from face3d.models.nets.detector import module_dtype
from face3d.models.nets.tflite.loader import load_tflite

MODEL_FILE = "face_blendshapes.tflite"

# kLandmarksSubsetIdxs of face_blendshapes_graph.cc: the net's 146 input points, in input order.
LANDMARK_SUBSET: tuple[int, ...] = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39,
    40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78, 80,
    81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133,
    136, 144, 145, 146, 148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160,
    161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246,
    249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295,
    296, 297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334,
    336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382,
    384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454,
    466, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477,
)  # fmt: skip

# kBlendshapeNames of face_blendshapes_graph.cc, in output order.
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft",
    "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)  # fmt: skip


def mirrored_name(name: str) -> str:
    """The blendshape of the other side (``eyeBlinkLeft`` <-> ``eyeBlinkRight``); others unchanged.

    ``jawLeft``/``mouthLeft`` and their Right twins swap too: a mirrored face moves the other way.
    """
    if name.endswith("Left"):
        return name[: -len("Left")] + "Right"
    if name.endswith("Right"):
        return name[: -len("Right")] + "Left"
    return name


class BlendshapeNet(nn.Module):
    """landmarks (F, 478, 2 or 3) in image pixels -> scores (F, 52) in [0, 1], ``BLENDSHAPE_NAMES`` order.

    One net call for all faces; fixed shapes, no host syncs, so ``torch.compile`` takes it whole.
    Returns a one-tuple, like the image nets: the front end runs, compiles and graphs them all alike.
    """

    names = BLENDSHAPE_NAMES

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("subset", torch.tensor(LANDMARK_SUBSET), persistent=False)

    def forward(self, landmarks: Tensor) -> tuple[Tensor]:
        if landmarks.shape[1] != 478:
            raise ValueError(f"blendshapes need the 478 Face Landmarker points, got {landmarks.shape[1]}")
        points = landmarks[:, self.subset, :2].float()
        # The net's own first step (centre, divide by the mean distance to the centre), done here in
        # float32 as well: in float16 the net's sum of squared pixel offsets overflows (> 65504) for
        # any face over ~350 px. On the normalised points the net's step changes nothing.
        centred = points - points.mean(dim=1, keepdim=True)
        normalised = centred / centred.norm(dim=-1).mean(dim=1)[:, None, None]
        return (self.net(normalised.to(module_dtype(self.net)))[0].float(),)


def load_blendshapes(cache_dir: Path) -> BlendshapeNet:
    """The blendshape net built from the pinned, verified face_blendshapes.tflite."""
    return BlendshapeNet(load_tflite(asset_path(MODEL_FILE, cache_dir)))


def as_dict(scores: Tensor) -> list[dict[str, float]]:
    """(F, 52) scores -> one ``{name: score}`` per face, in MediaPipe's order (for JSON results)."""
    return [dict(zip(BLENDSHAPE_NAMES, row, strict=True)) for row in scores.tolist()]
