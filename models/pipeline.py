"""One pipeline for the service's workers and the CLI: decode -> backend.reconstruct -> export.

``ReconstructOptions`` holds every per-request choice with its rules and defaults in one place; the
API, the worker and ``face3d reconstruct``/``face3d batch`` all build it here, so a texture size or
format means the same thing everywhere. The three stages stay separate functions because the
service runs them in different places (decode on the worker's threads, reconstruct batched on the
device, export in encoder threads or processes); ``Pipeline.run`` chains them for the CLI.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from face3d.models.errors import ImageError, ModelError, NoFaceError, OptionsError
from face3d.models.export.document import (
    ResultDocument,
    add_document,
    add_result_json,
    person_result_json,
    result_json,
)
from face3d.models.export.files import FORMATS, TextureFormat, export_files
from face3d.models.export.mesh import MeshExport
from face3d.models.imageio import decode_image
from face3d.models.reconstruction import PersonReconstruction, Reconstruction

if TYPE_CHECKING:  # the options above are read by the API process, which never imports torch
    from face3d.models.backends import ReconstructionBackend

MIN_UV_SIZE = 256
MAX_UV_SIZE = 4096
DEFAULT_UV_SIZE = 2048
DEFAULT_FORMATS = frozenset({"obj", "png", "glb", "json"})
"""What a request gets when it names no formats (the preview, a photo-sized PNG, is opt-in)."""
ALL_FORMATS = FORMATS
_FORMAT_NAME = "|".join(sorted(ALL_FORMATS))
FORMATS_PATTERN = rf"^({_FORMAT_NAME})(,({_FORMAT_NAME}))*$"
"""A formats list as the HTTP query must spell it: names from ALL_FORMATS, commas, no spaces."""
TEXTURE_FORMATS: tuple[TextureFormat, ...] = get_args(TextureFormat)
Lighting = Literal["remove", "keep"]
LIGHTING: tuple[Lighting, ...] = get_args(Lighting)
"""``remove`` (default): an evenly lit texture, the photo's estimated light divided out; ``keep``:
the photo's light baked in as photographed. Either way result.json carries the estimated light."""


MIN_PERSON_PHOTOS = 2
MAX_PERSON_PHOTOS = 8
"""Photos of one person a person-mode head is fitted to: one photo is the single-photo path, and the
joint fit and the per-photo bakes grow with the count (a deployment may allow fewer)."""
PERSON_FORMATS = ALL_FORMATS - {"preview"}
"""The preview draws a mesh over one photo: a head of several photos has no one photo to draw over."""


def uv_sizes(largest: int = MAX_UV_SIZE) -> list[int]:
    """The texture sizes a request may ask for: the powers of two from MIN_UV_SIZE to ``largest``
    (a deployment may cap them lower). One cached texel map per size, so a client cannot make a
    worker build (and keep) a new map per request."""
    return [1 << k for k in range(MIN_UV_SIZE.bit_length() - 1, largest.bit_length())]


def check_uv_size(size: int, largest: int = MAX_UV_SIZE, name: str = "uv_size") -> None:
    """OptionsError unless ``size`` is one of ``uv_sizes(largest)``."""
    if not isinstance(size, int) or size not in uv_sizes(largest):
        raise OptionsError(f"{name} must be a power of two from {MIN_UV_SIZE} to {largest}, got {size}")


def parse_formats(formats: str | Iterable[str]) -> frozenset[str]:
    """``"obj,png"`` or an iterable of names -> a validated, non-empty set of output formats."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen = frozenset(name.strip() for name in names if name.strip())
    if not chosen or chosen - ALL_FORMATS:
        raise OptionsError(f"formats must be a comma list from {','.join(sorted(ALL_FORMATS))}")
    return chosen


@dataclass(frozen=True)
class ReconstructOptions:
    """What one reconstruction produces. Frozen and picklable: it travels to the worker unchanged.

    Jobs with equal ``batch_key`` share one backend call. ``neutral`` asks a morphable-model backend
    (ict) for the identity with a neutral expression in the meshes (the fitted expression stays in the
    JSON and, for the GLB, in the morph targets an app can set); it is an export choice, so it does
    not split batches, and backends without expressions (facemesh) ignore it. ``lighting`` (see
    LIGHTING) changes the bake, so it is part of ``batch_key``; facemesh ignores it.
    """

    uv_size: int = DEFAULT_UV_SIZE
    formats: frozenset[str] = DEFAULT_FORMATS
    texture_format: TextureFormat = "png"
    all_faces: bool = False
    neutral: bool = False
    lighting: Lighting = "remove"

    def __post_init__(self) -> None:
        check_uv_size(self.uv_size)
        if self.lighting not in LIGHTING:
            raise OptionsError(f"lighting must be one of {','.join(LIGHTING)}")
        object.__setattr__(self, "formats", parse_formats(self.formats))
        if self.texture_format not in TEXTURE_FORMATS:
            raise OptionsError(f"texture must be one of {','.join(sorted(TEXTURE_FORMATS))}")

    @classmethod
    def parse(
        cls,
        *,
        uv_size: int | None = None,
        formats: str | Iterable[str] | None = None,
        texture_format: str = "png",
        all_faces: bool = False,
        neutral: bool = False,
        lighting: str = "remove",
        default_uv_size: int = DEFAULT_UV_SIZE,
        max_uv_size: int = MAX_UV_SIZE,
        uv_size_name: str = "uv_size",
    ) -> ReconstructOptions:
        """Options from user input: ``None`` takes the default; a deployment may lower the size cap."""
        size = default_uv_size if uv_size is None else uv_size
        check_uv_size(size, max_uv_size, uv_size_name)
        chosen = DEFAULT_FORMATS if formats is None else parse_formats(formats)
        return cls(size, chosen, texture_format, all_faces, neutral, lighting)  # type: ignore[arg-type]

    @property
    def batch_key(self) -> tuple[int, bool, str]:
        return self.uv_size, self.all_faces, self.lighting


def check_person(count: int, options: ReconstructOptions, largest: int = MAX_PERSON_PHOTOS) -> None:
    """OptionsError unless ``count`` photos and ``options`` make a person-mode request (2..``largest``
    photos; no preview, no ``all_faces``: each photo gives its largest face)."""
    if not MIN_PERSON_PHOTOS <= count <= largest:
        raise OptionsError(
            f"person mode takes {MIN_PERSON_PHOTOS} to {largest} photos of one person, got {count}"
        )
    if options.formats - PERSON_FORMATS:
        raise OptionsError(
            f"person mode writes no preview; formats must be from {','.join(sorted(PERSON_FORMATS))}"
        )
    if options.all_faces:
        raise OptionsError("person mode takes the largest face of each photo: all_faces does not apply")


@dataclass
class Exported:
    """One image's files by name and its result document (the content of result.json)."""

    files: dict[str, bytes]
    document: ResultDocument
    encode_ms: float = 0.0


def export_result(
    rec: Reconstruction,
    image: np.ndarray | None,
    options: ReconstructOptions,
    exporter: MeshExport,
    model_info: dict[str, Any],
) -> Exported:
    """Files and result document of one reconstruction; raises NoFaceError when it found none.

    Standalone (no backend needed) so encoder processes can run it with only the backend's export hooks
    (``ReconstructionBackend.mesh_export()``, no weights).
    ``image`` is needed only for the preview. A ``PersonReconstruction`` (several photos of one person)
    gives the same files of its one head and a ``PersonResultDocument``.
    """
    if isinstance(rec, PersonReconstruction):
        return _export_person(rec, options, exporter, model_info)
    if not rec.faces:
        raise NoFaceError("no face was detected")
    start = time.perf_counter()
    files = export_files(
        rec,
        image,
        exporter,
        options.formats - {"json"},
        options.texture_format,
        model_info,
        neutral=options.neutral,
    )
    # The document is built here, once: result.json is written from it (export time included), so
    # it is never read back from those bytes.
    fields = [exporter.json_fields(face, options.neutral) for face in rec.faces]
    if "json" in options.formats:
        document = add_result_json(files, rec, model_info, fields, start)
    else:
        document = result_json(rec, model_info, list(files), fields)
    return Exported(files, document, (time.perf_counter() - start) * 1000.0)


def _export_person(
    rec: PersonReconstruction, options: ReconstructOptions, exporter: MeshExport, model_info: dict[str, Any]
) -> Exported:
    """``export_result`` of one person's head: its files as one face's, result.json with every photo."""
    if not rec.faces:
        raise NoFaceError("no face was detected in any of the photos")
    start = time.perf_counter()
    formats = options.formats - {"json", "preview"}
    files = export_files(
        rec, None, exporter, formats, options.texture_format, model_info, neutral=options.neutral
    )
    fields = [exporter.json_fields(face, options.neutral) for face in rec.faces]
    photo_fields = [
        {} if p.face is None else exporter.json_fields(p.face, options.neutral) for p in rec.photos
    ]
    listed = [*files, "result.json"] if "json" in options.formats else list(files)
    document = person_result_json(rec, model_info, listed, fields, photo_fields)
    if "json" in options.formats:
        add_document(files, document, start)
    return Exported(files, document, (time.perf_counter() - start) * 1000.0)


@dataclass
class PipelineItem:
    """The outcome of one input of ``Pipeline.run``: exported files, or the error that stopped it."""

    exported: Exported | None = None
    error: ModelError | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class Pipeline:
    """decode -> reconstruct -> export over one loaded backend; the CLI's engine, the worker's stages."""

    def __init__(self, backend: ReconstructionBackend, max_pixels: int) -> None:
        self.backend = backend
        self.max_pixels = max_pixels

    def decode(self, data: bytes) -> np.ndarray:
        """Untrusted bytes -> RGB array; raises ImageError (a ModelError) with a one-line message."""
        return decode_image(data, max_pixels=self.max_pixels)

    def reconstruct(self, images: Sequence[np.ndarray], options: ReconstructOptions) -> list[Reconstruction]:
        """One batched backend call for images that share ``options.batch_key``."""
        return self.backend.reconstruct(
            images, uv_size=options.uv_size, all_faces=options.all_faces, lighting=options.lighting
        )

    def reconstruct_person(
        self, images: Sequence[np.ndarray], names: Sequence[str], options: ReconstructOptions
    ) -> PersonReconstruction:
        """One head from decoded photos of one person (``names``: their file names, for the result)."""
        rec = self.backend.reconstruct_person(images, uv_size=options.uv_size, lighting=options.lighting)
        for photo, name in zip(rec.photos, names, strict=True):
            photo.name = name
        return rec

    def decode_photos(self, photos: Sequence[tuple[str, bytes]]) -> list[np.ndarray]:
        """Every photo of a person decoded; a photo that is not a readable image fails the request
        (ImageError naming it): unlike a photo without a face, it was never a photo of the person."""
        images = []
        for index, (name, data) in enumerate(photos):
            try:
                images.append(self.decode(data))
            except ImageError as exc:
                raise ImageError(exc.kind, f"photo {index} ({name}): {exc}") from None
        return images

    def run_person(self, photos: Sequence[tuple[str, bytes]], options: ReconstructOptions) -> PipelineItem:
        """Every stage for (name, bytes) photos of one person: one item, never raising a ModelError."""
        item = PipelineItem()
        try:
            check_person(len(photos), options)
            start = time.monotonic()
            images = self.decode_photos(photos)
            item.timings_ms["decode"] = (time.monotonic() - start) * 1000.0
            rec = self.reconstruct_person(images, [name for name, _ in photos], options)
            item.timings_ms.update(rec.timings_ms)
            item.exported = self.export(rec, None, options)
        except ModelError as exc:
            item.error = exc
        return item

    def export(self, rec: Reconstruction, image: np.ndarray | None, options: ReconstructOptions) -> Exported:
        return export_result(rec, image, options, self.backend.mesh_export(), self.backend.describe())

    def run(self, inputs: Sequence[bytes], options: ReconstructOptions) -> list[PipelineItem]:
        """Every stage for a group of encoded images; one item per input, in order, never raising a
        ModelError (a bad image fails only itself)."""
        items = [PipelineItem() for _ in inputs]
        ready: list[tuple[int, np.ndarray]] = []
        for index, data in enumerate(inputs):
            start = time.monotonic()
            try:
                ready.append((index, self.decode(data)))
            except ModelError as exc:
                items[index].error = exc
            items[index].timings_ms["decode"] = (time.monotonic() - start) * 1000.0
        if not ready:
            return items
        recs = self.reconstruct([image for _, image in ready], options)
        for (index, image), rec in zip(ready, recs, strict=True):
            items[index].timings_ms.update(rec.timings_ms)
            try:
                items[index].exported = self.export(rec, image, options)
            except ModelError as exc:
                items[index].error = exc
        return items
