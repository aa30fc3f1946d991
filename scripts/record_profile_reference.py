"""Record which faces MediaPipe's own pipelines find on the profile set: tests/data/profile_reference.json.

Why: issue 21 asks face3d to find faces at 60-90° yaw and under occlusion at least as often as
MediaPipe does on the same photos; MediaPipe itself, run once offline on the very model files face3d
takes its weights from, is the yardstick. Photos: scripts/profile_photos.py's profile set and its
no-face set. Recorded per photo and pipeline: the faces' boxes (image pixels x0, y0, x1, y1, from the
landmarks' extent for the landmark pipelines) and detection scores where the pipeline gives them.

Pipelines (all in IMAGE / static mode, up to 4 faces, every threshold 0.5, MediaPipe's defaults):

* ``face_landmarker``: the Face Landmarker task on face_landmarker.task (short-range BlazeFace,
  FaceMesh V2): the pipeline face3d's default ``v2`` landmark model re-implements.
* ``face_mesh``: the legacy FaceMesh solution with refined landmarks (short-range BlazeFace, V1 478).
* ``face_detection_short``, ``face_detection_full``: the legacy FaceDetection solution,
  ``model_selection`` 0 (short-range, 128²) and 1 (full-range, 192²): detection alone.

mediapipe pins numpy<2, so it never enters the project's venv: as in
scripts/record_face_landmarker_reference.py, this script runs in the project venv and re-runs itself
with ``--worker`` in a throwaway venv's python:

    python3.11 -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install mediapipe==0.10.21 pillow
    .venv/bin/python scripts/record_profile_reference.py --mediapipe-python /tmp/mpvenv/bin/python
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.mediapipe_reference import pixels_sha256, worker_arguments, write_reference  # noqa: E402
from scripts.mediapipe_reference import run_worker as run_mediapipe  # noqa: E402
from scripts.record_face_landmarker_reference import (  # noqa: E402
    MEDIAPIPE_VERSION,
    face_landmarker,
    face_landmarker_task,
)

OUTPUT = ROOT / "tests" / "data" / "profile_reference.json"
MAX_FACES = 4
THRESHOLD = 0.5
PIPELINES = ("face_landmarker", "face_mesh", "face_detection_short", "face_detection_full")


def _landmark_boxes(faces: list, width: int, height: int) -> list[dict]:
    """Each face's landmark extent as a box in pixels (landmark pipelines give no detection box)."""
    boxes = []
    for face in faces:
        points = np.array([(p.x * width, p.y * height) for p in face])
        boxes.append({"box": np.round([*points.min(axis=0), *points.max(axis=0)], 1).tolist()})
    return boxes


def run_worker(folder: Path) -> None:
    """In the mediapipe venv: every pipeline on every folder/*.png, results to folder/result.json."""
    import mediapipe as mp
    from PIL import Image

    landmarker = face_landmarker(folder, blendshapes=False)
    mesh = mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True,
        max_num_faces=MAX_FACES,
        refine_landmarks=True,
        min_detection_confidence=THRESHOLD,
    )
    detectors = {
        f"face_detection_{kind}": mp.solutions.face_detection.FaceDetection(
            model_selection=selection, min_detection_confidence=THRESHOLD
        )
        for kind, selection in (("short", 0), ("full", 1))
    }
    results = {}
    for path in sorted(folder.glob("*.png")):
        pixels = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
        height, width = pixels.shape[:2]
        found = {}
        tasks = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels))
        found["face_landmarker"] = _landmark_boxes(tasks.face_landmarks, width, height)
        legacy = mesh.process(pixels).multi_face_landmarks or []
        found["face_mesh"] = _landmark_boxes([face.landmark for face in legacy], width, height)
        for name, detector in detectors.items():
            faces = []
            for detection in detector.process(pixels).detections or []:
                box = detection.location_data.relative_bounding_box
                corners = [box.xmin * width, box.ymin * height, (box.xmin + box.width) * width,
                           (box.ymin + box.height) * height]  # fmt: skip
                faces.append({"box": np.round(corners, 1).tolist(), "score": round(detection.score[0], 4)})
            found[name] = faces
        results[path.stem] = found
    (folder / "result.json").write_text(json.dumps(results))


def main() -> None:
    args = worker_arguments(__doc__)
    if args.worker is not None:
        run_worker(args.worker)
        return
    from scripts.profile_photos import manifest, no_face_photos, profile_photos

    sets = {"profile": profile_photos(), "no_face": no_face_photos()}
    every = {name: pixels for photos in sets.values() for name, pixels in photos.items()}
    results = run_mediapipe(args.mediapipe_python, __file__, every, prepare=face_landmarker_task)
    reference: dict = {
        "mediapipe": MEDIAPIPE_VERSION,
        "settings": {"mode": "IMAGE / static", "max_faces": MAX_FACES, "thresholds": THRESHOLD},
        "pipelines": list(PIPELINES),
        "units": "boxes in image pixels x0, y0, x1, y1 (landmark pipelines: the landmarks' extent)",
    }
    entries = manifest()
    for set_name, photos in sets.items():
        reference[set_name] = {}
        for name, pixels in photos.items():
            sha = pixels_sha256(pixels)
            reference[set_name][name] = {"pixels_sha256": sha, **entries.get(name, {}), **results[name]}
        for pipeline in PIPELINES:
            found = sum(bool(entry[pipeline]) for entry in reference[set_name].values())
            print(f"{set_name}: {pipeline} found a face on {found}/{len(photos)}")
    write_reference(OUTPUT, reference)


if __name__ == "__main__":
    main()
