"""Vendor a pinned three.js build into service/web/vendor/ (run once per version bump; commit the result).

The page's 3D viewer imports a few three.js modules, copied into the package by scripts/vendor_npm.py
(exactly ``three@VERSION`` from npm, its sha512 checked against the registry and the pin below): the
module build, OrbitControls, GLTFLoader and what they import, with the package's MIT licence, and
MANIFEST.json that tests/test_web_files.py checks offline.

    python -m scripts.vendor_three            # fetch, verify, copy
    python -m scripts.vendor_three --check    # verify the committed copy against MANIFEST.json only

To bump: change VERSION and INTEGRITY (``npm view three@X dist.integrity``), rerun, update the import
map in service/web/index.html to the new folder name, and commit.
"""

from __future__ import annotations

from scripts.vendor_npm import NpmPackage, vendor
from scripts.vendor_npm import check as check_package

VERSION = "0.187.0"
INTEGRITY = "sha512-Qiu7R+Cmh8CstZsY1uJOSWnVlfo7ZtNLV7mF8Jltk3LB3AtDu9cRZlcnRKkAk8Y4z6KKw35z7Y7Urd7jWY8etA=="
# GLTFLoader imports BufferGeometryUtils and SkeletonUtils; the module build imports three.core.js;
# every other import is the bare 'three'.
THREE = NpmPackage(
    "three",
    VERSION,
    INTEGRITY,
    (
        "LICENSE",
        "build/three.module.js",
        "build/three.core.js",
        "examples/jsm/controls/OrbitControls.js",
        "examples/jsm/loaders/GLTFLoader.js",
        "examples/jsm/utils/BufferGeometryUtils.js",
        "examples/jsm/utils/SkeletonUtils.js",
    ),
    f"three-{VERSION}",
)
DEST = THREE.dest


def check() -> list[str]:
    """Problems with the committed copy (empty when it matches MANIFEST.json and the pins)."""
    return check_package(THREE)


if __name__ == "__main__":
    raise SystemExit(vendor(THREE, doc=__doc__))
