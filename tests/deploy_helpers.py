"""Readers of the deployment files for tests/test_deploy.py (linters, schemas, Kubernetes manifests) and
tests/test_deploy_docker.py (images, Compose, monitoring): resources of rendered manifests, the Settings
a pod would load, Dockerfile instructions and ENV, and what the service itself serves (routes, metrics).

They read files only: nothing here needs Docker or a cluster.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from face3d.service.config import Settings, load_settings
from scripts import check_deploy

ROOT = check_deploy.ROOT
DEFAULT_PORT = Settings.model_fields["port"].default


def one(resources: list[dict], kind: str, name_prefix: str = "") -> dict:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"].startswith(name_prefix)]
    assert len(found) == 1, f"expected one {kind} {name_prefix!r}, found {len(found)}"
    return found[0]


def container(resources: list[dict]) -> dict:
    return one(resources, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def pod_labels(resources: list[dict]) -> dict[str, str]:
    return one(resources, "Deployment")["spec"]["template"]["metadata"]["labels"]


def env_of(ctr: dict) -> dict[str, str | None]:
    """Container env as name -> literal value (None for valueFrom)."""
    return {e["name"]: e.get("value") for e in ctr.get("env", [])}


def config_yaml(resources: list[dict]) -> dict:
    return yaml.safe_load(one(resources, "ConfigMap", "face3d-config")["data"]["api_config.yaml"])


def pod_settings(resources: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a pod of this variant would load: its ConfigMap file plus its literal FACE3D_* env."""
    for name in [n for n in os.environ if n.startswith("FACE3D_")]:
        monkeypatch.delenv(name)
    for name, value in env_of(container(resources)).items():
        if name.startswith("FACE3D_") and value is not None:
            monkeypatch.setenv(name, value)
    path = tmp_path / "api_config.yaml"
    path.write_text(yaml.safe_dump(config_yaml(resources)))
    # The JWT secret arrives from a Secret at run time; its own checks are tested in test_config.py.
    return load_settings(path, auth_disabled_dev=True)


def dockerfile(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "docker" / name).read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def docker_env(name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for instr, args in dockerfile(name):
        if instr == "ENV":
            env.update(dict(part.split("=", 1) for part in shlex.split(args)))
    return env


def app_paths(tmp_path: Path) -> set[str]:
    from face3d.service.api.app import create_app

    app = create_app(Settings(auth_disabled_dev=True, results_dir=tmp_path / "results"))

    def paths(routes: list) -> set[str]:  # FastAPI >= 0.16x wraps included routers lazily
        found = set()
        for route in routes:
            if hasattr(route, "path"):
                found.add(route.path)
            elif hasattr(route, "original_router"):
                found |= paths(route.original_router.routes)
        return found

    return paths(app.routes)


def exported_metric_names() -> dict[str, str]:
    """Every sample name the service can expose -> its family type (labelled families included)."""
    from face3d.service import metrics

    class NoGpus:  # NVML stand-in with no devices, only to list the NVML collector's metric names
        NVMLError = RuntimeError

        @staticmethod
        def nvmlDeviceGetCount() -> int:
            return 0

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names = {}
    families = [*metrics.REGISTRY.collect(), *metrics.NvmlCollector(NoGpus()).collect()]
    for family in families:
        for suffix in suffixes.get(family.type, ("",)):
            names[family.name + suffix] = family.type
    return names
