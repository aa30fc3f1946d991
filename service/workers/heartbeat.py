"""The worker's side of supervision: heartbeats with a progress count, and which device errors a
worker can serve on after, and which end it.

The supervisor (service/workers/supervisor.py) replaces a worker that goes silent or stops making
progress. A worker must tell the two apart for it: a heartbeat thread proves the process is
scheduled, and a counter that the loop bumps at every stage boundary proves its work moves (a thread
can keep beating while the main loop is stuck in native code, or while a dead encoder never answers).

Device errors (CUDA): an out-of-memory error leaves the context usable, so the worker frees its
cached blocks and keeps serving (retrying a batch one image at a time). Any other CUDA error
(illegal address, device-side assert, ECC, launch failure) is sticky: every later call on that
context fails too, so the worker must exit and let the pool start a fresh process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal

DEVICE_LOST_EXIT = 75  # EX_TEMPFAIL: the pool respawns the worker, with a fresh CUDA context

# Message fragments of CUDA/cuBLAS/cuDNN failures on torch builds older than torch.AcceleratorError.
_STICKY_MARKERS = (
    "CUDA error",
    "device-side assert",
    "illegal memory access",
    "CUBLAS_STATUS",
    "CUDNN_STATUS",
    "cuDNN error",
    "unspecified launch failure",
    "uncorrectable ECC error",
)


class Progress:
    """Stage boundaries this process has passed; read by the heartbeat thread.

    Plain int updates under the GIL: an increment lost to a race only delays the count by one,
    which the watchdog's seconds-long window does not notice.
    """

    def __init__(self) -> None:
        self.count = 0

    def step(self) -> None:
        self.count += 1


PROGRESS = Progress()
"""This process's counter (one worker per process)."""


def start_heartbeat(send: Callable[[object], None], interval_s: float, progress: Progress = PROGRESS) -> None:
    """Send ``Heartbeat(progress.count)`` every ``interval_s`` from a daemon thread until ``send``
    fails (the API process is gone, or closed our pipe)."""
    from face3d.service.workers.protocol import Heartbeat

    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval_s):
            try:
                send(Heartbeat(progress.count))
            except (OSError, ValueError):  # pipe closed: the worker is exiting anyway
                return

    threading.Thread(target=beat, name="face3d-heartbeat", daemon=True).start()


def device_failure(exc: BaseException) -> Literal["oom", "lost"] | None:
    """``oom`` for a recoverable out-of-memory error, ``lost`` for a sticky device error, else None."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return "oom"
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(exc, accelerator_error):
        return "lost"
    if isinstance(exc, RuntimeError) and any(marker in str(exc) for marker in _STICKY_MARKERS):
        return "lost"
    return None


def release_device_memory(device: str) -> None:
    """After an OOM: give the caching allocator's free blocks back, so the next batch can fit."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
