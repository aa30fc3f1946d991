"""Fingerprint every file the product writes: each test photo through each backend, every format.

Why: a refactor that moves code must not change a byte of what a client downloads. This prints one
sha256 per (backend, photo, file) — OBJ, MTL, PNG, GLB, result.json (its ``timings_ms`` removed, the
only part that differs run to run) and preview.png, plus the same for ``neutral=true`` and a JPEG
texture — so two commits can be compared with ``diff``:

    python -m scripts.export_digest > before.json    # on the old commit
    python -m scripts.export_digest --against before.json   # on the new one: exit 1 on any change

It drives only the pipeline's public entry points (``create_backend``, ``Pipeline``,
``ReconstructOptions``), which is what the CLI and the workers run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from face3d.models.backends import BackendConfig, create_backend
from face3d.models.pipeline import Pipeline, ReconstructOptions
from face3d.service.config import default_cache_dir
from scripts.photos import PHOTO_NAMES, photo_bytes

VARIANTS = {
    "default": {"formats": "obj,png,glb,json,preview"},
    "neutral-jpeg": {"formats": "obj,glb,json", "neutral": True, "texture_format": "jpeg"},
}


def _digest(name: str, data: bytes) -> str:
    if name == "result.json":  # timings are measurements, not output
        doc = json.loads(data)
        doc.pop("timings_ms", None)
        data = json.dumps(doc, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def digests(backends: list[str], uv_size: int) -> dict[str, str]:
    """``backend/variant/photo/file`` -> sha256 of every file written."""
    out: dict[str, str] = {}
    for name in backends:
        backend = create_backend(name, BackendConfig(cache_dir=default_cache_dir()))
        backend.load("cpu")
        pipeline = Pipeline(backend, max_pixels=40_000_000)
        for variant, choice in VARIANTS.items():
            options = ReconstructOptions.parse(uv_size=uv_size, **choice)
            for photo in PHOTO_NAMES:
                (item,) = pipeline.run([photo_bytes(photo)], options)
                if item.exported is None:
                    out[f"{name}/{variant}/{photo}"] = f"error: {item.error}"
                    continue
                for file, data in sorted(item.exported.files.items()):
                    out[f"{name}/{variant}/{photo}/{file}"] = _digest(file, data)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="facemesh,ict")
    parser.add_argument("--uv-size", type=int, default=1024)
    parser.add_argument("--against", type=Path, help="a digest file to compare with; exit 1 on change")
    args = parser.parse_args()
    now = digests(args.backends.split(","), args.uv_size)
    if args.against is None:
        print(json.dumps(now, indent=1, sort_keys=True))
        return 0
    before = json.loads(args.against.read_text())
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    for key in changed:
        print(f"changed: {key}")
    print(f"{len(now)} files, {len(changed)} changed")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
