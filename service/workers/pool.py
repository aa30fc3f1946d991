"""WorkerPool: the one object the app holds for its workers: start, drain, and what /readyz and
/v1/models report about them.

It is built in layers, one module each, every layer extending the one below:

* ``Supervisor`` (service/workers/supervisor.py): one worker process per device, its pipe threads, the
  supervisor task that replaces a dead or stuck worker, and the watchdog's rules;
* ``Admission`` (service/workers/admission.py): the bounded queue in front of the workers, ``check_admission``
  and ``submit``, and dispatch to the least busy ready worker;
* ``WorkerPool`` (here): the lifecycle the app's lifespan drives and the readiness and status facts
  the health and models routes show.

Everything that changes pool state runs on the API's asyncio loop (see service/workers/supervisor.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from face3d.service.api.schemas import WorkerReadiness, WorkerStatus
from face3d.service.workers.admission import Admission, shutting_down


class WorkerPool(Admission):
    """One bounded admission queue in front of one worker process per device."""

    async def start(self) -> None:
        """Spawn every worker (they warm up in the background; see ``ready``)."""
        self._start_workers()

    async def drain(self, wait_s: float | None = None) -> None:
        """Stop admitting, let in-flight jobs finish (up to ``wait_s``, default drain_timeout_s), then
        stop the workers."""
        self._draining = True
        deadline = time.monotonic() + (self.settings.drain_timeout_s if wait_s is None else wait_s)
        while self._pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for pending in list(self._pending.values()):
            pending.fail(shutting_down())
        await self._stop_workers(deadline)

    @property
    def ready(self) -> bool:
        """Every worker slot has a warmed process and the pool is not draining."""
        return not self._draining and all(w is not None and w.serving for w in self._workers)

    @property
    def warmed(self) -> bool:
        """Every slot has been ready at least once since start (the initial warm-up is over)."""
        return all(self._ever_ready)

    def readiness(self) -> list[WorkerReadiness]:
        """Per-worker readiness for the open /readyz: no pids or other internals."""
        return [
            WorkerReadiness(
                slot=slot,
                device=self.devices[slot],
                ready=bool(w and w.serving),
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
                ready=bool(w and w.serving),
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
