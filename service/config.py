"""The service's one configuration object: ``api_config.yaml`` overlaid by ``FACE3D_*`` environment.

Precedence, highest first: explicit overrides (CLI flags) > ``FACE3D_<KEY>`` environment variables >
the YAML file > the defaults below. The YAML file is ``--config PATH``, else ``$FACE3D_CONFIG``, else
``./api_config.yaml`` when present. ``api_config.yaml`` documents every key.

Settings are frozen and picklable, so the API process validates them once and hands the same object
to its spawned worker processes. Nothing here reads the environment at import time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from face3d.models.pipeline import (
    DEFAULT_UV_SIZE,
    MAX_PERSON_PHOTOS,
    MAX_UV_SIZE,
    MIN_PERSON_PHOTOS,
    check_uv_size,
)

DEFAULT_CONFIG_FILE = Path("api_config.yaml")

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MIN_SECRET_BYTES = 32
# Values people paste from examples; a server signing with one of them accepts anyone's tokens.
_PLACEHOLDER_SECRETS = frozenset(
    {"", "changethis", "changeme", "change-me", "change_me", "secret", "placeholder"}
)

_config_file: ContextVar[Path | None] = ContextVar("face3d_config_file", default=None)


class ConfigError(ValueError):
    """The configuration is unusable; the message is one line that names the key and the fix."""


def _comma_list(value: Any) -> Any:
    """Accept ``"a,b"`` or a JSON list from the environment as well as a YAML list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return yaml.safe_load(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every tunable of the service; see api_config.yaml for what each key does."""

    model_config = SettingsConfigDict(env_prefix="FACE3D_", extra="forbid", frozen=True)

    # server
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    # backend, devices and engine
    backend: str = Field("ict", min_length=1)
    backend_modules: Annotated[tuple[str, ...], NoDecode] = ()
    devices: str = "auto"
    cpu_workers: int = Field(0, ge=0)
    torch_threads: int = Field(0, ge=0)
    encode_processes: int = Field(0, ge=0)
    compile: bool = True
    cuda_graphs: bool = True
    compile_cache_dir: Path | None = None
    batch_buckets: Annotated[tuple[int, ...], NoDecode] = (1, 2, 4, 8)
    max_batch: int = Field(8, ge=1)
    max_wait_ms: float = Field(5.0, ge=0)
    max_queue: int = Field(64, ge=1)
    max_queue_wait_s: float = Field(10.0, ge=0)
    request_timeout_s: float = Field(30.0, gt=0)
    watchdog_s: float = Field(10.0, gt=0)
    drain_timeout_s: float = Field(25.0, ge=0)
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    landmark_model: Literal["468", "478", "v2"] = "v2"
    hands: Literal["auto", "on", "off"] = "auto"
    uv_size: int = DEFAULT_UV_SIZE  # both checked by check_uv_size in _check_consistency
    max_uv_size: int = MAX_UV_SIZE
    max_faces: int = Field(4, ge=1, le=32)
    cache_dir: Path | None = None
    # request limits
    max_body_bytes: int = Field(20_000_000, ge=1)
    max_pixels: int = Field(40_000_000, ge=1)
    max_batch_items: int = Field(16, ge=1)
    max_batch_pixels: int = Field(64_000_000, ge=1)
    max_person_photos: int = Field(MAX_PERSON_PHOTOS, ge=MIN_PERSON_PHOTOS, le=MAX_PERSON_PHOTOS)
    max_person_body_bytes: int = Field(40_000_000, ge=1)
    upload_buffer_bytes: int = Field(256_000_000, ge=1)
    body_timeout_s: float = Field(60.0, gt=0)
    max_inflight_requests: int = Field(256, ge=1)
    # results
    storage: Literal["filesystem", "s3"] = "filesystem"
    results_dir: Path = Path("results")
    s3_bucket: str = ""
    s3_prefix: str = "face3d/results/"
    s3_endpoint_url: str = ""
    s3_region: str = ""
    result_ttl_s: int = Field(3600, ge=1)
    sweep_interval_s: float = Field(60.0, gt=0)
    # auth
    auth_disabled_dev: bool = False
    jwt_algorithms: Annotated[tuple[str, ...], NoDecode] = ("HS256",)
    jwt_secret: SecretStr = SecretStr("")
    jwt_public_key_file: Path | None = None
    jwt_jwks_url: str = ""
    jwt_audience: str = Field("face3d", min_length=1)
    jwt_issuer: str = Field("face3d", min_length=1)
    jwt_leeway_s: float = Field(30.0, ge=0, le=300)
    jwt_max_lifetime_s: int = Field(86_400, ge=60)
    jwt_jwks_cache_s: float = Field(300.0, gt=0)
    jwt_jwks_refetch_s: float = Field(30.0, ge=0)
    tenant_claim: str = Field("sub", min_length=1)
    open_health: bool = True
    open_metrics: bool = True
    quota_rate_per_s: float = Field(10.0, gt=0)
    quota_burst: int = Field(20, ge=1)
    quota_redis_url: str = ""  # may carry a password: workers get a copy without it (worker_settings)
    public_base_url: str = ""
    # web page
    web_ui: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Overrides > environment > YAML file; .env and secret-dir files are not read."""
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=config_file())

    @field_validator("batch_buckets", "jwt_algorithms", "backend_modules", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        return _comma_list(value)

    @field_validator("batch_buckets")
    @classmethod
    def _check_buckets(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(b < 1 for b in value) or list(value) != sorted(set(value)):
            raise ValueError("must be strictly increasing positive batch sizes, e.g. 1,2,4,8")
        return value

    @field_validator("devices")
    @classmethod
    def _check_devices(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("auto", "cpu"):
            return value
        parts = [p.strip() for p in value.split(",")]
        for part in parts:
            kind, _, index = part.partition(":")
            if kind != "cuda" or not index.isdigit():
                raise ValueError(f"{part!r} is not a device: use auto, cpu or a list like cuda:0,cuda:1")
        if len(set(parts)) != len(parts):
            raise ValueError("lists a device twice")
        return ",".join(parts)

    @field_validator("jwt_algorithms")
    @classmethod
    def _check_algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("list at least one algorithm")
        for alg in value:
            if alg not in HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS:
                raise ValueError(
                    f"{alg!r} is not allowed; choose from {sorted(HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS)}"
                )
        if set(value) & HMAC_ALGORITHMS and set(value) & ASYMMETRIC_ALGORITHMS:
            # One key per server: mixing families is what makes algorithm-confusion attacks possible.
            raise ValueError("mixes HMAC (HS*) and public-key algorithms; pick one family")
        return value

    @field_validator("jwt_jwks_url")
    @classmethod
    def _check_jwks_url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
            if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
                raise ValueError("must be an https:// URL (plain http only on loopback)")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.max_batch > self.batch_buckets[-1]:
            raise ValueError(
                f"max_batch {self.max_batch} exceeds the largest batch bucket {self.batch_buckets[-1]}"
            )
        check_uv_size(self.max_uv_size, MAX_UV_SIZE, "max_uv_size")
        if self.uv_size > self.max_uv_size:
            raise ValueError(f"uv_size {self.uv_size} exceeds max_uv_size {self.max_uv_size}")
        check_uv_size(self.uv_size, self.max_uv_size, "uv_size")
        if self.upload_buffer_bytes < max(self.max_body_bytes, self.max_person_body_bytes):
            raise ValueError(
                "upload_buffer_bytes must be at least max_body_bytes and max_person_body_bytes "
                "(one upload must fit)"
            )
        if self.quota_redis_url and urlsplit(self.quota_redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("quota_redis_url must be a redis://, rediss:// or unix:// URL")
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("storage is s3 but s3_bucket is empty")
        if not self.auth_disabled_dev:
            self._check_signing_key()
        return self

    def _check_signing_key(self) -> None:
        if self.uses_hmac:
            secret = self.jwt_secret.get_secret_value()
            if secret.strip().lower() in _PLACEHOLDER_SECRETS:
                raise ValueError(
                    "jwt_secret is empty or a placeholder: set FACE3D_JWT_SECRET to a random value "
                    "(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
                )
            if len(secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"jwt_secret must be at least {MIN_SECRET_BYTES} bytes for HS* algorithms")
            return
        if bool(self.jwt_public_key_file) == bool(self.jwt_jwks_url):
            raise ValueError(
                f"{self.jwt_algorithms[0]} needs exactly one of jwt_public_key_file or jwt_jwks_url"
            )
        if self.jwt_public_key_file and not self.jwt_public_key_file.is_file():
            raise ValueError(f"jwt_public_key_file {self.jwt_public_key_file} does not exist")

    @property
    def weights_cache_dir(self) -> Path:
        """The weights folder's parent: ``cache_dir``, else ``default_cache_dir()``."""
        return self.cache_dir or default_cache_dir()

    @property
    def uses_hmac(self) -> bool:
        """True when tokens are signed with the shared secret (HS*), False for public-key algorithms."""
        return self.jwt_algorithms[0] in HMAC_ALGORITHMS


def default_cache_dir() -> Path:
    """Where weights live when ``cache_dir`` is null: ``$FACE3D_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/face3d`` or ``~/.cache/face3d``. The one place the cache location is decided:
    models/ reads no environment and is always told."""
    env = os.environ.get("FACE3D_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "face3d"


def config_file() -> Path | None:
    """The YAML file to read: ``load_settings``' argument, ``$FACE3D_CONFIG``, or ./api_config.yaml."""
    chosen = _config_file.get()
    if chosen is None and os.environ.get("FACE3D_CONFIG"):
        chosen = Path(os.environ["FACE3D_CONFIG"])
    if chosen is None:
        return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None
    if not chosen.is_file():
        raise ConfigError(f"config file {chosen} does not exist")
    return chosen


@contextmanager
def _reading(path: Path | None) -> Iterator[None]:
    token = _config_file.set(path)
    try:
        yield
    finally:
        _config_file.reset(token)


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Validated Settings from ``config`` (or the default file), the environment and ``overrides``.

    Raises ConfigError with a one-line message on a missing file, bad YAML or an invalid value.
    """
    try:
        with _reading(Path(config) if config is not None else None):
            return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file is not valid YAML: {str(exc).splitlines()[0]}") from None
