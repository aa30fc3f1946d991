"""What the scripts that record MediaPipe's own output share (record_face_landmarker_reference.py,
record_profile_reference.py, record_hand_reference.py).

mediapipe pins numpy<2 and pulls jax, so it never enters the project's venv: each script prepares its
photos in the project venv, saves them as PNGs in a temporary folder and re-runs itself with
``--worker FOLDER`` under a throwaway venv's python that has mediapipe (``--mediapipe-python``); the
worker writes ``result.json`` there, one entry per photo name.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def worker_arguments(description: str) -> argparse.Namespace:
    """``--mediapipe-python`` (the python with mediapipe) and the hidden ``--worker FOLDER``."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--mediapipe-python", default="/tmp/mpvenv/bin/python", help="python with mediapipe")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def run_worker(
    python: str, script: str, photos: dict[str, np.ndarray], prepare: Callable[[Path], None] | None = None
) -> dict[str, Any]:
    """``script --worker FOLDER`` under ``python`` over the ``photos`` saved as PNGs in FOLDER (after
    ``prepare(FOLDER)``, e.g. to put a model file beside them): its ``result.json``."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        if prepare is not None:
            prepare(folder)
        for photo, pixels in photos.items():
            Image.fromarray(pixels).save(folder / f"{photo}.png")
        subprocess.run([python, script, "--worker", str(folder)], check=True)
        return json.loads((folder / "result.json").read_text())


def pixels_sha256(pixels: np.ndarray) -> str:
    """The digest a test compares to know it reads the very pixels MediaPipe saw."""
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def photo_entry(pixels: np.ndarray, **members: Any) -> dict[str, Any]:
    """One photo's reference entry: its size and pixel digest, then ``members``."""
    return {
        "width": pixels.shape[1],
        "height": pixels.shape[0],
        "pixels_sha256": pixels_sha256(pixels),
        **members,
    }


def photo_entries(photos: dict[str, np.ndarray], results: dict[str, Any], member: str) -> dict[str, Any]:
    """Every photo's entry with the worker's result as ``member`` (a list: faces, hands), each counted."""
    entries = {}
    for name, pixels in photos.items():
        entries[name] = photo_entry(pixels, **{member: results[name]})
        print(f"{name}: {pixels.shape[1]}x{pixels.shape[0]} {member} {len(results[name])}")
    return entries


def write_reference(path: Path, reference: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(reference, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
