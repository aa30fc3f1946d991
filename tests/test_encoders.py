"""Encoders in threads and in processes build the same files, store them where they are encoded and
answer with a summary only; failures come back as data."""

from __future__ import annotations

import io
import pickle
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from face3d.models.backends.facemesh.backend import FacemeshBackend
from face3d.models.pipeline import ReconstructOptions
from face3d.service.config import Settings, load_settings
from face3d.service.storage import make_store
from face3d.service.workers.encoders import EncoderPool
from face3d.service.workers.protocol import Encoded, EncodeTask, Job
from face3d.service.workers.shared_pixels import SharedTask
from scripts.photos import photo


def _settings(tmp_path: Path) -> Settings:
    # the tasks hold the facemesh backend's reconstructions (conftest), so its topology encodes them
    return load_settings(auth_disabled_dev=True, results_dir=tmp_path / "results", backend="facemesh")


def _job(job_id: str, formats: set[str], artifact: str | None = None, texture: str = "png") -> Job:
    options = ReconstructOptions(uv_size=256, formats=frozenset(formats), texture_format=texture)  # type: ignore[arg-type]
    return Job(job_id, b"", options, 0.0, 0.0, tenant="alice", ttl_s=60, artifact=artifact)  # type: ignore[arg-type]


def _run(processes: int, settings: Settings, tasks: list[EncodeTask]) -> dict[str, Encoded]:
    results: dict[str, Encoded] = {}
    all_done = threading.Event()

    def on_done(encoded: Encoded) -> None:
        results[encoded.job_id] = encoded
        if len(results) == len(tasks):
            all_done.set()

    pool = EncoderPool(processes, settings, on_done, depth=1)
    try:
        for task in tasks:
            pool.submit(task)
        assert all_done.wait(120), "encoders did not answer"
    finally:
        pool.close()
    return results


@pytest.mark.parametrize("processes", [0, 2])
def test_encoders_store_files_and_answer_a_summary(
    facemesh: FacemeshBackend, tmp_path: Path, processes: int
) -> None:
    settings = _settings(tmp_path)
    image = photo("astronaut")
    (rec,) = facemesh.reconstruct([image], uv_size=256)
    info = facemesh.describe()
    tasks = [
        EncodeTask(_job("a" * 32, {"obj", "glb", "json", "preview"}), rec, image, info),
        EncodeTask(_job("b" * 32, {"png"}, texture="jpeg"), rec, None, info),
        EncodeTask(_job("c" * 32, {"preview"}), rec, None, info),  # the preview needs the photo
        EncodeTask(_job("d" * 32, {"glb"}, artifact="glb"), rec, None, info),
    ]
    results = _run(processes, settings, tasks)
    store = make_store(settings)
    expected = {"face.obj", "face.mtl", "face.png", "face.glb", "result.json", "preview.png"}
    summary = results["a" * 32].summary
    assert summary is not None and expected <= set(summary.files)
    assert summary.faces[0].score == pytest.approx(rec.faces[0].score, abs=1e-4)
    assert store.get("a" * 32, "face.glb", "alice")[:4] == b"glTF"  # stored by the encoder
    assert results["a" * 32].encode_ms > 0 and results["a" * 32].problem is None
    assert results["b" * 32].summary is not None and results["b" * 32].summary.files == ["face.jpg"]
    assert results["c" * 32].problem is not None and results["c" * 32].problem.slug == "internal"
    artifact = results["d" * 32].artifact
    assert artifact is not None and artifact.data[:4] == b"glTF" and results["d" * 32].summary is None


def _zips_both_ways(tmp_path: Path, task: EncodeTask) -> tuple[list[tuple[str, bytes]], ...]:
    """The zip artifact of ``task`` encoded in threads and in an encoder process: (name, bytes) in order."""
    files = []
    for processes in (0, 1):
        artifact = _run(processes, _settings(tmp_path), [task])[task.job.id].artifact
        assert artifact is not None
        with zipfile.ZipFile(io.BytesIO(artifact.data)) as archive:
            files.append([(name, archive.read(name)) for name in archive.namelist()])
    return tuple(files)


def test_processes_and_threads_agree(facemesh: FacemeshBackend, tmp_path: Path) -> None:
    (rec,) = facemesh.reconstruct([photo("face_001")], uv_size=256)
    task = EncodeTask(_job("x" * 32, {"obj", "glb"}, artifact="zip"), rec, None, facemesh.describe())
    by_threads, by_processes = _zips_both_ways(tmp_path, task)
    assert by_threads == by_processes


def _shm_blocks() -> set[str]:
    return {p.name for p in Path("/dev/shm").iterdir()} if Path("/dev/shm").is_dir() else set()


def test_textures_reach_encoder_processes_through_shared_memory(
    facemesh: FacemeshBackend, tmp_path: Path
) -> None:
    """A 1024² texture and a 1280² photo cross to an encoder process through shared memory: the
    pickled task is small, the files equal the threads', and no block is left behind."""
    image = np.asarray(Image.fromarray(photo("face_001")).resize((1280, 1280)))
    (rec,) = facemesh.reconstruct([image], uv_size=1024)
    assert len(rec.faces) == 1
    job = _job("s" * 32, {"obj", "glb", "preview"}, artifact="zip")
    task = EncodeTask(job, rec, image, facemesh.describe())
    shared = SharedTask.share(task)
    try:
        assert len(pickle.dumps(task)) > 3_000_000 and len(pickle.dumps(shared)) < 200_000
        assert shared.image is not None and all(t is not None for t in shared.textures)
        assert rec.faces[0].texture.shape == (1024, 1024, 3)  # the worker's own copy is untouched
    finally:
        shared.discard()
    before = _shm_blocks()
    by_threads, by_processes = _zips_both_ways(tmp_path, task)
    assert "preview.png" in [name for name, _ in by_threads] and by_threads == by_processes
    assert _shm_blocks() <= before  # the encoder unlinked what it received
