"""Backends by name (timm-style): modules register their class on import, callers build by name."""

from __future__ import annotations

from typing import TypeVar

from face3d.models.backends.base import BackendConfig, ReconstructionBackend
from face3d.models.errors import UnknownBackendError

_REGISTRY: dict[str, type[ReconstructionBackend]] = {}

B = TypeVar("B", bound=type[ReconstructionBackend])


def register(cls: B) -> B:
    """Class decorator: make ``cls`` buildable as ``create_backend(cls.name, ...)``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"backend {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def backend_names() -> list[str]:
    """Registered names, sorted."""
    return sorted(_REGISTRY)


def backend_class(name: str) -> type[ReconstructionBackend]:
    """The class registered as ``name``; UnknownBackendError (one line, lists the names) otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownBackendError(
            f"unknown backend {name!r}; registered: {', '.join(backend_names())}"
        ) from None


def create_backend(name: str, config: BackendConfig) -> ReconstructionBackend:
    """A new, not yet loaded backend of kind ``name``."""
    return backend_class(name)(config)
