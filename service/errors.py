"""The service's errors as data: ``Problem``, an RFC 9457 problem that any process can raise.

A ``Problem`` is plain data (slug, status, detail, headers) and an exception at the same time, so a
worker process can raise it, send it back through a pipe (it pickles), and the API re-raises it
unchanged. Kept out of service/api/ because the workers and their protocol (service/workers/) use it
without any HTTP; service/api/problems.py renders it as ``application/problem+json``. Clients switch
on the stable ``type`` URI, never on ``detail``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from face3d.models.errors import ModelError

TYPE_BASE = "https://face3d.dev/problems/"

# slug -> (default HTTP status, title). The slugs are the API contract: never rename one.
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "invalid-image": (400, "The upload is not a readable image"),
    "unsupported-type": (415, "Unsupported image type"),
    "too-large": (413, "Payload or image too large"),
    "no-face": (422, "No face found in the image"),
    "validation": (422, "Invalid request"),
    "unauthorized": (401, "Missing or invalid credentials"),
    "forbidden": (403, "Not allowed"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "quota-exceeded": (429, "Quota exceeded"),
    "overloaded": (503, "Service overloaded"),
    "unavailable": (503, "Service unavailable"),
    "timeout": (504, "Request timed out"),
    "request-timeout": (408, "Request body not received in time"),
    "headers-too-large": (431, "Request header fields too large"),
    "internal": (500, "Internal error"),
}


@dataclass(eq=False)
class Problem(Exception):
    """An RFC 9457 problem; raise it anywhere, in any process, and the API renders it.

    ``slug`` must be a key of ``PROBLEM_TYPES``; ``status`` defaults to that type's status.
    ``headers`` carries e.g. ``Retry-After`` or ``WWW-Authenticate``; ``extra`` adds members to
    the JSON body (RFC 9457 extension members, e.g. ``{"errors": [...]}``).
    """

    slug: str
    detail: str = ""
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.slug not in PROBLEM_TYPES:
            raise ValueError(f"unknown problem type {self.slug!r}")
        if not self.status:
            self.status = PROBLEM_TYPES[self.slug][0]
        super().__init__(self.slug, self.detail)

    def __reduce__(self):  # Exception's own pickling would replay only args; keep every field.
        return (Problem, (self.slug, self.detail, self.status, self.headers, self.extra))

    def __str__(self) -> str:
        return f"{self.slug}: {self.detail}" if self.detail else self.slug

    @property
    def type_uri(self) -> str:
        return TYPE_BASE + self.slug

    @property
    def title(self) -> str:
        return PROBLEM_TYPES[self.slug][1]

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        """The JSON body; ``instance`` is the request path the problem occurred on."""
        body: dict[str, Any] = {"type": self.type_uri, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


def problem_from_error(exc: ModelError) -> Problem:
    """A models/ error as the problem clients see: its kind is the problem type, its message the
    detail; failures that are the service's own (weights, bugs) are 500s without internals."""
    if exc.kind in PROBLEM_TYPES and exc.kind != "internal":
        return Problem(exc.kind, str(exc))
    return Problem("internal", "the reconstruction failed")
