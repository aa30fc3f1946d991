"""Vendor a pinned three.js build into service/web/vendor/ (run once per version bump; commit the result).

The web page must work with no CDN or network at run time, so the few three.js modules it imports are
copied into the package. This script downloads exactly ``three@VERSION`` from the npm registry and
refuses it unless its sha512 matches BOTH the registry's ``dist.integrity`` and the value pinned below
(so a compromised or re-published registry entry cannot slip in), then copies the files the page needs
(the module build, OrbitControls, GLTFLoader and what they import) with the package's MIT licence, and
writes MANIFEST.json (version, integrity, sha256 per file) that tests/test_web.py checks offline.

    python scripts/vendor_three.py            # fetch, verify, copy
    python scripts/vendor_three.py --check    # verify the committed copy against MANIFEST.json only

To bump: change VERSION and INTEGRITY (``npm view three@X dist.integrity``), rerun, update the import
map in service/web/index.html to the new folder name, and commit.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

VERSION = "0.187.0"
INTEGRITY = "sha512-Qiu7R+Cmh8CstZsY1uJOSWnVlfo7ZtNLV7mF8Jltk3LB3AtDu9cRZlcnRKkAk8Y4z6KKw35z7Y7Urd7jWY8etA=="
REGISTRY = "https://registry.npmjs.org"
# Paths inside the npm tarball (under package/). GLTFLoader imports BufferGeometryUtils and
# SkeletonUtils; the module build imports three.core.js; every other import is the bare 'three'.
FILES = (
    "LICENSE",
    "build/three.module.js",
    "build/three.core.js",
    "examples/jsm/controls/OrbitControls.js",
    "examples/jsm/loaders/GLTFLoader.js",
    "examples/jsm/utils/BufferGeometryUtils.js",
    "examples/jsm/utils/SkeletonUtils.js",
)
ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "service" / "web" / "vendor" / f"three-{VERSION}"
MAX_TARBALL_BYTES = 64 << 20


def sri_sha512(data: bytes) -> str:
    """Subresource-integrity form of sha512, the form npm's ``dist.integrity`` uses."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read(MAX_TARBALL_BYTES + 1)
    if len(data) > MAX_TARBALL_BYTES:
        raise SystemExit(f"{url}: larger than {MAX_TARBALL_BYTES} bytes")
    return data


def fetch_verified() -> bytes:
    """The tarball of three@VERSION, checked against the registry's and the pinned integrity."""
    meta = json.loads(_get(f"{REGISTRY}/three/{VERSION}"))
    if meta.get("version") != VERSION:
        raise SystemExit(f"registry answered version {meta.get('version')!r}, not {VERSION}")
    registry_integrity = meta["dist"]["integrity"]
    if registry_integrity != INTEGRITY:
        raise SystemExit(f"registry integrity {registry_integrity} differs from the pinned {INTEGRITY}")
    tarball = _get(meta["dist"]["tarball"])
    actual = sri_sha512(tarball)
    if actual != INTEGRITY:
        raise SystemExit(f"downloaded tarball has {actual}, expected {INTEGRITY}")
    return tarball


def extract(tarball: bytes, dest: Path) -> dict[str, str]:
    """Copy FILES out of the tarball into ``dest``; returns {path: sha256}."""
    hashes: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for name in FILES:
            member = tar.getmember(f"package/{name}")
            if not member.isfile():
                raise SystemExit(f"{name} is not a regular file in the tarball")
            source = tar.extractfile(member)
            assert source is not None
            data = source.read()
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            hashes[name] = hashlib.sha256(data).hexdigest()
    return hashes


def check(dest: Path = DEST) -> list[str]:
    """Problems with the committed copy (empty when it matches MANIFEST.json and the pins)."""
    manifest_path = dest / "MANIFEST.json"
    if not manifest_path.is_file():
        return [f"{manifest_path} is missing: run scripts/vendor_three.py"]
    manifest = json.loads(manifest_path.read_text())
    problems = []
    if manifest.get("version") != VERSION or manifest.get("integrity") != INTEGRITY:
        problems.append("MANIFEST.json names another version or integrity than the script pins")
    if sorted(manifest.get("files", {})) != sorted(FILES):
        problems.append("MANIFEST.json lists other files than the script copies")
    for name, digest in manifest.get("files", {}).items():
        path = dest / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name} is missing or differs from the verified tarball")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only verify the committed copy, offline")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(f"vendor_three: {problem}", file=sys.stderr)
        return 1 if problems else 0
    tarball = fetch_verified()
    staging = DEST.with_name(DEST.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    hashes = extract(tarball, staging)
    manifest = {"package": "three", "version": VERSION, "integrity": INTEGRITY, "files": hashes}
    (staging / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(DEST, ignore_errors=True)
    staging.rename(DEST)
    print(f"three@{VERSION} verified ({INTEGRITY[:22]}...) and copied to {DEST.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
