"""Regenerate the README's screenshot of the web page (docs/web-ui.png) from the real server.

The screenshot used to be taken by hand, so it drifted from what the page shows (it still showed the
old ``facemesh`` mask after ``ict``, a whole textured head, became the default backend). This script
takes it the same way every time:

1. starts the real server, ``python -m face3d.service.cli.main serve``, as a subprocess on a free port
   of 127.0.0.1 with a temporary config (CPU, one worker, the default backend, a temporary results
   folder) and a random JWT secret in ``FACE3D_JWT_SECRET``, and waits for ``GET /readyz`` == 200;
2. mints a token for it and opens ``http://127.0.0.1:PORT/#token=...`` in Debian's ``chromium``
   (``apt-get install chromium``), driven by Playwright (no browser download; WebGL on SwiftShader,
   so no GPU is needed), at a 1280x900 viewport;
3. uploads scikit-image's astronaut photo (``scripts/photos.py``), waits for the textured head in the
   viewer, the photo overlay with landmarks and pose, the texture and the download links, lets the
   render settle and saves a screenshot of the whole page;
4. stops the server (SIGTERM, then waits) whatever happened.

Run it from the repository root (a few minutes on a small CPU machine: the server start dominates)::

    python -m scripts.web_screenshot                  # -> docs/web-ui.png
    python -m scripts.web_screenshot --out /tmp/page.png

It prints one line with the path written; on failure one line with the reason, and exits 1.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from playwright.sync_api import Page, ViewportSize, sync_playwright

from face3d.service.api.auth import mint_token
from face3d.service.config import load_settings
from scripts.chromium import CHROMIUM, CHROMIUM_ARGS
from scripts.photos import photo_bytes

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "web-ui.png"
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
SCOPES = ("reconstruct", "results:read", "results:delete")
READY_TIMEOUT_S = 600.0  # server start: model load on a shared 2-core machine
RESULT_TIMEOUT_MS = 300_000  # one reconstruction on the CPU, then SwiftShader draws the head
SETTLE_S = 2.0
# Everything the server needs besides the defaults. No `backend`: the picture shows the default one.
# Generous deadlines, because the one CPU worker shares a small machine with the browser.
CONFIG: dict[str, Any] = {
    "host": "127.0.0.1",
    "devices": "cpu",
    "cpu_workers": 1,
    "compile": False,  # eager nets: the page looks the same, the server is ready sooner
    "request_timeout_s": 300,
    "max_queue_wait_s": 0,
    "log_level": "warning",
}


class ScreenshotError(RuntimeError):
    """A step failed; the message is the one line the script prints."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def start_server(folder: Path, secret: str) -> tuple[subprocess.Popen[bytes], str, Path, Path]:
    """Start ``face3d serve`` (not waiting for it); returns the process, its URL, config and log."""
    port = free_port()
    config = folder / "api_config.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "port": port, "results_dir": str(folder / "results")}))
    log = folder / "server.log"
    # Only this script's settings: no FACE3D_* of the caller's shell except where the weights live.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACE3D_") or k == "FACE3D_CACHE_DIR"}
    env["FACE3D_JWT_SECRET"] = secret
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "face3d.service.cli.main", "serve", "--config", str(config)],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    return process, f"http://127.0.0.1:{port}", config, log


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    end = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < end:
        if process.poll() is not None:
            raise ScreenshotError(f"the server exited with {process.returncode}: {last_line(log)}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise ScreenshotError(f"the server was not ready in {READY_TIMEOUT_S:.0f} s: {last_line(log)}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def shoot(page: Page, url: str, token: str, photo: Path, out: Path) -> None:
    """Sign in, upload ``photo``, wait for every part of the result, save the page to ``out``."""
    page.goto(f"{url}/#token={token}")
    page.locator("#upload").wait_for(state="visible")
    page.set_input_files("#file", str(photo))
    # Either the head is drawn or the page shows a problem (then say which).
    page.wait_for_function(
        """() => document.getElementById("viewer").dataset.state === "ready"
              || document.getElementById("viewer").dataset.state === "error"
              || !document.getElementById("message").hidden""",
        timeout=RESULT_TIMEOUT_MS,
        polling=500,
    )
    if page.locator("#message").is_visible() or page.get_attribute("#viewer", "data-state") != "ready":
        text = " ".join(page.locator("#message").inner_text().split()) or "no 3D view"
        raise ScreenshotError(f"the page shows a problem: {text}")
    page.locator("#viewer canvas").wait_for(state="visible")
    page.locator("#overlay").wait_for(state="visible")
    page.wait_for_function(
        """() => {
            const texture = document.getElementById("texture");
            return document.getElementById("pose-text").textContent.includes("yaw")
                && document.getElementById("show-points").checked
                && texture.complete && texture.naturalWidth > 0
                && document.getElementById("texture-size").textContent !== ""
                && ["dl-glb", "dl-zip", "dl-json"]
                    .every((id) => document.getElementById(id).href.startsWith("blob:"));
        }""",
        polling=250,
    )
    for link in ("#dl-glb", "#dl-zip", "#dl-json"):
        page.locator(link).wait_for(state="visible")
    # The viewer renders on demand; give SwiftShader and the smooth scroll time to finish.
    time.sleep(SETTLE_S)
    page.evaluate("window.scrollTo(0, 0)")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.mouse.move(0, 0)
    time.sleep(0.5)
    page.screenshot(path=str(out), full_page=True)


def run(out: Path) -> None:
    if not Path(CHROMIUM).exists():
        raise ScreenshotError(f"{CHROMIUM} is missing: apt-get install chromium")
    secret = secrets.token_urlsafe(48)
    with tempfile.TemporaryDirectory(prefix="face3d-screenshot-") as tmp:
        folder = Path(tmp)
        photo = folder / "astronaut.jpg"
        photo.write_bytes(photo_bytes("astronaut"))
        shot = folder / "web-ui.png"  # moved to ``out`` only when everything went well
        process, url, config, log = start_server(folder, secret)
        try:
            wait_ready(process, url, log)
            settings = load_settings(config, jwt_secret=secret)
            token = mint_token(settings, "screenshot", SCOPES, ttl_s=1800)
            errors: list[str] = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    context = browser.new_context(viewport=VIEWPORT)
                    context.set_default_timeout(60_000)
                    page = context.new_page()
                    page.on("pageerror", lambda exc: errors.append(str(exc)))
                    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
                    shoot(page, url, token, photo, shot)
                finally:
                    browser.close()
            if errors:
                raise ScreenshotError(f"the page logged an error: {errors[0]}")
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, out)
        finally:
            stop_server(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    try:
        run(out)
    except Exception as exc:  # one line for any failure: the server, the browser or the page
        print(f"web_screenshot: {type(exc).__name__}: {' '.join(str(exc).split())[:500]}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
