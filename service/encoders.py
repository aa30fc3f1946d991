"""Encoders: PNG/OBJ/GLB/JSON encoding beside a worker, in processes (off its GIL) or threads.

Why processes: fpng (the fast PNG encoder) and most of the OBJ/GLB/JSON building hold
the GIL. In encoder *threads* they stall the worker's own loop, which must keep feeding the device
(measured on 2 CPU cores: two threads encode four 2048² PNGs slower than one thread does). Each
encoder process has its own GIL; the worker only pickles the Reconstruction into a pipe.

Each encoder owns a one-way task pipe whose only writer is the worker, so an encoder sees EOF and
exits by itself when its worker dies, even by SIGKILL: no orphans. An encoder that dies while the
worker lives takes its queued jobs with it, so the worker exits too and the pool answers those
jobs with 503 and starts a fresh worker (the usual crash path).
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from face3d.models.reconstruction import Reconstruction

THREAD_ENCODERS = 2  # without encoder processes: threads, so one job's encoding overlaps the next batch
ENCODER_DIED_EXIT = 70  # EX_SOFTWARE: the worker stops so the pool fails its jobs and respawns it


@dataclass
class EncodeTask:
    """What one encoder needs for one job: the reconstruction, and the photo only for the preview."""

    job_id: str
    rec: Reconstruction
    image: np.ndarray | None
    formats: frozenset[str]
    texture_format: str
    model_info: dict[str, Any]


@dataclass
class Encoded:
    """Files and the result.json document of one job, or a one-line error."""

    job_id: str
    files: dict[str, bytes]
    summary: dict[str, Any]
    encode_ms: float
    error: str | None = None


def encode(task: EncodeTask, topology: Any) -> Encoded:
    """Build one job's files; failures come back as a one-line error, never an exception."""
    from face3d.models.export import export_files, result_json

    start = time.monotonic()
    try:
        files = export_files(
            task.rec, task.image, topology, set(task.formats), task.texture_format, task.model_info
        )
        summary = result_json(task.rec, task.model_info, list(files))  # the same document as result.json
        return Encoded(task.job_id, files, summary, (time.monotonic() - start) * 1000.0)
    except Exception:
        detail = traceback.format_exc(limit=1).strip().splitlines()[-1]
        return Encoded(task.job_id, {}, {}, 0.0, f"encoding failed: {detail}")


def encoder_main(tasks: Connection, results: Connection) -> None:
    """Encoder process loop: one task in, one Encoded out, until EOF or None."""
    from face3d.models.topology import load_topology

    topology = load_topology()
    while True:
        try:
            task: EncodeTask | None = tasks.recv()
        except (EOFError, OSError):  # the worker is gone
            return
        if task is None:
            return
        results.send(encode(task, topology))


class EncoderPool:
    """Encoding beside the worker loop: ``processes`` encoder processes, or threads when 0.

    Processes escape the GIL but cost a pickle of every texture through a pipe: they pay off where
    spare cores wait for work (GPU hosts), while on a small CPU host, where torch already uses
    every core, two threads were faster (bench/http.py on 2 cores: p50 91 ms vs 133 ms at
    concurrency 1). ``submit`` blocks while ``depth`` tasks per encoder are queued: backpressure that
    keeps a slow encoder from piling up textures in memory. ``on_done`` runs on a pool thread.
    """

    def __init__(self, processes: int, on_done: Callable[[Encoded], None], depth: int = 2) -> None:
        self._on_done = on_done
        self._closing = False
        self._writers: list[Connection] = []
        self._processes: list[Any] = []
        self._lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None
        lanes = processes or THREAD_ENCODERS
        self._slots = threading.Semaphore(lanes * depth)
        self._turn = itertools.cycle(range(lanes))
        if not processes:
            from face3d.models.topology import load_topology

            self._topology = load_topology()
            self._threads = ThreadPoolExecutor(THREAD_ENCODERS, thread_name_prefix="encode")
            return
        ctx = mp.get_context("spawn")
        for index in range(processes):
            task_reader, task_writer = ctx.Pipe(duplex=False)
            result_reader, result_writer = ctx.Pipe(duplex=False)
            process = ctx.Process(
                target=encoder_main,
                args=(task_reader, result_writer),
                name=f"face3d-encoder-{index}",
                daemon=True,
            )
            process.start()
            task_reader.close()
            result_writer.close()
            self._writers.append(task_writer)
            self._processes.append(process)
            threading.Thread(
                target=self._read, args=(result_reader,), name=f"encoder-reader-{index}", daemon=True
            ).start()

    def _finish(self, encoded: Encoded) -> None:
        self._slots.release()
        self._on_done(encoded)

    def _read(self, results: Connection) -> None:
        while True:
            try:
                encoded: Encoded = results.recv()
            except (EOFError, OSError):
                if not self._closing:
                    print("face3d: an encoder process died; stopping this worker", file=sys.stderr)
                    os._exit(ENCODER_DIED_EXIT)
                return
            self._finish(encoded)

    def submit(self, task: EncodeTask) -> None:
        self._slots.acquire()
        if self._threads is not None:
            self._threads.submit(lambda: self._finish(encode(task, self._topology)))
            return
        with self._lock:
            self._writers[next(self._turn)].send(task)

    def close(self, timeout_s: float = 30.0) -> None:
        """Let queued tasks finish, then stop every encoder."""
        self._closing = True
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            return
        with self._lock:
            for writer in self._writers:
                writer.send(None)
        deadline = time.monotonic() + timeout_s
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
