"""Settings: the YAML reference file, source precedence, and the validation that refuses unsafe configs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from face3d.service.backend_factory import backend_config
from face3d.service.config import ConfigError, Settings, load_settings
from face3d.service.workers.devices import DeviceError, available_cpus, threads_per_worker, worker_devices

REPO = Path(__file__).resolve().parents[1]
SECRET = "k" * 40


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No FACE3D_* from the caller's shell, and a cwd without an api_config.yaml."""
    for key in list(os.environ):
        if key.startswith("FACE3D_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_reference_yaml_lists_every_key_with_its_default() -> None:
    text = (REPO / "api_config.yaml").read_text()
    data = yaml.safe_load(text)
    assert set(data) == set(Settings.model_fields)
    for key, field in Settings.model_fields.items():
        default = field.default
        value = data[key]
        if key == "jwt_secret":
            assert value == "" and default.get_secret_value() == ""
        elif isinstance(default, Path):
            assert Path(value) == default, key
        elif isinstance(default, tuple):
            assert tuple(value) == default, key
        else:
            assert value == default, key
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert "#" in line, f"undocumented key: {line}"


def test_reference_yaml_loads_with_a_secret_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACE3D_JWT_SECRET", SECRET)
    assert load_settings(REPO / "api_config.yaml") == Settings(jwt_secret=SECRET)


def test_precedence_defaults_yaml_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACE3D_JWT_SECRET", SECRET)
    assert load_settings().port == 8000  # no file anywhere: defaults
    cfg = write_yaml(tmp_path / "c.yaml", {"port": 9001, "max_queue": 7})
    assert load_settings(cfg).port == 9001
    monkeypatch.setenv("FACE3D_PORT", "9002")
    settings = load_settings(cfg)
    assert (settings.port, settings.max_queue) == (9002, 7)
    assert load_settings(cfg, port=9003).port == 9003


def test_config_file_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACE3D_JWT_SECRET", SECRET)
    write_yaml(tmp_path / "api_config.yaml", {"max_faces": 2})  # ./api_config.yaml (cwd is tmp_path)
    assert load_settings().max_faces == 2
    monkeypatch.setenv("FACE3D_CONFIG", str(write_yaml(tmp_path / "env.yaml", {"max_faces": 3})))
    assert load_settings().max_faces == 3
    assert load_settings(write_yaml(tmp_path / "arg.yaml", {"max_faces": 5})).max_faces == 5
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")


def test_env_lists_accept_commas_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACE3D_JWT_SECRET", SECRET)
    monkeypatch.setenv("FACE3D_BATCH_BUCKETS", "1, 2,4")
    monkeypatch.setenv("FACE3D_MAX_BATCH", "4")
    assert load_settings().batch_buckets == (1, 2, 4)
    monkeypatch.setenv("FACE3D_BATCH_BUCKETS", "[1, 3]")
    monkeypatch.setenv("FACE3D_MAX_BATCH", "3")
    assert load_settings().batch_buckets == (1, 3)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "placeholder"),
        ({"jwt_secret": "changethis"}, "placeholder"),
        ({"jwt_secret": "short-but-not-empty"}, "at least 32 bytes"),
        ({"jwt_secret": SECRET, "jwt_algorithms": ["none"]}, "not allowed"),
        ({"jwt_secret": SECRET, "jwt_algorithms": "HS256,RS256"}, "pick one family"),
        ({"jwt_algorithms": ["RS256"]}, "exactly one of"),
        ({"jwt_algorithms": ["RS256"], "jwt_public_key_file": "/nonexistent.pem"}, "does not exist"),
        ({"jwt_algorithms": ["ES256"], "jwt_jwks_url": "http://idp.example.com/jwks"}, "https"),
        ({"jwt_secret": SECRET, "batch_buckets": [4, 2, 8]}, "strictly increasing"),
        ({"jwt_secret": SECRET, "max_batch": 16}, "largest batch bucket"),
        ({"jwt_secret": SECRET, "uv_size": 8192}, "max_uv_size"),
        ({"jwt_secret": SECRET, "storage": "s3"}, "s3_bucket"),
        ({"jwt_secret": SECRET, "devices": "gpu0"}, "not a device"),
        ({"jwt_secret": SECRET, "devices": "cuda:0,cuda:0"}, "twice"),
        ({"jwt_secret": SECRET, "port": 70000}, "port"),
        ({"jwt_secret": SECRET, "prot": 8000}, "prot"),
    ],
)
def test_invalid_configs_fail_with_one_line(tmp_path: Path, values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(write_yaml(tmp_path / "c.yaml", values))
    assert "\n" not in str(info.value)


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("port: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(tmp_path / "c.yaml")


def test_dev_mode_accepts_no_secret_and_public_key_config_is_valid(tmp_path: Path) -> None:
    assert load_settings(auth_disabled_dev=True).auth_disabled_dev
    pem = tmp_path / "pub.pem"
    pem.write_text("-----BEGIN PUBLIC KEY-----\n")
    settings = load_settings(jwt_algorithms=("RS256",), jwt_public_key_file=pem)
    assert not settings.uses_hmac
    assert load_settings(jwt_algorithms=("ES256",), jwt_jwks_url="https://idp.example.com/jwks").jwt_jwks_url


def test_settings_are_frozen_and_survive_pickling() -> None:
    settings = load_settings(jwt_secret=SECRET, max_queue=3)
    with pytest.raises(ValueError):
        settings.max_queue = 4  # type: ignore[misc]
    clone = pickle.loads(pickle.dumps(settings))
    assert clone == settings and clone.jwt_secret.get_secret_value() == SECRET


def test_worker_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    assert worker_devices("cpu", 3) == ["cpu"] * 3
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert worker_devices("auto", 2) == ["cpu", "cpu"]
    with pytest.raises(DeviceError, match="not visible"):
        worker_devices("cuda:0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert worker_devices(load_settings(devices="AUTO", jwt_secret=SECRET).devices) == ["cuda:0", "cuda:1"]
    assert worker_devices("cuda:1") == ["cuda:1"]
    with pytest.raises(DeviceError, match="cuda:2"):
        worker_devices("cuda:0,cuda:2")


def test_threads_per_worker() -> None:
    cores = available_cpus()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    assert threads_per_worker(3, 4) == 3
    assert threads_per_worker(0, 1) == cores
    assert threads_per_worker(0, cores * 2) == 1


@pytest.mark.parametrize(
    ("hands", "device", "looked_for"),
    [("auto", "cuda:0", True), ("auto", "cpu", False), ("on", "cpu", True), ("off", "cuda:1", False)],
)
def test_hands_are_looked_for_on_gpus_unless_configured(
    monkeypatch: pytest.MonkeyPatch, hands: str, device: str, looked_for: bool
) -> None:
    monkeypatch.setenv("FACE3D_HANDS", hands)
    monkeypatch.setenv("FACE3D_JWT_SECRET", SECRET)
    settings = load_settings(REPO / "api_config.yaml")
    assert backend_config(settings, device=device).hands is looked_for
