"""The batching loop with plain objects and a simulated clock: no processes, no HTTP."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import pytest

from face3d.service.workers.batching import STOP, Batcher, group_by


@dataclass
class FakeJob:
    name: str
    deadline: float = float("inf")
    uv: int = 256


class ScriptedSource:
    """Items arriving at given simulated times; ``receive`` advances the simulated clock like a wait would."""

    def __init__(self, arrivals: list[tuple[float, object]]) -> None:
        self.now = 0.0
        self.arrivals = list(arrivals)

    def clock(self) -> float:
        return self.now

    def receive(self, timeout: float) -> object:
        if self.arrivals and self.arrivals[0][0] <= self.now + timeout:
            at, item = self.arrivals.pop(0)
            self.now = max(self.now, at)
            return item
        self.now += timeout
        raise queue.Empty


def batcher(source: ScriptedSource, max_batch: int = 4, max_wait_s: float = 0.005) -> Batcher[FakeJob]:
    return Batcher(source.receive, max_batch, max_wait_s, lambda j: j.deadline, clock=source.clock)


def names(jobs: list[FakeJob]) -> list[str]:
    return [j.name for j in jobs]


def test_fills_up_to_max_batch_and_leaves_the_rest_for_the_next_batch() -> None:
    src = ScriptedSource([(0.0, FakeJob(str(i))) for i in range(6)])
    b = batcher(src, max_batch=4)
    first, second = b.next_batch(), b.next_batch()
    assert names(first.jobs) == ["0", "1", "2", "3"]
    assert names(second.jobs) == ["4", "5"]
    assert not first.stop and not second.stop


def test_waits_at_most_max_wait_after_the_first_job() -> None:
    # "a" at t=0.300, "b" within the 5 ms window, "c" after it: the batch closes with a and b.
    src = ScriptedSource([(0.3, FakeJob("a")), (0.303, FakeJob("b")), (0.310, FakeJob("c"))])
    b = batcher(src, max_batch=8, max_wait_s=0.005)
    batch = b.next_batch()
    assert names(batch.jobs) == ["a", "b"]
    assert src.now == pytest.approx(0.305)
    assert names(b.next_batch().jobs) == ["c"]


def test_zero_wait_still_takes_jobs_that_are_already_queued() -> None:
    src = ScriptedSource([(0.0, FakeJob("a")), (0.0, FakeJob("b")), (0.001, FakeJob("late"))])
    batch = batcher(src, max_batch=8, max_wait_s=0.0).next_batch()
    assert names(batch.jobs) == ["a", "b"]


def test_idle_returns_an_empty_batch_so_the_caller_can_check_for_shutdown() -> None:
    batch = batcher(ScriptedSource([])).next_batch()
    assert batch.jobs == [] and batch.expired == [] and not batch.stop


def test_expired_jobs_are_set_aside_and_do_not_take_a_slot() -> None:
    src = ScriptedSource(
        [(0.0, FakeJob("late1", deadline=-1.0)), (0.0, FakeJob("ok1")), (0.0, FakeJob("late2", deadline=0.0)),
         (0.0, FakeJob("ok2")), (0.0, FakeJob("ok3"))]
    )  # fmt: skip
    batch = batcher(src, max_batch=3).next_batch()
    assert names(batch.jobs) == ["ok1", "ok2", "ok3"]
    assert names(batch.expired) == ["late1", "late2"]


def test_stop_ends_the_batch_and_is_reported() -> None:
    src = ScriptedSource([(0.0, FakeJob("a")), (0.0, STOP), (0.0, FakeJob("never"))])
    batch = batcher(src).next_batch()
    assert names(batch.jobs) == ["a"] and batch.stop
    assert src.arrivals  # nothing after STOP was consumed


def test_works_with_a_real_queue_and_the_real_clock() -> None:
    q: queue.Queue[object] = queue.Queue()
    b: Batcher[FakeJob] = Batcher(lambda t: q.get(timeout=t), 4, 0.2, lambda j: j.deadline)

    def produce() -> None:
        q.put(FakeJob("a"))
        time.sleep(0.02)
        q.put(FakeJob("b"))

    thread = threading.Thread(target=produce)
    started = time.monotonic()
    thread.start()
    batch = b.next_batch()
    thread.join()
    assert names(batch.jobs) == ["a", "b"]
    assert time.monotonic() - started >= 0.2 - 1e-3  # it waited out the window for more jobs


def test_rejects_a_non_positive_batch_size() -> None:
    with pytest.raises(ValueError):
        Batcher(lambda t: None, 0, 0.0, lambda j: 0.0)


def test_group_by_keeps_arrival_order_within_and_across_groups() -> None:
    jobs = [FakeJob("a", uv=512), FakeJob("b", uv=256), FakeJob("c", uv=512), FakeJob("d", uv=256)]
    groups = group_by(jobs, lambda j: j.uv)
    assert list(groups) == [512, 256]
    assert names(groups[512]) == ["a", "c"] and names(groups[256]) == ["b", "d"]
