"""Build the reconstruction Engine from Settings: the one place config meets models/.

Both the worker processes and the offline CLI commands call this, so a config key means the same
thing everywhere.
"""

from __future__ import annotations

import os

import torch

from face3d.models.engine import Engine


def build_engine(settings, device: str, compile_model: bool | None = None) -> Engine:
    """An Engine on ``device`` configured from ``settings`` (compile follows settings unless given).

    ``compile_cache_dir`` becomes inductor's cache (unless the environment already names one), so a
    restarted worker or a new pod on the same volume reuses compiled kernels instead of recompiling.
    """
    if settings.compile_cache_dir:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(settings.compile_cache_dir))
    return Engine(
        device=device,
        compile=settings.compile if compile_model is None else compile_model,
        buckets=tuple(settings.batch_buckets),
        dtype=getattr(torch, settings.dtype),
        landmark_model=settings.landmark_model,
        max_faces=settings.max_faces,
        cache_dir=settings.weights_cache_dir,
    )
