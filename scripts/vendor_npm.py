"""Vendor a pinned npm package's files into service/web/vendor/ (scripts/vendor_three.py and
scripts/vendor_tasks_vision.py name the package; run one per version bump and commit the result).

The web page must work with no CDN or network at run time, so the files it loads are copied into the
package. ``vendor`` downloads exactly ``name@version`` from the npm registry and refuses it unless its
sha512 matches BOTH the registry's ``dist.integrity`` and the value pinned in the caller (so a
compromised or re-published registry entry cannot slip in), then copies the listed files and writes
MANIFEST.json (package, version, integrity, sha256 per file) that tests/test_web_files.py checks offline.
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
from dataclasses import dataclass
from pathlib import Path

REGISTRY = "https://registry.npmjs.org"
ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "service" / "web" / "vendor"
MAX_TARBALL_BYTES = 64 << 20


@dataclass(frozen=True)
class NpmPackage:
    """One pinned npm package and the files (paths under the tarball's ``package/``) the page needs."""

    name: str  # as npm spells it, scope included
    version: str
    integrity: str  # sha512-..., ``npm view NAME@VERSION dist.integrity``
    files: tuple[str, ...]
    folder: str  # under service/web/vendor/, versioned: served as immutable

    @property
    def dest(self) -> Path:
        return VENDOR / self.folder


def sri_sha512(data: bytes) -> str:
    """Subresource-integrity form of sha512, the form npm's ``dist.integrity`` uses."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read(MAX_TARBALL_BYTES + 1)
    if len(data) > MAX_TARBALL_BYTES:
        raise SystemExit(f"{url}: larger than {MAX_TARBALL_BYTES} bytes")
    return data


def fetch_verified(package: NpmPackage) -> bytes:
    """The package's tarball, checked against the registry's and the pinned integrity."""
    meta = json.loads(_get(f"{REGISTRY}/{package.name}/{package.version}"))
    if meta.get("version") != package.version:
        raise SystemExit(f"registry answered version {meta.get('version')!r}, not {package.version}")
    registry_integrity = meta["dist"]["integrity"]
    if registry_integrity != package.integrity:
        raise SystemExit(
            f"registry integrity {registry_integrity} differs from the pinned {package.integrity}"
        )
    tarball = _get(meta["dist"]["tarball"])
    actual = sri_sha512(tarball)
    if actual != package.integrity:
        raise SystemExit(f"downloaded tarball has {actual}, expected {package.integrity}")
    return tarball


def extract(package: NpmPackage, tarball: bytes, dest: Path) -> dict[str, str]:
    """Copy the package's files out of the tarball into ``dest``; returns {path: sha256}."""
    hashes: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for name in package.files:
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


def check(package: NpmPackage) -> list[str]:
    """Problems with the committed copy (empty when it matches MANIFEST.json and the pins)."""
    manifest_path = package.dest / "MANIFEST.json"
    if not manifest_path.is_file():
        return [f"{manifest_path} is missing: vendor {package.name} again"]
    manifest = json.loads(manifest_path.read_text())
    problems = []
    if manifest.get("version") != package.version or manifest.get("integrity") != package.integrity:
        problems.append("MANIFEST.json names another version or integrity than the script pins")
    if sorted(manifest.get("files", {})) != sorted(package.files):
        problems.append("MANIFEST.json lists other files than the script copies")
    for name, digest in manifest.get("files", {}).items():
        path = package.dest / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name} is missing or differs from the verified tarball")
    return problems


def vendor(package: NpmPackage, argv: list[str] | None = None, doc: str | None = None) -> int:
    """The command line of a vendor script: fetch, verify and copy, or ``--check`` the committed copy."""
    parser = argparse.ArgumentParser(description=(doc or __doc__ or "").split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only verify the committed copy, offline")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(package)
        for problem in problems:
            print(f"{package.name}: {problem}", file=sys.stderr)
        return 1 if problems else 0
    tarball = fetch_verified(package)
    staging = package.dest.with_name(package.dest.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    hashes = extract(package, tarball, staging)
    manifest = {"package": package.name, "version": package.version, "integrity": package.integrity}
    (staging / "MANIFEST.json").write_text(json.dumps(manifest | {"files": hashes}, indent=2) + "\n")
    shutil.rmtree(package.dest, ignore_errors=True)
    staging.rename(package.dest)
    print(f"{package.name}@{package.version} verified ({package.integrity[:22]}...) and copied to "
          f"{package.dest.relative_to(ROOT)}")  # fmt: skip
    return 0
