"""Configuration comes from the environment and a bad value stops a service, naming it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fleet_telemetry.bootstrap import FleetSettings
from servicekit.settings import ConfigurationError, load_settings


def test_environment_overrides_the_service_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_PORT", "6001")
    monkeypatch.setenv("TOPIC_NAMESPACE", "staging")
    settings = load_settings(FleetSettings)
    assert (settings.grpc_port, settings.topic_namespace, settings.service_name) == (
        6001,
        "staging",
        "fleet-telemetry",
    )


def test_a_bad_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRPC_PORT", "not-a-port")
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigurationError):
        load_settings(FleetSettings)
    message = capsys.readouterr().err
    assert "GRPC_PORT" in message
    assert "LOG_LEVEL" in message


def test_a_service_process_refuses_to_start_on_bad_configuration() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "locker_hubs"],
        env={"CODE_PEPPER": "short", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "CODE_PEPPER" in result.stderr
