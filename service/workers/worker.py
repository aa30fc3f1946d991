"""The worker process: one per device; it owns a loaded backend and turns jobs into stored results.

Started by ``supervisor.py`` through ``procs.py`` (spawn: CUDA cannot survive a fork). Its
messages are those of ``service/workers/protocol.py``: ``Job`` or ``STOP`` in; ``WorkerReady`` once warmed,
``JobDone`` per job, ``BatchDone`` per batch, ``WorkerFailed`` when setup fails.

Per batch: decode on this worker's threads (Pillow releases the GIL), one backend call per group of
jobs that share ``ReconstructOptions.batch_key``, then each reconstruction goes to an encoder, which
builds and stores the files and answers with the summary. Errors are data: one bad image fails one
job, never the batch or the process.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from face3d.models.errors import ModelError
from face3d.models.nets.detector import plan_batches
from face3d.models.pipeline import Pipeline
from face3d.models.reconstruction import Reconstruction
from face3d.service.errors import Problem, problem_from_error
from face3d.service.workers.batching import STOP, Batcher, group_by
from face3d.service.workers.encoders import EncoderPool
from face3d.service.workers.heartbeat import (
    DEVICE_LOST_EXIT,
    PROGRESS,
    device_failure,
    release_device_memory,
    start_heartbeat,
)
from face3d.service.workers.protocol import (
    BatchDone,
    CompiledUpdate,
    Encoded,
    EncodeTask,
    Job,
    JobDone,
    WorkerFailed,
    WorkerReady,
    WorkerSpec,
)

BACKEND_STAGES = ("detect", "landmarks", "bake")
GPU_ENCODER_PROCESSES = 4  # fpng: ~40 PNG/s per process; four keep up with a GPU's batches


class WorkerLoop:
    """Batch, decode, reconstruct, hand results to the encoders; one instance per process."""

    def __init__(self, spec: WorkerSpec, receive: Callable[[float], object], send: Callable[[object], None]):
        from face3d.service.backend_factory import build_backend

        self.spec = spec
        self.settings = spec.settings
        self.send = send
        self.pipeline = Pipeline(build_backend(self.settings, spec.device), self.settings.max_pixels)
        self.batcher: Batcher[Job] = Batcher(
            receive, self.settings.max_batch, self.settings.max_wait_ms / 1000.0, lambda j: j.deadline
        )
        self.decoders = ThreadPoolExecutor(max(1, spec.threads), thread_name_prefix="decode")
        self._encoding: dict[str, dict[str, float]] = {}  # job id -> its timings, while encoding
        self.encoders = EncoderPool(self._encoder_count(), self.settings, self._encoded)
        self.model_info: dict[str, Any] = {}

    def warmup(self) -> float:
        seconds = self.pipeline.backend.warmup((self.settings.uv_size,))
        self.model_info = self.pipeline.backend.describe()
        return seconds

    def run(self) -> None:
        """Serve batches until STOP, then let the encoders finish and return."""
        try:
            while True:
                batch = self.batcher.next_batch()
                if batch.jobs:
                    PROGRESS.step()
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
        for job in jobs:
            if job.person:  # its photos are a batch of their own
                self._process_person(job, started)
        singles = [job for job in jobs if not job.person]
        for group in group_by(singles, lambda j: j.options.batch_key).values():
            self._process_group(group, started)
        self.send(BatchDone(len(jobs), self._vram()))

    def _process_person(self, job: Job, started: float) -> None:
        """Several photos of one person -> one head (``Pipeline.reconstruct_person``) -> an encoder.

        A photo that does not decode fails the job (it was never a photo of the person); photos without
        a face, or far from the others' identity, are reported in the result by the backend."""
        timings = {"queue": (started - job.admitted) * 1000.0}
        t0 = time.monotonic()
        images = self._decode_photos(job)
        timings["decode"] = (time.monotonic() - t0) * 1000.0
        PROGRESS.step()
        if isinstance(images, Problem):
            self.send(JobDone(job.id, timings_ms=timings, problem=images))
            return
        try:
            rec = self.pipeline.reconstruct_person(images, [name for name, _ in job.photos], job.options)
        except ModelError as exc:  # e.g. a backend without a morphable model
            self.send(JobDone(job.id, timings_ms=timings, problem=problem_from_error(exc)))
            return
        except Exception as exc:
            self._failed([(job, images[0], timings)], exc)
            return
        PROGRESS.step()
        timings.update({k: v for k, v in rec.timings_ms.items() if k in BACKEND_STAGES})
        self._encode(dataclasses.replace(job, photos=()), rec, None, timings, "in any of the photos")

    def _decode(self, job: Job, started: float) -> tuple[Job, np.ndarray | Problem, dict[str, float]]:
        t0 = time.monotonic()
        timings = {"queue": (started - job.admitted) * 1000.0}
        try:
            image: np.ndarray | Problem = self.pipeline.decode(job.data)
        except ModelError as exc:
            image = problem_from_error(exc)
        except Exception as exc:  # a decoder bug must fail this image, never the worker
            image = Problem("invalid-image", f"the image could not be decoded ({type(exc).__name__})")
        timings["decode"] = (time.monotonic() - t0) * 1000.0
        return job, image, timings

    def _decode_photos(self, job: Job) -> list[np.ndarray] | Problem:
        try:
            return self.pipeline.decode_photos(job.photos)
        except ModelError as exc:
            return problem_from_error(exc)
        except Exception as exc:  # a decoder bug must fail this job, never the worker
            return Problem("invalid-image", f"a photo could not be decoded ({type(exc).__name__})")

    def _process_group(self, jobs: list[Job], started: float) -> None:
        ready: list[tuple[Job, np.ndarray, dict[str, float]]] = []
        for job, image, timings in self.decoders.map(lambda j: self._decode(j, started), jobs):
            if isinstance(image, Problem):
                self.send(JobDone(job.id, timings_ms=timings, problem=image))
            else:
                ready.append((job, image, timings))
        PROGRESS.step()
        # Each backend call pads its images to the tallest x widest of them: a tall and a wide image
        # together would cost max(H) x max(W) each. Split so that no call pads past max_batch_pixels.
        sizes = [(int(image.shape[0]), int(image.shape[1])) for _, image, _ in ready]
        for part in plan_batches(sizes, self.settings.max_batch_pixels):
            self._reconstruct([ready[k] for k in part])

    def _reconstruct(self, ready: list[tuple[Job, np.ndarray, dict[str, float]]]) -> None:
        try:
            recs = self.pipeline.reconstruct([image for _, image, _ in ready], ready[0][0].options)
        except Exception as exc:
            self._failed(ready, exc)
            return
        PROGRESS.step()
        for (job, image, timings), rec in zip(ready, recs, strict=True):
            # The backend already reports each image's share of the batch's stage times.
            timings.update({k: v for k, v in rec.timings_ms.items() if k in BACKEND_STAGES})
            preview = image if "preview" in job.options.formats else None  # big: send only if used
            light = dataclasses.replace(job, data=b"")  # the upload is decoded: never ship it again
            self._encode(light, rec, preview, timings)

    def _encode(
        self,
        job: Job,
        rec: Reconstruction,
        preview: np.ndarray | None,
        timings: dict[str, float],
        where: str = "",
    ) -> None:
        """Hand a reconstruction to the encoders, or answer no-face when it found none (``where``: in
        what, for the problem's detail)."""
        if not rec.faces:
            detail = " ".join(("no face was detected", where)).strip()
            self.send(JobDone(job.id, timings_ms=timings, problem=Problem("no-face", detail)))
            return
        self._encoding[job.id] = timings
        self.encoders.submit(EncodeTask(job, rec, preview, self.model_info))

    def _failed(self, ready: list[tuple[Job, np.ndarray, dict[str, float]]], exc: Exception) -> None:
        """A backend call failed: an OOM frees the cache and retries image by image; a sticky device
        error answers the jobs 503 and ends the process (the pool starts a fresh one); a bug fails
        these jobs only."""
        traceback.print_exc()
        kind = device_failure(exc)
        if kind == "oom":
            release_device_memory(self.spec.device)
            if len(ready) > 1:
                for item in ready:
                    self._reconstruct([item])
                return
        if kind is None:
            problem = Problem("internal", "the reconstruction failed")
        else:
            problem = Problem(
                "unavailable", "the device ran out of memory or failed; retry", headers={"Retry-After": "1"}
            )
        for job, _, timings in ready:
            self.send(JobDone(job.id, timings_ms=timings, problem=problem))
        if kind == "lost":
            print("face3d: sticky device error; this worker exits for a fresh one", flush=True)
            os._exit(DEVICE_LOST_EXIT)  # no teardown: the dead CUDA context could hang it

    def _encoder_count(self) -> int:
        """encode_processes, else threads (0) on CPU and processes on a GPU, where spare cores wait."""
        if self.settings.encode_processes:
            return self.settings.encode_processes
        return GPU_ENCODER_PROCESSES if self.spec.device.startswith("cuda") else 0

    def _encoded(self, done: Encoded) -> None:
        PROGRESS.step()
        timings = self._encoding.pop(done.job_id)
        if done.problem is None:
            timings["encode"] = done.encode_ms
        self.send(JobDone(done.job_id, done.summary, done.artifact, timings, done.problem))

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


def _receiver(jobs: Connection) -> Callable[[float], object]:
    def receive(timeout: float) -> object:
        try:
            if not jobs.poll(timeout):
                raise queue.Empty
            return jobs.recv()
        except (EOFError, OSError):  # the API process is gone: stop like on STOP
            return STOP

    return receive


def worker_main(spec: WorkerSpec, jobs: Connection, results: Connection) -> None:
    """Process entry point (spawn target): set up, report ready, serve until STOP or parent exit."""
    lock = threading.Lock()

    def send(message: object) -> None:
        with lock:  # the main loop and the encoder threads share one pipe
            results.send(message)

    start_heartbeat(send, spec.settings.watchdog_s / 4)
    try:
        import torch

        torch.set_num_threads(spec.threads)
        if spec.device.startswith("cuda"):
            torch.cuda.set_device(torch.device(spec.device))
        loop = WorkerLoop(spec, _receiver(jobs), send)
        warmup_s = loop.warmup()
    except Exception:
        send(WorkerFailed(traceback.format_exc()))  # the parent logs it; exit without a second traceback
        raise SystemExit(1) from None
    send(WorkerReady(os.getpid(), spec.device, warmup_s, loop.model_info))
    if spec.settings.compile:  # serve eager now; compiled code is swapped in as it becomes available
        from face3d.service.workers.background_compile import start_background_compile

        backend = loop.pipeline.backend
        start_background_compile(backend, spec.settings, spec.device, lambda s: send(CompiledUpdate(s)))
    loop.run()
