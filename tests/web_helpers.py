"""Helpers of tests/test_web.py: Debian's chromium under Playwright, pixel checks, a GLB with morph
targets, and the steps a user takes on the page (sign in, upload, drop, download).

The browser is the system's ``chromium`` (apt-get install chromium; .ci/run does it), never a
Playwright browser download. WebGL runs on SwiftShader, Chromium's CPU rasteriser, so the viewer
renders headless on machines without a GPU.
"""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import numpy as np
import pygltflib as gl
from PIL import Image
from playwright.sync_api import Page, expect

from scripts.photos import photo_bytes
from tests.serving import Server

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "web"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]
VIEWER_RGB = (0x2A, 0x2F, 0x36)  # service/web/viewer.js BACKGROUND
READY_MS = 120_000  # one reconstruction on the shared 2-core CI machine, rendered by SwiftShader


def chromium_path() -> str:
    """Debian's chromium binary; a clear failure (not a skip) when it is missing."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found is None:
        raise RuntimeError("the browser tests need Debian's chromium (apt-get install chromium)")
    return found


def pixels(png: bytes) -> np.ndarray:
    """(H, W, 3) uint8 of a PNG screenshot."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def foreground_share(png: bytes, centre: float = 0.4, background: tuple[int, ...] = VIEWER_RGB) -> float:
    """Share of the central ``centre`` x ``centre`` window whose colour is not the background's."""
    image = pixels(png).astype(np.int16)
    h, w = image.shape[:2]
    dy, dx = int(h * (1 - centre) / 2), int(w * (1 - centre) / 2)
    window = image[dy : h - dy, dx : w - dx]
    differs = np.abs(window - np.array(background, dtype=np.int16)).max(axis=2) > 24
    return float(differs.mean())


def changed_share(before: bytes, after: bytes) -> float:
    """Share of pixels whose colour changed by more than a rounding step between two screenshots."""
    a, b = pixels(before).astype(np.int16), pixels(after).astype(np.int16)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((np.abs(a - b).max(axis=2) > 8).mean())


def save(name: str, png: bytes) -> Path:
    """Keep a screenshot as a test artefact (test-artifacts/web/, ignored by git)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(png)
    return path


def with_morph_targets(glb: bytes, weights: dict[str, float]) -> bytes:
    """The same GLB plus one morph target per name of ``weights`` (glTF ``targets`` on the first primitive,
    names in ``extras.targetNames``, ``mesh.weights`` as the defaults): the structure a parametric
    backend writes, so the page's expression panel can be tested on any backend's mesh.

    The displacements are simple regional moves of the mesh in its own frame (+Y up, metres): the
    lower face down for jawOpen, one mouth side up for the smiles, the upper face up for the brows.
    """
    doc = gl.GLTF2.load_from_bytes(glb)
    blob = bytearray(doc.binary_blob())
    mesh = doc.meshes[0]
    primitive = mesh.primitives[0]
    accessor = doc.accessors[primitive.attributes.POSITION]
    view = doc.bufferViews[accessor.bufferView]
    start = view.byteOffset + (accessor.byteOffset or 0)
    positions = np.frombuffer(bytes(blob[start : start + accessor.count * 12]), "<f4").reshape(-1, 3)
    low, high = positions.min(axis=0), positions.max(axis=0)
    height = float(high[1] - low[1])
    rel_y = (positions[:, 1] - low[1]) / height
    centre_x = float((low[0] + high[0]) / 2)
    lower = np.clip((0.45 - rel_y) / 0.45, 0, 1)

    def vertical(metres: np.ndarray) -> np.ndarray:
        return np.stack([np.zeros_like(metres), metres, np.zeros_like(metres)], axis=1)

    moves = {
        "jawOpen": vertical(-0.18 * height * lower),
        "mouthSmileLeft": vertical(0.08 * height * lower * (positions[:, 0] > centre_x)),
        "mouthSmileRight": vertical(0.08 * height * lower * (positions[:, 0] < centre_x)),
        "browInnerUp": vertical(0.06 * height * np.clip((rel_y - 0.6) / 0.4, 0, 1)),
    }
    primitive.targets = []
    for name in weights:
        delta = moves[name].astype("<f4")
        while len(blob) % 4:
            blob.append(0)
        doc.bufferViews.append(gl.BufferView(buffer=0, byteOffset=len(blob), byteLength=delta.nbytes))
        blob += delta.tobytes()
        doc.accessors.append(
            gl.Accessor(
                bufferView=len(doc.bufferViews) - 1, componentType=gl.FLOAT, count=len(delta), type=gl.VEC3,
                min=delta.min(axis=0).tolist(), max=delta.max(axis=0).tolist(),
            )
        )  # fmt: skip
        primitive.targets.append(gl.Attributes(POSITION=len(doc.accessors) - 1))
    mesh.weights = list(weights.values())
    mesh.extras = {"targetNames": list(weights)}
    doc.buffers[0].byteLength = len(blob)
    doc.set_binary_blob(bytes(blob))
    return b"".join(doc.save_to_bytes())


def morph_target_names(glb: bytes) -> list[str]:
    """The morph target names of a GLB's meshes (empty when it has none)."""
    doc = gl.GLTF2.load_from_bytes(glb)
    names: list[str] = []
    for mesh in doc.meshes:
        if any(p.targets for p in mesh.primitives):
            extras = mesh.extras or {}
            count = len(mesh.primitives[0].targets or [])
            names += list(extras.get("targetNames", [str(i) for i in range(count)]))
    return names


# ------------------------------------------------------------------------------ driving the page
def token(server: Server, tenant: str = "web") -> str:
    return server.token(tenant)["Authorization"].removeprefix("Bearer ")


def open_signed_in(page: Page, server: Server) -> str:
    """Open the page with a fresh token in the fragment; returns that token."""
    fresh = token(server)
    page.goto(f"{server.url}/#token={fresh}")
    expect(page.locator("#upload")).to_be_visible()
    assert "token" not in page.url  # read from the fragment, then stripped from the address bar
    assert page.evaluate("sessionStorage.getItem('face3d.token')") == fresh
    return fresh


def upload_astronaut(page: Page, tmp_path: Path) -> None:
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(photo_bytes("astronaut"))
    page.set_input_files("#file", str(photo))
    expect(page.locator("#viewer")).to_have_attribute("data-state", "ready", timeout=READY_MS)


def drop_photo(page: Page, data: bytes) -> None:
    """Drop ``data`` as a JPEG file on the drop zone, as a drag from the desktop does."""
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
            return transfer;
        }""",
        base64.b64encode(data).decode(),
    )
    page.dispatch_event("#drop", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def fake_camera_clip(path: Path, photos: list[str], hold: int, fps: int = 15, height: int = 240) -> Path:
    """A Y4M clip (what Chromium's ``--use-file-for-fake-video-capture`` plays, looping) of the named
    test photos in turn, each held for ``hold`` frames, 4:3 of ``height`` rows, I420. Each frame carries
    its photo's index in a 16x16 corner block (luma 0 for the first photo, 255 for the last), so a test
    can tell from the <video> which photo the tracker is seeing."""
    width, frames = height * 4 // 3, []
    for k, name in enumerate(photos):
        image = Image.open(io.BytesIO(photo_bytes(name))).convert("RGB")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        face = image.crop((left, top, left + side, top + side)).resize(
            (height, height), Image.Resampling.BILINEAR
        )
        frame = Image.new("RGB", (width, height), (128, 128, 128))
        frame.paste(face, ((width - height) // 2, 0))
        y, cb, cr = (np.asarray(c, np.uint8) for c in frame.convert("YCbCr").split())
        y = y.copy()
        y[:16, :16] = 255 * k // max(len(photos) - 1, 1)
        half = [
            c.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)).round().astype(np.uint8)
            for c in (cb, cr)
        ]
        frames += [b"FRAME\n" + y.tobytes() + half[0].tobytes() + half[1].tobytes()] * hold
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode() + b"".join(frames))
    return path


def canvas_png(page: Page) -> bytes:
    return page.locator("#viewer canvas").screenshot()


def download(page: Page, link: str) -> bytes:
    with page.expect_download() as info:
        page.click(link)
    path = info.value.path()
    assert path is not None
    return Path(path).read_bytes()
