"""The callables the front end runs per net: eager modules at first, compiled packages swapped in later.

A worker must serve as soon as its weights are loaded (eager), and switch each net to its compiled
package when that is built or loaded in the background. ``install`` swaps a net's runner with one
dict assignment: a call in flight keeps the runner it started with, the next call gets the new one.
On CUDA each runner can be wrapped in per-bucket CUDA graphs (models/runtime/cuda_graphs.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from face3d.models.runtime.aot import CompileUnit, net_layout
from face3d.models.runtime.cuda_graphs import GraphedRunner

log = logging.getLogger("face3d.runners")

Runner = Callable[[Tensor], tuple[Tensor, ...]]


@dataclass
class Net:
    """One net of the front end (models/nets/frontend.py): its eager module, the shape of one input
    (no batch dim) and the sha256 of its weights."""

    module: nn.Module
    input_shape: tuple[int, ...]
    weights_sha256: str


class NetRunners:
    """Per-net runners of one front end on one device; not thread-safe beyond the atomic swap."""

    def __init__(self, nets: dict[str, Net], device: torch.device, buckets: Sequence[int], cuda_graphs: bool):
        self.nets = nets
        self.device = device
        self.buckets = tuple(buckets)
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        self._runners: dict[str, Runner] = {name: net.module for name, net in nets.items()}
        self._compiled: dict[str, bool] = dict.fromkeys(nets, False)
        self._graphed: dict[str, list[int]] = {name: [] for name in nets}

    def get(self, name: str) -> Runner:
        return self._runners[name]

    def _example(self, name: str, batch: int) -> Tensor:
        return net_layout(torch.zeros((batch, *self.nets[name].input_shape), device=self.device))

    def warm(self) -> None:
        """Run every bucket of every net once (eager), and capture CUDA graphs where enabled."""
        for name in self.nets:
            if self.cuda_graphs:
                self._install(name, self.nets[name].module)
                continue
            for size in self.buckets:
                self._runners[name](self._example(name, size))

    def units(self) -> list[CompileUnit]:
        """What to compile: each net with an example batch of two (the batch dimension is dynamic)."""
        return [
            CompileUnit(name, net.module, self._example(name, 2), net.weights_sha256, self.buckets)
            for name, net in self.nets.items()
        ]

    def install(self, name: str, runner: Runner) -> None:
        """Swap in a compiled runner for ``name`` (captured into CUDA graphs where enabled)."""
        self._install(name, runner)
        self._compiled[name] = True

    def _install(self, name: str, runner: Runner) -> None:
        if self.cuda_graphs:
            graphed = GraphedRunner(runner, self.buckets, self._example(name, 1))
            self._graphed[name] = graphed.captured
            runner = graphed
        self._runners[name] = runner

    def status(self) -> dict[str, bool]:
        """Net name -> runs compiled code."""
        return dict(self._compiled)

    def graphed(self) -> dict[str, list[int]]:
        """Net name -> buckets replayed from CUDA graphs."""
        return {name: list(sizes) for name, sizes in self._graphed.items()}
