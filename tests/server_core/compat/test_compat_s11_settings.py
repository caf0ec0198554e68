"""SDK-0.2-API.md §11: settings classes, bounds, environment, and the global functions."""

from __future__ import annotations

import importlib.util

import pydantic
import pytest

from server_core import (
    RolloutClientSettings,
    RolloutServerSettings,
    RolloutSettings,
    configure,
    get_settings,
    reset_settings,
)

HAS_PYDANTIC_SETTINGS = importlib.util.find_spec("pydantic_settings") is not None

CLIENT_DEFAULTS = {
    "timeout_seconds": 300.0,
    "max_retries": 3,
    "complete_rollout_retries": 2,
    "retry_base_delay": 1.0,
    "retry_max_delay": 30.0,
    "max_connections": 100,
    "max_keepalive_connections": 20,
}
SERVER_DEFAULTS = {
    "max_concurrent_rollouts": 100,
    "record_ttl_seconds": 3600.0,
    "cleanup_interval_seconds": 60.0,
    "request_timeout_seconds": 600.0,
    "registration_readiness_timeout_seconds": 10.0,
    "registration_readiness_poll_interval_seconds": 0.2,
    "registration_shutdown_timeout_seconds": 30.0,
}

#: (class, field, lowest accepted, highest accepted, a too-low value, a too-high value)
BOUNDS = [
    (RolloutClientSettings, "timeout_seconds", 1, 3600, 0.5, 3601),
    (RolloutClientSettings, "max_retries", 0, 10, -1, 11),
    (RolloutClientSettings, "complete_rollout_retries", 0, 10, -1, 11),
    (RolloutClientSettings, "retry_base_delay", 0.1, 60, 0.05, 61),
    (RolloutClientSettings, "retry_max_delay", 1, 300, 0.5, 301),
    (RolloutClientSettings, "max_connections", 1, 1000, 0, 1001),
    (RolloutClientSettings, "max_keepalive_connections", 1, 100, 0, 101),
    (RolloutServerSettings, "max_concurrent_rollouts", 1, 10000, 0, 10001),
    (RolloutServerSettings, "record_ttl_seconds", 60, 86400, 59, 86401),
    (RolloutServerSettings, "cleanup_interval_seconds", 10, 3600, 9, 3601),
    (RolloutServerSettings, "request_timeout_seconds", 10, 3600, 9, 3601),
    (RolloutServerSettings, "registration_readiness_timeout_seconds", 1, 60, 0.5, 61),
    (RolloutServerSettings, "registration_readiness_poll_interval_seconds", 0.05, 5, 0.01, 6),
    (RolloutServerSettings, "registration_shutdown_timeout_seconds", 1, 300, 0.5, 301),
    (
        RolloutSettings,
        "max_metadata_size_bytes",
        1024,
        100 * 1024 * 1024,
        1023,
        100 * 1024 * 1024 + 1,
    ),
]


@pytest.fixture(autouse=True)
def _isolated(fresh_settings, monkeypatch, tmp_path):
    # No stray OSMOSIS_ROLLOUT_* from the machine, and no .env in the working directory.
    import os

    for key in list(os.environ):
        if key.startswith("OSMOSIS_ROLLOUT"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_client_defaults():
    settings = RolloutClientSettings()
    for name, value in CLIENT_DEFAULTS.items():
        assert getattr(settings, name) == value, name


def test_server_defaults():
    settings = RolloutServerSettings()
    for name, value in SERVER_DEFAULTS.items():
        assert getattr(settings, name) == value, name


def test_rollout_settings_defaults():
    settings = RolloutSettings()
    assert isinstance(settings.client, RolloutClientSettings)
    assert isinstance(settings.server, RolloutServerSettings)
    assert settings.max_metadata_size_bytes == 1048576


@pytest.mark.parametrize(("cls", "field", "low", "high", "too_low", "too_high"), BOUNDS)
def test_bounds(cls, field, low, high, too_low, too_high):
    assert getattr(cls(**{field: low}), field) == low
    assert getattr(cls(**{field: high}), field) == high
    with pytest.raises(pydantic.ValidationError):
        cls(**{field: too_low})
    with pytest.raises(pydantic.ValidationError):
        cls(**{field: too_high})


def test_get_settings_is_a_lazy_singleton():
    first = get_settings()
    assert isinstance(first, RolloutSettings)
    assert get_settings() is first


def test_configure_replaces_the_singleton_without_type_checks():
    mine = RolloutSettings(client=RolloutClientSettings(max_retries=7))
    assert configure(mine) is None
    assert get_settings() is mine
    configure("anything")
    assert get_settings() == "anything"


def test_reset_settings_rereads():
    first = get_settings()
    assert reset_settings() is None
    assert get_settings() is not first


@pytest.mark.skipif(
    not HAS_PYDANTIC_SETTINGS, reason="the environment is read only with pydantic-settings"
)
def test_environment_variables(monkeypatch):
    monkeypatch.setenv("OSMOSIS_ROLLOUT_CLIENT_TIMEOUT_SECONDS", "120")
    monkeypatch.setenv("OSMOSIS_ROLLOUT_SERVER_MAX_CONCURRENT_ROLLOUTS", "7")
    monkeypatch.setenv("OSMOSIS_ROLLOUT_MAX_METADATA_SIZE_BYTES", "4096")
    monkeypatch.setenv("OSMOSIS_ROLLOUT_CLIENT_SOMETHING_UNKNOWN", "1")
    assert RolloutClientSettings().timeout_seconds == 120.0
    assert RolloutServerSettings().max_concurrent_rollouts == 7
    settings = RolloutSettings()
    assert settings.client.timeout_seconds == 120.0
    assert settings.server.max_concurrent_rollouts == 7
    assert settings.max_metadata_size_bytes == 4096


@pytest.mark.skipif(
    not HAS_PYDANTIC_SETTINGS, reason="the environment is read only with pydantic-settings"
)
def test_explicit_keywords_beat_the_environment(monkeypatch):
    monkeypatch.setenv("OSMOSIS_ROLLOUT_CLIENT_MAX_RETRIES", "9")
    assert RolloutClientSettings().max_retries == 9
    assert RolloutClientSettings(max_retries=1).max_retries == 1


@pytest.mark.skipif(
    not HAS_PYDANTIC_SETTINGS, reason="the environment is read only with pydantic-settings"
)
def test_get_settings_reads_the_environment_after_reset(monkeypatch):
    monkeypatch.setenv("OSMOSIS_ROLLOUT_CLIENT_MAX_RETRIES", "6")
    reset_settings()
    assert get_settings().client.max_retries == 6


@pytest.mark.skipif(
    not HAS_PYDANTIC_SETTINGS, reason="the environment is read only with pydantic-settings"
)
def test_client_json_env_sets_the_nested_client(monkeypatch):
    monkeypatch.setenv("OSMOSIS_ROLLOUT_CLIENT", '{"max_retries": 5}')
    assert RolloutSettings().client.max_retries == 5


@pytest.mark.skipif(
    not HAS_PYDANTIC_SETTINGS, reason="the environment is read only with pydantic-settings"
)
def test_out_of_range_env_value_is_a_validation_error(monkeypatch):
    monkeypatch.setenv("OSMOSIS_ROLLOUT_CLIENT_MAX_RETRIES", "99")
    with pytest.raises(pydantic.ValidationError):
        RolloutClientSettings()


def test_metadata_setting_is_not_connected_to_the_request_check():
    from server_core import get_max_metadata_size_bytes

    configure(RolloutSettings(max_metadata_size_bytes=2048))
    assert get_max_metadata_size_bytes() == 1048576
