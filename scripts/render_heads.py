"""Render the textured head of each test photo at front, 45° and profile, in a real browser, to PNGs.

For a person to look at what the ``ict`` backend returns, as an avatar app shows it: each photo goes
through the pipeline (the configured CPU backend, ``ict`` by default) to its GLB, which three.js (the
copy vendored in service/web/vendor/) loads with its morph targets at the fitted weights and renders
in Debian's headless ``chromium`` (SwiftShader WebGL), driven by Playwright (no browser download).
The page and files are served from memory through Playwright's request routing: no server, no network.

Writes ``<out>/<photo>_<view>.png`` per view and ``<out>/<photo>.png``, a strip of the photo and the
three views (what docs/renders/ keeps).

``--before REV``: the strip is photo | before front/45/profile | after front/45/profile, "before" the
same fitted head textured by models/backends/ict/bake.py at git revision REV (a2fc32b: the bake
before issue 22, as bench/texture_quality.py's ``committed_baker_module`` imports it; it has no
``lighting`` option), "after" by the working tree's bake with ``--lighting``. ``--texture-set``: every
photo of scripts/texture_photos.py (what docs/renders/texture-set/ keeps).

    python -m scripts.render_heads                               # the 4 test photos -> out/renders
    python -m scripts.render_heads astronaut --out docs/renders --size 320 --uv-size 1024
    python -m scripts.render_heads --texture-set --before a2fc32b --size 256 --uv-size 1024 \
        --zoom 1.8 --palette --strip-only --out docs/renders/texture-set
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image, ImageDraw

from face3d.models.backends import BackendConfig, create_backend
from face3d.models.pipeline import LIGHTING, Pipeline, ReconstructOptions
from face3d.service.config import default_cache_dir
from scripts.chromium import CHROMIUM, CHROMIUM_ARGS
from scripts.photos import PHOTO_NAMES, photo_bytes
from scripts.texture_photos import TEXTURE_PHOTOS, texture_photo_bytes

ROOT = Path(__file__).resolve().parents[1]
THREE = ROOT / "service" / "web" / "vendor" / "three-0.187.0"
# degrees the head turns to its right (the viewer sees its left side)
VIEWS = {"front": 0.0, "45": 45.0, "profile": 90.0}
BACKGROUND = "#2a2f36"
ORIGIN = "http://render.local"

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script type="importmap">{"imports": {"three": "/three/build/three.module.js",
  "three/addons/": "/three/examples/jsm/"}}</script>
<style>html,body{margin:0;background:%(bg)s}canvas{display:block}</style></head><body>
<script type="module">
import * as THREE from 'three';
import {GLTFLoader} from 'three/addons/loaders/GLTFLoader.js';
const size = %(size)d;
const zoom = %(zoom)f;  // above 1: closer, aimed at the head rather than the middle of head and shoulders
const renderer = new THREE.WebGLRenderer({antialias: true, preserveDrawingBuffer: true});
renderer.setSize(size, size);
renderer.setClearColor('%(bg)s');
document.body.appendChild(renderer.domElement);
const scene = new THREE.Scene();
scene.add(new THREE.HemisphereLight(0xffffff, 0x404040, 1.6));
const key = new THREE.DirectionalLight(0xffffff, 1.4);
key.position.set(0.3, 0.5, 1.0);
scene.add(key);
const camera = new THREE.PerspectiveCamera(20, 1, 0.05, 10);
const gltf = await new GLTFLoader().loadAsync('/head.glb');
const head = gltf.scene;
const box = new THREE.Box3().setFromObject(head);
const centre = box.getCenter(new THREE.Vector3());
head.position.sub(centre);
const pivot = new THREE.Group();
pivot.add(head);
scene.add(pivot);
const radius = box.getSize(new THREE.Vector3()).length() / 2;
const lift = zoom > 1 ? box.getSize(new THREE.Vector3()).y * 0.17 : 0;
camera.position.set(0, lift, radius / Math.tan(THREE.MathUtils.degToRad(10)) * 0.8 / zoom);
window.renderView = (degrees) => {
  pivot.rotation.y = THREE.MathUtils.degToRad(-degrees);
  renderer.render(scene, camera);
  return renderer.domElement.toDataURL('image/png');
};
window.ready = true;
</script></body></html>"""


def any_photo_bytes(name: str) -> bytes:
    """A test photo (scripts/photos.py) or one of the texture set (scripts/texture_photos.py)."""
    return photo_bytes(name) if name in PHOTO_NAMES else texture_photo_bytes(name)


def head_glb(pipeline: Pipeline, name: str, uv_size: int, **options: str) -> bytes:
    chosen = ReconstructOptions(uv_size=uv_size, formats=frozenset({"glb"}), **options)  # type: ignore[arg-type]
    (item,) = pipeline.run([any_photo_bytes(name)], chosen)
    if item.exported is None:
        raise RuntimeError(f"{name}: {item.error}")
    return item.exported.files["face.glb"]


class BeforeBaker:
    """A bake from before issue 22 (``bake(...) -> (textures, coverage)``, no lighting) in the shape the
    working tree's backend calls: ``bake(..., lighting) -> (textures, coverage, sources)``, the sources
    reporting no light and no per-vertex weights (zeros)."""

    def __init__(self, baker) -> None:
        self.baker = baker

    def bake(self, images, sizes, face_image, verts, landmarks, lighting: str = "remove", handed=None):
        textures, coverage = self.baker.bake(images, sizes, face_image, verts, landmarks)[:2]
        sources = SimpleNamespace(
            lighting=torch.zeros((len(verts), 3, 9), device=verts.device),
            weight=torch.zeros(verts.shape[:2], device=verts.device),
        )
        return textures, coverage, sources

    def __getattr__(self, name: str):
        return getattr(self.baker, name)


def use_bake_at(backend, revision: str) -> None:
    """Make ``backend`` (``ict``) bake with models/backends/ict/bake.py at git ``revision`` from now on."""
    from bench.texture_quality import committed_baker_module

    module = committed_baker_module(revision)

    def new_baker(uv_size: int, sample_size: int) -> BeforeBaker:
        baker = module.HeadBaker(
            backend.topology_, backend.fill, backend.depth, uv_size, sample_size, backend.device
        )
        return BeforeBaker(baker)

    backend._new_baker = new_baker
    backend._bakers.clear()


def _server(files: dict[str, bytes]):
    """A Playwright route handler serving ``files`` and the vendored three.js (one argument: Playwright
    passes the request too to handlers that take two)."""

    def serve(route) -> None:
        path = route.request.url.removeprefix(ORIGIN)
        if path.startswith("/three/"):
            target = (THREE / path.removeprefix("/three/")).resolve()
            if target.is_file() and THREE.resolve() in target.parents:
                route.fulfill(body=target.read_bytes(), content_type="text/javascript")
                return
        if path in files:
            kind = "text/html" if path.endswith(".html") else "model/gltf-binary"
            route.fulfill(body=files[path], content_type=kind)
            return
        route.fulfill(status=404, body=b"")

    return serve


def render(
    glbs: dict[str, bytes], size: int, views: dict[str, float] = VIEWS, zoom: float = 1.0
) -> dict[str, dict[str, bytes]]:
    """{photo: {view: PNG bytes}} rendered in one chromium; ``views`` maps a view's name to its yaw;
    ``zoom`` above 1 frames the head closer (1: head and shoulders)."""
    import base64

    from playwright.sync_api import sync_playwright

    out: dict[str, dict[str, bytes]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for name, glb in glbs.items():
            page = browser.new_page(viewport={"width": size, "height": size})
            files = {
                "/index.html": (PAGE % {"size": size, "bg": BACKGROUND, "zoom": zoom}).encode(),
                "/head.glb": glb,
            }

            page.route(f"{ORIGIN}/**", _server(files))
            page.on("console", lambda msg: print("  page:", msg.text) if msg.type == "error" else None)
            page.goto(f"{ORIGIN}/index.html", wait_until="commit")
            page.wait_for_function("window.ready === true", timeout=120_000)
            out[name] = {}
            for view, degrees in views.items():
                url = page.evaluate(f"window.renderView({json.dumps(degrees)})")
                out[name][view] = base64.b64decode(url.split(",", 1)[1])
            page.close()
        browser.close()
    return out


def strip(
    photo: bytes,
    views: dict[str, bytes],
    size: int,
    before: dict[str, bytes] | None = None,
    label: str = "",
    palette: bool = False,
) -> bytes:
    """The photo (fitted into a square) and the three views side by side, as one PNG; with ``before``,
    its three views between the photo and the others, the two groups labelled ``label`` and "after";
    ``palette``: a 256-colour PNG (a third of the size, for strips kept in the repository)."""
    tiles = [Image.open(io.BytesIO(photo)).convert("RGB")]
    tiles[0].thumbnail((size, size))
    square = Image.new("RGB", (size, size), BACKGROUND)
    square.paste(tiles[0], ((size - tiles[0].width) // 2, (size - tiles[0].height) // 2))

    def tile(png: bytes, text: str) -> Image.Image:
        image = Image.open(io.BytesIO(png)).convert("RGB").resize((size, size))
        if text:
            ImageDraw.Draw(image).text((6, 4), text, fill=(230, 230, 230))
        return image

    images = [square]
    if before is not None:
        images += [tile(before[v], f"{label} {v}") for v in VIEWS]
    images += [tile(views[v], f"after {v}" if before is not None else "") for v in VIEWS]
    sheet = Image.fromarray(np.concatenate([np.asarray(i) for i in images], axis=1))
    if palette:
        sheet = sheet.quantize(256, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    sheet.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "photos", nargs="*", default=list(PHOTO_NAMES), help=f"also: {', '.join(TEXTURE_PHOTOS)}"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "renders")
    parser.add_argument("--backend", default="ict")
    parser.add_argument("--size", type=int, default=512, help="render side in pixels")
    parser.add_argument("--uv-size", type=int, default=2048)
    parser.add_argument("--strip-only", action="store_true", help="write only the per-photo strips")
    parser.add_argument("--lighting", choices=LIGHTING, default="remove", help="the texture's lighting (ict)")
    parser.add_argument(
        "--before", metavar="REV", help="also render the bake at git revision REV (ict; e.g. a2fc32b)"
    )
    parser.add_argument("--zoom", type=float, default=1.0, help="above 1: the head closer (e.g. 1.8)")
    parser.add_argument("--palette", action="store_true", help="strips as 256-colour PNGs")
    parser.add_argument("--texture-set", action="store_true", help="every photo of scripts/texture_photos.py")
    args = parser.parse_args(argv)
    photos = list(TEXTURE_PHOTOS) if args.texture_set else args.photos
    backend = create_backend(args.backend, BackendConfig(cache_dir=default_cache_dir(), buckets=(1,)))
    backend.load("cpu")
    pipeline = Pipeline(backend, max_pixels=50_000_000)
    glbs = {name: head_glb(pipeline, name, args.uv_size, lighting=args.lighting) for name in photos}
    earlier: dict[str, dict[str, bytes]] = {}
    if args.before:
        use_bake_at(backend, args.before)
        old = {name: head_glb(pipeline, name, args.uv_size) for name in photos}
        earlier = render(old, args.size, zoom=args.zoom)
    renders = render(glbs, args.size, zoom=args.zoom)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, views in renders.items():
        if not args.strip_only:
            for view, png in views.items():
                (args.out / f"{name}_{view}.png").write_bytes(png)
            for view, png in earlier.get(name, {}).items():
                (args.out / f"{name}_before_{view}.png").write_bytes(png)
        sheet = strip(
            any_photo_bytes(name), views, args.size, earlier.get(name), f"before {args.before}", args.palette
        )
        (args.out / f"{name}.png").write_bytes(sheet)
        print(f"{name}: {', '.join(views)} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
