"""Process configuration, validated once at start-up (`docs/operations.md`).

Every problem is reported at once, one line each, before the port is bound: an operator fixing a
deployment should not have to restart it once per typo.
"""

from __future__ import annotations

import difflib
import importlib.util
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tenancy.breaker import Breaker
from tenancy.redis_url import RedisOptions

if TYPE_CHECKING:
    from tenancy.registry.db import RegistryTimeouts
    from tenancy.storage.credentials import StoreCredentials

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
REGISTRY_SCHEMES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
KV_SCHEMES = ("memory://", "file://", "redis://", "rediss://", "s3://")
REDIS_SCHEMES = ("redis://", "rediss://")
# STK_* names that are not server settings: the admin CLI's and `stk-bridge types`'
# (`docs/operations.md`) and the test suite's (`STK_TEST_*`, `STK_REQUIRE_SERVICES`).
CLIENT_VARIABLES = frozenset(
    {"STK_ADMIN_URL", "STK_ADMIN_TOKEN", "STK_ADMIN_TOKEN_FILE", "STK_URL", "STK_API_KEY"}
)
TEST_VARIABLES = ("STK_TEST_", "STK_REQUIRE_SERVICES")
# Settings that may hold a password, with the `_FILE` form that reads them from a file.
FILE_FORMS = {
    "registry_url": REGISTRY_SCHEMES,
    "kv_url": KV_SCHEMES,
    "redis_url": REDIS_SCHEMES,
}


class ConfigError(Exception):
    """Invalid configuration; `problems` holds one human line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STK_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./.stk-bridge")
    registry_url: str | None = Field(default=None, repr=False)
    registry_url_file: Path | None = None
    kv_url: str | None = Field(default=None, repr=False)
    kv_url_file: Path | None = None
    kv_s3_access_key_id: str | None = None
    kv_s3_secret_access_key: str | None = Field(default=None, repr=False, validate_default=True)
    kv_s3_session_token: str | None = Field(default=None, repr=False)
    redis_url: str | None = Field(default=None, repr=False)
    redis_url_file: Path | None = None
    master_keys: str | None = Field(default=None, repr=False)
    master_keys_file: Path | None = None
    master_key_primary: str | None = None  # the kid wrapping new data keys; default the first
    admin_tokens: str | None = Field(default=None, repr=False)
    admin_tokens_file: Path | None = None
    host_suffix: str | None = None
    trust_forwarded_host: bool = False
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_header_bytes: int = Field(default=16_384, ge=1024)
    max_header_count: int = Field(default=100, ge=10)
    max_token_bytes: int = Field(default=8192, ge=256)
    header_timeout_seconds: float = Field(default=10, gt=0)
    body_timeout_seconds: float = Field(default=30, gt=0)
    select_max_rows: int = Field(default=1000, ge=1)
    pool_max_per_tenant: int = Field(default=5, ge=1)
    pool_max_total: int = Field(default=400, ge=1)
    pool_timeout_ms: int = Field(default=2000, ge=1)
    pool_idle_seconds: float = Field(default=300, gt=0)
    statement_timeout_ms: int = Field(default=10_000, ge=1)
    storage_timeout_seconds: float = Field(default=10, gt=0)
    tenant_connect_timeout_ms: int = Field(default=2500, ge=1)
    tenant_breaker_failures: int = Field(default=5, ge=1)
    tenant_breaker_open_seconds: float = Field(default=5, gt=0)
    tenant_max_concurrency: int = Field(default=64, ge=1)
    cache_ttl_seconds: float = Field(default=30, gt=0)
    # Registry and KV store as seen by the caches (`docs/tenancy.md`, "When a dependency is down").
    dependency_breaker_failures: int = Field(default=1, ge=1)
    dependency_breaker_open_seconds: float = Field(default=5, gt=0)
    # Every Redis client (KV store, invalidation, rate limits): `tenancy/redis_url.py`.
    redis_connect_timeout_seconds: float = Field(default=1, gt=0)
    redis_socket_timeout_seconds: float = Field(default=2, gt=0)
    redis_health_check_seconds: float = Field(default=10, gt=0)
    redis_retries: int = Field(default=2, ge=0)
    registry_connect_timeout_ms: int = Field(default=2000, ge=1)
    registry_command_timeout_ms: int = Field(default=5000, ge=1)
    registry_pool_timeout_ms: int = Field(default=2000, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] | None = None
    # Access lines are written in batches at most this long after the first (0: each at once).
    log_flush_ms: int = Field(default=200, ge=0)
    auto_migrate: bool = True
    audit_retention_days: int = Field(default=365, ge=1)
    metrics_tenant_label: bool = False
    usage_flush_seconds: float = Field(default=10, gt=0)
    internal_port: int | None = Field(default=None, ge=1, le=65535)
    # One server span per request (`bridge/tracing.py`; the `[tracing]` extra); the OTLP exporter
    # reads the standard `OTEL_EXPORTER_OTLP_*` variables itself (docs/operations.md "Tracing").
    tracing: Literal["off", "otlp", "console"] = "off"
    # Abuse resistance (issue 9; README "Configuration", docs/security.md).
    tenant_data_dir: Path | None = None
    password_hash_threads: int = Field(default=0, ge=0)  # per lane; 0: the usable CPUs
    password_hash_per_tenant: int = Field(default=2, ge=1)
    password_hash_queue: int = Field(default=8, ge=0)
    rate_per_api_key: int = Field(default=0, ge=0)
    rate_per_user: int = Field(default=0, ge=0)
    rate_per_address: int = Field(default=0, ge=0)
    auth_free_failures_per_email: int = Field(default=5, ge=0)
    auth_free_failures_per_address: int = Field(default=20, ge=0)
    auth_backoff_max_seconds: int = Field(default=900, ge=1)
    auth_failure_window_seconds: int = Field(default=900, ge=1)
    trusted_proxies: str | None = None
    tenant_db_allow: str | None = None

    @field_validator("kv_url")
    @classmethod
    def _kv_scheme(cls, value: str | None) -> str | None:
        return _require_scheme(value, KV_SCHEMES)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        return _require_scheme(value, REDIS_SCHEMES)

    @field_validator("registry_url")
    @classmethod
    def _registry_scheme(cls, value: str | None) -> str | None:
        return _require_scheme(value, REGISTRY_SCHEMES)

    @field_validator("tenant_db_allow")
    @classmethod
    def _allow_list(cls, value: str | None) -> str | None:
        from tenancy.engines.policy import parse_allow

        parse_allow(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str | None) -> str | None:
        networks(value)
        return value

    def trusted_networks(self) -> tuple[IPNetwork, ...]:
        return networks(self.trusted_proxies)

    @field_validator(
        "registry_url_file",
        "kv_url_file",
        "redis_url_file",
        "master_keys_file",
        "admin_tokens_file",
    )
    @classmethod
    def _one_source(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # A field check (not a model one), so it is reported together with every other problem.
        plain = str(info.field_name).removesuffix("_file")
        if value is not None and info.data.get(plain):
            raise ValueError(f"STK_{plain.upper()} is set too; set only one of them")
        return value

    @field_validator("kv_s3_secret_access_key")
    @classmethod
    def _s3_pair(cls, value: str | None, info: ValidationInfo) -> str | None:
        if bool(value) != bool(info.data.get("kv_s3_access_key_id")):
            raise ValueError("set both STK_KV_S3_ACCESS_KEY_ID and STK_KV_S3_SECRET_ACCESS_KEY")
        return value

    @model_validator(mode="after")
    def _normalize(self) -> Settings:
        if self.host_suffix is not None:
            self.host_suffix = self.host_suffix.strip(".").lower()
        return self

    def registry_timeouts(self) -> RegistryTimeouts:
        from tenancy.registry.db import RegistryTimeouts

        return RegistryTimeouts(
            connect=self.registry_connect_timeout_ms / 1000,
            command=self.registry_command_timeout_ms / 1000,
            pool_wait=self.registry_pool_timeout_ms / 1000,
        )

    @property
    def registry(self) -> str:
        return self.registry_url or f"sqlite+aiosqlite:///{self.data_dir.resolve()}/registry.db"

    @property
    def tenant_data(self) -> Path:
        """Where tenant SQLite files may live (`docs/security.md`, connection URLs)."""
        return self.tenant_data_dir or self.data_dir / "tenants"

    @property
    def kv(self) -> str:
        return self.kv_url or f"file://{self.data_dir.resolve()}/kv"

    def kv_s3_credentials(self) -> StoreCredentials | None:
        """The operator's keys for an s3:// KV; None leaves it to the standard AWS chain."""
        if not (self.kv_s3_access_key_id and self.kv_s3_secret_access_key):
            return None
        from tenancy.storage.credentials import StoreCredentials  # awscrt only when used

        return StoreCredentials(
            self.kv_s3_access_key_id, self.kv_s3_secret_access_key, self.kv_s3_session_token
        )

    @property
    def shared_redis(self) -> str | None:
        """Redis for what replicas share besides the KV store: invalidations, rate limits."""
        if self.redis_url:
            return self.redis_url
        return self.kv if self.kv.startswith(("redis://", "rediss://")) else None

    def redis_options(self) -> RedisOptions:
        return RedisOptions(
            connect_timeout=self.redis_connect_timeout_seconds,
            socket_timeout=self.redis_socket_timeout_seconds,
            health_check_seconds=self.redis_health_check_seconds,
            retries=self.redis_retries,
        )

    def dependency_breaker(self) -> Breaker:
        """A new breaker for one shared dependency (registry, KV store, Redis)."""
        return Breaker.for_dependency(
            self.dependency_breaker_failures, self.dependency_breaker_open_seconds
        )

    def master_key_text(self) -> str | None:
        return _read_secret(self.master_keys, self.master_keys_file)

    def admin_token_list(self) -> list[str]:
        text = _read_secret(self.admin_tokens, self.admin_tokens_file) or ""
        return [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]


def networks(text: str | None) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs or addresses (`STK_TRUSTED_PROXIES`)."""
    found = []
    for entry in (e.strip() for e in (text or "").split(",")):
        if entry:
            try:
                found.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or CIDR") from None
    return tuple(found)


def _require_scheme(value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is not None and not value.startswith(schemes):
        raise ValueError("must start with " + " or ".join(schemes))
    return value


def _read_secret(value: str | None, path: Path | None) -> str | None:
    if path is not None:
        return path.read_text()
    return value


def unknown_variables(names: Iterable[str]) -> list[str]:
    """One problem per `STK_*` name that is no setting, with the near matches (a typo such as
    `STK_POOL_MAX_TENANT` would otherwise be silently ignored)."""
    known = sorted({f"STK_{name.upper()}" for name in Settings.model_fields} | CLIENT_VARIABLES)
    problems = []
    for raw in sorted(set(names)):
        name = raw.upper()
        if not name.startswith("STK_") or name in known or name.startswith(TEST_VARIABLES):
            continue
        near = difflib.get_close_matches(name, known, n=3, cutoff=0.75)
        hint = f"; did you mean {' or '.join(near)}?" if near else ""
        problems.append(f"{raw}: unknown setting{hint}")
    return problems


def _dotenv_names() -> list[str]:
    from dotenv import dotenv_values  # pydantic-settings' own reader of `.env`

    path = Path(".env")
    return list(dotenv_values(path)) if path.is_file() else []


def load_settings(*, strict_environment: bool = False, **overrides: object) -> Settings:
    """Build settings or raise ConfigError with one line per problem. `strict_environment`
    (the CLI's start-up) also refuses unknown `STK_*` variables in the environment and `.env`."""
    problems = []
    if strict_environment:
        problems += unknown_variables([*os.environ, *_dotenv_names()])
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            name = f"STK_{loc.upper()}" if loc else "configuration"
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {msg}" if loc else msg)
        raise ConfigError(problems) from None
    files = {
        "STK_MASTER_KEYS_FILE": settings.master_keys_file,
        "STK_ADMIN_TOKENS_FILE": settings.admin_tokens_file,
        **{f"STK_{field.upper()}_FILE": getattr(settings, f"{field}_file") for field in FILE_FORMS},
    }
    missing = [
        f"{label}: file {path} does not exist"
        for label, path in files.items()
        if path is not None and not path.is_file()
    ]
    problems += missing
    short = [t for t in settings.admin_token_list() if len(t) < 32] if not missing else []
    if short:
        problems.append("STK_ADMIN_TOKENS: every admin token must be at least 32 characters")
    for field, schemes in FILE_FORMS.items():
        path = getattr(settings, f"{field}_file")
        if path is not None and not missing:
            try:
                setattr(settings, field, _require_scheme(path.read_text().strip(), schemes))
            except ValueError as exc:
                problems.append(f"STK_{field.upper()}_FILE: {exc}")
    if settings.tracing != "off" and not _tracing_installed():
        problems.append(
            "STK_TRACING: needs the OpenTelemetry SDK: pip install 'santokit-bridge[tracing]'"
        )
    if problems:
        raise ConfigError(problems)
    return settings


def _tracing_installed() -> bool:
    """Whether the `[tracing]` extra is there, found without importing it (`bridge/tracing.py`)."""
    for module in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
        try:
            if importlib.util.find_spec(module) is None:
                return False
        except ModuleNotFoundError:  # a parent package is missing
            return False
    return True


SECRET_FIELDS = frozenset(
    {"registry_url", "kv_url", "redis_url", "master_keys", "admin_tokens"}
    | {"kv_s3_secret_access_key", "kv_s3_session_token"}
)


def effective(settings: Settings) -> dict[str, Any]:
    """Every setting as `STK_<NAME>` → value, secrets redacted: passwords in URLs become `***`,
    keys and tokens say only whether they are set (`stk-bridge config`)."""
    answer: dict[str, Any] = {}
    resolved = {"registry_url": settings.registry, "kv_url": settings.kv}  # the defaults filled in
    for name in Settings.model_fields:
        value = resolved.get(name, getattr(settings, name))
        if value is not None and name in SECRET_FIELDS:
            value = _redact_url(value) if name.endswith("_url") else "<set>"
        answer[f"STK_{name.upper()}"] = str(value) if isinstance(value, Path) else value
    return answer


def _redact_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{user}:***@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
