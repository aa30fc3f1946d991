"""Backend ``facemesh``: MediaPipe's face mesh itself as the result mesh (backend.py registers it)."""

from face3d.models.backends.facemesh.backend import FacemeshBackend

__all__ = ["FacemeshBackend"]
