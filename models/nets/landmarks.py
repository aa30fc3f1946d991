"""FaceMesh V1 landmark nets, batched over faces: face crops in, points in crop pixels and presence out.

MediaPipe's legacy FaceMesh graph (face_landmark_front), its net re-done in torch so that all faces of
a batch of images run as one (F,3,192,192) net call on any device. Two nets:

* ``"468"``: face_landmark.tflite, 468 points.
* ``"478"``: face_landmark_with_attention.tflite: the same 468 with lips and eyes refined by their
  own heads, plus 5 points per iris (MediaPipe's TensorsToFaceLandmarksWithAttention).

Which crops the nets take (square ROIs turned to the eyes) and how their points go back to the image
is their graph's convention, kept with V2's in models/nets/landmark_spec.py.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from face3d.models.nets.assets import asset_path
from face3d.models.nets.detector import module_dtype
from face3d.models.nets.tflite.loader import load_tflite

INPUT_SIZE = 192
MODEL_FILES = {"468": "face_landmark.tflite", "478": "face_landmark_with_attention.tflite"}

# Which of the 468 mesh points each refinement head of the attention model replaces (x, y only):
# index tables of MediaPipe's tensors_to_face_landmarks_with_attention.pbtxt, in head output order.
_LIPS = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
    76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408,
    62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407,
)  # fmt: skip
_LEFT_EYE = (
    33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
    130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190,
    226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189,
    35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245,
    156, 70, 63, 105, 66, 107, 55, 193,
)  # fmt: skip
_RIGHT_EYE = (
    263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,
    359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414,
    446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413,
    265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357, 465,
    383, 300, 293, 334, 296, 336, 285, 417,
)  # fmt: skip
_EYE_CONTOUR = 16  # the first 16 points of each eye table: the iris gets their mean depth


class FaceMeshNet(nn.Module):
    """Landmark net: crops (F,3,192,192) in [0, 1] -> (points (F,N,3) in crop pixels, presence (F,)).

    Fixed shapes and no host syncs, so ``torch.compile`` can take it whole. Points are in the
    192-pixel crop frame (z in the same scale); presence is the sigmoid of the face-flag logit.
    For the 478 model the refinement heads overwrite x, y of their mesh points, and each iris's 5
    points get the mean depth of that eye's contour, as MediaPipe assembles them.
    """

    def __init__(self, net: nn.Module, num_landmarks: int) -> None:
        super().__init__()
        if num_landmarks not in (468, 478):
            raise ValueError(f"num_landmarks must be 468 or 478, not {num_landmarks}")
        self.net = net
        self.num_landmarks = num_landmarks
        for name, table in (("lips", _LIPS), ("left_eye", _LEFT_EYE), ("right_eye", _RIGHT_EYE)):
            self.register_buffer(name, torch.tensor(table), persistent=False)

    def forward(self, crops: Tensor) -> tuple[Tensor, Tensor]:
        outputs = [out.float().flatten(1) for out in self.net(crops.to(module_dtype(self.net)))]
        faces = crops.shape[0]  # a SymInt under export (len() would fix the batch size)
        mesh = outputs[0].reshape(faces, 468, 3)
        presence = torch.sigmoid(outputs[-1][:, 0])
        if self.num_landmarks == 468:
            return mesh, presence
        lips, left_eye, right_eye, left_iris, right_iris = (o.reshape(faces, -1, 2) for o in outputs[1:6])
        xy = mesh[..., :2].clone()
        xy[:, self.lips] = lips
        xy[:, self.left_eye] = left_eye
        xy[:, self.right_eye] = right_eye
        depth = mesh[..., 2]
        left_z = depth[:, self.left_eye[:_EYE_CONTOUR]].mean(dim=1, keepdim=True).expand(-1, 5)
        right_z = depth[:, self.right_eye[:_EYE_CONTOUR]].mean(dim=1, keepdim=True).expand(-1, 5)
        iris_xy = torch.cat([left_iris, right_iris], dim=1)
        iris_z = torch.cat([left_z, right_z], dim=1)
        points = torch.cat([xy, depth[..., None]], dim=-1)
        irises = torch.cat([iris_xy, iris_z[..., None]], dim=-1)
        return torch.cat([points, irises], dim=1), presence


def load_face_mesh(model: str, cache_dir: Path) -> FaceMeshNet:
    """The landmark net ("468" or "478") built from the pinned, verified TFLite file."""
    if model not in MODEL_FILES:
        raise ValueError(f"landmark model must be one of {sorted(MODEL_FILES)}, not {model!r}")
    return FaceMeshNet(load_tflite(asset_path(MODEL_FILES[model], cache_dir)), int(model))
