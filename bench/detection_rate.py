"""Detection rate up to profile: face3d's front end vs MediaPipe's own pipelines, on the same photos.

Photos: scripts/profile_photos.py's profile set (turned 60-90°, occluded, far renders of the
project's heads and a few real photos) and its no-face set (scikit-image's photos without a face).
MediaPipe's answers are recorded once, offline, by scripts/record_profile_reference.py into
tests/data/profile_reference.json (this bench reads the file; it never runs MediaPipe).

A photo counts as found when the front end keeps at least one face (detection, then the landmark
net's presence at its threshold); on the no-face set every such photo is a false positive. "before"
is the front end with ``extended=False`` (MediaPipe's graph as it is: short-range detector only, no
ROI retries), timed against the default on the frontal test photos:

    python -m bench.detection_rate                   # v2 (the default landmark net)
    python -m bench.detection_rate --landmark-model 478 --timing-runs 20

``detection_rates`` and ``print_rates`` are what bench/landmark_accuracy.py calls for its profile
section.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from face3d.models.nets.frontend import FrontEnd
from face3d.service.config import default_cache_dir
from scripts.photos import PHOTO_NAMES, photo
from scripts.profile_photos import manifest, no_face_photos, profile_photos

REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "data" / "profile_reference.json"
# MediaPipe's pipeline that matches each landmark model: the Face Landmarker task for V2, the
# legacy FaceMesh solution (refined: 478 points) for V1, the 468 net too (same detector and crops;
# its unrefined run was not recorded). Both run the short-range detector.
MEDIAPIPE_PIPELINE = {"v2": "face_landmarker", "478": "face_mesh", "468": "face_mesh"}


@dataclass(frozen=True)
class DetectionRates:
    """Per photo: found by face3d, by MediaPipe's matching pipeline, by its full-range detector."""

    landmark_model: str
    profile: dict[str, tuple[bool, bool, bool]]
    no_face: dict[str, tuple[bool, bool, bool]]

    def found(self, which: str, column: int) -> int:
        return sum(row[column] for row in getattr(self, which).values())


def reference() -> dict:
    """MediaPipe's recorded faces on both sets (scripts/record_profile_reference.py)."""
    return json.loads(REFERENCE.read_text())


def faces_found(front_end: FrontEnd, photos: dict[str, np.ndarray]) -> dict[str, bool]:
    """Whether the front end keeps a face on each photo (one photo a call, as a request sends it)."""
    return {name: len(front_end.locate([image]).face_image) > 0 for name, image in photos.items()}


def detection_rates(front_end: FrontEnd) -> DetectionRates:
    """face3d's and MediaPipe's detections on the profile and no-face sets."""
    recorded = reference()
    pipeline = MEDIAPIPE_PIPELINE[front_end.landmark_model]
    rows = {}
    for which, photos in (("profile", profile_photos()), ("no_face", no_face_photos())):
        ours = faces_found(front_end, photos)
        theirs = recorded[which]
        rows[which] = {
            name: (ours[name], bool(theirs[name][pipeline]), bool(theirs[name]["face_detection_full"]))
            for name in photos
        }
    return DetectionRates(front_end.landmark_model, rows["profile"], rows["no_face"])


def print_rates(rates: DetectionRates) -> None:
    """Per photo: name, yaw, variant, found by face3d / MediaPipe y/n; totals; false positives."""
    pipeline = MEDIAPIPE_PIPELINE[rates.landmark_model]
    entries = manifest()
    yes = {True: "y", False: "n"}
    print(f"landmark model {rates.landmark_model}; MediaPipe: {pipeline} (and its full-range FaceDetection)")
    print(f"{'photo':28s} {'yaw':>5s} {'variant':10s} face3d mediapipe mp-full-range")
    for name, (ours, theirs, full) in rates.profile.items():
        entry = entries[name]
        marks = f"{yes[ours]:>6s} {yes[theirs]:>9s} {yes[full]:>13s}"
        print(f"{name:28s} {entry['yaw']:+5d} {entry['variant']:10s} {marks}")
    total = len(rates.profile)
    counts = [f"{rates.found('profile', column)}/{total}" for column in range(3)]
    print(
        f"profile set: face3d {counts[0]}, MediaPipe {pipeline} {counts[1]}, "
        f"MediaPipe full-range detection {counts[2]}"
    )
    for column, who in ((0, "face3d"), (1, f"MediaPipe {pipeline}"), (2, "MediaPipe full-range detection")):
        hits = [name for name, row in rates.no_face.items() if row[column]]
        print(f"false positives on {len(rates.no_face)} no-face photos, {who}: {len(hits)} {hits}")


def frontal_ms(front_ends: dict[str, FrontEnd], runs: int) -> dict[str, dict[str, float]]:
    """Median milliseconds of one ``locate`` per frontal test photo (scripts/photos.py) and front end;
    the front ends take turns, so that load from other processes falls on all alike."""
    timings: dict[str, dict[str, list[float]]] = {
        name: {key: [] for key in front_ends} for name in PHOTO_NAMES
    }
    for name in PHOTO_NAMES:
        image = photo(name)
        for front_end in front_ends.values():
            front_end.locate([image])  # warm
        for _ in range(runs):
            for key, front_end in front_ends.items():
                start = time.perf_counter()
                front_end.locate([image])
                timings[name][key].append((time.perf_counter() - start) * 1000)
    return {name: {key: statistics.median(v) for key, v in row.items()} for name, row in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--landmark-model", default="v2", choices=sorted(MEDIAPIPE_PIPELINE))
    parser.add_argument("--timing-runs", type=int, default=10, help="locate calls timed per frontal photo")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (timings)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    front_end = FrontEnd(cache_dir=default_cache_dir(), landmark_model=args.landmark_model)
    print_rates(detection_rates(front_end))
    # "before": MediaPipe's graph as it is: no full-range fallback and no ROI retries
    before = FrontEnd(cache_dir=default_cache_dir(), landmark_model=args.landmark_model, extended=False)
    print(f"frontal cost per photo, median of {args.timing_runs}, {args.threads} thread(s), CPU:")
    for name, row in frontal_ms({"before": before, "after": front_end}, args.timing_runs).items():
        print(f"  {name:14s} before {row['before']:7.1f} ms  after {row['after']:7.1f} ms")


if __name__ == "__main__":
    main()
