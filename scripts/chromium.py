"""Debian's headless chromium as the scripts that render (render_heads, web_screenshot) launch it.

SwiftShader gives WebGL without a GPU; the background-networking flags keep the browser from calling
hosts this machine cannot reach. Playwright drives it; no browser is ever downloaded.
"""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
