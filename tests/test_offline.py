"""`face3d reconstruct` and `face3d batch` as a user runs them: a real process, real files."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import trimesh

from scripts.photos import photo_bytes
from tests.serving import mesh_sizes


def face3d(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "face3d.service.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("in")
    (folder / "astronaut.jpg").write_bytes(photo_bytes("astronaut"))
    (folder / "sub").mkdir()
    (folder / "sub" / "face.jpg").write_bytes(photo_bytes("image00021"))
    (folder / "broken.jpg").write_bytes(photo_bytes("astronaut")[:2000])
    (folder / "notes.png").write_bytes(b"this is not an image")
    return folder


def test_reconstruct_writes_every_format(photos: Path, tmp_path: Path) -> None:
    proc = face3d(
        "reconstruct", photos / "astronaut.jpg", "-o", tmp_path / "out", "--uv-size", "512", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out" / "astronaut"
    assert {p.name for p in out.iterdir()} == {
        "face.obj", "face.mtl", "face.png", "face.glb", "face.usdz", "result.json", "preview.png"
    }  # fmt: skip
    assert zipfile.ZipFile(out / "face.usdz").namelist() == ["face.usdc", "face.png"]  # all formats: usdz too
    mesh = trimesh.load(out / "face.obj", force="mesh")
    vertices, triangles, split = mesh_sizes()
    assert vertices <= len(mesh.vertices) <= split and len(mesh.faces) == triangles  # trimesh splits at seams
    assert len(trimesh.load(out / "face.glb", force="mesh").vertices) == split
    result = json.loads((out / "result.json").read_text())
    assert len(result["faces"]) == 1 and len(result["faces"][0]["landmarks_68"]) == 68
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")], "no temp files left"


def test_reconstruct_bad_inputs_fail_with_one_line(photos: Path, tmp_path: Path) -> None:
    proc = face3d(
        "reconstruct", photos / "broken.jpg", photos / "notes.png", photos / "missing.jpg",
        "-o", tmp_path / "out", "--formats", "json", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "broken").exists()


def test_reconstruct_rejects_bad_options(photos: Path, tmp_path: Path) -> None:
    proc = face3d("reconstruct", photos / "astronaut.jpg", "-o", tmp_path, "--uv-size", "64", cwd=tmp_path)
    assert proc.returncode != 0 and "uv-size" in proc.stderr and "Traceback" not in proc.stderr


def test_batch_is_resumable_and_reports_failures(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = face3d("batch", photos, out, cwd=tmp_path)
    assert first.returncode == 1, "bad files make the exit code non-zero"
    assert "2 done, 0 already finished, 2 failed, 4 total" in first.stdout
    assert (out / "astronaut.jpg" / "face.obj").is_file()
    assert (out / "sub" / "face.jpg" / "face.glb").is_file()
    failed = json.loads((out / "_failed-0.json").read_text())
    assert set(map(lambda p: Path(p).name, failed)) == {"broken.jpg", "notes.png"}
    again = face3d("batch", photos, out, cwd=tmp_path)
    assert "0 done, 2 already finished, 2 failed" in again.stdout


def test_batch_shards_split_the_work(photos: Path, tmp_path: Path) -> None:
    shard0 = face3d("batch", photos, tmp_path / "o", "--shard-index", "0", "--shard-count", "2", cwd=tmp_path)
    shard1 = face3d("batch", photos, tmp_path / "o", "--shard-index", "1", "--shard-count", "2", cwd=tmp_path)
    assert "2 total" in shard0.stdout and "2 total" in shard1.stdout
    assert (tmp_path / "o" / "astronaut.jpg").is_dir() and (tmp_path / "o" / "sub" / "face.jpg").is_dir()


def test_reconstruct_refuses_two_photos_with_one_output_name(photos: Path, tmp_path: Path) -> None:
    other = tmp_path / "astronaut.png"
    other.write_bytes(photo_bytes("astronaut"))
    proc = face3d("reconstruct", photos / "astronaut.jpg", other, "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode != 0 and "same name" in proc.stderr and "Traceback" not in proc.stderr
