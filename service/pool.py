"""WorkerPool: admission control, dispatch to per-device worker processes, supervision, drain.

Everything that changes pool state runs on the API's asyncio loop; threads only move bytes:

* per worker, a *sender* thread writes jobs into the worker's pipe (a 20 MB upload must not block
  the loop) and a *reader* thread receives its messages and hands them to the loop with
  ``call_soon_threadsafe``;
* a supervisor task notices a dead worker within ``SUPERVISE_INTERVAL_S``, fails the jobs it held
  with 503 and starts a replacement.

Workers are ``service/procs.py`` children (spawn, a one-way pipe each way: see there why); the
messages are ``service/protocol.py``'s.

Admission: a worker holds at most ``2 * max_batch`` jobs (one batch computing, one queued in its
pipe); the rest wait in one bounded deque of ``max_queue`` jobs, beyond which ``submit`` answers
503 + Retry-After at once instead of letting latency grow without bound. With no worker able to
take work (all warming, replaced or stuck), or when the wait it predicts for a new job exceeds
``max_queue_wait_s``, it answers 503 at once too (``check_admission``, which the routes call before
reading an upload): under overload, admitted requests stay fast and the rest are told to retry.

Watchdog: every worker sends a ``Heartbeat`` every ``watchdog_s / 4``. A ready worker that sends
nothing for ``watchdog_s`` (SIGSTOPped, hung holding the GIL, its pipe or our reader dead), or that
holds jobs and passes no stage for ``max(watchdog_s, request_timeout_s)`` (stuck in native code,
a dead encoder), is killed and replaced like a crashed one: its jobs answer 503 at once.

Workers get ``worker_settings``: a copy without the JWT secret and the quota store URL.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from face3d.models.pipeline import ReconstructOptions
from face3d.service import metrics
from face3d.service.batching import STOP
from face3d.service.devices import threads_per_worker, worker_devices
from face3d.service.problems import Problem
from face3d.service.procs import ChildProcess, join_all
from face3d.service.protocol import (
    ArtifactKind,
    BatchDone,
    CompiledUpdate,
    Heartbeat,
    Job,
    JobDone,
    WorkerFailed,
    WorkerReady,
    WorkerSpec,
)
from face3d.service.schemas import WorkerReadiness, WorkerStatus
from face3d.service.worker import worker_main

log = logging.getLogger("face3d.pool")

SUPERVISE_INTERVAL_S = 0.25
JOB_S_WEIGHT = 0.2  # of the newest job in the moving average of the work per job
_NOT_WORK = frozenset({"queue", "encode"})  # waiting, and encoding (overlaps the next batch)
MAX_RESTART_BACKOFF_S = 30.0
_CLOSE = object()  # tells a sender thread to exit without writing to the pipe


@dataclass
class _Pending:
    job: Job
    future: asyncio.Future[JobDone]


@dataclass
class _Worker:
    """The parent's view of one worker process (replaced wholesale on restart)."""

    spec: WorkerSpec
    child: ChildProcess
    outbox: queue.SimpleQueue[object]
    inflight: dict[str, _Pending] = field(default_factory=dict)
    ready: bool = False
    gone: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    seen: float = field(default_factory=time.monotonic)  # last message of any kind (watchdog)
    moved: float = field(default_factory=time.monotonic)  # last stage passed, or first job given
    progress: int = 0  # the worker's own stage counter, from its heartbeats

    @property
    def label(self) -> str:
        return str(self.spec.slot)


def worker_settings(settings: Any) -> Any:
    """What a worker process (and its encoders) gets: the settings without secrets it never needs.

    Workers verify no tokens and charge no quota; with neither the JWT secret nor the quota store's
    URL (which may carry a password), a compromised decoder cannot mint tokens or reset quotas.
    service/procs.py strips the same keys from the environment children inherit.
    """
    return settings.model_copy(update={"jwt_secret": SecretStr(""), "quota_redis_url": ""})


class WorkerPool:
    """One bounded admission queue in front of one worker process per device."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.devices = worker_devices(settings.devices, settings.cpu_workers)
        self.threads = threads_per_worker(settings.torch_threads, len(self.devices))
        self.credit = 2 * settings.max_batch
        self._waiting: deque[_Pending] = deque()
        self._pending: dict[str, _Pending] = {}
        self._workers: list[_Worker | None] = [None] * len(self.devices)
        self._failures = [0] * len(self.devices)  # consecutive deaths before ready, per slot
        self._ever_ready = [False] * len(self.devices)  # for /readyz: warming vs degraded
        self._job_s = 0.0  # moving average of a job's work (decode + backend stages), for admission
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._supervisor: asyncio.Task[None] | None = None
        # Runs before multiprocessing's own exit handler (atexit is LIFO), which would otherwise join
        # live non-daemonic workers that are waiting on our still-open pipes: a hang at exit.
        atexit.register(self._kill_workers)

    def _kill_workers(self) -> None:
        for worker in self._workers:
            if worker is not None:
                worker.child.kill()

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Spawn every worker (they warm up in the background; see ``ready``)."""
        self._loop = asyncio.get_running_loop()
        for slot in range(len(self.devices)):
            self._spawn(slot)
        self._supervisor = asyncio.create_task(self._supervise(), name="face3d-pool-supervisor")

    @property
    def ready(self) -> bool:
        """Every worker slot has a warmed process and the pool is not draining."""
        return not self._draining and all(w is not None and w.ready and not w.gone for w in self._workers)

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def serving(self) -> bool:
        """At least one worker can take work now and the pool is not draining."""
        return not self._draining and any(w is not None and w.ready and not w.gone for w in self._workers)

    @property
    def warmed(self) -> bool:
        """Every slot has been ready at least once since start (the initial warm-up is over)."""
        return all(self._ever_ready)

    def check_admission(self) -> None:
        """Raise the 503 ``submit`` would answer now (draining, no worker ready, queue full, predicted
        wait over ``max_queue_wait_s``); cheap, so routes call it before reading an upload, which an
        overloaded server should not pay for."""
        if self._draining:
            raise Problem("unavailable", "the service is shutting down", headers={"Retry-After": "1"})
        if not self.serving:
            raise Problem(
                "unavailable",
                "no worker can take work right now; retry shortly",
                headers={"Retry-After": "5"},
            )
        if len(self._waiting) >= self.settings.max_queue:
            raise Problem(
                "overloaded", "the request queue is full; retry shortly", headers={"Retry-After": "1"}
            )
        limit = self.settings.max_queue_wait_s
        if limit and (wait := self.expected_wait()) > limit:
            raise Problem(
                "overloaded",
                f"the expected wait is {wait:.1f} s; retry shortly",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    def expected_wait(self) -> float:
        """Seconds a job admitted now would wait: the jobs ahead of it (queued, and held by the
        workers) times the measured work per job, shared among the ready workers."""
        ready = [w for w in self._workers if w is not None and w.ready and not w.gone]
        ahead = len(self._waiting) + sum(len(w.inflight) for w in ready)
        return ahead * self._job_s / max(1, len(ready))

    def readiness(self) -> list[WorkerReadiness]:
        """Per-worker readiness for the open /readyz: no pids or other internals."""
        return [
            WorkerReadiness(
                slot=slot,
                device=self.devices[slot],
                ready=bool(w and w.ready and not w.gone),
                compiled=dict(w.info.get("compiled", {})) if w else {},
            )
            for slot, w in enumerate(self._workers)
        ]

    def status(self) -> list[WorkerStatus]:
        """Per-worker facts for /v1/models: slot, device, pid, ready, jobs held, warm-up seconds."""
        return [
            WorkerStatus(
                slot=slot,
                device=self.devices[slot],
                ready=bool(w and w.ready and not w.gone),
                pid=w.child.pid if w else None,
                inflight=len(w.inflight) if w else 0,
                compile_s=w.info.get("compile_s") if w else None,
                compiled=dict(w.info.get("compiled", {})) if w else {},
            )
            for slot, w in enumerate(self._workers)
        ]

    def model_info(self) -> dict[str, Any]:
        """The engine's self-description as reported by the first ready worker (empty while warming)."""
        for w in self._workers:
            if w and w.ready:
                return {**w.info.get("model_info", {}), "compiled": dict(w.info.get("compiled", {}))}
        return {}

    async def drain(self, wait_s: float | None = None) -> None:
        """Stop admitting, let in-flight jobs finish (up to ``wait_s``, default drain_timeout_s), then
        stop the workers."""
        self._draining = True
        deadline = time.monotonic() + (self.settings.drain_timeout_s if wait_s is None else wait_s)
        while self._pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for pending in list(self._pending.values()):
            self._fail(
                pending, Problem("unavailable", "the service is shutting down", headers={"Retry-After": "1"})
            )
        if self._supervisor:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        live = [w for w in self._workers if w and not w.gone]
        for w in live:
            w.outbox.put(STOP)
        grace = max(2.0, deadline - time.monotonic())
        await asyncio.to_thread(join_all, [w.child for w in live], grace)
        for w in live:
            self._retire(w)

    # ---------------------------------------------------------------- requests
    async def submit(
        self,
        data: bytes,
        options: ReconstructOptions,
        tenant: str,
        result_id: str,
        artifact: ArtifactKind | None = None,
    ) -> JobDone:
        """Run one image through a worker, which stores the result as ``result_id`` of ``tenant`` (or
        streams ``artifact`` back); raises ``Problem`` (503 full, draining or no worker, 504, job
        errors). Admission is decided before its first ``await``: a caller that has just passed
        ``check_admission`` is admitted."""
        self.check_admission()
        assert self._loop is not None, "start() the pool first"
        now = time.monotonic()
        timeout = self.settings.request_timeout_s
        job = Job(
            result_id,
            data,
            options,
            deadline=now + timeout,
            admitted=now,
            tenant=tenant,
            ttl_s=self.settings.result_ttl_s,
            artifact=artifact,
        )
        pending = _Pending(job, self._loop.create_future())
        self._pending[job.id] = pending
        self._waiting.append(pending)
        self._pump()
        try:
            done = await asyncio.wait_for(asyncio.shield(pending.future), timeout)
        except TimeoutError:
            problem = Problem("timeout", f"no result within {timeout:g} s")
            self._fail(pending, problem)  # a worker that still gets to it drops it as expired
            with contextlib.suppress(ValueError):
                self._waiting.remove(pending)
            metrics.QUEUE_DEPTH.set(len(self._waiting))
            raise problem from None
        finally:
            self._pending.pop(job.id, None)
        if done.problem is not None:
            raise done.problem
        return done

    def _pump(self) -> None:
        """Move waiting jobs to the ready worker with the most free credit, oldest job first."""
        while self._waiting:
            candidates = [
                w for w in self._workers if w and w.ready and not w.gone and len(w.inflight) < self.credit
            ]
            if not candidates:
                break
            pending = self._waiting.popleft()
            if pending.future.done():  # timed out while waiting
                continue
            worker = min(candidates, key=lambda w: len(w.inflight))
            if not worker.inflight:  # the stall clock starts when an idle worker gets work
                worker.moved = time.monotonic()
            worker.inflight[pending.job.id] = pending
            worker.outbox.put(pending.job)
        metrics.QUEUE_DEPTH.set(len(self._waiting))

    @staticmethod
    def _fail(pending: _Pending, problem: Problem) -> None:
        if not pending.future.done():
            pending.future.set_exception(problem)
            pending.future.exception()  # mark retrieved: a timed-out caller may never await it

    # ---------------------------------------------------------------- workers
    def _spawn(self, slot: int) -> None:
        spec = WorkerSpec(slot, self.devices[slot], worker_settings(self.settings), self.threads)
        # Not daemonic: a worker starts its own encoder processes (service/encoders.py), which
        # daemonic processes may not. The atexit hook in __init__ still guarantees none outlives us.
        child = ChildProcess(worker_main, (spec,), f"face3d-worker-{slot}", daemon=False)
        worker = _Worker(spec, child, queue.SimpleQueue())
        self._workers[slot] = worker
        threading.Thread(
            target=self._send_loop, args=(worker,), name=f"face3d-send-{slot}", daemon=True
        ).start()
        child.watch(lambda message: self._deliver(worker, message), lambda: None)
        log.info("worker %d starting on %s (pid %s)", slot, spec.device, child.pid)

    @staticmethod
    def _send_loop(worker: _Worker) -> None:
        """A 20 MB upload must not block the event loop: jobs are pickled into the pipe here."""
        while (item := worker.outbox.get()) is not _CLOSE:
            try:
                worker.child.send(item)
            except OSError:  # the worker died; the supervisor fails what it held
                return
            if item is STOP:
                return

    def _deliver(self, worker: _Worker, message: object) -> None:
        """From the child's reader thread to the event loop, which owns all pool state."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed under us at shutdown: nobody waits
            self._loop.call_soon_threadsafe(self._on_message, worker, message)

    def _on_message(self, worker: _Worker, message: object) -> None:
        now = time.monotonic()
        worker.seen = now
        if isinstance(message, JobDone | BatchDone):
            worker.moved = now
        if isinstance(message, Heartbeat):
            if message.progress != worker.progress:
                worker.progress, worker.moved = message.progress, now
        elif isinstance(message, JobDone):
            work_s = sum(ms for stage, ms in message.timings_ms.items() if stage not in _NOT_WORK) / 1000
            if work_s > 0:
                self._job_s += JOB_S_WEIGHT * (work_s - self._job_s) if self._job_s else work_s
            pending = worker.inflight.pop(message.job_id, None)
            self._record_job(message)
            if pending is not None and not pending.future.done():
                pending.future.set_result(message)
            self._pump()
        elif isinstance(message, BatchDone):
            self._record_batch(worker, message)
        elif isinstance(message, WorkerReady):
            worker.ready = True
            worker.info = {
                "pid": message.pid,
                "compile_s": message.warmup_s,
                "model_info": message.model_info,
                "compiled": dict(message.model_info.get("compiled", {})),
            }
            metrics.record_compiled(worker.label, worker.info["compiled"])
            self._failures[worker.spec.slot] = 0
            self._ever_ready[worker.spec.slot] = True
            metrics.COMPILE_SECONDS.observe(message.warmup_s)
            metrics.WORKERS_READY.set(sum(1 for w in self._workers if w and w.ready and not w.gone))
            log.info(
                "worker %d ready on %s in %.1f s warmup", worker.spec.slot, message.device, message.warmup_s
            )
            self._pump()
        elif isinstance(message, CompiledUpdate):
            worker.info["compiled"] = dict(message.status)
            metrics.record_compiled(worker.label, message.status)
            log.info("worker %d runs compiled: %s", worker.spec.slot, message.status)
        elif isinstance(message, WorkerFailed):
            log.error("worker %d failed to start:\n%s", worker.spec.slot, message.error)

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            for w in list(self._workers):
                if w is not None and not w.gone and not w.child.is_alive():
                    self._on_death(w)
                elif w is not None and not w.gone and (reason := self._stuck(w)):
                    log.error(
                        "worker %d (pid %s) %s: killing and replacing it", w.spec.slot, w.child.pid, reason
                    )
                    w.child.process.kill()  # SIGKILL works on a stopped process too
                    threading.Thread(target=w.child.process.join, args=(10,), daemon=True).start()  # reap
                    self._on_death(w, "the worker processing this image stopped making progress; retry")

    def _stuck(self, worker: _Worker) -> str | None:
        """Why the watchdog must replace ``worker`` now, if it must (see the module docstring)."""
        if not worker.ready:  # warming up: a slow or failed warm-up shows as not ready instead
            return None
        now = time.monotonic()
        silent = now - worker.seen
        if silent > self.settings.watchdog_s:
            return f"sent nothing for {silent:.1f} s"
        stall = max(self.settings.watchdog_s, self.settings.request_timeout_s)
        if worker.inflight and now - worker.moved > stall:
            return f"holds {len(worker.inflight)} jobs and passed no stage for {now - worker.moved:.1f} s"
        return None

    def _on_death(
        self, worker: _Worker, detail: str = "the worker processing this image stopped; retry"
    ) -> None:
        """Fail what the dead worker held (503, retryable) and schedule its replacement."""
        slot = worker.spec.slot
        was_ready = worker.ready
        log.error("worker %d (pid %s) died with exit code %s", slot, worker.child.pid, worker.child.exitcode)
        for pending in worker.inflight.values():
            self._fail(pending, Problem("unavailable", detail, headers={"Retry-After": "1"}))
        worker.inflight.clear()
        self._retire(worker)
        metrics.WORKER_RESTARTS.inc()
        metrics.WORKERS_READY.set(sum(1 for w in self._workers if w and w.ready and not w.gone))
        if self._draining:
            return
        self._failures[slot] = 0 if was_ready else self._failures[slot] + 1
        delay = min(MAX_RESTART_BACKOFF_S, 2.0 ** self._failures[slot] - 1)  # crash loop: 0, 1, 3, 7 ... s
        assert self._loop is not None
        self._loop.call_later(delay, self._respawn, slot)

    def _respawn(self, slot: int) -> None:
        if not self._draining:
            self._spawn(slot)

    def _retire(self, worker: _Worker) -> None:
        worker.gone = True
        worker.ready = False
        worker.outbox.put(_CLOSE)
        worker.child.close_input()

    # ---------------------------------------------------------------- metrics
    @staticmethod
    def _record_job(done: JobDone) -> None:
        metrics.record_stages(done.timings_ms)
        for face in done.summary.faces if done.summary else ():
            metrics.record_face_quality(face.score, face.texture_coverage)

    @staticmethod
    def _record_batch(worker: _Worker, batch: BatchDone) -> None:
        metrics.record_batch(batch.size)
        if batch.vram is not None:
            metrics.record_vram(worker.label, worker.spec.device, batch.vram)
