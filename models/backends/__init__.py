"""Reconstruction backends behind one interface, registered by name.

Importing this package registers every built-in backend, so ``create_backend("facemesh", ...)``
or ``create_backend("ict", ...)`` works after ``import face3d.models.backends``.
"""

from face3d.models.backends import facemesh as _facemesh  # noqa: F401  (registers "facemesh")
from face3d.models.backends import ict as _ict  # noqa: F401  (registers "ict")
from face3d.models.backends.base import BackendConfig, ReconstructionBackend
from face3d.models.backends.registry import backend_class, backend_names, create_backend, register

__all__ = [
    "BackendConfig",
    "ReconstructionBackend",
    "backend_class",
    "backend_names",
    "create_backend",
    "register",
]
