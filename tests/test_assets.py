"""Pinned weights: verification, the one-line fix hint, and a repairing, idempotent pull."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from face3d.models import assets
from face3d.service.config import default_cache_dir


@pytest.fixture
def cache_copy(tmp_path: Path) -> Path:
    """A private copy of the pulled weights, safe to damage."""
    target = assets.weights_dir(tmp_path)
    shutil.copytree(assets.weights_dir(default_cache_dir()), target)
    return tmp_path


def test_pinned_files_verify() -> None:
    for spec in assets.ASSET_FILES:
        assert assets.sha256_file(assets.asset_path(spec.name, default_cache_dir())) == spec.sha256


def test_missing_weights_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(assets.WeightsError, match="face3d models pull"):
        assets.asset_path("face_landmark.tflite", tmp_path)


def test_corrupt_weights_are_refused_then_repaired(cache_copy: Path) -> None:
    path = assets.weights_dir(cache_copy) / "face_landmark.tflite"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(assets.WeightsError, match=r"corrupt.*face3d models pull"):
        assets.asset_path("face_landmark.tflite", cache_copy)
    assert assets.pull(cache_copy) == assets.weights_dir(cache_copy)
    assert assets.sha256_file(path) == assets.weight_hashes()["face_landmark.tflite"]
    assert not [p for p in cache_copy.iterdir() if p.name.startswith(".pull-")], "no temp folders left"


def test_pull_is_a_no_op_when_complete(cache_copy: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in assets.weights_dir(cache_copy).iterdir()}
    assets.pull(cache_copy)
    after = {p.name: p.stat().st_mtime_ns for p in assets.weights_dir(cache_copy).iterdir()}
    assert before == after


def test_not_a_wheel_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "mediapipe-0.10.21-py3-none-any.whl"
    fake.write_bytes(b"not a zip")
    with pytest.raises(assets.WeightsError, match="not a usable mediapipe wheel"):
        assets.pull(tmp_path / "cache", wheel=fake)


def test_cli_reports_missing_weights_in_one_line(tmp_path: Path) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"\xff\xd8")
    proc = subprocess.run(
        [sys.executable, "-m", "face3d.service.cli", "reconstruct", str(photo), "-o", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env={"FACE3D_CACHE_DIR": str(tmp_path / "empty"), "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and "face3d models pull" in proc.stderr, proc.stderr
