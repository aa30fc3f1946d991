"""The models library's error vocabulary: what can go wrong with an input, an option or the weights.

models/ knows nothing of HTTP; each error carries a ``kind`` the service maps to an RFC 9457 problem
type (service/api/problems.py) and the CLI prints as one line. ``kind`` values are part of the contract.
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal[
    "invalid-image", "unsupported-type", "too-large", "no-face", "validation", "weights", "internal"
]


class ModelError(Exception):
    """Base of every expected failure raised by face3d.models; ``str(error)`` is one line for people."""

    kind: ErrorKind = "internal"

    def __init__(self, message: str, kind: ErrorKind | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class ImageError(ModelError, ValueError):
    """Input bytes that cannot become an RGB array (invalid-image, unsupported-type or too-large)."""

    def __init__(self, kind: ErrorKind, message: str) -> None:  # kind first: the decoder's calling style
        super().__init__(message, kind)


class NoFaceError(ModelError):
    """The image decoded, but no face passed detection and the landmark net's presence check."""

    kind: ErrorKind = "no-face"


class OptionsError(ModelError, ValueError):
    """A reconstruction option is out of its documented range."""

    kind: ErrorKind = "validation"


class WeightsError(ModelError, RuntimeError):
    """Weights are missing or do not match their pinned hash; the message names the fix."""

    kind: ErrorKind = "weights"


class UnknownBackendError(ModelError, ValueError):
    """A backend name that is not in the registry; the message lists the registered ones."""

    kind: ErrorKind = "validation"
