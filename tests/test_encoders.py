"""Encoders in threads and in processes produce the same files; failures come back as data."""

from __future__ import annotations

import threading

import pytest

from face3d.models.engine import Engine
from face3d.service.encoders import Encoded, EncoderPool, EncodeTask
from tests.photos import photo


def _run(processes: int, tasks: list[EncodeTask]) -> dict[str, Encoded]:
    results: dict[str, Encoded] = {}
    all_done = threading.Event()

    def on_done(encoded: Encoded) -> None:
        results[encoded.job_id] = encoded
        if len(results) == len(tasks):
            all_done.set()

    pool = EncoderPool(processes, on_done, depth=1)
    try:
        for task in tasks:
            pool.submit(task)
        assert all_done.wait(120), "encoders did not answer"
    finally:
        pool.close()
    return results


@pytest.mark.parametrize("processes", [0, 2])
def test_encoders_build_every_file(engine: Engine, processes: int) -> None:
    image = photo("astronaut")
    (rec,) = engine.reconstruct([image], uv_size=256)
    info = engine.model_info()
    tasks = [
        EncodeTask("a", rec, image, frozenset({"obj", "glb", "json", "preview"}), "png", info),
        EncodeTask("b", rec, None, frozenset({"png"}), "jpeg", info),
        EncodeTask("bad", rec, None, frozenset({"preview"}), "png", info),  # preview needs the photo
    ]
    results = _run(processes, tasks)
    expected = {"face.obj", "face.mtl", "face.png", "face.glb", "result.json", "preview.png"}
    assert expected <= set(results["a"].files)
    assert results["a"].summary["faces"][0]["score"] == pytest.approx(rec.faces[0].score, abs=1e-4)
    assert results["a"].encode_ms > 0 and results["a"].error is None
    assert set(results["b"].files) == {"face.jpg"}
    assert results["bad"].error and results["bad"].error.startswith("encoding failed")


def test_processes_and_threads_agree(engine: Engine) -> None:
    (rec,) = engine.reconstruct([photo("face_001")], uv_size=256)
    task = EncodeTask("x", rec, None, frozenset({"obj", "glb"}), "png", engine.model_info())
    assert _run(0, [task])["x"].files == _run(1, [task])["x"].files
