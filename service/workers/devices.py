"""Device and CPU discovery: which worker processes to start and how many threads each gets.

Kept out of Settings: reading configuration must stay cheap and side-effect free, while this looks
at the machine (CUDA devices, CPU affinity, the cgroup quota) when the pool starts.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_AUTO_CPU_WORKERS = 4


class DeviceError(ValueError):
    """A configured device is not there; one line naming it and what was found."""


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup v2 CPU quota.

    In a container with ``resources.limits.cpu: 4`` on a 64-core node, affinity still shows 64; only
    ``cpu.max`` tells, and sizing thread pools by 64 would make every worker thrash.
    """
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):  # no cgroup v2 or no limit
        pass
    return cpus


def cpu_worker_count(cpu_workers: int) -> int:
    """``cpu_workers``, else one worker per usable core, at most MAX_AUTO_CPU_WORKERS.

    Why several workers rather than one multi-threaded one: the nets' ops are small, so torch's
    intra-op threads gain little, while each extra process brings its own GIL for the Python glue
    and the PNG encoder (bench/http_load.py on 2 cores, bench/results/: 22-24 vs 12-14 images/s at
    concurrency 8, p50 at concurrency 1 within noise: 85-94 vs 90-95 ms). The cap bounds memory
    and warm-up time.
    """
    return cpu_workers or min(available_cpus(), MAX_AUTO_CPU_WORKERS)


def worker_devices(devices: str, cpu_workers: int = 0) -> list[str]:
    """One torch device string per worker process for the ``devices`` setting.

    ``cpu``: ``cpu`` x cpu_worker_count; ``auto``: every visible CUDA device, else the CPU; a list
    like ``cuda:0,cuda:1``: those, and DeviceError if one is not visible (never a silent CPU fallback).
    """
    if devices == "cpu":
        return ["cpu"] * cpu_worker_count(cpu_workers)
    import torch  # imported here: a CPU-only config never pays for CUDA discovery

    count = torch.cuda.device_count()
    if devices == "auto":
        return [f"cuda:{i}" for i in range(count)] if count else ["cpu"] * cpu_worker_count(cpu_workers)
    wanted = devices.split(",")
    missing = [d for d in wanted if int(d.partition(":")[2]) >= count]
    if missing:
        raise DeviceError(f"devices: {', '.join(missing)} not visible ({count} CUDA device(s) found)")
    return wanted


def threads_per_worker(torch_threads: int, workers: int) -> int:
    """torch intra-op threads for each of ``workers`` processes: ``torch_threads``, else a fair share."""
    if torch_threads:
        return torch_threads
    return max(1, available_cpus() // max(1, workers))
