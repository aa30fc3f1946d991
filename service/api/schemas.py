"""Response bodies of the API as pydantic models: /docs shows them and clients can generate from them.

``FaceResult`` is also what a worker's encoder builds from result.json and sends back (typed, not a
dict read by string keys). Field meanings and units are those of result.json (models/export/files.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PoseResult(BaseModel):
    """Similarity transform model -> image: ``img ≈ scale · rotation · v + translation``."""

    rotation: list[list[float]] = Field(description="3x3 rotation, Y-up camera frame")
    yaw: float = Field(description="degrees")
    pitch: float = Field(description="degrees")
    roll: float = Field(description="degrees")
    scale: float = Field(description="image pixels per model centimetre")
    translation: list[float] = Field(description="image pixels (x, y) and relative depth (z)")


class FaceResult(BaseModel):
    """One reconstructed face. Backends may add members (they are kept and returned as they are)."""

    model_config = ConfigDict(extra="allow")

    bbox: list[float] = Field(description="x0, y0, x1, y1 in image pixels")
    score: float = Field(description="detector confidence, 0..1")
    landmarks: list[list[float]] = Field(description="(N, 3) image-space landmarks, N = 468 or 478")
    landmarks_68: list[list[float]] = Field(description="iBUG 300-W 68 points mapped from the landmarks")
    pose: PoseResult
    texture_coverage: float = Field(description="share of the face's UV area seen in the photo, 0..1")
    blendshapes: dict[str, float] | None = Field(
        None, description="MediaPipe's 52 ARKit-named expression scores, 0..1 (478-point landmark nets)"
    )
    files: list[str] = Field(description="this face's files in the result")


class ImageSize(BaseModel):
    width: int
    height: int


class ReconstructResult(BaseModel):
    """A stored reconstruction: its id, faces and the URLs of its files."""

    id: str = Field(description="result id; its files live under /v1/results/{id}/")
    image: ImageSize
    faces: list[FaceResult]
    files: dict[str, str] = Field(description="file name -> URL")
    timings_ms: dict[str, float] = Field(description="per stage: queue, decode, detect, landmarks, ...")
    expires_in_s: int


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
    """A 422: the request did not match the schema (``errors``) or broke a rule of the options."""

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
    formats: list[str]


class ModelsInfo(BaseModel):
    """What is loaded (backend, model, version, weight hashes, device, dtype, compiled buckets)."""

    model: dict[str, Any]
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
