"""Configuration comes from the environment and a bad value stops a service, naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from fleet_telemetry.bootstrap import FleetSettings
from locker_hubs.bootstrap import DEVELOPMENT_PEPPER, LockerSettings
from servicekit.identity import OPERATOR
from servicekit.settings import ConfigurationError, load_settings
from tests.kafka_tools import unique_namespace
from tools.pki import Pki
from tools.platform import free_ports


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


def locker_settings_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str
) -> str:
    for name in ("CODE_PEPPER", "CODE_PEPPER_FILE", "DEVELOPMENT_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError):
        load_settings(LockerSettings)
    return capsys.readouterr().err


def test_locker_hubs_refuses_to_start_without_a_real_pepper_outside_development(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = locker_settings_error(monkeypatch, capsys)
    assert "CODE_PEPPER" in missing and "required" in missing
    short = locker_settings_error(monkeypatch, capsys, CODE_PEPPER="x" * 31)
    assert "CODE_PEPPER" in short and "32" in short
    public = locker_settings_error(monkeypatch, capsys, CODE_PEPPER=DEVELOPMENT_PEPPER)
    assert "CODE_PEPPER" in public
    # The error names the variable, never its value.
    assert DEVELOPMENT_PEPPER not in public


def test_the_pepper_comes_from_the_environment_a_file_or_development_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("CODE_PEPPER", "CODE_PEPPER_FILE", "DEVELOPMENT_MODE"):
        monkeypatch.delenv(name, raising=False)
    secret = "s" * 40
    monkeypatch.setenv("CODE_PEPPER", secret)
    assert load_settings(LockerSettings).code_pepper == secret
    assert secret not in repr(load_settings(LockerSettings))

    monkeypatch.delenv("CODE_PEPPER")
    mounted = tmp_path / "pepper"
    mounted.write_text("f" * 48 + "\n")
    monkeypatch.setenv("CODE_PEPPER_FILE", str(mounted))
    assert load_settings(LockerSettings).code_pepper == "f" * 48

    monkeypatch.delenv("CODE_PEPPER_FILE")
    monkeypatch.setenv("DEVELOPMENT_MODE", "1")
    assert load_settings(LockerSettings).code_pepper == DEVELOPMENT_PEPPER


async def test_reflection_can_be_turned_off_and_metrics_listen_on_the_configured_host(
    kafka: str, tmp_path: Path, pki: Pki
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2

    from fleet_telemetry.bootstrap import build

    metrics_port = free_ports(1)[0]
    runtime = build(
        kafka_bootstrap_servers=kafka,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/fleet.db",
        grpc_port=0,
        grpc_reflection=False,
        metrics_port=metrics_port,
        topic_namespace=unique_namespace("settings"),
    )
    assert runtime.settings.metrics_address == "127.0.0.1"
    await runtime.start()
    try:
        async with pki.channel(f"127.0.0.1:{runtime.grpc_port}", OPERATOR) as channel:
            # Asked as one unary exchange: on a stream, the server's early UNIMPLEMENTED can
            # race the client's write and surface as INTERNAL instead.
            list_services = channel.unary_unary(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await list_services(reflection_pb2.ServerReflectionRequest(list_services=""))
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert listening_addresses(metrics_port) == {"127.0.0.1"}
    finally:
        await runtime.stop()


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses with a socket listening on `port` (from /proc/net/tcp)."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if int(local_port, 16) == port and state == "0A":  # LISTEN
            addresses.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return addresses
