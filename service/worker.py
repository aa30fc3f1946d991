"""The worker process: one per device, it owns an Engine and turns job bytes into result files.

Started by ``service/pool.py`` in a *spawn* context (a fresh interpreter: CUDA cannot survive a
fork). It talks to the API process through two one-way pipes and plain, picklable messages:

* in: ``Job`` (the ENCODED upload plus options and a deadline) or ``STOP``;
* out: ``WorkerReady`` once warmed, ``JobDone`` per job, ``BatchDone`` per batch, ``WorkerFailed``
  when setup fails.

Errors cross the boundary as data (``service.problems.Problem``) so one bad image fails one job,
never the batch or the process. Encoding (PNG/GLB/OBJ) runs in a small thread pool so it overlaps
the next batch's torch work; the pool is bounded so a slow encoder applies back-pressure.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from face3d.service.batching import STOP, Batcher, group_by
from face3d.service.encoders import Encoded, EncoderPool, EncodeTask
from face3d.service.problems import Problem

ENGINE_STAGES = ("detect", "landmarks", "bake")


@dataclass(frozen=True)
class JobOptions:
    """What the client asked for; jobs with equal ``(uv_size, all_faces)`` share one engine call."""

    uv_size: int
    formats: frozenset[str]
    texture_format: str = "png"
    all_faces: bool = False


@dataclass
class Job:
    """One image to reconstruct. Times are ``time.monotonic()``, one clock for every process on Linux."""

    id: str
    data: bytes
    options: JobOptions
    deadline: float
    admitted: float


@dataclass
class JobDone:
    """The outcome of one job: files and a JSON-ready summary, or a problem."""

    job_id: str
    files: dict[str, bytes] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # models.export.result_json document
    timings_ms: dict[str, float] = field(default_factory=dict)
    problem: Problem | None = None


@dataclass
class BatchDone:
    """Per-batch numbers the parent turns into metrics (workers own no metrics registry)."""

    size: int
    vram: dict[str, int] | None = None  # service.metrics.VRAM_KEYS -> bytes, on CUDA only


@dataclass
class WorkerReady:
    pid: int
    device: str
    compile_s: float
    model_info: dict[str, Any]


@dataclass
class WorkerFailed:
    error: str


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, pickled into the child: its slot, its device and the settings."""

    slot: int
    device: str
    settings: Any  # service.config.Settings (pydantic, picklable)
    threads: int


class WorkerLoop:
    """Batch, decode, reconstruct, hand results to the encoder threads; one instance per process."""

    def __init__(self, spec: WorkerSpec, jobs: Connection, send: Callable[[object], None]) -> None:
        from face3d.service.engine_factory import build_engine

        self.spec = spec
        self.settings = spec.settings
        self.send = send
        self.engine = build_engine(self.settings, spec.device)
        self.batcher: Batcher[Job] = Batcher(
            self._receiver(jobs),
            self.settings.max_batch,
            self.settings.max_wait_ms / 1000.0,
            lambda j: j.deadline,
        )
        self.decoders = ThreadPoolExecutor(max(1, spec.threads), thread_name_prefix="decode")
        self._encoding: dict[str, dict[str, float]] = {}  # job id -> its timings, while encoding
        self.encoders = EncoderPool(self._encoder_count(), self._encoded)
        self.model_info: dict[str, Any] = {}

    @staticmethod
    def _receiver(jobs: Connection) -> Callable[[float], object]:
        def receive(timeout: float) -> object:
            try:
                if not jobs.poll(timeout):
                    raise queue.Empty
                return jobs.recv()
            except (EOFError, OSError):  # the API process is gone: stop like on STOP
                return STOP

        return receive

    def warmup(self) -> float:
        seconds = self.engine.warmup(uv_sizes=(self.settings.uv_size,))
        self.model_info = self.engine.model_info()
        return seconds

    def run(self) -> None:
        """Serve batches until STOP, then let the encoders finish and return."""
        try:
            while True:
                batch = self.batcher.next_batch()
                for job in batch.expired:
                    self.send(JobDone(job.id, problem=Problem("timeout", "deadline passed while queued")))
                if batch.jobs:
                    self.process(batch.jobs)
                if batch.stop:
                    return
        finally:
            self.decoders.shutdown(wait=True)
            self.encoders.close()

    def process(self, jobs: list[Job]) -> None:
        started = time.monotonic()
        for (uv_size, all_faces), group in group_by(
            jobs, lambda j: (j.options.uv_size, j.options.all_faces)
        ).items():
            self._process_group(group, uv_size, all_faces, started)
        self.send(BatchDone(len(jobs), self._vram()))

    def _decode(self, job: Job, started: float) -> tuple[Job, np.ndarray | Problem, dict[str, float]]:
        from face3d.models.imageio import ImageError, decode_image

        t0 = time.monotonic()
        timings = {"queue": (started - job.admitted) * 1000.0}
        try:
            image = decode_image(job.data, max_pixels=self.settings.max_pixels)
        except ImageError as exc:
            return job, Problem(exc.kind, str(exc)), timings
        except Exception as exc:  # a decoder bug must fail this image, never the worker
            detail = f"the image could not be decoded ({type(exc).__name__})"
            return job, Problem("invalid-image", detail), timings
        timings["decode"] = (time.monotonic() - t0) * 1000.0
        return job, image, timings

    def _process_group(self, jobs: list[Job], uv_size: int, all_faces: bool, started: float) -> None:
        ready: list[tuple[Job, np.ndarray, dict[str, float]]] = []
        # Pillow releases the GIL while decoding: a batch decodes on all of this worker's cores.
        for job, image, timings in self.decoders.map(lambda j: self._decode(j, started), jobs):
            if isinstance(image, Problem):
                self.send(JobDone(job.id, timings_ms=timings, problem=image))
            else:
                ready.append((job, image, timings))
        if not ready:
            return
        try:
            recs = self.engine.reconstruct(
                [image for _, image, _ in ready], uv_size=uv_size, all_faces=all_faces
            )
        except Exception:  # e.g. CUDA OOM: fail these jobs, keep the worker serving
            detail = traceback.format_exc(limit=1).strip().splitlines()[-1]
            for job, _, timings in ready:
                self.send(JobDone(job.id, timings_ms=timings, problem=Problem("internal", detail)))
            return
        for (job, image, timings), rec in zip(ready, recs, strict=True):
            # The engine already reports each image's share of the batch's stage times.
            timings.update({k: v for k, v in rec.timings_ms.items() if k in ENGINE_STAGES})
            if not rec.faces:
                self.send(
                    JobDone(job.id, timings_ms=timings, problem=Problem("no-face", "no face was detected"))
                )
                continue
            self._encoding[job.id] = timings
            opts = job.options
            preview = image if "preview" in opts.formats else None  # the photo is big: send it only if used
            self.encoders.submit(
                EncodeTask(job.id, rec, preview, opts.formats, opts.texture_format, self.model_info)
            )

    def _encoder_count(self) -> int:
        """encode_processes, else 0 (threads) on CPU and four processes per GPU (fpng: ~40 PNG/s each)."""
        if self.settings.encode_processes:
            return self.settings.encode_processes
        return 4 if self.spec.device.startswith("cuda") else 0

    def _encoded(self, done: Encoded) -> None:
        timings = self._encoding.pop(done.job_id)
        if done.error:
            self.send(JobDone(done.job_id, timings_ms=timings, problem=Problem("internal", done.error)))
            return
        timings["encode"] = done.encode_ms
        self.send(JobDone(done.job_id, files=done.files, summary=done.summary, timings_ms=timings))

    def _vram(self) -> dict[str, int] | None:
        """Allocator numbers for this worker's device; host-side counters, no device sync."""
        if not self.spec.device.startswith("cuda"):
            return None
        import torch

        dev = torch.device(self.spec.device)
        return {
            "allocated": torch.cuda.memory_allocated(dev),
            "reserved": torch.cuda.memory_reserved(dev),
            "peak": torch.cuda.max_memory_allocated(dev),
        }


def worker_main(spec: WorkerSpec, jobs: Connection, results: Connection) -> None:
    """Process entry point (spawn target): set up, report ready, serve until STOP or parent exit."""
    lock = threading.Lock()

    def send(message: object) -> None:
        with lock:  # the main loop and the encoder threads share one pipe
            results.send(message)

    try:
        import torch

        torch.set_num_threads(spec.threads)
        if spec.device.startswith("cuda"):
            torch.cuda.set_device(torch.device(spec.device))
        loop = WorkerLoop(spec, jobs, send)
        compile_s = loop.warmup()
    except Exception:
        send(WorkerFailed(traceback.format_exc()))  # the parent logs it; exit without a second traceback
        raise SystemExit(1) from None
    send(WorkerReady(os.getpid(), spec.device, compile_s, loop.model_info))
    loop.run()
