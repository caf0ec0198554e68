"""Settings of the SDK's client and server, from keywords or the environment (as in 0.2).

With ``pydantic-settings`` installed the three classes read ``OSMOSIS_ROLLOUT_CLIENT_*``,
``OSMOSIS_ROLLOUT_SERVER_*`` and ``OSMOSIS_ROLLOUT_*`` variables (and a ``.env`` file in the
working directory); explicit keywords win. Without it they are plain models with the same
fields and bounds, and the environment is not read. ``get_settings()`` holds one
process-wide instance, built on first use.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

try:  # optional: the SDK installs without it
    from pydantic_settings import BaseSettings, SettingsConfigDict

    SETTINGS_FROM_ENVIRONMENT = True
except ImportError:  # pragma: no cover - depends on the environment
    SETTINGS_FROM_ENVIRONMENT = False


_Base: type = BaseSettings if SETTINGS_FROM_ENVIRONMENT else BaseModel


def _from_environment(prefix: str) -> Any:
    """The config of a settings class reading ``prefix`` variables (and ``.env``)."""
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )


class RolloutClientSettings(_Base):  # type: ignore[misc]
    """The callbacks' HTTP client: timeouts, retries and pool sizes."""

    if SETTINGS_FROM_ENVIRONMENT:
        model_config = _from_environment("OSMOSIS_ROLLOUT_CLIENT_")

    timeout_seconds: float = Field(default=300.0, ge=1.0, le=3600.0)
    max_retries: int = Field(default=3, ge=0, le=10)
    complete_rollout_retries: int = Field(default=2, ge=0, le=10)
    retry_base_delay: float = Field(default=1.0, ge=0.1, le=60.0)
    retry_max_delay: float = Field(default=30.0, ge=1.0, le=300.0)
    max_connections: int = Field(default=100, ge=1, le=1000)
    max_keepalive_connections: int = Field(default=20, ge=1, le=100)


class RolloutServerSettings(_Base):  # type: ignore[misc]
    """The server: concurrency, record keeping and platform registration timing."""

    if SETTINGS_FROM_ENVIRONMENT:
        model_config = _from_environment("OSMOSIS_ROLLOUT_SERVER_")

    max_concurrent_rollouts: int = Field(default=100, ge=1, le=10000)
    record_ttl_seconds: float = Field(default=3600.0, ge=60.0, le=86400.0)
    cleanup_interval_seconds: float = Field(default=60.0, ge=10.0, le=3600.0)
    #: Ours: the default per-rollout deadline (0.2 defined it and never used it).
    request_timeout_seconds: float = Field(default=600.0, ge=10.0, le=3600.0)
    registration_readiness_timeout_seconds: float = Field(default=10.0, ge=1.0, le=60.0)
    registration_readiness_poll_interval_seconds: float = Field(default=0.2, ge=0.05, le=5.0)
    registration_shutdown_timeout_seconds: float = Field(default=30.0, ge=1.0, le=300.0)


class RolloutSettings(_Base):  # type: ignore[misc]
    """All settings: the client part, the server part and the metadata size limit."""

    if SETTINGS_FROM_ENVIRONMENT:
        model_config = _from_environment("OSMOSIS_ROLLOUT_")

    client: RolloutClientSettings = Field(default_factory=RolloutClientSettings)
    server: RolloutServerSettings = Field(default_factory=RolloutServerSettings)
    max_metadata_size_bytes: int = Field(default=1024 * 1024, ge=1024, le=100 * 1024 * 1024)


_settings: RolloutSettings | None = None


def get_settings() -> RolloutSettings:
    """The process-wide settings (built from the environment on first call)."""
    global _settings
    if _settings is None:
        _settings = RolloutSettings()
    return _settings


def configure(settings: RolloutSettings) -> None:
    """Replace the process-wide settings."""
    global _settings
    _settings = settings


def reset_settings() -> None:
    """Forget the process-wide settings; the next ``get_settings()`` reads the environment."""
    global _settings
    _settings = None
