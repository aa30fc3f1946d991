"""POST /v1/reconstruct/person: several photos of one person -> one head (models/pipeline.py's person
mode). Thin, as the other reconstruct routes: validate, admit, charge, read, submit, answer.

Its own limits: ``max_person_photos`` photos (2..8; more is a 413 while parsing, fewer a 422) in a body of
at most ``max_person_body_bytes`` (all photos together). The quota is charged one unit per photo (each is
fitted and baked) once the photos are counted, and refunded when the request fails before work starts.
A photo that is not an image fails the request (400/415, naming the photo); a photo without a face, or
of someone else, is reported in the result (``person.photos``), not refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from face3d.models.errors import OptionsError
from face3d.models.pipeline import ReconstructOptions, check_person
from face3d.service.api.deps import AppSettings, Pool, ReconstructCaller, StrictQuery, TenantQuota, Uploads
from face3d.service.api.openapi import image_body, problems
from face3d.service.api.quota import work_units
from face3d.service.api.routes.reconstruct import (
    RESULT_LINKS,
    Formats,
    LightingQuery,
    Neutral,
    OptionsQuery,
    Texture,
    UvSize,
    refunded,
    result_body,
)
from face3d.service.api.schemas import PersonReconstructResult
from face3d.service.api.uploads import (
    MULTIPART,
    check_image,
    content_type,
    parse_images,
    receive,
    refusing_early,
)
from face3d.service.config import Settings
from face3d.service.errors import Problem
from face3d.service.storage import new_result_id
from face3d.service.workers.protocol import JobDone

router = APIRouter(tags=["reconstruct"], dependencies=[StrictQuery])

ERRORS = (400, 401, 403, 408, 413, 415, 422, 429, 503, 504)


@dataclass
class PersonQuery:
    """The reconstruct options that apply to one head from several photos (no ``all_faces``: each photo
    gives its largest face; no preview: there is no one photo to draw over)."""

    uv_size: UvSize = None
    formats: Formats = None
    texture: Texture = "png"
    neutral: Neutral = False
    lighting: LightingQuery = "remove"

    def options(self, settings: Settings) -> ReconstructOptions:
        """The single-photo routes' rules (OptionsQuery's), violations as 422s."""
        return OptionsQuery(
            self.uv_size, self.formats, self.texture, False, self.neutral, self.lighting
        ).options(settings)


def person_body(settings: Settings, done: JobDone) -> dict[str, Any]:
    """The stored head as the client sees it: the single-photo answer plus every photo's entry."""
    assert done.summary is not None and done.summary.person is not None
    body = PersonReconstructResult(**dict(result_body(settings, done)), person=done.summary.person)
    return body.model_dump(mode="json")


async def _check_photo(index: int, name: str, data: bytes, settings: Settings) -> None:
    """``check_image`` with the photo named in the problem (which of eight photos was not an image)."""
    try:
        await check_image(data, settings)
    except Problem as problem:
        raise Problem(problem.slug, f"photo {index} ({name}): {problem.detail}") from None


@router.post(
    "/v1/reconstruct/person",
    operation_id="reconstruct_person",
    response_model=PersonReconstructResult,
    responses={200: {"links": RESULT_LINKS}, **problems(*ERRORS)},
    openapi_extra=image_body("images", many=True),
)
async def reconstruct_person(
    request: Request,
    caller: ReconstructCaller,
    settings: AppSettings,
    pool: Pool,
    quota: TenantQuota,
    uploads: Uploads,
    query: Annotated[PersonQuery, Depends()],
) -> JSONResponse:
    """Several photos of one person (multipart file fields ``images``, 2 to ``max_person_photos``) -> one
    head: one identity fitted to every photo with a face (a pose and expression each), one texture baked
    from all of them (each texel from the photo that sees it best). The answer is the single-photo
    route's (the head as ``faces[0]``, at the most frontal photo's pose) plus ``person``: per photo its
    status (fitted, no-face, outlier), pose, expression and fit residual."""
    async with refusing_early(request):
        options = query.options(settings)
        if content_type(request) != MULTIPART:
            raise Problem("unsupported-type", "send the photos as multipart/form-data fields 'images'")
        pool.check_admission()
    async with receive(request, settings, uploads, settings.max_person_body_bytes) as body:
        photos = await parse_images(request, body, MULTIPART, "images", settings.max_person_photos)
        try:
            check_person(len(photos), options, settings.max_person_photos)
        except OptionsError as exc:
            raise Problem("validation", str(exc)) from None
        cost = work_units(options.uv_size, False, settings.max_faces) * len(photos)
        await quota.charge(caller.tenant, cost)
        async with refunded(quota, caller, cost):
            for index, (name, data) in enumerate(photos):
                await _check_photo(index, name, data, settings)
            pool.check_admission()
        done = await pool.submit(b"", options, caller.tenant, new_result_id(), photos=photos)
    return JSONResponse(person_body(settings, done))
