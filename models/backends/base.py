"""What a reconstruction backend is: the one interface the pipeline, the worker and the CLI use.

A backend is built cheaply from a ``BackendConfig`` (no weights, no device work), then ``load``ed
on one device, ``warmup``ed (which also compiles its buckets), and asked to ``reconstruct``
batches of decoded photos. It ``describe``s itself for ``/v1/models`` and every result.json, and
hands the exporters its ``mesh_export`` hooks (its mesh layout; per face the meshes, extra JSON and
preview marks), so models/export/ never names a backend. Backends hold
per-process state (compiled graphs, device buffers): one instance per worker, never shared.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from face3d.models.errors import OptionsError
from face3d.models.export.mesh import MeshExport
from face3d.models.reconstruction import PersonReconstruction, Reconstruction
from face3d.models.runtime.aot import CompileUnit, Runner


@dataclass(frozen=True)
class BackendConfig:
    """Everything a backend may need to load, chosen by the caller (models/ reads no config files).

    ``landmark_model`` picks the landmark net for backends built on MediaPipe's nets. ``compile`` says
    whether the caller will compile the backend's ``compile_units`` (the backend itself serves eager
    until ``install_compiled`` swaps compiled code in). ``hands``: backends that texture the head look
    for hands over the face (MediaPipe Hands' two nets on every photo: 16-33 ms of CPU a photo, so the
    service turns it on for GPUs and leaves it to the operator on CPUs).
    """

    cache_dir: Path
    compile: bool = False
    buckets: tuple[int, ...] = (1, 2, 4, 8)
    dtype: str = "float32"
    max_faces: int = 4
    landmark_model: str = "v2"
    cuda_graphs: bool = True
    hands: bool = False


class ReconstructionBackend(ABC):
    """Photos in, ``Reconstruction``s out, on one device. Register subclasses with ``@register``."""

    name: ClassVar[str]
    """Registry name, also the ``backend`` config value."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    @classmethod
    @abstractmethod
    def mesh_export(cls) -> MeshExport:
        """This backend's export hooks: its mesh layout, and per face the meshes, JSON members and
        preview marks (models/export/mesh.py). Built without weights, once per process (cache it):
        encoder processes hold only this."""

    @abstractmethod
    def load(self, device: str) -> None:
        """Load and verify weights and move them to ``device``; raises WeightsError when missing."""

    @abstractmethod
    def warmup(self, uv_sizes: Sequence[int]) -> float:
        """Run (and compile, when enabled) every bucket and build per-size caches; returns seconds."""

    @abstractmethod
    def reconstruct(
        self, images: Sequence[np.ndarray], uv_size: int, all_faces: bool, lighting: str = "remove"
    ) -> list[Reconstruction]:
        """One Reconstruction per (H, W, 3) uint8 RGB image, in order; no face -> empty ``faces``.

        ``lighting``: "remove" asks for an evenly lit texture (the photo's estimated light divided
        out), "keep" for the photo's light as it is; backends that estimate no lighting ignore it."""

    supports_person: ClassVar[bool] = False
    """Whether ``reconstruct_person`` works: it needs a morphable model, whose identity several photos
    can share (``/v1/models`` and the web page read it before offering person mode)."""

    def reconstruct_person(
        self, images: Sequence[np.ndarray], uv_size: int, lighting: str = "remove"
    ) -> PersonReconstruction:
        """Several (H, W, 3) uint8 RGB photos of one person -> one head: one identity fitted to every
        photo with a face (one pose and expression each), one texture baked from all of them.

        Optional: a backend without a morphable model has no identity to share, so the default refuses
        with an OptionsError (a 422 ``validation`` problem, one line on the CLI)."""
        raise OptionsError(
            f"backend {self.name!r} cannot fit one person to several photos: it needs a morphable model "
            "(backend ict)"
        )

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Backend name, model, version, weight hashes and licences, device, dtype, compiled buckets."""

    def compile_units(self) -> list[CompileUnit]:
        """The nets worth compiling ahead of time (models/runtime/aot.py); none by default."""
        return []

    def install_compiled(self, name: str, runner: Runner) -> None:
        """Swap the compiled ``runner`` in for unit ``name``; calls in flight are unaffected."""
        raise KeyError(f"{self.name} has no compile unit {name!r}")

    def compiled_status(self) -> dict[str, bool]:
        """Unit name -> runs compiled code."""
        return {}
