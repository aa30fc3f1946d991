"""What every backend built on the shared MediaPipe ``Engine`` does alike: hold the engine once
loaded, and expose its nets' compile hooks (models/runtime/runners.py) through the backend interface."""

from __future__ import annotations

import torch

from face3d.models.backends.base import ReconstructionBackend
from face3d.models.nets.frontend import Engine
from face3d.models.runtime.aot import CompileUnit, Runner


class EngineBackend(ReconstructionBackend):
    """Base of the engine-backed backends (``facemesh``, ``ict``); ``load`` sets ``self.engine``."""

    engine: Engine | None = None

    def load_engine(self, device: str) -> Engine:
        """Build the shared engine from this backend's config on ``device`` (what ``load`` starts with)."""
        cfg = self.config
        self.engine = Engine(
            cache_dir=cfg.cache_dir,
            device=device,
            cuda_graphs=cfg.cuda_graphs,
            buckets=cfg.buckets,
            dtype=getattr(torch, cfg.dtype),
            landmark_model=cfg.landmark_model,
            max_faces=cfg.max_faces,
        )
        return self.engine

    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("load() the backend on a device first")
        return self.engine

    def compile_units(self) -> list[CompileUnit]:
        return self._engine().runners.units()

    def install_compiled(self, name: str, runner: Runner) -> None:
        self._engine().runners.install(name, runner)

    def compiled_status(self) -> dict[str, bool]:
        return self._engine().runners.status()
