"""The Khronos glTF validator (npm ``gltf-validator``, run by node) for the tests that check GLBs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

VALIDATOR = "gltf-validator@2.0.0-dev.3.10"


def _validator(cache: Path) -> Path | None:
    """The validator's module under the cache (npm install once); None without node."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    prefix = cache / "node"
    module = prefix / "node_modules" / "gltf-validator" / "module.mjs"
    if not module.is_file():
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), VALIDATOR],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    return module


def validator_issues(glb: bytes, cache: Path, tmp_path: Path) -> dict[str, Any]:
    """The validator's ``issues`` report of ``glb`` (skips the test where node/npm are missing)."""
    module = _validator(cache)
    if module is None:
        pytest.skip("node/npm are not installed (CI has them)")
    path = tmp_path / "checked.glb"
    path.write_bytes(glb)
    script = (
        f"import {{ validateBytes }} from '{module.as_posix()}';\n"
        "import fs from 'fs';\n"
        "const report = await validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])));\n"
        "console.log(JSON.stringify(report.issues));\n"
    )
    runner = tmp_path / "validate.mjs"
    runner.write_text(script)
    proc = subprocess.run(
        ["node", str(runner), str(path)], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(proc.stdout)
