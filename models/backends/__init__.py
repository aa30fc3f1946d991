"""Reconstruction backends behind one interface, registered by name.

A backend is one folder here whose ``__init__`` imports the module that ``@register``s it. Importing
this package imports every such folder, so adding a backend is adding a folder: no other file changes.
After ``import face3d.models.backends``, ``create_backend("ict", ...)`` works for every folder here.
"""

import importlib
import pkgutil

from face3d.models.backends.base import BackendConfig, ReconstructionBackend
from face3d.models.backends.registry import backend_class, backend_names, create_backend, register

for _folder in pkgutil.iter_modules(__path__):
    if _folder.ispkg:
        importlib.import_module(f"{__name__}.{_folder.name}")

__all__ = [
    "BackendConfig",
    "ReconstructionBackend",
    "backend_class",
    "backend_names",
    "create_backend",
    "register",
]
