"""Supervision without a server: heartbeats, the watchdog's rules, device errors, batch memory plans,
and secrets kept out of child processes (the end-to-end versions are in test_reliability_faults.py)."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from face3d.models.nets.detector import padded_pixels, plan_batches
from face3d.models.pipeline import ReconstructOptions
from face3d.service.config import Settings
from face3d.service.workers.heartbeat import DEVICE_LOST_EXIT, Progress, device_failure, start_heartbeat
from face3d.service.workers.pool import WorkerPool
from face3d.service.workers.procs import SECRET_ENV, ChildProcess
from face3d.service.workers.protocol import Heartbeat, Job, JobDone
from face3d.service.workers.supervisor import Pending as _Pending
from face3d.service.workers.supervisor import WorkerHandle as _Worker
from face3d.service.workers.supervisor import worker_settings
from face3d.service.workers.worker import WorkerLoop
from tests.serving import SECRET


def test_heartbeats_carry_the_progress_count() -> None:
    sent: list[object] = []
    progress = Progress()
    start_heartbeat(sent.append, 0.02, progress)
    time.sleep(0.1)
    progress.step()
    progress.step()
    time.sleep(0.1)
    beats = [m.progress for m in sent if isinstance(m, Heartbeat)]
    assert beats[0] == 0 and beats[-1] == 2


def _pool_and_worker(**settings: object) -> tuple[WorkerPool, _Worker]:
    pool = WorkerPool(Settings(jwt_secret=SECRET, devices="cpu", cpu_workers=1, **settings))
    worker = _Worker(spec=SimpleNamespace(slot=0), child=None, outbox=None)  # type: ignore[arg-type]
    worker.ready = True
    return pool, worker


def test_watchdog_rules() -> None:
    pool, worker = _pool_and_worker(watchdog_s=10, request_timeout_s=30)
    now = time.monotonic()
    worker.seen = worker.moved = now
    assert pool.supervisor.stuck(worker) is None
    worker.seen = now - 11  # no message at all: stopped, or hung holding the GIL
    assert "sent nothing" in (pool.supervisor.stuck(worker) or "")
    worker.seen = now
    worker.moved = now - 31  # heartbeats, but no stage passed while holding a job
    assert pool.supervisor.stuck(worker) is None  # idle: nothing to wait for
    job = Job("j", b"", ReconstructOptions(), now + 30, now, "t", 60)
    worker.inflight["j"] = _Pending(job, None)  # type: ignore[arg-type]
    assert "passed no stage" in (pool.supervisor.stuck(worker) or "")
    worker.ready = False  # warming up: never the watchdog's business
    assert pool.supervisor.stuck(worker) is None


def test_device_errors_are_classified() -> None:
    assert device_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20 GiB")) == "oom"
    assert device_failure(torch.AcceleratorError("CUDA error: device-side assert triggered")) == "lost"
    assert device_failure(RuntimeError("CUDA error: an illegal memory access was encountered")) == "lost"
    assert device_failure(RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling cublasSgemm")) == "lost"
    assert device_failure(RuntimeError("shape '[2, 3]' is invalid for input of size 5")) is None
    assert device_failure(ValueError("CUDA error")) is None


def _fail_a_batch(kind: str, results: Connection) -> None:
    """In a child process: WorkerLoop._failed on a real job list, with its own send and device."""
    loop = SimpleNamespace(spec=SimpleNamespace(device="cpu"), send=results.send, _reconstruct=None)
    now = time.monotonic()
    job = Job("job-1", b"", ReconstructOptions(), now + 30, now, "t", 60)
    error = (
        torch.AcceleratorError("CUDA error: unspecified launch failure")
        if kind == "lost"
        else RuntimeError("bug")
    )
    WorkerLoop._failed(loop, [(job, np.zeros((4, 4, 3), np.uint8), {})], error)  # type: ignore[arg-type]
    results.send("still serving")


@pytest.mark.parametrize(("kind", "status", "exit_code"), [("lost", 503, DEVICE_LOST_EXIT), ("bug", 500, 0)])
def test_a_sticky_device_error_ends_the_worker(kind: str, status: int, exit_code: int) -> None:
    """Before: every error failed the batch with 500 and the worker went on, on a dead CUDA context."""
    receive, send = mp.get_context("spawn").Pipe(duplex=False)
    child = mp.get_context("spawn").Process(target=_fail_a_batch, args=(kind, send))
    child.start()
    send.close()
    messages = []
    while True:
        try:
            messages.append(receive.recv())
        except EOFError:
            break
    child.join(30)
    done = messages[0]
    assert isinstance(done, JobDone) and done.problem is not None and done.problem.status == status
    assert child.exitcode == exit_code
    assert ("still serving" in messages) == (kind == "bug")


def test_batches_are_planned_within_the_padding_budget() -> None:
    tall, wide, photo = (40000, 1000), (1000, 40000), (1280, 960)
    sizes = [tall, wide, photo, tall, wide, photo]
    assert padded_pixels(sizes) == 6 * 40000 * 40000  # what one batch of them used to cost
    plan = plan_batches(sizes, 64_000_000)
    assert sorted(k for group in plan for k in group) == list(range(6))
    for group in plan:
        assert len(group) == 1 or padded_pixels([sizes[k] for k in group]) <= 64_000_000
    assert sum(padded_pixels([sizes[k] for k in group]) for group in plan) <= 4 * 40_000_000 + 2 * 1280 * 960
    assert plan_batches([photo] * 8, 64_000_000) == [list(range(8))]  # ordinary photos stay together
    assert plan_batches([], 10) == []


def test_workers_get_settings_without_secrets() -> None:
    settings = Settings(jwt_secret=SECRET, quota_redis_url="redis://:password@redis:6379/0")
    copy = worker_settings(settings)
    assert copy.jwt_secret.get_secret_value() == "" and copy.quota_redis_url == ""
    assert copy.max_pixels == settings.max_pixels and settings.jwt_secret.get_secret_value() == SECRET


def _report_environment(inbox: Connection, outbox: Connection) -> None:
    outbox.send(Path("/proc/self/environ").read_bytes())


def test_children_start_without_secret_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACE3D_JWT_SECRET", SECRET)
    monkeypatch.setenv("FACE3D_QUOTA_REDIS_URL", "redis://:pw@h/0")
    monkeypatch.setenv("FACE3D_MAX_PIXELS", "123")
    got: list[bytes] = []
    child = ChildProcess(_report_environment, (), "env-probe", daemon=True)
    child.watch(lambda message: got.append(message), lambda: None)  # type: ignore[arg-type]
    child.process.join(30)
    time.sleep(0.2)
    environment = got[0]
    assert SECRET.encode() not in environment and b"pw@h" not in environment
    assert b"FACE3D_MAX_PIXELS=123" in environment  # ordinary settings still travel
    assert os.environ["FACE3D_JWT_SECRET"] == SECRET  # the API process keeps its own
    assert SECRET_ENV.fullmatch("FACE3D_JWT_PUBLIC_KEY_FILE")
