"""Compiled nets as files: AOTInductor packages built once per machine or image, loaded in milliseconds.

Why AOTInductor rather than ``torch.compile`` in every worker: a JIT compile costs each worker
minutes on a small CPU host (and every new pod the same again), while a ``.pt2`` package built once
loads in well under a second (``aoti_load_package``) and runs the same inductor code. Each net is
exported with a dynamic batch dimension, so one package serves every batch bucket: one package per net
(detector, landmark net, blendshape net) instead of one graph per (net, bucket).

Packages live in one folder (``<cache>/compiled/``), named by a key of everything that makes compiled
code valid: torch version, backend, net, weights hash, device kind (CPU instruction set or CUDA
capability) and dtype. They are written to a temporary name and renamed (atomic); a per-key file
lock makes sure one process builds a package while the others wait and then load it. A corrupt or
mismatched package is ignored with one warning, removed and rebuilt.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger("face3d.compiled")

MAX_DYNAMIC_BATCH = 64
Runner = Callable[[Tensor], tuple[Tensor, ...]]


@dataclass(frozen=True)
class CompileUnit:
    """One net to compile: its module, an example input (batch > 1, the layout it is fed in)."""

    name: str  # e.g. "detector", "mesh-478"
    module: nn.Module
    example: Tensor
    weights_sha256: str  # of the file(s) the module was built from: part of the key
    buckets: tuple[int, ...] = (1,)  # batch sizes the front end feeds it (for the per-shape fallback)


def net_layout(x: Tensor) -> Tensor:
    """Net inputs in the one layout their compiled code expects: image batches (4-D) channels-last
    (the nets' own layout), also for a size-1 batch; anything else (landmarks) contiguous.

    Compiled code is specialised on strides as well as shapes: one layout everywhere means the
    warm-up, the compiled package and every request agree.
    """
    if x.dim() != 4:
        return x.contiguous()
    canonical = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    if canonical.stride() == x.stride():
        return x
    return canonical.copy_(x)  # also fixes the arbitrary stride of a size-1 batch dim


def device_kind(device: torch.device) -> str:
    """What compiled code depends on besides torch: the CUDA capability, or the CPU's vector ISA."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"cuda-sm{major}{minor}"
    # torch's own dispatch level (AVX2, AVX512, ...): cheap, unlike inductor's ISA probe (a gcc run)
    return f"cpu-{platform.machine()}-{torch.backends.cpu.get_cpu_capability().lower()}"


def artifact_key(unit: CompileUnit, backend: str, device: torch.device, dtype: torch.dtype) -> str:
    """A file-name-safe key that changes whenever the compiled code would."""
    parts = {
        "torch": torch.__version__,
        "backend": backend,
        "net": unit.name,
        "weights": unit.weights_sha256,
        "device": device_kind(device),
        "dtype": str(dtype).removeprefix("torch."),
        "input": list(unit.example.shape[1:]),
        "max_batch": MAX_DYNAMIC_BATCH,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return f"{backend}-{unit.name}-{parts['device']}-{parts['dtype']}-{digest}"


class PackageRejected(RuntimeError):
    """A package that crashes when loaded on this machine: the net stays eager (one warning)."""


def _device_index(device: torch.device) -> int:
    return device.index if device.type == "cuda" and device.index is not None else -1


def jit_compile(unit: CompileUnit) -> Runner:
    """``torch.compile`` per bucket shape, every bucket run once before it is returned (no request
    pays for a compile). The fallback where packages cannot be loaded (CUDA: see ``load``); its
    kernels land in inductor's cache dir, which the service points at the shared compile folder."""
    compiled = torch.compile(copy.deepcopy(unit.module), dynamic=False, fullgraph=True)
    side = unit.example.shape[1:]
    with torch.inference_mode():
        for size in unit.buckets:
            compiled(
                net_layout(torch.zeros((size, *side), dtype=unit.example.dtype, device=unit.example.device))
            )
    return compiled


class CompiledStore:
    """The ``compiled/`` folder: load a package by key, or build it under a lock and then load it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt2"

    def load(self, key: str, device: torch.device) -> Runner | None:
        """The compiled runner, or None when there is no usable package (a bad one is removed).

        A package is first loaded once in a child process (then marked ``.ok``): loading native code
        that crashes (seen with CUDA packages on torch 2.11) must cost a warning, not the worker.
        Raises PackageRejected for a package that crashed that check (kept as ``.bad``, never rebuilt).
        """
        path = self.path(key)
        if (self.root / f"{key}.bad").exists():
            raise PackageRejected(f"{key} crashed when loaded on this machine; serving without it")
        if not path.is_file():
            return None
        if not self._verified(path, device):
            return None
        try:
            return torch._inductor.aoti_load_package(str(path), device_index=_device_index(device))
        except Exception as exc:  # corrupt, truncated or built by an incompatible torch: rebuild
            log.warning("compiled package %s is unusable (%s); rebuilding it", path.name, type(exc).__name__)
            path.unlink(missing_ok=True)
            return None

    def _verified(self, path: Path, device: torch.device) -> bool:
        """Load ``path`` once in a child; remember success (``.ok``) and crashes (``.bad``)."""
        stat = path.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
        marker = path.with_suffix(".ok")
        if marker.is_file() and marker.read_text() == stamp:
            return True
        check = "import sys, torch; torch._inductor.aoti_load_package(sys.argv[1], int(sys.argv[2]))"
        child = subprocess.run(
            [sys.executable, "-c", check, str(path), str(_device_index(device))],
            capture_output=True,
            timeout=600,
            check=False,
        )
        if child.returncode == 0:
            marker.write_text(stamp)
            return True
        if child.returncode < 0:  # killed by a signal: the native code crashes here
            os.replace(path, path.with_suffix(".bad"))
            raise PackageRejected(f"{path.name} crashed when loaded (signal {-child.returncode})")
        log.warning("compiled package %s does not load; rebuilding it", path.name)
        path.unlink(missing_ok=True)
        return False

    @contextmanager
    def _locked(self, key: str, blocking: bool) -> Iterator[bool]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{key}.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def build(self, unit: CompileUnit, key: str) -> Path:
        """Export ``unit`` with a dynamic batch and write its package atomically; returns the path."""
        self.root.mkdir(parents=True, exist_ok=True)
        batch = torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)
        start = time.monotonic()
        # A copy: export swaps the module's parameters for fakes while it traces, and the original may
        # be serving requests on another thread meanwhile.
        module = copy.deepcopy(unit.module)
        with torch.inference_mode(False), torch.no_grad():
            program = torch.export.export(module, (unit.example,), dynamic_shapes=({0: batch},), strict=False)
            tmp = self.root / f".{key}.{os.getpid()}.pt2"
            try:
                torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
                os.replace(tmp, self.path(key))
            finally:
                tmp.unlink(missing_ok=True)
        log.info("compiled %s in %.1f s", key, time.monotonic() - start)
        return self.path(key)

    def load_or_build(
        self, unit: CompileUnit, key: str, device: torch.device, wait: bool = True
    ) -> Runner | None:
        """Load the package, building it first if no one has; None when ``wait`` is False and another
        process holds the build lock (come back later: it will be there)."""
        runner = self.load(key, device)
        if runner is not None:
            return runner
        with self._locked(key, blocking=wait) as owned:
            if not owned:
                return None
            runner = self.load(key, device)  # built by the previous lock holder while we waited
            if runner is None:
                self.build(unit, key)
                runner = self.load(key, device)
        if runner is None:
            raise RuntimeError(f"compiled package {key} could not be loaded right after it was built")
        return runner
