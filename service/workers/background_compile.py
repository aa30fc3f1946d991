"""Compiled code in the background: a worker serves eager at once and swaps each net to its compiled
package when that is loaded from ``<cache>/compiled/`` or, if missing, built there (models/runtime/aot.py).

Several workers on one machine share the folder: each takes the build lock of a package no one is
building, skips the ones locked by others, then waits for those and loads them. So two workers
compile two different nets side by side, and no package is ever compiled twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from face3d.models.backends import ReconstructionBackend
from face3d.models.runtime.aot import (
    CompiledStore,
    CompileUnit,
    PackageRejected,
    Runner,
    artifact_key,
    jit_compile,
)
from face3d.service.config import Settings

log = logging.getLogger("face3d.compiler")


def compiled_dir(settings: Settings) -> Path:
    """``compile_cache_dir`` when set, else ``<weights cache>/compiled``."""
    return Path(settings.compile_cache_dir or settings.weights_cache_dir / "compiled")


def unit_keys(backend: ReconstructionBackend, device: str, dtype: str) -> list[tuple[CompileUnit, str]]:
    dev, dt = torch.device(device), getattr(torch, dtype)
    return [(unit, artifact_key(unit, backend.name, dev, dt)) for unit in backend.compile_units()]


def _runner(
    store: CompiledStore, unit: CompileUnit, key: str, device: torch.device, wait: bool
) -> Runner | None:
    """The package's runner; where packages crash on load (seen: CUDA on torch 2.11), a JIT compile."""
    try:
        return store.load_or_build(unit, key, device, wait=wait)
    except PackageRejected as exc:
        log.warning("%s; compiling %s in this process instead (torch.compile)", exc, unit.name)
        return jit_compile(unit)


def compile_all(
    backend: ReconstructionBackend,
    store: CompiledStore,
    device: str,
    dtype: str,
    on_installed: Callable[[str, float], None] = lambda name, seconds: None,
) -> None:
    """Load or build every unit of ``backend`` and install it; packages others are building come last."""
    dev = torch.device(device)
    waiting: list[tuple[CompileUnit, str]] = []
    start = time.monotonic()
    for unit, key in unit_keys(backend, device, dtype):
        runner = _runner(store, unit, key, dev, wait=False)
        if runner is None:
            waiting.append((unit, key))
            continue
        backend.install_compiled(unit.name, runner)
        on_installed(unit.name, time.monotonic() - start)
    for unit, key in waiting:
        runner = _runner(store, unit, key, dev, wait=True)
        assert runner is not None
        backend.install_compiled(unit.name, runner)
        on_installed(unit.name, time.monotonic() - start)


def start_background_compile(
    backend: ReconstructionBackend,
    settings: Settings,
    device: str,
    on_change: Callable[[dict[str, bool]], None],
) -> threading.Thread:
    """Compile (or load) in a daemon thread; ``on_change`` gets the status after every swap. A failure
    leaves the remaining nets eager, with one logged error: the worker keeps serving."""

    def run() -> None:
        try:
            compile_all(
                backend,
                CompiledStore(compiled_dir(settings)),
                device,
                settings.dtype,
                lambda name, seconds: on_change(backend.compiled_status()),
            )
        except Exception:
            log.exception("background compile failed; the remaining nets stay eager")

    thread = threading.Thread(target=run, name="face3d-compile", daemon=True)
    thread.start()
    return thread
