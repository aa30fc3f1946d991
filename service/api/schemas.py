"""Response bodies of the API as pydantic models: /docs shows them and clients can generate from them.

A result's faces and image size are result.json's own models (``FaceResult``, ``ImageSize`` from
models/export/document.py): the document a worker's encoder builds is what the API answers with,
typed once, with result.json's field meanings and units.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from face3d.models.export.document import FaceResult, ImageSize, ModelInfo, PersonResult


class ReconstructResult(BaseModel):
    """A stored reconstruction: its id, faces and the URLs of its files."""

    id: str = Field(description="result id; its files live under /v1/results/{id}/")
    image: ImageSize
    faces: list[FaceResult]
    files: dict[str, str] = Field(description="file name -> URL")
    timings_ms: dict[str, float] = Field(description="per stage: queue, decode, detect, landmarks, ...")
    expires_in_s: int


class PersonReconstructResult(ReconstructResult):
    """One head from several photos of one person: ``faces`` holds the head (the most frontal photo's
    landmarks and pose, the joint identity), ``image`` that photo's size, ``person`` every photo."""

    person: PersonResult


class ProblemDetails(BaseModel):
    """RFC 9457 problem details (media type application/problem+json). Switch on ``type``."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="stable URI, https://face3d.dev/problems/<slug>")
    title: str
    status: int
    detail: str | None = Field(None, description="what went wrong, for people; never parse it")
    instance: str | None = Field(None, description="the request path")


class FieldError(BaseModel):
    """One input that did not match the API schema (the rejected value is never echoed)."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(ProblemDetails):
    """A 422: the request did not match the schema (``errors``), broke a rule of the options, or the
    image has no face (type no-face, no ``errors``): every 422 is one of these, and every one is a
    ProblemDetails."""

    errors: list[FieldError] | None = None


class BatchItem(BaseModel):
    """One image of a batch: its result members, or ``error`` (a problem) when it failed."""

    model_config = ConfigDict(extra="allow")

    index: int
    filename: str
    id: str | None = None
    image: ImageSize | None = None
    faces: list[FaceResult] | None = None
    files: dict[str, str] | None = None
    timings_ms: dict[str, float] | None = None
    expires_in_s: int | None = None
    error: ProblemDetails | None = None


class BatchResult(BaseModel):
    items: list[BatchItem]
    succeeded: int


class WorkerReadiness(BaseModel):
    """What the open /readyz port tells about a worker: no pids or other internals."""

    slot: int
    device: str
    ready: bool
    compiled: dict[str, bool] = Field(
        default_factory=dict, description="net -> runs compiled code (eager until its package is in)"
    )


class WorkerStatus(WorkerReadiness):
    """What an authenticated caller of /v1/models sees about a worker."""

    pid: int | None
    inflight: int
    compile_s: float | None = Field(None, description="seconds the worker's warm-up (and compile) took")


class Limits(BaseModel):
    uv_size: int
    max_uv_size: int
    max_body_bytes: int
    max_pixels: int
    max_batch_items: int
    max_person_photos: int = Field(description="most photos in one POST /v1/reconstruct/person")
    max_person_body_bytes: int = Field(description="largest POST /v1/reconstruct/person body, all photos")
    formats: list[str]


class ModelsInfo(BaseModel):
    """What is loaded (backend, model, version, weight hashes, device, dtype, compiled buckets)."""

    model: ModelInfo
    workers: list[WorkerStatus]
    limits: Limits


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(
        description="ready (every worker serves), degraded (some do), warming (none yet), unavailable "
        "(none can serve now) or draining"
    )
    workers: list[WorkerReadiness]
