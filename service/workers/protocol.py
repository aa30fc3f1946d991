"""The messages between the API process, its worker processes and their encoders: one module, typed.

Every message is a plain picklable dataclass; errors cross as data (``Problem``). One request's
messages, in order::

    API  --Job-------------->  worker   (the encoded upload, options, tenant, result id, deadline)
    worker --EncodeTask----->  encoder  (the Reconstruction; the photo only when a preview is asked)
    encoder --Encoded------->  worker   (a ResultSummary, or the one artifact streamed back, or a problem)
    worker --JobDone-------->  API      (the same, plus the stage timings)

The encoder writes the result's files to the ResultStore itself, so textures cross a pipe at most
once (worker -> encoder, and not at all with encoder threads), never back to the API process.
Workers also send ``WorkerReady``/``WorkerFailed`` once, ``BatchDone`` per batch (metrics) and a
``Heartbeat`` every ``watchdog_s / 4`` seconds (supervision).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from face3d.models.export.document import FaceResult, PersonResult, PersonResultDocument, ResultDocument
from face3d.models.pipeline import ReconstructOptions
from face3d.models.reconstruction import Reconstruction
from face3d.service.config import Settings
from face3d.service.errors import Problem

ArtifactKind = Literal["glb", "obj", "usdz", "zip"]

ARTIFACT_FORMATS: dict[str, frozenset[str]] = {
    "glb": frozenset({"glb"}),
    "usdz": frozenset({"usdz"}),
    "obj": frozenset({"obj"}),  # OBJ + MTL + texture, streamed as one zip (an OBJ alone is unusable)
}
"""``?format=`` -> the outputs the worker must build for that one streamed artifact. ``zip`` is not
listed: it holds every format the request asks for (``formats``, default obj,png,glb,json)."""


@dataclass(frozen=True)
class Job:
    """One image to reconstruct. Times are ``time.monotonic()``, one clock for every process on Linux.

    ``artifact`` None: store every file under (``tenant``, ``id``) and answer with a summary; else
    build only what that artifact needs and stream its bytes back (nothing is stored).
    ``photos`` (name, bytes) non-empty: several photos of one person, one head (``data`` is then
    empty); such a job runs alone, never batched with others (its photos are the batch).
    """

    id: str
    data: bytes
    options: ReconstructOptions
    deadline: float
    admitted: float
    tenant: str
    ttl_s: float
    artifact: ArtifactKind | None = None
    photos: tuple[tuple[str, bytes], ...] = ()

    @property
    def person(self) -> bool:
        """Several photos of one person (``Pipeline.reconstruct_person``), not one image."""
        return bool(self.photos)


@dataclass(frozen=True)
class Artifact:
    """One file streamed back to the client instead of stored."""

    name: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class ResultSummary:
    """What the API needs to answer about a stored result: ids, sizes, faces and file names."""

    result_id: str
    width: int
    height: int
    faces: list[FaceResult]
    files: list[str]
    person: PersonResult | None = None  # several photos of one person: every photo's entry

    @classmethod
    def from_document(cls, result_id: str, document: ResultDocument, files: list[str]) -> ResultSummary:
        """From the result's document (models/export/document.py): its faces as they are, typed."""
        return cls(
            result_id=result_id,
            width=document.image.width,
            height=document.image.height,
            faces=document.faces,
            files=list(files),
            person=document.person if isinstance(document, PersonResultDocument) else None,
        )


@dataclass
class JobDone:
    """The outcome of one job: a summary (stored) or an artifact (streamed), or a problem."""

    job_id: str
    summary: ResultSummary | None = None
    artifact: Artifact | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    problem: Problem | None = None


@dataclass
class EncodeTask:
    """What one encoder needs for one job."""

    job: Job  # its ``data`` is dropped (b"") before the task is sent: the encoder never needs it
    rec: Reconstruction
    image: np.ndarray | None  # the photo, only for the preview
    model_info: dict[str, Any]


@dataclass
class Encoded:
    """An encoder's answer for one job."""

    job_id: str
    summary: ResultSummary | None = None
    artifact: Artifact | None = None
    encode_ms: float = 0.0
    problem: Problem | None = None


@dataclass
class BatchDone:
    """Per-batch numbers the API turns into metrics (workers own no metrics registry)."""

    size: int
    vram: dict[str, int] | None = None  # service.metrics.VRAM_KEYS -> bytes, on CUDA only


@dataclass
class WorkerReady:
    pid: int
    device: str
    warmup_s: float
    model_info: dict[str, Any]


@dataclass
class CompiledUpdate:
    """A worker swapped compiled code in: unit name -> runs compiled (sent after every swap)."""

    status: dict[str, bool]


@dataclass
class WorkerFailed:
    error: str


@dataclass
class Heartbeat:
    """Sent by a worker's heartbeat thread every ``watchdog_s / 4`` s (supervisor.py's watchdog).

    ``progress`` counts stage boundaries the worker's loop has passed (batch taken, decoded,
    reconstructed, each result encoded): heartbeats prove the process runs, a growing ``progress``
    that its work does.
    """

    progress: int


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, pickled into the child: its slot, device, settings and threads."""

    slot: int
    device: str
    settings: Settings  # pydantic, frozen and picklable
    threads: int
