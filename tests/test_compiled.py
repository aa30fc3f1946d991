"""Compiled packages: built once under a lock, loaded by key, swapped in while requests run, and a
corrupt or mismatched package ignored with a warning and rebuilt."""

from __future__ import annotations

import copy
import dataclasses
import logging
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from face3d.models.backends.base import BackendConfig
from face3d.models.backends.facemesh.backend import FacemeshBackend
from face3d.models.nets.frontend import FrontEnd
from face3d.models.runtime import aot
from face3d.models.runtime.aot import CompiledStore, CompileUnit, PackageRejected, artifact_key
from face3d.service.workers.background_compile import _runner
from scripts.photos import photo

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def detector_unit(backend: FacemeshBackend) -> CompileUnit:
    return next(unit for unit in backend.compile_units() if unit.name == "detector")


@pytest.fixture(scope="module")
def compiled_detector(
    tmp_path_factory: pytest.TempPathFactory, facemesh: FacemeshBackend
) -> tuple[CompiledStore, str]:
    """The detector's package, built once for this module (the slow step: tens of seconds on CPU)."""
    store = CompiledStore(tmp_path_factory.mktemp("compiled"))
    unit = detector_unit(facemesh)
    key = artifact_key(unit, "facemesh", CPU, torch.float32)
    assert store.load_or_build(unit, key, CPU) is not None
    return store, key


@pytest.mark.slow
def test_swap_to_compiled_while_requests_run(
    compiled_detector: tuple[CompiledStore, str], weights_cache: Path
):
    store, key = compiled_detector
    backend = FacemeshBackend(BackendConfig(cache_dir=weights_cache, buckets=(1, 2)))
    backend.load("cpu")
    backend.warmup(uv_sizes=(256,))
    image = photo("astronaut")
    (before,) = backend.reconstruct([image], uv_size=256)
    results, errors, stop = [], [], threading.Event()

    def serve() -> None:  # requests keep arriving while the package is swapped in
        while not stop.is_set():
            try:
                results.append(backend.reconstruct([image], uv_size=256)[0])
            except Exception as exc:  # pragma: no cover - the assertion below reports it
                errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    runner = store.load(key, CPU)
    assert runner is not None
    backend.install_compiled("detector", runner)
    while len(results) < 3:
        thread.join(0.05)
    stop.set()
    thread.join()
    assert not errors and backend.compiled_status() == {
        "detector": True,
        "detector-full": False,
        "mesh-v2": False,
        "blendshapes": False,
    }
    assert backend.describe()["compiled"]["detector"] is True
    for rec in results:  # eager and compiled agree, whichever served the request
        np.testing.assert_allclose(rec.faces[0].landmarks, before.faces[0].landmarks, atol=0.05)


def test_batch_size_is_dynamic(
    compiled_detector: tuple[CompiledStore, str], facemesh: FacemeshBackend
) -> None:
    store, key = compiled_detector
    runner = store.load(key, CPU)
    assert runner is not None
    for batch in (1, 3, 8):
        x = torch.rand((batch, 3, 128, 128)).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            for got, want in zip(runner(x), detector_unit(facemesh).module(x), strict=True):
                torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_corrupt_package_is_ignored_with_one_warning(
    compiled_detector: tuple[CompiledStore, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, key = compiled_detector
    broken = CompiledStore(tmp_path)
    data = store.path(key).read_bytes()
    broken.path(key).write_bytes(data[: len(data) // 3])  # truncated, as after a full disk
    with caplog.at_level(logging.WARNING, logger="face3d.compiled"):
        assert broken.load(key, CPU) is None
    assert [r.message for r in caplog.records if "rebuilding" in r.message] and not broken.path(key).exists()


def test_keys_follow_what_compiled_code_depends_on(facemesh: FacemeshBackend) -> None:
    unit = detector_unit(facemesh)
    key = artifact_key(unit, "facemesh", CPU, torch.float32)
    assert key == artifact_key(unit, "facemesh", CPU, torch.float32) and key.startswith(
        "facemesh-detector-cpu"
    )
    other_weights = dataclasses.replace(unit, weights_sha256="0" * 64)
    keys = {
        key,
        artifact_key(other_weights, "facemesh", CPU, torch.float32),
        artifact_key(unit, "facemesh", CPU, torch.float16),
        artifact_key(unit, "ict", CPU, torch.float32),
    }
    assert len(keys) == 4


def test_a_package_being_built_elsewhere_is_not_built_twice(
    compiled_detector: tuple[CompiledStore, str], tmp_path: Path
) -> None:
    """While one process holds a key's build lock, another skips it (wait=False) and builds nothing."""
    store = CompiledStore(tmp_path)
    key = "facemesh-detector-test"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys, time; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('locked', flush=True); time.sleep(60)", str(tmp_path / f"{key}.lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        unit = CompileUnit("detector", torch.nn.Identity(), torch.zeros(2, 3, 8, 8), "x")
        assert store.load_or_build(unit, key, CPU, wait=False) is None
        assert not store.path(key).exists()
    finally:
        holder.kill()
        holder.wait()
    shutil.copy(compiled_detector[0].path(compiled_detector[1]), store.path(key))  # built by "the other"
    assert store.load_or_build(unit, key, CPU, wait=True) is not None


def test_a_package_that_crashes_on_load_is_set_aside_and_compiled_in_process(
    compiled_detector: tuple[CompiledStore, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Native code that segfaults when loaded (seen: CUDA packages on torch 2.11) must not take the
    worker down: the child check fails by a signal, the package is kept as .bad and never rebuilt,
    and the net is compiled in-process (torch.compile) instead."""
    store, key = compiled_detector
    crashing = CompiledStore(tmp_path / "compiled")
    crashing.root.mkdir()
    shutil.copy(store.path(key), crashing.path(key))
    crasher = tmp_path / "python"
    crasher.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crasher.chmod(0o755)
    monkeypatch.setattr(aot.sys, "executable", str(crasher))
    unit = CompileUnit("tiny", torch.nn.Conv2d(3, 4, 3), torch.zeros(2, 3, 8, 8), "x", (1, 2))
    with pytest.raises(PackageRejected, match="crashed"):
        crashing.load(key, CPU)
    assert crashing.path(key).with_suffix(".bad").exists() and not crashing.path(key).exists()
    with pytest.raises(PackageRejected):  # remembered: no second build, no second crash
        crashing.load_or_build(unit, key, CPU)
    runner = _runner(crashing, unit, key, CPU, wait=True)
    x = torch.rand(2, 3, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(runner(x), unit.module(x))


@pytest.mark.parametrize("landmark_model", ["478", "v2"])
def test_every_net_exports_with_a_dynamic_batch(landmark_model: str, weights_cache: Path) -> None:
    """A net whose code fixes the batch size (``len(x)`` instead of ``x.shape[0]``) cannot become a
    package: the background compile would fail and the worker stay eager. Export only (seconds)."""
    front_end = FrontEnd(cache_dir=weights_cache, buckets=(1,), landmark_model=landmark_model)
    batch = torch.export.Dim("batch", min=1, max=aot.MAX_DYNAMIC_BATCH)
    for unit in front_end.runners.units():
        torch.export.export(
            copy.deepcopy(unit.module), (unit.example,), dynamic_shapes=({0: batch},), strict=False
        )
