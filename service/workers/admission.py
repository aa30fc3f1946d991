"""Admission and dispatch: which requests get in, and which worker runs each admitted job.

Kept apart from the worker processes (service/workers/supervisor.py) because this is the request side:
jobs, deadlines, the wait a new job can expect and the 503s that keep it bounded. It owns the queue,
the jobs admitted and whether it still admits; of the workers it only asks which ones may take work
now (``Supervisor.serving_workers``) and hears their messages (``on_message``), both wired up by
``WorkerPool`` (service/workers/pool.py).

A worker holds at most ``2 * max_batch`` jobs (one batch computing, one queued in its pipe); the
rest wait in one bounded deque of ``max_queue`` jobs, beyond which ``submit`` answers 503 +
Retry-After at once instead of letting latency grow without bound. With no worker able to take
work (all warming, replaced or stuck), or when the wait it predicts for a new job exceeds
``max_queue_wait_s``, it answers 503 at once too (``check``, which the routes call through
``WorkerPool.check_admission`` before reading an upload): under overload, admitted requests stay
fast and the rest are told to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Sequence

from face3d.models.pipeline import ReconstructOptions
from face3d.service import metrics
from face3d.service.config import Settings
from face3d.service.errors import Problem
from face3d.service.workers.protocol import ArtifactKind, Job, JobDone, WorkerReady
from face3d.service.workers.supervisor import Pending, WorkerHandle

JOB_S_WEIGHT = 0.2  # of the newest job in the moving average of the work per job
_NOT_WORK = frozenset({"queue", "encode"})  # waiting, and encoding (overlaps the next batch)


def shutting_down() -> Problem:
    """The 503 for work that arrives, or is still queued, once the pool drains."""
    return Problem("unavailable", "the service is shutting down", headers={"Retry-After": "1"})


class Admission:
    """One bounded admission queue in front of the workers; jobs go to the least busy ready one.

    ``workers`` tells which workers may be given work now (``Supervisor.serving_workers``).
    """

    def __init__(self, settings: Settings, workers: Callable[[], list[WorkerHandle]]) -> None:
        self.settings = settings
        self.credit = 2 * settings.max_batch
        self._workers = workers
        self._waiting: deque[Pending] = deque()
        self._pending: dict[str, Pending] = {}  # every admitted job until its caller has an answer
        self._job_s = 0.0  # moving average of a job's work (decode + backend stages), for admission
        self._closed = False

    @property
    def closed(self) -> bool:
        """Admits nothing more: the pool is draining."""
        return self._closed

    def check(self) -> None:
        """Raise the 503 ``submit`` would answer now (draining, no worker ready, queue full, predicted
        wait over ``max_queue_wait_s``); cheap, so routes call it before reading an upload, which an
        overloaded server should not pay for."""
        if self._closed:
            raise shutting_down()
        if not self._workers():
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
        ready = self._workers()
        ahead = len(self._waiting) + sum(len(w.inflight) for w in ready)
        return ahead * self._job_s / max(1, len(ready))

    async def submit(
        self,
        data: bytes,
        options: ReconstructOptions,
        tenant: str,
        result_id: str,
        artifact: ArtifactKind | None = None,
        photos: Sequence[tuple[str, bytes]] = (),
    ) -> JobDone:
        """Run one image through a worker, which stores the result as ``result_id`` of ``tenant`` (or
        streams ``artifact`` back); raises ``Problem`` (503 full, draining or no worker, 504, job
        errors). Admission is decided before its first ``await``: a caller that has just passed
        ``check`` is admitted. ``photos`` (name, bytes), with empty ``data``: several photos of one
        person, one job and one head (a worker runs it alone)."""
        self.check()
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
            photos=tuple(photos),
        )
        pending = Pending(job, asyncio.get_running_loop().create_future())
        self._pending[job.id] = pending
        self._waiting.append(pending)
        self._pump()
        try:
            done = await asyncio.wait_for(asyncio.shield(pending.future), timeout)
        except TimeoutError:
            problem = Problem("timeout", f"no result within {timeout:g} s")
            pending.fail(problem)  # a worker that still gets to it drops it as expired
            with contextlib.suppress(ValueError):
                self._waiting.remove(pending)
            metrics.QUEUE_DEPTH.set(len(self._waiting))
            raise problem from None
        finally:
            self._pending.pop(job.id, None)
        if done.problem is not None:
            raise done.problem
        return done

    async def drain(self, deadline: float) -> None:
        """Admit nothing more, let admitted jobs finish until ``deadline``, then answer the rest 503."""
        self._closed = True
        while self._pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for pending in list(self._pending.values()):
            pending.fail(shutting_down())

    def _pump(self) -> None:
        """Move waiting jobs to the ready worker with the most free credit, oldest job first."""
        while self._waiting:
            candidates = [w for w in self._workers() if len(w.inflight) < self.credit]
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

    def on_message(self, worker: WorkerHandle, message: object) -> None:
        """A finished job's answer (after the supervisor has read the message); a finished job or a
        newly ready worker makes room for waiting jobs."""
        if isinstance(message, JobDone):
            pending = worker.inflight.pop(message.job_id, None)
            # per photo: one person job of eight photos must not read as eight times slower jobs
            photos = len(pending.job.photos) if pending is not None and pending.job.photos else 1
            work_s = (
                sum(ms for stage, ms in message.timings_ms.items() if stage not in _NOT_WORK) / 1000 / photos
            )
            if work_s > 0:
                self._job_s += JOB_S_WEIGHT * (work_s - self._job_s) if self._job_s else work_s
            metrics.record_stages(message.timings_ms)
            for face in message.summary.faces if message.summary else ():
                metrics.record_face_quality(face.score, face.texture_coverage)
            if pending is not None and not pending.future.done():
                pending.future.set_result(message)
        if isinstance(message, JobDone | WorkerReady):
            self._pump()
