"""Encoders: build a job's files (PNG/OBJ/GLB/JSON) and store them, beside a worker, in processes
(off its GIL) or threads.

Where the files are encoded they are also stored: the encoder writes them to the ResultStore and
answers with a small ``ResultSummary`` (or the one artifact a ``?format=`` request streams back), so
textures never travel back through the worker's or the API's pipes.

Why processes: fpng (the fast PNG encoder) and most of the OBJ/GLB/JSON building hold the GIL. In
encoder *threads* they stall the worker's own loop, which must keep feeding the device. Each encoder
process has its own GIL; the worker pickles the Reconstruction into a pipe, less its textures, which
go through shared memory (shared_pixels.py). On a small CPU host,
where torch already uses every core, threads are faster (no pickling): the worker picks (see
``WorkerLoop``).

Each encoder's only task writer is its worker, so an encoder sees EOF and exits by itself when its
worker dies, even by SIGKILL: no orphans. An encoder that dies while the worker lives takes its
queued jobs with it, so the worker exits too and the pool answers those jobs with 503 and starts a
fresh worker (the usual crash path).
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

from face3d.models.errors import ModelError
from face3d.models.export.mesh import MeshExport
from face3d.models.pipeline import export_result
from face3d.service.backend_factory import configured_backend_class
from face3d.service.config import Settings
from face3d.service.errors import Problem, problem_from_error
from face3d.service.storage import ResultStore, make_store
from face3d.service.workers.artifacts import build_artifact
from face3d.service.workers.protocol import Encoded, EncodeTask, ResultSummary
from face3d.service.workers.shared_pixels import SharedTask, release

log = logging.getLogger("face3d.encoders")

THREAD_ENCODERS = 2  # without encoder processes: threads, so one job's encoding overlaps the next batch
ENCODER_DIED_EXIT = 70  # EX_SOFTWARE: the worker stops so the pool fails its jobs and respawns it


class Encoder:
    """Turns one EncodeTask into an Encoded: export, then store or package the artifact."""

    def __init__(self, exporter: MeshExport, store: ResultStore) -> None:
        self.exporter = exporter
        self.store = store

    @classmethod
    def from_settings(cls, settings: Settings) -> Encoder:
        """The encoder for the configured backend and result store (in whichever process calls it)."""
        return cls(configured_backend_class(settings).mesh_export(), make_store(settings))

    def encode(self, task: EncodeTask) -> Encoded:
        """Never raises: failures come back as a problem for this job only."""
        job = task.job
        start = time.monotonic()
        try:
            exported = export_result(task.rec, task.image, job.options, self.exporter, task.model_info)
        except ModelError as exc:
            return Encoded(job.id, problem=problem_from_error(exc))
        except Exception:
            log.exception("encoding job %s failed", job.id)
            return Encoded(job.id, problem=Problem("internal", "the result files could not be built"))
        encode_ms = (time.monotonic() - start) * 1000.0
        if job.artifact is not None:
            return Encoded(job.id, artifact=build_artifact(job.artifact, exported.files), encode_ms=encode_ms)
        try:
            self.store.put(job.id, job.tenant, exported.files, job.ttl_s)
        except Exception:  # e.g. the bucket is down: this job fails, the encoder keeps serving
            log.exception("storing result %s failed", job.id)
            return Encoded(job.id, problem=Problem("internal", "the result could not be stored"))
        summary = ResultSummary.from_document(job.id, exported.document, list(exported.files))
        return Encoded(job.id, summary=summary, encode_ms=encode_ms)


def encoder_main(settings: Settings, tasks: Connection, results: Connection) -> None:
    """Encoder process loop: one task in, one Encoded out, until EOF or None."""
    encoder = Encoder.from_settings(settings)
    while True:
        try:
            shared: SharedTask | None = tasks.recv()
        except (EOFError, OSError):  # the worker is gone
            return
        if shared is None:
            return
        task, blocks = shared.receive()
        try:
            encoded = encoder.encode(task)
        finally:
            del task  # its views of the blocks go first
            release(blocks)
        results.send(encoded)


class EncoderPool:
    """Encoding beside the worker loop: ``processes`` encoder processes, or threads when 0.

    ``submit`` blocks while ``depth`` tasks per encoder are queued: backpressure that keeps a slow
    encoder from piling up textures in memory. ``on_done`` runs on a pool thread.
    """

    def __init__(
        self, processes: int, settings: Settings, on_done: Callable[[Encoded], None], depth: int = 2
    ) -> None:
        from face3d.service.workers.procs import ChildProcess

        self._on_done = on_done
        self._closing = False
        self._children: list[ChildProcess] = []
        self._threads: ThreadPoolExecutor | None = None
        lanes = processes or THREAD_ENCODERS
        self._slots = threading.Semaphore(lanes * depth)
        self._turn = itertools.cycle(range(lanes))
        self._lock = threading.Lock()
        if not processes:
            self._encoder = Encoder.from_settings(settings)
            self._threads = ThreadPoolExecutor(THREAD_ENCODERS, thread_name_prefix="encode")
            return
        for index in range(processes):
            child = ChildProcess(encoder_main, (settings,), f"face3d-encoder-{index}", daemon=True)
            child.watch(self._finish, self._on_eof)
            self._children.append(child)

    def _finish(self, encoded: object) -> None:
        assert isinstance(encoded, Encoded)
        self._slots.release()
        self._on_done(encoded)

    def _on_eof(self) -> None:
        if not self._closing:
            print("face3d: an encoder process died; stopping this worker", file=sys.stderr)
            os._exit(ENCODER_DIED_EXIT)

    def submit(self, task: EncodeTask) -> None:
        self._slots.acquire()
        if self._threads is not None:
            self._threads.submit(lambda: self._finish(self._encoder.encode(task)))
            return
        with self._lock:
            child = self._children[next(self._turn)]
        shared = SharedTask.share(task)  # textures through shared memory: the pipe carries the rest
        try:
            child.send(shared)
        except BaseException:
            shared.discard()
            raise

    def close(self, timeout_s: float = 30.0) -> None:
        """Let queued tasks finish, then stop every encoder."""
        from face3d.service.workers.procs import join_all

        self._closing = True
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            return
        for child in self._children:
            child.send(None)
        join_all(self._children, timeout_s)
