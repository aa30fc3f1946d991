"""The web page at ``/`` in a real browser against the real server over real HTTP (slow): Playwright
driving Debian's chromium, WebGL on SwiftShader. Its files and headers: tests/test_web_files.py.

Screenshots land in test-artifacts/web/ (ignored by git) for people and CI to look at.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from scripts.photos import photo_bytes
from tests.serving import Server, blank_png, start_server  # noqa: F401  (start_server: a fixture)
from tests.web_helpers import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    READY_MS,
    canvas_png,
    changed_share,
    chromium_path,
    download,
    drop_photo,
    fake_camera_clip,
    foreground_share,
    morph_target_names,
    open_signed_in,
    pixels,
    save,
    token,
    upload_astronaut,
    with_morph_targets,
)

FITTED = {"jawOpen": 0.3, "mouthSmileLeft": 0.0, "mouthSmileRight": 0.0, "browInnerUp": 0.2}
# Generous waits: the 2-core CI machine is shared, and SwiftShader renders on those same cores.
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def web_server(start_server: Callable[..., Server]) -> Server:  # noqa: F811
    # Info logs (one line per request), so the test can check that no token reaches them; a roomy
    # quota, so the page's uploads never meet a 429 the test did not ask for.
    return start_server(log_level="info", quota_rate_per_s=100, quota_burst=100)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(60_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    yield page
    context.close()
    # A problem answer the test provoked on purpose logs a failed resource; anything else is a bug.
    assert [e for e in errors if "the server responded with a status of" not in e] == []


@pytest.mark.slow
def test_photo_to_head_overlay_and_downloads(web_server: Server, page: Page, tmp_path: Path) -> None:
    used = open_signed_in(page, web_server)
    upload_astronaut(page, tmp_path)
    expect(page.locator("#backend")).to_contain_text("backend:")
    shot = canvas_png(page)
    save("viewer.png", shot)
    assert foreground_share(shot) > 0.5, "the viewer's centre shows no head"
    page.click("#wireframe")
    wire = canvas_png(page)
    save("viewer-wireframe.png", wire)
    assert changed_share(shot, wire) > 0.05
    page.click("#wireframe")
    page.locator("#viewer").focus()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    turned = canvas_png(page)
    assert changed_share(shot, turned) > 0.05, "arrow keys did not turn the head"
    page.click("#reset-view")
    assert changed_share(shot, canvas_png(page)) < 0.01, "reset did not return to the first view"

    overlay = pixels(page.locator("#overlay").screenshot())
    assert overlay.std() > 20  # the photo is drawn
    expect(page.locator("#pose-text")).to_contain_text("yaw")
    assert page.evaluate("document.getElementById('texture').naturalWidth") == web_server.settings.uv_size
    save("page.png", page.screenshot(full_page=True))

    glb = download(page, "#dl-glb")
    assert glb[:4] == b"glTF"
    with zipfile.ZipFile(io.BytesIO(download(page, "#dl-zip"))) as archive:
        assert archive.testzip() is None  # every CRC matches
        assert sorted(archive.namelist()) == ["face.mtl", "face.obj", "face.png"]
        obj = archive.read("face.obj")
    result = json.loads(download(page, "#dl-json"))
    assert result["faces"] and "pose" in result["faces"][0]

    log = web_server.log.read_text()
    assert '"route": "/"' in log.replace("'", '"') or "/v1/reconstruct" in log  # requests are logged...
    assert used.rsplit(".", 1)[1] not in log  # ...but never the token (its signature is unique)

    # The same bytes as the stored files; the page only repackaged them.
    result_id = page.evaluate("document.getElementById('dl-glb').download").removeprefix("face3d-")[:-4]
    with web_server.client("web") as client:
        assert client.get(f"/v1/results/{result_id}/face.obj").content == obj
        assert client.get(f"/v1/results/{result_id}/face.glb").content == glb

    # Expression panel: only for a GLB that has morph targets.
    names = morph_target_names(glb)
    if not names:
        expect(page.locator("#morphs")).to_be_hidden()
        return
    expect(page.locator("#morphs")).to_be_visible()
    assert page.locator("#sliders input[type=range]").count() == len(names)
    slider = page.locator(f'#sliders input[data-name="{"jawOpen" if "jawOpen" in names else names[0]}"]')
    before = canvas_png(page)
    slider.fill("1")
    after = canvas_png(page)
    save("viewer-morph.png", after)
    assert changed_share(before, after) > 0.002, "moving a morph slider did not change the render"


@pytest.mark.slow
def test_expression_panel_drives_morph_targets(web_server: Server, page: Page, tmp_path: Path) -> None:
    """The panel on a GLB with morph targets (the server's mesh plus four named targets, served in
    place of the stored face.glb): sliders, fitted/neutral, presets, keyboard."""

    def add_targets(route) -> None:  # type: ignore[no-untyped-def]
        response = route.fetch()
        route.fulfill(response=response, body=with_morph_targets(response.body(), FITTED))

    page.route(re.compile(r".*/v1/results/[^/]+/face\.glb$"), add_targets)
    open_signed_in(page, web_server)
    upload_astronaut(page, tmp_path)
    expect(page.locator("#morphs")).to_be_visible()
    sliders = page.locator("#sliders input[type=range]")
    assert sliders.count() == len(FITTED)
    for name, weight in FITTED.items():
        expect(page.get_by_label(name, exact=True)).to_have_value(str(weight).rstrip("0").rstrip(".") or "0")
    expect(page.get_by_label("Fitted to the photo")).to_be_checked()
    fitted = canvas_png(page)

    page.get_by_label("jawOpen", exact=True).fill("1")
    opened = canvas_png(page)
    save("morph-jaw-open.png", opened)
    assert changed_share(fitted, opened) > 0.01, "the jawOpen slider did not change the render"
    expect(page.get_by_label("Fitted to the photo")).not_to_be_checked()

    page.get_by_label("Neutral").check()
    for name in FITTED:
        expect(page.get_by_label(name, exact=True)).to_have_value("0")
    neutral = canvas_png(page)
    assert changed_share(fitted, neutral) > 0.002

    page.get_by_role("button", name="Smile").click()
    expect(page.get_by_label("mouthSmileLeft", exact=True)).to_have_value("0.9")
    smile = canvas_png(page)
    save("morph-smile.png", smile)
    assert changed_share(neutral, smile) > 0.002
    expect(page.get_by_role("button", name="Blink")).to_have_count(0)  # no eyeBlink targets here

    page.get_by_label("Fitted to the photo").check()
    assert changed_share(fitted, canvas_png(page)) < 0.01
    brow = page.get_by_label("browInnerUp", exact=True)
    brow.focus()
    page.keyboard.press("ArrowRight")
    expect(brow).to_have_value("0.21")
    play = page.get_by_role("button", name="Play expressions")
    play.click()
    expect(page.locator("#play")).to_have_attribute("aria-pressed", "true")
    first = page.get_by_label("jawOpen", exact=True).input_value()
    # the animation moves on per rendered frame: on a loaded CI machine (software WebGL) a frame can
    # take longer than the 400 ms this used to wait, so wait for the change itself (up to 10 s)
    expect(page.get_by_label("jawOpen", exact=True)).not_to_have_value(first, timeout=10_000)
    page.locator("#play").click()
    expect(page.locator("#play")).to_have_attribute("aria-pressed", "false")
    page.fill("#morph-filter", "mouth")
    expect(page.get_by_label("jawOpen", exact=True)).to_be_hidden()
    expect(page.get_by_label("mouthSmileRight", exact=True)).to_be_visible()
    save("page-morphs.png", page.screenshot(full_page=True))


@pytest.mark.slow
def test_bad_token_and_no_face_show_the_problem(web_server: Server, page: Page, tmp_path: Path) -> None:
    page.goto(f"{web_server.url}/#token=not-a-valid-token")
    expect(page.locator("#message")).to_be_visible()
    expect(page.locator("#message-title")).to_have_text("Missing or invalid credentials")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#upload")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('face3d.token')") is None
    save("bad-token.png", page.screenshot(full_page=True))

    page.fill("#token-input", token(web_server))
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#upload")).to_be_visible()
    expect(page.locator("#message")).to_be_hidden()
    blank = tmp_path / "blank.png"
    blank.write_bytes(blank_png())
    page.set_input_files("#file", str(blank))
    expect(page.locator("#message-title")).to_have_text("No face found in the image", timeout=READY_MS)
    expect(page.locator("#busy")).to_be_hidden()


@pytest.mark.slow
def test_phone_width_and_labelled_controls(web_server: Server, browser: Browser, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        open_signed_in(page, web_server)
        drop_photo(page, photo_bytes("astronaut"))
        expect(page.locator("#viewer")).to_have_attribute("data-state", "ready", timeout=READY_MS)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways"
        assert foreground_share(canvas_png(page)) > 0.5
        save("phone.png", page.screenshot(full_page=True))
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('button, input, a.button, [tabindex]')]
                .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                                && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
                .map((el) => el.outerHTML.slice(0, 80))"""
        )
        assert unlabelled == []
    finally:
        context.close()


@pytest.mark.slow
def test_page_needs_no_other_origin(web_server: Server, page: Page, tmp_path: Path) -> None:
    """Every request the page makes goes to the service itself: no CDN, no network at run time."""
    origins: set[str] = set()
    page.on("request", lambda request: origins.add(re.sub(r"^(\w+:(//[^/]+)?).*$", r"\1", request.url)))
    open_signed_in(page, web_server)
    upload_astronaut(page, tmp_path)
    assert origins <= {web_server.url, "blob:", "data:"}, origins

    result_id = page.evaluate("document.getElementById('dl-glb').download").removeprefix("face3d-")[:-4]
    page.click("#delete")
    expect(page.locator("#message-title")).to_have_text("Deleted")
    with web_server.client("web") as client:
        assert client.get(f"/v1/results/{result_id}/face.glb").status_code == 404
    assert download(page, "#dl-glb")[:4] == b"glTF"  # the page's copy outlives the server's


@pytest.mark.slow
def test_camera_capture_is_uploaded(web_server: Server, browser: Browser) -> None:
    """Chromium's fake camera (a moving test pattern, no face in it): open, capture, upload, and the
    service's answer (no face) shown as a problem."""
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    with_camera = browser.browser_type.launch(executable_path=chromium_path(), args=args)
    try:
        context = with_camera.new_context(permissions=["camera"])
        context.set_default_timeout(60_000)
        page = context.new_page()
        open_signed_in(page, web_server)
        posts: list[str] = []
        page.on("request", lambda r: r.method == "POST" and posts.append(r.headers.get("content-type", "")))
        page.click("#camera-open")
        expect(page.locator("#camera")).to_be_visible()
        # Poll from Python: wait_for_function evaluates a string in the page, which the page's CSP
        # (no 'unsafe-eval') rightly refuses.
        end = time.monotonic() + 30
        while page.evaluate("document.getElementById('video').videoWidth") == 0 and time.monotonic() < end:
            time.sleep(0.1)
        page.click("#capture")
        expect(page.locator("#camera")).to_be_hidden()
        no_face = page.locator("#message-title")
        expect(no_face).to_have_text("No face found in the image", timeout=READY_MS)
        assert len(posts) == 1 and posts[0].startswith("multipart/form-data")
    finally:
        with_camera.close()


@pytest.mark.slow
def test_live_mode_follows_the_camera(web_server: Server, browser: Browser, tmp_path: Path) -> None:
    """ "Animate with my camera" on a fake camera that alternates a smiling face (astronaut, MediaPipe's
    mouthSmile 0.9) and a neutral one (image00021, 0.0): the head's smile follows the clip, the page
    shows its frame rate, and no request leaves the origin (the tracker's code, wasm and model are
    the service's own)."""
    clip = fake_camera_clip(tmp_path / "smile-neutral.y4m", ["image00021", "astronaut"], hold=45)
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}"]  # fmt: skip
    with_camera = browser.browser_type.launch(executable_path=chromium_path(), args=args)
    try:
        context = with_camera.new_context(viewport={"width": 1280, "height": 900}, permissions=["camera"])
        context.set_default_timeout(60_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        origins: set[str] = set()
        page.on("request", lambda request: origins.add(re.sub(r"^(\w+:(//[^/]+)?).*$", r"\1", request.url)))

        open_signed_in(page, web_server)
        upload_astronaut(
            page, tmp_path
        )  # the ict head: ARKit's names, MediaPipe's scores drive them as they are
        expect(page.locator("#viewer")).to_have_attribute("data-morphs", "51")
        fitted = page.get_by_label("mouthSmileLeft", exact=True).input_value()
        page.click("#live")
        expect(page.locator("#live")).to_have_attribute("aria-pressed", "true", timeout=READY_MS)
        expect(page.locator("#live-fps")).to_have_attribute("data-fps", re.compile(r"\d"), timeout=30_000)
        samples = []  # (photo index in the clip's corner block, the head's mouthSmileLeft)
        end = time.monotonic() + 12
        while time.monotonic() < end:
            samples.append(page.evaluate(LIVE_SAMPLE))
            time.sleep(0.1)
        fps = float(page.locator("#live-fps").get_attribute("data-fps") or 0)
        tracking_ms = float(page.locator("#live-fps").get_attribute("data-tracking-ms") or 0)
        end = time.monotonic() + 10
        while time.monotonic() < end and ((s := page.evaluate(LIVE_SAMPLE))[0] < 200 or s[1] < 0.6):
            time.sleep(0.05)  # screenshot the smile, for people to look at
        save("live.png", page.locator("#result .col").first.screenshot())  # head, camera, sliders: quick
        (ARTIFACTS / "live-fps.txt").write_text(f"{fps:.2f} fps, tracking {tracking_ms:.1f} ms per frame\n")
        smiling = sorted(smile for corner, smile, _ in samples if corner > 200)
        neutral = sorted(smile for corner, smile, _ in samples if corner < 50)
        assert len(smiling) >= 10 and len(neutral) >= 10, samples
        assert smiling[len(smiling) // 2] > 0.6 and neutral[len(neutral) // 2] < 0.2, samples
        assert sum(lost for *_, lost in samples) < len(samples) / 5, samples  # a face in (almost) every frame
        assert fps > 1.0
        page.click("#live")
        expect(page.locator("#live")).to_have_attribute("aria-pressed", "false")
        expect(page.get_by_label("mouthSmileLeft", exact=True)).to_have_value(
            fitted
        )  # back to the fitted weights
        assert origins <= {web_server.url, "blob:", "data:"}, origins
        assert [e for e in errors if not e.startswith("INFO: ")] == []  # the wasm logs INFO to stderr
    finally:
        with_camera.close()


# One sample of live mode: the clip's corner block as the <video> shows it now, and the smile slider.
LIVE_SAMPLE = """() => {
    const video = document.getElementById("live-video");
    const canvas = document.createElement("canvas");
    canvas.width = 8;
    canvas.height = 8;
    canvas.getContext("2d").drawImage(video, 0, 0, 8, 8, 0, 0, 8, 8);
    const corner = canvas.getContext("2d").getImageData(4, 4, 1, 1).data[0];
    const smile = Number(document.querySelector('input[data-name="mouthSmileLeft"]').value);
    return [corner, smile, document.getElementById("live-status").textContent.includes("no face")];
}"""
