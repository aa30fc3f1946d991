"""Backend ``ict``: the ICT-FaceKit morphable head fitted per photo (backend.py registers it)."""

from face3d.models.backends.ict.backend import IctBackend

__all__ = ["IctBackend"]
