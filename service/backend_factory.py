"""Build the configured reconstruction backend from Settings: the one place config meets models/.

The worker processes and the CLI commands both call this, so a config key means the same thing
everywhere.
"""

from __future__ import annotations

import importlib
import os

from face3d.models.backends import BackendConfig, ReconstructionBackend, backend_class
from face3d.service.config import Settings


def configured_backend_class(settings: Settings) -> type[ReconstructionBackend]:
    """The class of ``settings.backend``, after importing ``settings.backend_modules`` (backends kept
    outside this package register themselves on import). Every process that builds a backend or its
    export hooks calls this: workers and encoders are spawned, so they import the modules themselves.
    Raises UnknownBackendError (one line, lists the registered names)."""
    for module in settings.backend_modules:
        importlib.import_module(module)
    return backend_class(settings.backend)


def backend_config(
    settings: Settings, compile_model: bool | None = None, device: str = "cpu"
) -> BackendConfig:
    """The backend's config from ``settings`` for ``device`` (compile follows settings unless given;
    ``hands: auto`` looks for hands on GPUs only, where the two nets cost little)."""
    return BackendConfig(
        cache_dir=settings.weights_cache_dir,
        compile=settings.compile if compile_model is None else compile_model,
        buckets=tuple(settings.batch_buckets),
        dtype=settings.dtype,
        max_faces=settings.max_faces,
        landmark_model=settings.landmark_model,
        cuda_graphs=settings.cuda_graphs,
        hands=settings.hands == "on" or (settings.hands == "auto" and device.startswith("cuda")),
    )


def build_backend(
    settings: Settings, device: str, compile_model: bool | None = None
) -> ReconstructionBackend:
    """The ``settings.backend`` backend, loaded on ``device``.

    ``compile_cache_dir`` becomes inductor's cache (unless the environment already names one), so a
    restarted worker or a new pod on the same volume reuses compiled kernels instead of recompiling.
    """
    if settings.compile_cache_dir:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(settings.compile_cache_dir))
    backend = configured_backend_class(settings)(backend_config(settings, compile_model, device))
    backend.load(device)
    return backend
