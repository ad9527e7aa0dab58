"""Kafka principals and ACLs on the real broker: each principal may do what servicekit.access
lists and the broker refuses everything else."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from emissions_ledger.bootstrap import build as build_ledger
from emissions_ledger.entrypoints.subscribers import ACTIVITY_GROUP
from fleet_telemetry.bootstrap import FleetSettings
from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from greenpartners.lockers.v1 import lockers_pb2
from servicekit import access, topics
from servicekit.access import AclBinding, acl_bindings
from servicekit.identity import OPERATOR
from servicekit.kafka import client_options
from servicekit.settings import ConfigurationError, load_settings
from servicekit.topics import TopicNames
from tests.kafka_tools import ROOT, connection, eventually, produce, read_until, unique_namespace
from tests.ledger_events import vehicle_activity
from tests.registry_seed import publish_registry_seed
from tools import kafka_access
from tools.pki import Pki

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AALBORG = "aalborg-kommune"


@pytest.fixture
async def names(kafka: str) -> AsyncIterator[TopicNames]:
    """A namespace provisioned as the platform is: its topics, users and ACLs."""
    namespace = unique_namespace("acl")
    await kafka_access.apply(namespace, connection(kafka))
    yield TopicNames(namespace)
    await kafka_access.revoke(namespace, connection(kafka))


def diesel_activity(event_id: str) -> fleet_pb2.VehicleActivity:
    return vehicle_activity(event_id, fleet_pb2.FUEL_TYPE_DIESEL, AT, fuel_used_ml=1_000)


async def test_a_forged_record_from_the_wrong_principal_is_refused_and_nothing_is_posted(
    kafka: str, names: TopicNames, tmp_path: Path, pki: Pki
) -> None:
    ledger = build_ledger(
        kafka_bootstrap_servers=kafka,
        kafka_username="emissions-ledger",
        kafka_password="",
        kafka_password_file=str(kafka_access.password_file("emissions-ledger")),
        topic_namespace=names.namespace,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/ledger.db",
        grpc_port=0,
    )
    # The municipalities the ledger keeps inventories for come from the registry's changelog.
    await publish_registry_seed(kafka, names.namespace)
    await ledger.start()
    try:
        # A telematics unit's credential forging a fleet-telemetry activity, and a locker event.
        with pytest.raises(TopicAuthorizationFailedError):
            await produce(
                kafka,
                names(topics.ACTIVITY),
                "v-forged",
                diesel_activity("forged"),
                user="telematics-unit",
            )
        with pytest.raises(TopicAuthorizationFailedError):
            await produce(
                kafka,
                names(topics.LOCKER_EVENTS),
                "molo-aalborg-99",
                lockers_pb2.LockerEvent(event_id="forged-collection", hub_id="molo-aalborg-99"),
                user="telematics-unit",
            )
        # The genuine producer's record behind it is posted, and only that one.
        await produce(
            kafka,
            names(topics.ACTIVITY),
            "v-genuine",
            diesel_activity("genuine"),
            user="fleet-telemetry",
        )
        async with pki.channel(f"127.0.0.1:{ledger.grpc_port}", OPERATOR) as channel:
            stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)

            async def one_entry_posted() -> None:
                inventory = await stub.GetInventory(
                    ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=2026)
                )
                assert inventory.entry_count == 1

            await eventually(one_entry_posted)
        stored = await read_until(kafka, names(topics.ACTIVITY), lambda r: False, timeout_s=2)
        assert [record.key for record in stored] == ["v-genuine"]
        assert await read_until(kafka, names(topics.LOCKER_EVENTS), lambda r: False, 1) == []
    finally:
        await ledger.stop()


async def test_a_service_cannot_join_another_services_group(kafka: str, names: TopicNames) -> None:
    async def join(user: str, topic: str, group: str) -> None:
        consumer = AIOKafkaConsumer(
            names(topic),
            **connection(kafka, user),
            group_id=names.group(group),
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()
            await consumer.getmany(timeout_ms=2000)
        finally:
            await consumer.stop()

    # fleet-telemetry may read the telemetry, but not in the ledger's group ...
    with pytest.raises(GroupAuthorizationFailedError):
        await join("fleet-telemetry", topics.TELEMETRY, ACTIVITY_GROUP)
    # ... nor read the ledger's topic at all; its own group is fine.
    with pytest.raises(TopicAuthorizationFailedError):
        await join("fleet-telemetry", topics.ACTIVITY, "fleet-telemetry")
    await join("fleet-telemetry", topics.TELEMETRY, "fleet-telemetry")
    await join("emissions-ledger", topics.ACTIVITY, ACTIVITY_GROUP)


async def test_a_dashboard_reads_the_streams_but_cannot_write(
    kafka: str, names: TopicNames
) -> None:
    await produce(kafka, names(topics.LEDGER_ENTRIES), AALBORG, b"entry", {"event-type": "x"})
    # Even without idempotence (which needs a WRITE right to begin with), the produce itself
    # is refused.
    producer = AIOKafkaProducer(**connection(kafka, "dashboard"), enable_idempotence=False)
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(names(topics.LEDGER_ENTRIES), b"forged", key=b"x")
    finally:
        await producer.stop()
    read = await read_until(
        kafka, names(topics.LEDGER_ENTRIES), lambda r: len(r) >= 1, user="dashboard"
    )
    assert [record.value for record in read] == [b"entry"]
    # The dead letters are the operators' to read.
    with pytest.raises(TopicAuthorizationFailedError):
        await read_until(
            kafka,
            names(topics.dead_letter_topic(topics.ACTIVITY)),
            lambda r: False,
            timeout_s=2,
            user="dashboard",
        )


async def test_a_client_without_the_right_password_is_refused(kafka: str) -> None:
    options = connection(kafka, "dashboard")
    options["sasl_plain_password"] = "not-the-password"
    producer = AIOKafkaProducer(**options, request_timeout_ms=5000)
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()
    # No SASL at all: the listener takes no PLAINTEXT client.
    plain = AIOKafkaProducer(bootstrap_servers=kafka, request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(plain.start(), 20)
    await plain.stop()


async def test_the_brokers_acls_are_the_ones_generated_from_the_principals(
    kafka: str, names: TopicNames
) -> None:
    admin = connection(kafka)
    namespace = names.namespace
    assert await kafka_access.broker_acls(namespace, admin) == set(acl_bindings(namespace))
    assert await kafka_access.broker_acls("", admin) == set(acl_bindings(""))
    # Drift (a right granted by hand) is taken away by the next apply; apply is idempotent.
    extra = AclBinding("User:dashboard", "TOPIC", names(topics.ACTIVITY), "LITERAL", "WRITE")
    async with kafka_access.KafkaAccessAdmin(admin) as broker:
        await broker.create_acls([extra])
        await broker.wait_for(namespace, {*acl_bindings(namespace), extra})
    summary = await kafka_access.apply(namespace, admin)
    assert (summary["created"], summary["deleted"]) == (0, 1)
    assert await kafka_access.broker_acls(namespace, admin) == set(acl_bindings(namespace))


def test_the_generated_acls_grant_only_reads_writes_and_group_prefixes() -> None:
    bindings = acl_bindings("ns")
    assert {(b.operation, b.resource_type, b.pattern_type) for b in bindings} == {
        ("WRITE", "TOPIC", "LITERAL"),
        ("READ", "TOPIC", "LITERAL"),
        ("READ", "GROUP", "PREFIXED"),
    }
    assert all(b.resource_name.startswith("ns.") for b in bindings)
    assert {b.principal for b in bindings} == {
        f"User:{principal.name}" for principal in access.KAFKA_PRINCIPALS
    }

    def writers(topic: str) -> set[str]:
        return {
            b.principal.removeprefix("User:")
            for b in bindings
            if b.operation == "WRITE" and b.resource_name == f"ns.{topic}"
        }

    # The rules; operators replay dead letters into every source topic.
    assert writers(topics.TELEMETRY) == {"telematics-unit", "operator"}
    assert writers(topics.LOCKER_EVENTS) == {"locker-hubs", "box-telematics", "operator"}
    assert writers(topics.ACTIVITY) == {"fleet-telemetry", "operator"}
    assert writers(topics.LEDGER_ENTRIES) == {"emissions-ledger", "operator"}
    assert writers(topics.dead_letter_topic(topics.ACTIVITY)) == {"emissions-ledger"}


def test_security_md_lists_the_principals_as_servicekit_access_does() -> None:
    assert kafka_access.principal_table() in (ROOT / "docs/security.md").read_text(), (
        "docs/security.md: paste `python -m tools.kafka_access table`"
    )


def test_the_local_brokers_super_user_is_the_admin_principal() -> None:
    script = (ROOT / "deploy/local/kafka.sh").read_text()
    assert f'ADMIN_USER="{access.ADMIN}"' in script


KAFKA_VARIABLES = (
    "DEVELOPMENT_MODE",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_USERNAME",
    "KAFKA_PASSWORD",
    "KAFKA_PASSWORD_FILE",
    "KAFKA_CA_FILE",
)


def fleet_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> FleetSettings:
    for name in KAFKA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(FleetSettings)


def settings_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str
) -> str:
    with pytest.raises(ConfigurationError):
        fleet_settings(monkeypatch, **env)
    return capsys.readouterr().err


def test_sasl_needs_a_user_and_a_password_that_is_never_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    error = settings_error(monkeypatch, capsys, KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT")
    assert "KAFKA_USERNAME" in error and "KAFKA_PASSWORD" in error

    secret = "s3cret-" + "x" * 30
    settings = fleet_settings(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_USERNAME="fleet-telemetry",
        KAFKA_PASSWORD=secret,
    )
    assert secret not in repr(settings) and secret not in str(settings.model_dump())
    assert client_options(settings) == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "fleet-telemetry",
        "sasl_plain_password": secret,
    }

    mounted = tmp_path / "password"
    mounted.write_text(secret + "\n")
    from_file = fleet_settings(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_BOOTSTRAP_SERVERS="kafka.platform.svc:9093",
        KAFKA_USERNAME="fleet-telemetry",
        KAFKA_PASSWORD_FILE=str(mounted),
    )
    assert from_file.kafka_password.get_secret_value() == secret
    assert isinstance(client_options(from_file)["ssl_context"], ssl.SSLContext)

    unreadable = settings_error(
        monkeypatch,
        capsys,
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_USERNAME="fleet-telemetry",
        KAFKA_PASSWORD_FILE=str(tmp_path / "missing"),
    )
    assert "KAFKA_PASSWORD" in unreadable and secret not in unreadable


def test_plaintext_to_a_remote_broker_is_refused_outside_development_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    error = settings_error(monkeypatch, capsys, KAFKA_BOOTSTRAP_SERVERS="kafka-0.internal:9092")
    assert "KAFKA_SECURITY_PROTOCOL" in error and "kafka-0.internal" in error
    for local in ("127.0.0.1:9092", "localhost:9092,[::1]:9092"):
        assert fleet_settings(monkeypatch, KAFKA_BOOTSTRAP_SERVERS=local).kafka_security_protocol
    development = fleet_settings(
        monkeypatch, KAFKA_BOOTSTRAP_SERVERS="kafka-0.internal:9092", DEVELOPMENT_MODE="1"
    )
    assert development.kafka_security_protocol == "PLAINTEXT"
