"""The API process's side of the worker processes: one per device, started, fed and watched from
here, and replaced when it dies or stops making progress. (The worker's side, its heartbeats and
device errors, is service/workers/heartbeat.py; the bounded queue in front of the workers is
service/workers/admission.py; ``WorkerPool`` in service/workers/pool.py holds one of each.)

Kept apart from admission because it deals in processes, pipes and threads, not in requests: the
only request state it touches is what a dead worker held, which it fails with 503. Every message a
worker sends goes on, after the supervisor has read what concerns the worker itself, to the
``on_message`` callback it was built with (the pool's admission, for the jobs' answers).

Everything that changes worker state runs on the API's asyncio loop; threads only move bytes:

* per worker, a *sender* thread writes jobs into the worker's pipe (a 20 MB upload must not block
  the loop) and a *reader* thread receives its messages and hands them to the loop with
  ``call_soon_threadsafe``;
* a supervisor task notices a dead worker within ``SUPERVISE_INTERVAL_S``, fails the jobs it held
  with 503 and starts a replacement (after a back-off while a slot dies before it is ready).

Workers are ``service/workers/procs.py`` children (spawn, a one-way pipe each way: see there why); the
messages are ``service/workers/protocol.py``'s.

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
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from face3d.service import metrics
from face3d.service.config import Settings
from face3d.service.errors import Problem
from face3d.service.workers.batching import STOP
from face3d.service.workers.devices import threads_per_worker, worker_devices
from face3d.service.workers.procs import ChildProcess, join_all
from face3d.service.workers.protocol import (
    BatchDone,
    CompiledUpdate,
    Heartbeat,
    Job,
    JobDone,
    WorkerFailed,
    WorkerReady,
    WorkerSpec,
)
from face3d.service.workers.worker import worker_main

log = logging.getLogger("face3d.pool")

SUPERVISE_INTERVAL_S = 0.25
MAX_RESTART_BACKOFF_S = 30.0
_CLOSE = object()  # tells a sender thread to exit without writing to the pipe


@dataclass
class Pending:
    """One admitted job and the future its caller awaits."""

    job: Job
    future: asyncio.Future[JobDone]

    def fail(self, problem: Problem) -> None:
        """Answer the caller with ``problem``, unless it has its answer already."""
        if not self.future.done():
            self.future.set_exception(problem)
            self.future.exception()  # mark retrieved: a timed-out caller may never await it


@dataclass
class WorkerHandle:
    """The parent's view of one worker process (replaced wholesale on restart)."""

    spec: WorkerSpec
    child: ChildProcess
    outbox: queue.SimpleQueue[object]
    inflight: dict[str, Pending] = field(default_factory=dict)
    ready: bool = False
    gone: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    seen: float = field(default_factory=time.monotonic)  # last message of any kind (watchdog)
    moved: float = field(default_factory=time.monotonic)  # last stage passed, or first job given
    progress: int = 0  # the worker's own stage counter, from its heartbeats

    @property
    def label(self) -> str:
        return str(self.spec.slot)

    @property
    def serving(self) -> bool:
        """Warmed up and not retired: it may be given work."""
        return self.ready and not self.gone


def worker_settings(settings: Settings) -> Settings:
    """What a worker process (and its encoders) gets: the settings without secrets it never needs.

    Workers verify no tokens and charge no quota; with neither the JWT secret nor the quota store's
    URL (which may carry a password), a compromised decoder cannot mint tokens or reset quotas.
    service/workers/procs.py strips the same keys from the environment children inherit.
    """
    return settings.model_copy(update={"jwt_secret": SecretStr(""), "quota_redis_url": ""})


MessageHandler = Callable[[WorkerHandle, object], None]


class Supervisor:
    """One worker process per device slot: spawn, pipe threads, death and watchdog, respawn, stop.

    Handles the messages about a worker itself (ready, heartbeats, batch numbers), then passes
    every message to ``on_message``, which deals with the jobs.
    """

    def __init__(self, settings: Settings, on_message: MessageHandler) -> None:
        self.settings = settings
        self.devices = worker_devices(settings.devices, settings.cpu_workers)
        self.threads = threads_per_worker(settings.torch_threads, len(self.devices))
        self._on_job_message = on_message
        self._workers: list[WorkerHandle | None] = [None] * len(self.devices)
        self._failures = [0] * len(self.devices)  # consecutive deaths before ready, per slot
        self._ever_ready = [False] * len(self.devices)  # for /readyz: warming vs degraded
        self._replacing = True  # a dead worker is replaced, until the pool shuts down
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: asyncio.Task[None] | None = None
        # Runs before multiprocessing's own exit handler (atexit is LIFO), which would otherwise join
        # live non-daemonic workers that are waiting on our still-open pipes: a hang at exit.
        atexit.register(self._kill_workers)

    def _kill_workers(self) -> None:
        for worker in self._workers:
            if worker is not None:
                worker.child.kill()

    @property
    def workers(self) -> tuple[WorkerHandle | None, ...]:
        """Each slot's current worker, by slot (None until its first start)."""
        return tuple(self._workers)

    @property
    def all_serving(self) -> bool:
        """Every slot has a warmed, live worker."""
        return all(w is not None and w.serving for w in self._workers)

    @property
    def warmed(self) -> bool:
        """Every slot has been ready at least once since start (the initial warm-up is over)."""
        return all(self._ever_ready)

    def serving_workers(self) -> list[WorkerHandle]:
        """The workers that may be given work now."""
        return [w for w in self._workers if w is not None and w.serving]

    def start(self) -> None:
        """Spawn every worker (they warm up in the background) and start watching them; on the loop."""
        self._loop = asyncio.get_running_loop()
        for slot in range(len(self.devices)):
            self._spawn(slot)
        self._watch = asyncio.create_task(self._supervise(), name="face3d-pool-supervisor")

    def stop_replacing(self) -> None:
        """From now on a worker that dies is not replaced (the pool is shutting down)."""
        self._replacing = False

    async def stop(self, deadline: float) -> None:
        """Stop watching, ask every live worker to finish, kill the ones still running at ``deadline``
        (but give them 2 s at least)."""
        self.stop_replacing()
        if self._watch:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        live = [w for w in self._workers if w and not w.gone]
        for w in live:
            w.outbox.put(STOP)
        grace = max(2.0, deadline - time.monotonic())
        await asyncio.to_thread(join_all, [w.child for w in live], grace)
        for w in live:
            self._retire(w)

    def _spawn(self, slot: int) -> None:
        spec = WorkerSpec(slot, self.devices[slot], worker_settings(self.settings), self.threads)
        # Not daemonic: a worker starts its own encoder processes (service/workers/encoders.py), which
        # daemonic processes may not. The atexit hook in __init__ still guarantees none outlives us.
        child = ChildProcess(worker_main, (spec,), f"face3d-worker-{slot}", daemon=False)
        worker = WorkerHandle(spec, child, queue.SimpleQueue())
        self._workers[slot] = worker
        threading.Thread(
            target=self._send_loop, args=(worker,), name=f"face3d-send-{slot}", daemon=True
        ).start()
        child.watch(lambda message: self._deliver(worker, message), lambda: None)
        log.info("worker %d starting on %s (pid %s)", slot, spec.device, child.pid)

    @staticmethod
    def _send_loop(worker: WorkerHandle) -> None:
        """A 20 MB upload must not block the event loop: jobs are pickled into the pipe here."""
        while (item := worker.outbox.get()) is not _CLOSE:
            try:
                worker.child.send(item)
            except OSError:  # the worker died; the supervisor fails what it held
                return
            if item is STOP:
                return

    def _deliver(self, worker: WorkerHandle, message: object) -> None:
        """From the child's reader thread to the event loop, which owns all pool state."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed under us at shutdown: nobody waits
            self._loop.call_soon_threadsafe(self._on_message, worker, message)

    def _on_message(self, worker: WorkerHandle, message: object) -> None:
        """What a message says about ``worker`` itself; then every message goes to ``on_message``."""
        now = time.monotonic()
        worker.seen = now
        if isinstance(message, JobDone | BatchDone):
            worker.moved = now
        if isinstance(message, Heartbeat):
            if message.progress != worker.progress:
                worker.progress, worker.moved = message.progress, now
        elif isinstance(message, BatchDone):
            metrics.record_batch(message.size)
            if message.vram is not None:
                metrics.record_vram(worker.label, worker.spec.device, message.vram)
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
            metrics.WORKERS_READY.set(len(self.serving_workers()))
            log.info(
                "worker %d ready on %s in %.1f s warmup", worker.spec.slot, message.device, message.warmup_s
            )
        elif isinstance(message, CompiledUpdate):
            worker.info["compiled"] = dict(message.status)
            metrics.record_compiled(worker.label, message.status)
            log.info("worker %d runs compiled: %s", worker.spec.slot, message.status)
        elif isinstance(message, WorkerFailed):
            log.error("worker %d failed to start:\n%s", worker.spec.slot, message.error)
        self._on_job_message(worker, message)

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            for w in list(self._workers):
                if w is not None and not w.gone and not w.child.is_alive():
                    self._on_death(w)
                elif w is not None and not w.gone and (reason := self.stuck(w)):
                    log.error(
                        "worker %d (pid %s) %s: killing and replacing it", w.spec.slot, w.child.pid, reason
                    )
                    w.child.process.kill()  # SIGKILL works on a stopped process too
                    threading.Thread(target=w.child.process.join, args=(10,), daemon=True).start()  # reap
                    self._on_death(w, "the worker processing this image stopped making progress; retry")

    def stuck(self, worker: WorkerHandle) -> str | None:
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
        self, worker: WorkerHandle, detail: str = "the worker processing this image stopped; retry"
    ) -> None:
        """Fail what the dead worker held (503, retryable) and schedule its replacement."""
        slot = worker.spec.slot
        was_ready = worker.ready
        log.error("worker %d (pid %s) died with exit code %s", slot, worker.child.pid, worker.child.exitcode)
        for pending in worker.inflight.values():
            pending.fail(Problem("unavailable", detail, headers={"Retry-After": "1"}))
        worker.inflight.clear()
        self._retire(worker)
        metrics.WORKER_RESTARTS.inc()
        metrics.WORKERS_READY.set(len(self.serving_workers()))
        if not self._replacing:
            return
        self._failures[slot] = 0 if was_ready else self._failures[slot] + 1
        delay = min(MAX_RESTART_BACKOFF_S, 2.0 ** self._failures[slot] - 1)  # crash loop: 0, 1, 3, 7 ... s
        assert self._loop is not None
        self._loop.call_later(delay, self._respawn, slot)

    def _respawn(self, slot: int) -> None:
        if self._replacing:
            self._spawn(slot)

    def _retire(self, worker: WorkerHandle) -> None:
        worker.gone = True
        worker.ready = False
        worker.outbox.put(_CLOSE)
        worker.child.close_input()
