"""The result document (result.json): its typed model, and how one is built from a Reconstruction.

A result's document is built once, as a ``ResultDocument``: the CLI and the service write it as
result.json (``dump_json``), the service's encoders send its faces to the API process, and the API
answers with them (service/api/schemas.py uses these models, so /docs shows what result.json holds).
Pydantic describes the data; nothing here knows HTTP, and nothing names a backend: a backend's own
members of a face (``MeshExport.json_fields``, models/export/mesh.py) are kept as extra members.

Numbers are rounded to the precision a result promises (``rounded``), in the same member order as
ever, so the bytes of result.json do not depend on how the document is held in memory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from face3d.models.export.serialize import rounded
from face3d.models.geometry.ibug68 import MEDIAPIPE_MESH_POINTS, ibug68
from face3d.models.reconstruction import Face, PersonReconstruction, PhotoStatus, Reconstruction

RESULT_SCHEMA = "face3d.result/1"
PERSON_SCHEMA = "face3d.person-result/1"
COORDINATES = {
    "image": "pixels of the EXIF-corrected photo, origin top-left, x right, y down, "
    "z depth in pixel scale (smaller = closer)",
    "mesh": "centimetres, right-handed, +Y up, +Z out of the face (GLB: metres)",
    "landmarks_68": "iBUG 300-W order, see models/ibug68.py",
}


class PoseResult(BaseModel):
    """Similarity transform model -> image: ``img ≈ scale · rotation · v + translation``."""

    rotation: list[list[float]] = Field(description="3x3 rotation, Y-up camera frame")
    yaw: float = Field(description="degrees")
    pitch: float = Field(description="degrees")
    roll: float = Field(description="degrees")
    scale: float = Field(description="image pixels per model centimetre")
    translation: list[float] = Field(description="image pixels (x, y) and relative depth (z)")


class FaceLighting(BaseModel):
    """The photo's lighting estimated on the face (models/backends/ict/lighting.py): second-order
    spherical harmonics, 9 coefficients per colour channel."""

    model_config = ConfigDict(extra="allow")

    texture: str = Field(
        description="removed: the texture is evenly lit (lighting=remove); kept: as photographed"
    )
    model: str = Field(description="sh2: second-order spherical harmonics")
    frame: str = Field(description="the axes the coefficients are expressed in")
    coefficients: list[list[float]] = Field(
        description="(3, 9): per colour channel (R, G, B), 9 coefficients"
    )


class _Described(BaseModel):
    """Only the members that were given are written back (in declared order): a face or a backend's
    self-description that says less gets no ``null`` members, and one that says more keeps its extras."""

    model_config = ConfigDict(extra="allow")

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler):  # no return annotation: keeps the schema
        data = handler(self)
        given = self.model_fields_set | set(self.model_extra or {})
        return {key: value for key, value in data.items() if key in given}


class FaceResult(_Described):
    """One reconstructed face. Every member a backend of this package writes is declared here (the
    morphable-model ones only with such a backend, ``ict``); a backend kept outside the package may add
    members of its own (they are kept and returned as they are)."""

    bbox: list[float] = Field(description="x0, y0, x1, y1 in image pixels")
    score: float = Field(description="detector confidence, 0..1")
    landmarks: list[list[float]] = Field(description="(N, 3) image-space landmarks, N = 468 or 478")
    landmarks_68: list[list[float]] = Field(
        description="iBUG 300-W 68 points mapped from the landmarks (empty without MediaPipe's 468)"
    )
    pose: PoseResult
    texture_coverage: float = Field(description="share of the face's UV area seen in the photo, 0..1")
    files: list[str] = Field(description="this face's files in the result")
    blendshapes: dict[str, float] | None = Field(
        None, description="MediaPipe's 52 ARKit-named expression scores, 0..1 (478-point landmark nets)"
    )
    # The morphable-model members (models/backends/ict/export.py IctExport.json_fields), in its order.
    identity: list[float] | None = Field(
        None, description="the fitted identity: the morphable model's coefficients, a priori N(0, 1) (ict)"
    )
    expression: dict[str, float] | None = Field(
        None,
        description="the fitted expression weights by ARKit blendshape name in blendshapes' order, 0..1; "
        "the GLB's morph target weights (ict)",
    )
    landmarks_68_model: list[list[float]] | None = Field(
        None, description="(68, 3) the fitted head's iBUG 68 landmark vertices, posed in image space (ict)"
    )
    fit_residual_px: float | None = Field(
        None,
        description="mean image-plane distance of the fitted landmarks to the detected ones, pixels (ict)",
    )
    neutral: bool | None = Field(
        None, description="true: the meshes carry the identity with a neutral expression (ict)"
    )
    lighting: FaceLighting | None = Field(
        None, description="the photo's light on the face as estimated while baking the texture (ict)"
    )


class ImageSize(BaseModel):
    width: int
    height: int


class WeightFile(_Described):
    name: str
    source: str | None = Field(None, description="the package it comes from (pinned requirement)")
    origin: str | None = Field(None, description="where inside that package")
    sha256: str | None = None
    licence: str | None = None
    licence_note: str | None = None


class MorphableModelInfo(_Described):
    name: str | None = None
    licence: str | None = None
    vertices: int | None = None
    identity: int | None = Field(None, description="number of identity coefficients")
    expressions: list[str] | None = Field(None, description="the expression shapes the fit uses")


class ModelInfo(_Described):
    """What made a result, as the backend describes itself (``ReconstructionBackend.describe``);
    backends kept outside the package may say less or add members."""

    backend: str | None = Field(None, description="the backend's registered name (ict, facemesh, ...)")
    model: str | None = None
    version: str | None = None
    weights: dict[str, str] | None = Field(None, description="weight file -> sha256")
    weight_files: list[WeightFile] | None = None
    landmarks: int | None = Field(None, description="landmarks per face (468 or 478)")
    landmark_model: str | None = None
    device: str | None = None
    dtype: str | None = None
    compiled: dict[str, bool] | None = Field(None, description="net -> runs compiled code")
    cuda_graphs: dict[str, list[int]] | None = Field(
        None, description="net -> buckets replayed as CUDA graphs"
    )
    buckets: list[int] | None = Field(None, description="the batch sizes the nets run at")
    morphable_model: MorphableModelInfo | None = None


class ResultDocument(BaseModel):
    """result.json: the photo's size, the model that made the result, per stage timings, the faces
    (largest first) and every file of the result."""

    schema_: str = Field(RESULT_SCHEMA, alias="schema")
    image: ImageSize
    coordinates: dict[str, str] = Field(default_factory=lambda: dict(COORDINATES))
    model: ModelInfo
    timings_ms: dict[str, float]
    faces: list[FaceResult]
    files: list[str]


class PhotoResult(BaseModel):
    """One photo of a person-mode result (several photos of one person, one head), in upload order."""

    index: int = Field(description="the photo's position among the uploads, from 0")
    name: str = Field(description="the photo's file name as uploaded")
    status: PhotoStatus = Field(
        description="fitted: in the joint fit and the texture; no-face: no face found; outlier: its own "
        "identity lies far from the other photos' (left out, not averaged in)"
    )
    image: ImageSize
    identity_distance_mm: float | None = Field(
        None,
        description="RMS distance, mm, at the landmarks between this photo's own fitted identity and the "
        "photos' median (the outlier test: a photo from 3 mm is left out)",
    )
    texture_share: float = Field(description="share of the head's photo-backed texels taken from this photo")
    face: FaceResult | None = Field(
        None,
        description="the photo's face: landmarks, pose, expression and fit residual with the joint "
        "identity (fitted), or its own single-photo fit (outlier); no files of its own",
    )


class PersonResult(BaseModel):
    """What a person-mode result adds: one entry per photo and how much of the head the photos show."""

    reference: int = Field(description="the photo whose pose and expression the head carries (most frontal)")
    texture_seen: float = Field(
        description="share of the head's texels some photo shows (photo weight >= 0.5); the rest is "
        "mirrored or filled"
    )
    texture_seen_reference: float = Field(description="the same share from the reference photo alone")
    photos: list[PhotoResult]


class PersonResultDocument(ResultDocument):
    """result.json of several photos of one person: ``faces`` holds the one head (the reference photo's
    landmarks and pose), ``image`` is the reference photo's size, ``person`` lists every photo."""

    schema_: str = Field(PERSON_SCHEMA, alias="schema")
    person: PersonResult


def face_prefix(index: int, count: int) -> str:
    """File stem of one face: ``face`` when the image has one face, else ``face<index>``."""
    return "face" if count == 1 else f"face{index}"


def _landmarks_68(face: Face) -> list[list[float]]:
    """The iBUG 68 subset of MediaPipe's landmarks; empty for a backend whose faces carry other points."""
    landmarks = np.asarray(face.landmarks)
    return rounded(ibug68(landmarks), 2) if len(landmarks) >= MEDIAPIPE_MESH_POINTS else []


def _blendshapes(face: Face) -> dict[str, dict[str, float]]:
    """MediaPipe's 52 ARKit-named scores, given only by 478-point landmark nets (a face without them
    has no ``blendshapes`` member, not a null one)."""
    if face.blendshapes is None:
        return {}
    return {"blendshapes": {name: round(float(v), 4) for name, v in face.blendshapes.items()}}


def _face_result(face: Face, prefix: str, files: list[str], fields: dict[str, Any]) -> FaceResult:
    pose = face.pose
    return FaceResult(
        bbox=rounded(face.bbox, 2),
        score=round(float(face.score), 4),
        landmarks=rounded(face.landmarks, 2),
        landmarks_68=_landmarks_68(face),
        pose=PoseResult(
            rotation=rounded(pose.rotation, 6),
            yaw=round(float(pose.yaw), 3),
            pitch=round(float(pose.pitch), 3),
            roll=round(float(pose.roll), 3),
            scale=round(float(pose.scale), 5),
            translation=rounded(pose.translation, 3),
        ),
        texture_coverage=round(float(face.coverage), 4),
        files=[name for name in files if name.rsplit(".", 1)[0] == prefix],
        **_blendshapes(face),
        **fields,  # the backend's own members (models/export/mesh.py MeshExport.json_fields)
    )


def result_json(
    rec: Reconstruction,
    model_info: dict[str, Any] | None,
    files: list[str],
    face_fields: Sequence[dict[str, Any]] = (),
) -> ResultDocument:
    """The machine-readable result: per face bbox, score, landmarks (all + iBUG 68), pose, coverage;
    with a morphable model also identity, expression, blendshapes, model landmarks and fit residual.

    ``files`` names every file of this result (result.json included); each face also lists its own.
    ``face_fields``: per face, the members its backend adds (``MeshExport.json_fields``).
    """
    return ResultDocument(**_members(rec, model_info, files, face_fields))


def _members(
    rec: Reconstruction,
    model_info: dict[str, Any] | None,
    files: list[str],
    face_fields: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The members every result document has (``result_json``'s), by name."""
    count = len(rec.faces)
    return {
        "image": ImageSize(width=rec.width, height=rec.height),
        "model": ModelInfo.model_validate(model_info or {}),
        "timings_ms": {k: round(float(v), 3) for k, v in rec.timings_ms.items()},
        "faces": [
            _face_result(face, face_prefix(i, count), files, dict(fields))
            for i, (face, fields) in enumerate(zip(rec.faces, face_fields or [{}] * count, strict=True))
        ],
        "files": list(files),
    }


def person_result_json(
    rec: PersonReconstruction,
    model_info: dict[str, Any] | None,
    files: list[str],
    face_fields: Sequence[dict[str, Any]],
    photo_fields: Sequence[dict[str, Any]],
) -> PersonResultDocument:
    """``result_json`` of a person-mode head plus one entry per photo (``photo_fields``: the backend's
    members of each photo's face, ``{}`` for a photo without one)."""
    photos = [
        PhotoResult(
            index=k,
            name=photo.name,
            status=photo.status,
            image=ImageSize(width=photo.width, height=photo.height),
            identity_distance_mm=None
            if photo.identity_distance_mm is None
            else round(photo.identity_distance_mm, 3),
            texture_share=round(photo.texture_share, 4),
            face=None if photo.face is None else _face_result(photo.face, "", [], dict(fields)),
        )
        for k, (photo, fields) in enumerate(zip(rec.photos, photo_fields, strict=True))
    ]
    person = PersonResult(
        reference=rec.reference,
        texture_seen=round(rec.seen_share, 4),
        texture_seen_reference=round(rec.reference_seen_share, 4),
        photos=photos,
    )
    return PersonResultDocument(**_members(rec, model_info, files, face_fields), person=person)


def dump_json(doc: ResultDocument) -> bytes:
    """Compact UTF-8 JSON bytes of a result document; a face has only the optional members it carries."""
    data = doc.model_dump(by_alias=True)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def add_result_json(
    files: dict[str, bytes],
    rec: Reconstruction,
    model_info: dict[str, Any] | None,
    face_fields: Sequence[dict[str, Any]],
    started: float,
) -> ResultDocument:
    """Add ``result.json`` to ``files`` and return its document: it lists every file, itself
    included, and the export's time since ``started`` (a ``time.perf_counter()``) among its timings."""
    return add_document(files, result_json(rec, model_info, [*files, "result.json"], face_fields), started)


def add_document(files: dict[str, bytes], doc: ResultDocument, started: float) -> ResultDocument:
    """Add ``doc`` (which lists result.json among its files) to ``files`` as result.json, with the export's
    time since ``started`` among its timings."""
    doc.timings_ms["export"] = round((time.perf_counter() - started) * 1000.0, 3)
    files["result.json"] = dump_json(doc)
    return doc
