"""Every Prometheus metric of the service, on one registry that ``/metrics`` renders.

Only the API process records metrics. Worker processes measure (stage timings, batch size, VRAM)
and send plain numbers back in their result/status messages; the pool passes them to the
``record_*`` helpers here. That keeps one registry and avoids prometheus-client's multiprocess mode.
Device-wide memory comes from NVML at scrape time when nvidia-ml-py is installed and a driver exists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()

STAGES = ("queue", "decode", "detect", "landmarks", "bake", "encode")
VRAM_KEYS = ("allocated", "reserved", "peak")
"""Keys of the per-worker VRAM dict a worker reports, in bytes (torch.cuda.memory_allocated,
memory_reserved, max_memory_allocated)."""

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_UNIT_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)

REQUEST_DURATION = Histogram(
    "face3d_request_duration_seconds",
    "HTTP request latency.",
    ["route", "status"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
STAGE_DURATION = Histogram(
    "face3d_stage_duration_seconds",
    "Time per stage per image (batched stages amortised).",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "face3d_batch_size", "Images per engine batch.", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=REGISTRY
)
QUEUE_DEPTH = Gauge("face3d_queue_depth", "Jobs waiting for a worker.", registry=REGISTRY)
INFLIGHT = Gauge("face3d_inflight_requests", "HTTP requests being served.", registry=REGISTRY)
WORKER_VRAM = {
    key: Gauge(
        f"face3d_worker_vram_{key}_bytes",
        f"torch CUDA memory {key} by a worker.",
        ["worker", "device"],
        registry=REGISTRY,
    )
    for key in VRAM_KEYS
}
WORKER_RESTARTS = Counter(
    "face3d_worker_restarts", "Worker processes respawned after dying.", registry=REGISTRY
)
COMPILE_SECONDS = Histogram(
    "face3d_compile_seconds",
    "Worker warm-up duration (weights loaded, every bucket run eager) until it serves.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
COMPILED = Gauge(
    "face3d_worker_compiled",
    "1 when the worker runs this net's compiled package, 0 while it runs eager.",
    ["worker", "net"],
    registry=REGISTRY,
)
DETECTION_SCORE = Histogram(
    "face3d_detection_score",
    "Detector confidence of reconstructed faces.",
    buckets=_UNIT_BUCKETS,
    registry=REGISTRY,
)
TEXTURE_COVERAGE = Histogram(
    "face3d_texture_coverage",
    "Share of the face's UV area seen directly in the photo.",
    buckets=_UNIT_BUCKETS,
    registry=REGISTRY,
)
ERRORS = Counter("face3d_errors", "Requests that failed, by problem type.", ["type"], registry=REGISTRY)
WORKERS_READY = Gauge("face3d_workers_ready", "Worker processes warmed up and serving.", registry=REGISTRY)


def record_stages(timings_ms: Mapping[str, float]) -> None:
    """Record one image's stage timings as a worker reports them (milliseconds; unknown stages ignored)."""
    for stage, ms in timings_ms.items():
        if stage in STAGES:
            STAGE_DURATION.labels(stage).observe(ms / 1000.0)


def record_compiled(worker: str, status: Mapping[str, bool]) -> None:
    for net, compiled in status.items():
        COMPILED.labels(worker, net).set(1.0 if compiled else 0.0)


def record_batch(size: int) -> None:
    BATCH_SIZE.observe(size)


def record_vram(worker: str, device: str, vram: Mapping[str, int]) -> None:
    """Set a worker's VRAM gauges from its report: ``vram`` maps VRAM_KEYS to bytes."""
    for key in VRAM_KEYS:
        if key in vram:
            WORKER_VRAM[key].labels(worker, device).set(vram[key])


def record_face_quality(score: float, coverage: float) -> None:
    DETECTION_SCORE.observe(score)
    TEXTURE_COVERAGE.observe(coverage)


class NvmlCollector(Collector):
    """Device memory totals straight from the driver, read at scrape time (no polling thread).

    The ``device`` label is ``cuda:<NVML index>``; NVML orders devices by PCI bus, so it matches the
    workers' ``device`` label when CUDA_DEVICE_ORDER=PCI_BUS_ID and CUDA_VISIBLE_DEVICES is unset.
    """

    def __init__(self, nvml: object) -> None:
        self._nvml = nvml

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nvml = self._nvml
        total = GaugeMetricFamily(
            "face3d_device_memory_total_bytes", "GPU memory size (NVML).", labels=["device"]
        )
        used = GaugeMetricFamily(
            "face3d_device_memory_used_bytes", "GPU memory in use (NVML).", labels=["device"]
        )
        try:
            for index in range(nvml.nvmlDeviceGetCount()):  # type: ignore[attr-defined]
                info = nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(index))  # type: ignore[attr-defined]
                total.add_metric([f"cuda:{index}"], info.total)
                used.add_metric([f"cuda:{index}"], info.used)
        except nvml.NVMLError as exc:  # type: ignore[attr-defined]
            log.warning("NVML query failed", extra={"error": str(exc)})
        yield total
        yield used


_nvml_tried = False


def _register_nvml() -> None:
    """Register NvmlCollector once, if nvidia-ml-py imports and a driver answers."""
    global _nvml_tried
    if _nvml_tried:
        return
    _nvml_tried = True
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # not installed, no driver, or no GPU: device totals are simply absent
        return
    REGISTRY.register(NvmlCollector(pynvml))


def render() -> tuple[bytes, str]:
    """The exposition body and its content type, for the /metrics route.

    NVML is initialised on the first scrape, not at import, so importing this module has no side
    effects on the driver (and processes that never serve /metrics never touch it).
    """
    _register_nvml()
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
