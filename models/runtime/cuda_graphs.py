"""CUDA graphs per batch bucket for the small nets: one replay instead of hundreds of kernel launches.

The detector and landmark nets run in a millisecond or two on a modern GPU, where launching their
kernels one by one from Python costs as much as running them. A graph captured per bucket replays
the whole net with one launch. Inputs are copied into the graph's static buffer and outputs cloned
out, since the next replay overwrites them. Capture can fail (an op that synchronises, an allocator
quirk): that bucket then keeps running uncaptured, with one warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from face3d.models.runtime.aot import net_layout

log = logging.getLogger("face3d.cuda_graphs")

Runner = Callable[[Tensor], tuple[Tensor, ...]]


class GraphedRunner:
    """Wraps ``runner`` with one CUDA graph per bucket size; other sizes run ``runner`` directly."""

    def __init__(self, runner: Runner, buckets: Sequence[int], example: Tensor, warmup_runs: int = 3) -> None:
        self.runner = runner
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, Tensor, tuple[Tensor, ...]]] = {}
        stream = torch.cuda.Stream(example.device)
        stream.wait_stream(torch.cuda.current_stream(example.device))
        for size in buckets:
            static_in = net_layout(
                torch.zeros((size, *example.shape[1:]), dtype=example.dtype, device=example.device)
            )
            try:
                with torch.cuda.stream(stream):
                    for _ in range(warmup_runs):  # lazy inits and allocator warm-up outside capture
                        runner(static_in)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                    static_out = tuple(runner(static_in))
                self._graphs[size] = (graph, static_in, static_out)
            except Exception as exc:
                log.warning("CUDA graph capture failed for bucket %d (%s); it runs uncaptured", size, exc)
        torch.cuda.current_stream(example.device).wait_stream(stream)

    @property
    def captured(self) -> list[int]:
        return sorted(self._graphs)

    def __call__(self, x: Tensor) -> tuple[Tensor, ...]:
        entry = self._graphs.get(len(x))
        if entry is None or x.shape[1:] != entry[1].shape[1:]:
            return tuple(self.runner(x))
        graph, static_in, static_out = entry
        static_in.copy_(x)
        graph.replay()
        return tuple(out.clone() for out in static_out)
