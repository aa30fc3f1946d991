"""The built wheel installs one import package, face3d, and works without the source tree.

The editable install used everywhere else maps face3d.models/face3d.service onto the repository's
folders through a finder, so it cannot show a packaging mistake (a sub-package missing from
``[tool.setuptools] packages``, data files left out, a stray top-level ``models`` or ``service``).
Here the wheel is built from a copy of exactly what docker/Dockerfile copies into its build stage,
installed with ``--no-deps`` into a fresh venv, and imported from a neutral folder. The fresh venv
sees the main venv's dependencies through a plain path line in a .pth file: the directory is added
to sys.path but its own .pth files (the editable finder among them) are not run, so face3d can
only come from the wheel, and nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "README.md", "models", "service")  # the Dockerfile's COPY lines
IMPORT_CHECK = (
    "import json, face3d.models.nets.frontend, face3d.service.cli.main, face3d.models.nets.assets as a;"
    "print(json.dumps([face3d.models.nets.frontend.__file__, face3d.service.cli.main.__file__, a.__file__]))"
)


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{cmd} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline (no build isolation, no index) from a clean copy of the inputs."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheels")
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "-q", "-w", str(out), str(src)],
        cwd=src,
    )  # fmt: skip
    (built,) = out.glob("face3d-*.whl")
    return built


def test_wheel_holds_only_the_face3d_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"face3d", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, top
    assert "face3d/models/data/topology.npz" in names  # package data travels with the code
    assert "face3d/client/__init__.py" in names  # face3d.client, mapped from service/client/
    assert "face3d/__init__.py" not in names  # face3d stays a namespace over the two packages


@pytest.mark.slow
def test_wheel_installs_and_runs_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path)
    site = Path(purelib.stdout.strip())
    # pip from the main venv installs into the fresh interpreter (it has no pip of its own).
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", "-q", str(wheel)],
        cwd=tmp_path,
    )  # fmt: skip
    (site / "zz_main_venv_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    installed = {p.name for p in site.iterdir()} - {"zz_main_venv_deps.pth"}
    assert "models" not in installed and "service" not in installed, installed
    assert {name for name in installed if not name.endswith(".dist-info")} == {"face3d"}, installed

    neutral = tmp_path / "elsewhere"
    neutral.mkdir()
    help_text = _run([str(venv / "bin" / "face3d"), "--help"], cwd=neutral).stdout
    assert "serve" in help_text
    files = json.loads(_run([str(python), "-c", IMPORT_CHECK], cwd=neutral).stdout)
    for file in files:
        assert Path(file).resolve().is_relative_to(site.resolve()), f"{file} is not from the wheel"
