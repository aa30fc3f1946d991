"""Every registered backend through one interface test; the registry's one-line error for bad names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from face3d.models.backends import BackendConfig, backend_class, backend_names, create_backend
from face3d.models.errors import UnknownBackendError
from face3d.models.pipeline import Pipeline, ReconstructOptions
from scripts.photos import photo_bytes

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", backend_names())
def test_backend_reconstructs_through_the_pipeline(name: str, weights_cache: Path) -> None:
    backend = create_backend(name, BackendConfig(cache_dir=weights_cache, buckets=(1, 2)))
    backend.load("cpu")
    assert backend.warmup((256,)) >= 0
    info = backend.describe()
    assert info["backend"] == name and info["device"] == "cpu" and info["weights"]
    pipeline = Pipeline(backend, max_pixels=50_000_000)
    options = ReconstructOptions(uv_size=256, formats=frozenset({"obj", "json"}))
    items = pipeline.run([photo_bytes("astronaut"), b"not an image"], options)
    good, bad = items
    assert good.error is None and good.exported is not None
    assert {"face.obj", "face.mtl", "face.png", "result.json"} <= set(good.exported.files)
    assert good.exported.document.model.backend == name
    layout = backend_class(name).mesh_export().layout
    assert len(good.exported.document.faces) == 1 and len(layout.triangles) > 0
    assert bad.exported is None and bad.error is not None and bad.error.kind == "invalid-image"


def test_unknown_backend_names_the_registered_ones() -> None:
    with pytest.raises(UnknownBackendError, match="registered: facemesh"):
        backend_class("nope")


def test_cli_rejects_an_unknown_backend_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "api_config.yaml"
    config.write_text("backend: nope\n")
    proc = subprocess.run(
        [sys.executable, "-m", "face3d.service.cli.main", "reconstruct", "x.jpg", "-o", str(tmp_path),
         "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    # The built-in folders (this process may have registered test-only backends besides).
    registered = ", ".join(name for name in backend_names() if name in {"facemesh", "ict"})
    assert proc.stderr.strip() == f"face3d: error: unknown backend 'nope'; registered: {registered}"
