"""Vendor a pinned @mediapipe/tasks-vision into service/web/vendor/ (run once per version bump; commit).

The page's live mode ("Animate with my camera") runs MediaPipe's Face Landmarker in the browser: the
ES module bundle and its SIMD WebAssembly build (loader + .wasm; every browser the page supports has
wasm SIMD), copied by scripts/vendor_npm.py from exactly ``@mediapipe/tasks-vision@VERSION`` on npm,
its sha512 checked against the registry and the pin below. The package ships no LICENSE file; its
package.json (``"license": "Apache-2.0"``) is copied beside the code. The model, face_landmarker.task,
is not vendored: the service assembles it from its own weight cache (service/api/routes/web.py).

    python -m scripts.vendor_tasks_vision            # fetch, verify, copy
    python -m scripts.vendor_tasks_vision --check    # verify the committed copy against MANIFEST.json only

To bump: change VERSION and INTEGRITY (``npm view @mediapipe/tasks-vision@X dist.integrity``), rerun,
update the folder name in service/web/live.js (TASKS_VISION, WASM), and commit.
"""

from __future__ import annotations

from scripts.vendor_npm import NpmPackage, vendor
from scripts.vendor_npm import check as check_package

VERSION = "1.1.0"
INTEGRITY = "sha512-ZJqh0wMKOINorfSffvDAxzyO1//c+FiG3IkzOdNDnLqvBB3DbMfj0bB/tys2SNf9S914sgoIbIpF4HTOi336cg=="
TASKS_VISION = NpmPackage(
    "@mediapipe/tasks-vision",
    VERSION,
    INTEGRITY,
    ("package.json", "vision_bundle.mjs", "wasm/vision_wasm_internal.js", "wasm/vision_wasm_internal.wasm"),
    f"tasks-vision-{VERSION}",
)


def check() -> list[str]:
    """Problems with the committed copy (empty when it matches MANIFEST.json and the pins)."""
    return check_package(TASKS_VISION)


if __name__ == "__main__":
    raise SystemExit(vendor(TASKS_VISION, doc=__doc__))
