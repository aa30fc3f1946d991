"""WorkerPool: the one object the app holds for its workers: start, admit and submit, drain, and
what /readyz and /v1/models report about them.

It holds two parts, each an object with its own state (composed, as LitServe's server holds its
loops):

* ``supervisor`` (``Supervisor``, service/workers/supervisor.py): one worker process per device,
  its pipe threads, the task that replaces a dead or stuck worker, and the watchdog's rules;
* ``admission`` (``Admission``, service/workers/admission.py): the bounded queue in front of the
  workers, its deadlines and 503s, and dispatch to the least busy ready worker.

The pool wires them together (admission asks the supervisor which workers may take work; the
supervisor passes the workers' messages on to admission) and turns their state into the lifecycle
the app's lifespan drives and the readiness and status facts the health and models routes show.
Everything that changes pool state runs on the API's asyncio loop (see service/workers/supervisor.py).
"""

from __future__ import annotations

import time
from typing import Any

from face3d.service.api.schemas import WorkerReadiness, WorkerStatus
from face3d.service.config import Settings
from face3d.service.workers.admission import Admission
from face3d.service.workers.supervisor import Supervisor, WorkerHandle


class WorkerPool:
    """One bounded admission queue in front of one worker process per device."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.supervisor = Supervisor(settings, on_message=self._on_worker_message)
        self.admission = Admission(settings, workers=self.supervisor.serving_workers)
        # What the routes call is admission's own: the 503 a job would get now, and running one.
        self.check_admission = self.admission.check
        self.submit = self.admission.submit

    def _on_worker_message(self, worker: WorkerHandle, message: object) -> None:
        """The supervisor has read what a message says about the worker; the jobs are admission's."""
        self.admission.on_message(worker, message)

    async def start(self) -> None:
        """Spawn every worker (they warm up in the background; see ``ready``)."""
        self.supervisor.start()

    async def drain(self, wait_s: float | None = None) -> None:
        """Stop admitting, let in-flight jobs finish (up to ``wait_s``, default drain_timeout_s), then
        stop the workers. A worker that dies meanwhile is not replaced."""
        deadline = time.monotonic() + (self.settings.drain_timeout_s if wait_s is None else wait_s)
        self.supervisor.stop_replacing()
        await self.admission.drain(deadline)
        await self.supervisor.stop(deadline)

    @property
    def draining(self) -> bool:
        return self.admission.closed

    @property
    def serving(self) -> bool:
        """At least one worker can take work now and the pool is not draining."""
        return not self.admission.closed and bool(self.supervisor.serving_workers())

    @property
    def ready(self) -> bool:
        """Every worker slot has a warmed process and the pool is not draining."""
        return not self.admission.closed and self.supervisor.all_serving

    @property
    def warmed(self) -> bool:
        """Every slot has been ready at least once since start (the initial warm-up is over)."""
        return self.supervisor.warmed

    def readiness(self) -> list[WorkerReadiness]:
        """Per-worker readiness for the open /readyz: no pids or other internals."""
        return [
            WorkerReadiness(
                slot=slot,
                device=self.supervisor.devices[slot],
                ready=bool(w and w.serving),
                compiled=dict(w.info.get("compiled", {})) if w else {},
            )
            for slot, w in enumerate(self.supervisor.workers)
        ]

    def status(self) -> list[WorkerStatus]:
        """Per-worker facts for /v1/models: slot, device, pid, ready, jobs held, warm-up seconds."""
        return [
            WorkerStatus(
                slot=slot,
                device=self.supervisor.devices[slot],
                ready=bool(w and w.serving),
                pid=w.child.pid if w else None,
                inflight=len(w.inflight) if w else 0,
                compile_s=w.info.get("compile_s") if w else None,
                compiled=dict(w.info.get("compiled", {})) if w else {},
            )
            for slot, w in enumerate(self.supervisor.workers)
        ]

    def model_info(self) -> dict[str, Any]:
        """The backend's self-description as reported by the first ready worker (empty while warming)."""
        for w in self.supervisor.workers:
            if w and w.ready:
                return {**w.info.get("model_info", {}), "compiled": dict(w.info.get("compiled", {}))}
        return {}
