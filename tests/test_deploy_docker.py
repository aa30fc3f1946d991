"""Deployment files, the Docker side: the images' CMD, port, health check and build stages agree with the
service; the Compose stack's Prometheus scrape and Grafana dashboard use only metrics the service
exports; .dockerignore admits exactly what the Dockerfiles copy.

Kept apart from tests/test_deploy.py, whose job is the Kubernetes manifests (plus the linters and schemas
of scripts/check_deploy.py, hadolint included), so that each file has one job; both read the files through
tests/deploy_helpers.py. Nothing here needs Docker: the files are read as text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from scripts import check_deploy
from tests.deploy_helpers import DEFAULT_PORT, ROOT, app_paths, dockerfile, exported_metric_names


# ------------------------------------------------------------------ images
def test_docker_images_serve_on_the_settings_port(tmp_path: Path) -> None:
    paths = app_paths(tmp_path)
    for name in check_deploy.DOCKERFILES:
        instructions = dockerfile(Path(name).name)
        cmd = json.loads(next(args for instr, args in instructions if instr == "CMD"))
        assert cmd[:2] == ["face3d", "serve"], "exec-form CMD must run the server as PID 1"
        config_path = cmd[cmd.index("--config") + 1]
        assert any(instr == "COPY" and args.split()[-1] == config_path for instr, args in instructions)
        assert [args for instr, args in instructions if instr == "EXPOSE"] == [str(DEFAULT_PORT)]
        health = next(args for instr, args in instructions if instr == "HEALTHCHECK")
        assert "CMD [" in health and "curl" not in health
        assert re.search(r"/livez", health).group(0) in paths and f"'{DEFAULT_PORT}'" in health
        assert sum(instr == "FROM" for instr, _ in instructions) >= 2, "multi-stage build"
        assert any(instr == "RUN" and "face3d models pull" in args for instr, args in instructions)


# ------------------------------------------------------------------ monitoring
def test_dashboard_and_scrape_config_use_exported_metrics(tmp_path: Path) -> None:
    dashboard = json.loads((ROOT / "docker/grafana/dashboards/face3d.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bface3d_[a-z0-9_]+", expr)}
    assert used - set(exported_metric_names()) == set()
    for required in ("face3d_stage_duration_seconds_bucket", "face3d_queue_depth", "face3d_batch_size_sum"):
        assert required in used
    assert {"face3d_worker_vram_allocated_bytes", "face3d_errors_total"} <= used
    provisioning = ROOT / "docker/grafana/provisioning"
    datasource = yaml.safe_load((provisioning / "datasources/prometheus.yaml").read_text())
    uids = {t["datasource"]["uid"] for panel in dashboard["panels"] for t in panel["targets"]}
    assert uids == {d["uid"] for d in datasource["datasources"]}
    scrape = yaml.safe_load((ROOT / "docker/prometheus.yml").read_text())["scrape_configs"][0]
    compose = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())
    assert scrape["metrics_path"] in app_paths(tmp_path)
    host, port = scrape["static_configs"][0]["targets"][0].split(":")
    assert host in compose["services"] and int(port) == DEFAULT_PORT


# ------------------------------------------------------------------ build context
def test_dockerignore_admits_exactly_what_the_dockerfiles_copy() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    assert lines[0] == "*", "allow-list: everything is excluded first"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = set()
    for name in check_deploy.DOCKERFILES:
        for instr, args in dockerfile(Path(name).name):
            if instr == "COPY" and not args.startswith("--from"):
                copied.update(args.split()[:-1])
    assert allowed == copied
