"""Form batches from a stream of jobs: fill by size or by time, set aside jobs that are already late.

Kept apart from the worker process so it can be tested with plain objects and a ``queue.Queue``:
the worker hands it a ``receive(timeout)`` function over its job pipe. Padding a batch up to a
compiled bucket size is the job of the backend's ``FrontEnd`` (models/nets/frontend.py), not this
module's.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

J = TypeVar("J")
K = TypeVar("K", bound=Hashable)

STOP = None
"""Sentinel a producer sends to say "no more jobs": the current batch is finished, then the loop ends."""

Receive = Callable[[float], object]
"""``receive(timeout_s)`` returns the next item (a job or ``STOP``) or raises ``queue.Empty``."""


@dataclass
class Batch(Generic[J]):
    """What one call to ``Batcher.next_batch`` gathered."""

    jobs: list[J] = field(default_factory=list)  # still within their deadline, arrival order
    expired: list[J] = field(default_factory=list)  # past their deadline: answer with a timeout
    stop: bool = False  # the producer sent STOP: process ``jobs`` and then exit


class Batcher(Generic[J]):
    """Collect up to ``max_batch`` live jobs, waiting at most ``max_wait_s`` after the first one.

    Waiting for more jobs trades a little latency for throughput: a batch of 8 costs far less than 8
    batches of 1 on a GPU. The wait starts when the first job arrives, so an idle service answers a
    lone request after at most ``max_wait_s`` extra. Jobs whose deadline has already passed when they
    are received are set aside (the client has been told 504 already or soon will be) so they never
    occupy a slot in the batch.
    """

    def __init__(
        self,
        receive: Receive,
        max_batch: int,
        max_wait_s: float,
        deadline: Callable[[J], float],
        clock: Callable[[], float] = time.monotonic,
        idle_timeout_s: float = 0.5,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._receive = receive
        self._max_batch = max_batch
        self._max_wait_s = max(0.0, max_wait_s)
        self._deadline = deadline
        self._clock = clock
        self._idle_timeout_s = idle_timeout_s

    def next_batch(self) -> Batch[J]:
        """Block up to ``idle_timeout_s`` for a first job, then fill; an empty batch means "idle"."""
        batch: Batch[J] = Batch()
        try:
            first = self._receive(self._idle_timeout_s)
        except queue.Empty:
            return batch
        window_end = self._clock() + self._max_wait_s
        item = first
        while True:
            if item is STOP:
                batch.stop = True
                break
            self._sort(item, batch)  # type: ignore[arg-type]
            if len(batch.jobs) >= self._max_batch:
                break
            try:
                item = self._receive(max(0.0, window_end - self._clock()))
            except queue.Empty:
                break
        return batch

    def _sort(self, job: J, batch: Batch[J]) -> None:
        (batch.jobs if self._deadline(job) > self._clock() else batch.expired).append(job)


def group_by(jobs: Iterable[J], key: Callable[[J], K]) -> dict[K, list[J]]:
    """Split a batch into runs the engine can take in one call (same uv size, same face mode).

    Order within each group is arrival order, and groups appear in order of their first job, so the
    oldest request is served first.
    """
    groups: dict[K, list[J]] = {}
    for job in jobs:
        groups.setdefault(key(job), []).append(job)
    return groups
