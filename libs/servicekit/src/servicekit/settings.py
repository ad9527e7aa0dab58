"""Configuration from environment variables only, validated at start."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """How to reach and log in to the broker: every service's, and tools' that are not one."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    # Development mode allows what a deployment must not have: secrets with public defaults.
    development_mode: bool = False
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", min_length=1)
    # Kafka client security (docs/security.md). SASL_* log in as KAFKA_USERNAME (a principal of
    # servicekit.access) with SCRAM; the password is KAFKA_PASSWORD or the file
    # KAFKA_PASSWORD_FILE names; KAFKA_CA_FILE verifies the broker's certificate on SASL_SSL.
    # Outside development mode, PLAINTEXT is refused unless the broker is on this machine.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password_file: str = ""
    kafka_password: SecretStr = Field(default=SecretStr(""), repr=False)
    kafka_ca_file: str = ""

    @field_validator("kafka_security_protocol")
    @classmethod
    def _encrypted_or_local(cls, protocol: str, info: ValidationInfo) -> str:
        return check_kafka_transport(
            protocol,
            info.data.get("kafka_bootstrap_servers", ""),
            bool(info.data.get("development_mode")),
        )

    @field_validator("kafka_username")
    @classmethod
    def _username_for_sasl(cls, username: str, info: ValidationInfo) -> str:
        return check_kafka_username(username, info.data.get("kafka_security_protocol", ""))

    @field_validator("kafka_password")
    @classmethod
    def _password_for_sasl(cls, password: SecretStr, info: ValidationInfo) -> SecretStr:
        return resolve_kafka_password(
            password,
            info.data.get("kafka_password_file", ""),
            info.data.get("kafka_security_protocol", ""),
        )


class ServiceSettings(KafkaSettings):
    """What every service needs. Services subclass it and add their own variables."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    service_name: str = Field(min_length=1)
    # Prefix for topic names and consumer groups, so that several platforms (or test runs)
    # can share one broker without seeing each other's events.
    topic_namespace: str = Field(default="", pattern=r"^[a-zA-Z0-9_-]*$")
    database_url: str = Field(min_length=1)
    grpc_host: str = "127.0.0.1"
    # Server TLS; people and partners call here with bearer tokens (docs/security.md).
    grpc_port: int = Field(ge=0, le=65535)
    # Client certificates required: other services call here. Unset: no such listener.
    grpc_mtls_port: int | None = Field(default=None, ge=0, le=65535)
    # Plaintext, the health service only, for probes that cannot speak TLS. Unset: none.
    health_port: int | None = Field(default=None, ge=0, le=65535)
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    # Public keys that verify bearer tokens (a JWKS file, re-read when it changes).
    auth_jwks_file: str = ""
    auth_issuer: str = ""
    auth_audience: str = ""
    # Server reflection lets grpcurl and other tools list and call the methods without protos.
    grpc_reflection: bool = True
    # 0 disables the Prometheus endpoint. It listens on METRICS_HOST, by default GRPC_HOST's.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = ""
    otel_exporter_otlp_endpoint: str = ""
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    outbox_poll_interval_s: float = Field(default=0.5, gt=0)
    consumer_max_attempts: int = Field(default=8, ge=1)
    consumer_retry_backoff_s: float = Field(default=0.2, gt=0)
    # Records handled in one database transaction and one offset commit; 1 disables batching.
    consumer_batch_size: int = Field(default=5000, ge=1, le=50_000)
    # At most this many subjects (distinct keys: vehicles, hubs) per transaction; 0: no limit. A
    # batch of many subjects is handled in parts (BatchConsumer).
    consumer_max_subjects_per_batch: int = Field(default=0, ge=0, le=50_000)
    # What a consumer fetches ahead, at most, per partition and per request (docs/performance.md,
    # "Memory"); fetched records wait in memory until they are handled. Per partition, room for
    # a whole batch of fleet-telemetry's, even of 10,000 samples (about 2.2 MB), so that a backlog's
    # batch comes from one partition and its vehicles have as few activities as can be; per
    # request, two such batches. A record larger than either still comes (the broker sends the
    # first record batch whatever its size).
    consumer_partition_fetch_bytes: int = Field(
        default=4 * 1024 * 1024, ge=64 * 1024, le=64 * 1024**2
    )
    consumer_fetch_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024, le=256 * 1024**2)
    # Readiness (docs/delivery.md): the health status turns NOT_SERVING once the broker has not
    # answered for this long (longer than a broker restart takes), or a consumer has held a
    # batch without handling any of it for this long (a batch retried in place gives up after
    # about 23 s with the default retries, and then goes on record by record).
    readiness_broker_unreachable_s: float = Field(default=15.0, gt=0)
    readiness_consumer_stalled_s: float = Field(default=60.0, gt=0)
    # A failure that repeats (a broker that is down, a retried batch) is logged once per interval.
    log_repeat_interval_s: float = Field(default=30.0, gt=0)

    @field_validator("consumer_fetch_bytes")
    @classmethod
    def _fetch_holds_a_partition(cls, fetch_bytes: int, info: ValidationInfo) -> int:
        if fetch_bytes < info.data.get("consumer_partition_fetch_bytes", 0):
            raise ValueError("must not be below CONSUMER_PARTITION_FETCH_BYTES")
        return fetch_bytes

    @property
    def metrics_address(self) -> str:
        return self.metrics_host or self.grpc_host

    def require_identity(self) -> None:
        """gRPC has no plaintext mode: stop, naming what is missing, before serving anything."""
        required = ("tls_cert_file", "tls_key_file", "tls_ca_file", "auth_jwks_file")
        missing = [
            name.upper()
            for name in (*required, "auth_issuer", "auth_audience")
            if not getattr(self, name)
        ]
        unreadable = [
            f"{name.upper()} ({getattr(self, name)})"
            for name in required
            if getattr(self, name) and not os.access(getattr(self, name), os.R_OK)
        ]
        if missing or unreadable:
            problems = [f"{name}: required" for name in missing]
            problems += [f"{name}: cannot be read" for name in unreadable]
            print("invalid configuration: " + "; ".join(problems), file=sys.stderr)
            raise ConfigurationError(2)


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)

LOOPBACK_HOSTS = ("localhost", "::1", "[::1]")


def broker_hosts(bootstrap_servers: str) -> list[str]:
    hosts = []
    for address in bootstrap_servers.split(","):
        address = address.strip().split("://")[-1]
        hosts.append(address.rsplit(":", 1)[0] if ":" in address else address)
    return hosts


def check_kafka_transport(protocol: str, bootstrap_servers: str, development_mode: bool) -> str:
    """PLAINTEXT (no login, no encryption) only to a broker on this machine, or in development."""
    if protocol == "PLAINTEXT" and not development_mode:
        remote = [
            host
            for host in broker_hosts(bootstrap_servers)
            if host not in LOOPBACK_HOSTS and not host.startswith("127.")
        ]
        if remote:
            raise ValueError(
                f"PLAINTEXT to a broker off this machine ({', '.join(remote)}) is refused outside "
                "DEVELOPMENT_MODE; use SASL_SSL (or SASL_PLAINTEXT on a network you trust)"
            )
    return protocol


def check_kafka_username(username: str, protocol: str) -> str:
    if protocol.startswith("SASL") and not username:
        raise ValueError(f"required with KAFKA_SECURITY_PROTOCOL={protocol}")
    return username


def resolve_kafka_password(password: SecretStr, path: str, protocol: str) -> SecretStr:
    """KAFKA_PASSWORD, else the content of KAFKA_PASSWORD_FILE (a trailing newline dropped)."""
    if path and not password.get_secret_value():
        try:
            password = SecretStr(Path(path).read_text().rstrip("\n"))
        except OSError as error:
            raise ValueError(f"KAFKA_PASSWORD_FILE {path!r} cannot be read: {error}") from None
    if protocol.startswith("SASL") and not password.get_secret_value():
        raise ValueError(
            f"required (or KAFKA_PASSWORD_FILE) with KAFKA_SECURITY_PROTOCOL={protocol}"
        )
    return password


class ConfigurationError(SystemExit):
    """A missing or invalid environment variable: the service cannot start."""


def describe_validation_error(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        variable = "_".join(str(part) for part in problem["loc"]).upper()
        lines.append(f"{variable}: {problem['msg']}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(settings_type: type[SettingsT], **overrides: object) -> SettingsT:
    """Reads the environment (overrides win, for tests and tools).

    Stops the process with a message naming each missing or invalid variable.
    """
    try:
        return settings_type.model_validate(overrides)
    except ValidationError as error:
        print(describe_validation_error(error), file=sys.stderr)
        raise ConfigurationError(2) from error
