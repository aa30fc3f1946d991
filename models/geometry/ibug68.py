"""The 68-point iBUG (300-W / dlib) landmark scheme as a subset of MediaPipe's 468 mesh vertices.

Why: most face tooling (dlib, face-alignment, 300-W metrics, morphable-model fitters) speaks the
68-point scheme, so the result JSON offers it next to the full mesh. iBUG points are not all
mesh vertices, so each one is the MediaPipe vertex that lies on the same facial contour at the
same relative position; the mapping is fixed and checked by tests against MediaPipe's own
contour lists (face oval, eyes, brows, nose, lips) and its left/right symmetry.

Conventions follow iBUG: "right" is the subject's right (the image's left in a non-mirrored
photo); the jaw runs from the subject's right ear to the left; eyes start at the outer corner and
go clockwise in the image; MediaPipe's ``RIGHT_*`` contours are likewise the subject's right.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

# iBUG index ranges (half-open) -> region name, in iBUG order.
REGIONS = MappingProxyType(
    {
        "jaw": (0, 17),
        "right_eyebrow": (17, 22),
        "left_eyebrow": (22, 27),
        "nose_bridge": (27, 31),
        "nose_base": (31, 36),
        "right_eye": (36, 42),
        "left_eye": (42, 48),
        "outer_lips": (48, 60),
        "inner_lips": (60, 68),
    }
)

JAW = slice(*REGIONS["jaw"])  # 0-16, on the face's outline: a turned face's silhouette

IBUG68_FROM_MEDIAPIPE: tuple[int, ...] = (
    # 0-16 jaw, along MediaPipe's face oval: subject's right, at eye level -> chin (152) -> left.
    # Picked so heights match iBUG's (0 at the eye corners, 3 at the nose base, 4 at the mouth).
    127, 234, 93, 132, 58, 172, 150, 176, 152, 400, 379, 397, 288, 361, 323, 454, 356,
    # 17-21 right eyebrow (upper edge), outer -> inner
    70, 63, 105, 66, 107,
    # 22-26 left eyebrow (upper edge), inner -> outer
    336, 296, 334, 293, 300,
    # 27-30 nose bridge, nasion -> tip
    168, 197, 5, 4,
    # 31-35 nose base, right alar -> subnasale (2) -> left alar
    98, 97, 2, 326, 327,
    # 36-41 right eye: outer corner, upper lid x2, inner corner, lower lid x2
    33, 160, 158, 133, 153, 144,
    # 42-47 left eye: inner corner, upper lid x2, outer corner, lower lid x2
    362, 385, 387, 263, 373, 380,
    # 48-59 outer lips: right corner, upper lip -> left corner, lower lip back
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    # 60-67 inner lips: right corner, upper -> left corner, lower back
    78, 82, 13, 312, 308, 317, 14, 87,
)  # fmt: skip

IBUG68_INDEX = np.asarray(IBUG68_FROM_MEDIAPIPE, dtype=np.int64)
IBUG68_INDEX.setflags(write=False)


MEDIAPIPE_MESH_POINTS = 468


def ibug68(landmarks: np.ndarray) -> np.ndarray:
    """(N >= 468, C) MediaPipe landmarks -> (68, C) iBUG points, same coordinates."""
    if landmarks.shape[0] < MEDIAPIPE_MESH_POINTS:
        raise ValueError(f"need the 468 MediaPipe mesh points, got {landmarks.shape[0]}")
    return landmarks[IBUG68_INDEX]
