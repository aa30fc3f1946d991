"""Record MediaPipe's own FaceMesh landmarks on the test photos into tests/data/mediapipe_reference.json.

Why: models/nets/detector.py and models/nets/landmarks.py re-implement MediaPipe's face pipeline in torch; the
only trustworthy yardstick for "the same landmarks" is MediaPipe itself, run once, offline, with the
very TFLite files we ship (same pinned wheel version). tests/test_landmarks.py compares against it.

mediapipe pins numpy<2 and pulls jax, so it never enters the project's venv. Run from the repository
root, in a throwaway venv:

    python3 -m venv /tmp/mpvenv
    /tmp/mpvenv/bin/pip install mediapipe==0.10.21 scikit-image pillow
    /tmp/mpvenv/bin/python scripts/record_mediapipe_reference.py

Settings: static image mode (detection on every image, no tracking), up to 4 faces, detection and
presence thresholds 0.5, once with ``refine_landmarks=False`` (468 points, face_landmark.tflite) and
once with ``refine_landmarks=True`` (478 points, face_landmark_with_attention.tflite). Landmarks are
stored in image pixels (x*W, y*H, z*W: MediaPipe scales z like x), rounded to 0.01, faces in
MediaPipe's output order (detection score).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import mediapipe as mp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from face3d.models.nets.assets import MEDIAPIPE_VERSION  # noqa: E402
from scripts.photos import PHOTO_NAMES, photo  # noqa: E402

OUTPUT = ROOT / "tests" / "data" / "mediapipe_reference.json"
MAX_FACES = 4


def face_landmarks_px(image: np.ndarray, refine: bool) -> list[list[list[float]]]:
    """MediaPipe FaceMesh on one RGB image: per face, (N, 3) landmarks in image pixels."""
    height, width = image.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True,
        max_num_faces=MAX_FACES,
        refine_landmarks=refine,
        min_detection_confidence=0.5,
        min_tracking_confidence=0.5,
    ) as mesh:
        result = mesh.process(image)
    faces = []
    for face in result.multi_face_landmarks or []:
        points = np.array([(p.x * width, p.y * height, p.z * width) for p in face.landmark])
        faces.append(np.round(points, 2).tolist())
    return faces


def main() -> None:
    if mp.__version__ != MEDIAPIPE_VERSION:
        raise SystemExit(f"need mediapipe=={MEDIAPIPE_VERSION} (the pinned weights), found {mp.__version__}")
    photos = {}
    for name in PHOTO_NAMES:
        image = np.ascontiguousarray(photo(name))
        photos[name] = {
            "width": image.shape[1],
            "height": image.shape[0],
            "pixels_sha256": hashlib.sha256(image.tobytes()).hexdigest(),
            "landmarks_468": face_landmarks_px(image, refine=False),
            "landmarks_478": face_landmarks_px(image, refine=True),
        }
        counts = {k: len(v) for k, v in photos[name].items() if k.startswith("landmarks")}
        print(f"{name}: {image.shape[1]}x{image.shape[0]} faces {counts}")
    reference = {
        "mediapipe": MEDIAPIPE_VERSION,
        "settings": {"static_image_mode": True, "max_num_faces": MAX_FACES, "min_detection_confidence": 0.5},
        "units": "image pixels: x, y; z scaled like x (z*width), smaller = closer",
        "photos": photos,
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(reference, separators=(",", ":")) + "\n")
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
