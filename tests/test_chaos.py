"""Faults a deployment meets, on a broker of this module's own (never the shared one, which
other test runs use): the broker down at start, stopped and started under a running service,
a consumer stuck on one batch, and the short `make chaos` run (tools/chaos.py).
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2

from emissions_ledger.bootstrap import build as build_ledger
from greenpartners.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from servicekit import topics
from servicekit.access import ADMIN
from servicekit.codec import to_timestamp
from servicekit.identity import FLEET_MANAGER, OPERATOR
from servicekit.kafka import Delivered, Rejection
from tests.kafka_tools import connection, eventually, produce, read_until, unique_namespace
from tests.registry_seed import publish_registry_seed
from tools import kafka_access
from tools.chaos import (
    LocalBroker,
    Options,
    health_status,
    local_broker,
    run_chaos,
    wait_answering,
)
from tools.pki import Pki
from tools.platform import Platform, free_ports, services_on_ports

MUNICIPALITY = "aalborg-kommune"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker on free ports with a data directory of its own, that tests stop and start."""
    broker = local_broker(tmp_path_factory.mktemp("kafka"))
    broker.up()
    # Services built in this process log in as the tests' admin, as with the run's broker.
    identity = {}
    if kafka_access.uses_principals() and not os.environ.get("KAFKA_USERNAME"):
        identity = kafka_access.principal_environment(ADMIN, broker.bootstrap)
        del identity["KAFKA_BOOTSTRAP_SERVERS"]
    os.environ.update(identity)
    try:
        yield broker
    finally:
        for name in identity:
            os.environ.pop(name, None)
        broker.down()


def metric_of(runtime: Any, name: str) -> float:
    """The largest sample of a metric in an in-process service's registry."""
    values = [
        sample.value
        for family in runtime.metrics.collect()
        for sample in family.samples
        if sample.name == name
    ]
    assert values, f"no metric {name}"
    return float(max(values))


def metric(port: int, name: str) -> float:
    """A sample of the service's Prometheus endpoint (the first one of that name)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name) and not line.startswith("#"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


@pytest.fixture
async def platform(tmp_path: Path, broker: LocalBroker, pki: Pki) -> AsyncIterator[Platform]:
    ports = free_ports(8)
    platform = Platform(
        unique_namespace("ready"),
        tmp_path,
        services_on_ports(ports[:4], ports[4:]),
        service_env={
            "fleet-telemetry": {
                "READINESS_BROKER_UNREACHABLE_S": "2",
                "LOG_REPEAT_INTERVAL_S": "30",
            }
        },
        pki=pki,
    )
    platform.bootstrap = broker.bootstrap
    try:
        yield platform
    finally:
        platform.stop()


def sample(vehicle_id: str, number: int, at: datetime) -> fleet_pb2.TelemetrySample:
    return fleet_pb2.TelemetrySample(
        event_id=f"{vehicle_id}-{number}",
        occurred_at=to_timestamp(at + timedelta(minutes=number)),
        vehicle_id=vehicle_id,
        odometer_m=1_000_000 + 500 * number,
        fuel_used_ml=100_000 + 50 * number,
    )


async def activity_samples(servers: str, topic: str, expected: int) -> int:
    """The samples the activities on the topic sum, once they reach `expected`."""
    records = await read_until(
        servers,
        topic,
        lambda found: (
            sum(fleet_pb2.VehicleActivity.FromString(r.value).sample_count for r in found)
            >= expected
        ),
    )
    return sum(fleet_pb2.VehicleActivity.FromString(r.value).sample_count for r in records)


async def test_a_service_serves_without_the_broker_and_its_health_follows_the_broker(
    platform: Platform, broker: LocalBroker, pki: Pki
) -> None:
    fleet = platform.fleet
    telemetry = platform.bootstrap, f"{platform.namespace}.{topics.TELEMETRY}"
    activity_topic = f"{platform.namespace}.{topics.ACTIVITY}"
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)

    # A first run with the broker up: fleet-telemetry's read model of the partner changelog
    # (which partners exist) is stored in its database.
    await publish_registry_seed(broker.bootstrap, platform.namespace)
    platform.start(fleet)
    await platform.wait_healthy()
    assert platform.stop_service(fleet) == 0

    # Started again while the broker is down: gRPC answers from what the database holds.
    broker.down()
    platform.start(fleet)
    try:
        await wait_answering(platform, fleet, timeout_s=60)
        # gRPC is served while the broker is down: a registration goes to the database.
        async with pki.channel(fleet.target, FLEET_MANAGER, MUNICIPALITY) as channel:
            stub = fleet_pb2_grpc.FleetTelemetryServiceStub(channel)

            async def registered() -> None:
                await stub.RegisterVehicle(
                    fleet_pb2.RegisterVehicleRequest(
                        vehicle=fleet_pb2.Vehicle(
                            vehicle_id="ready-van",
                            owner_partner_id=MUNICIPALITY,
                            municipality_id=MUNICIPALITY,
                            fuel_type=fleet_pb2.FUEL_TYPE_DIESEL,
                            vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
                        )
                    ),
                    timeout=5,
                )

            await registered()

        async def status_is(expected: str) -> None:
            assert await health_status(platform, fleet) == expected

        # The broker unreachable for longer than the threshold: NOT_SERVING, and the metrics
        # say so.
        await eventually(lambda: status_is("NOT_SERVING"), timeout_s=20)
        assert metric(fleet.metrics_port, "kafka_broker_unreachable_seconds") > 2
        assert metric(fleet.metrics_port, "service_serving") == 0
        # Connection errors repeat many times a second; the log says so once per interval.
        log_file = platform.data_dir / "logs" / f"{fleet.label}.log"
        lines_before = len(log_file.read_bytes().splitlines())
        await asyncio.sleep(5)
        assert len(log_file.read_bytes().splitlines()) - lines_before < 10

        broker.up()
        await eventually(lambda: status_is("SERVING"), timeout_s=60)
        assert metric(fleet.metrics_port, "kafka_broker_unreachable_seconds") == 0
        # It connected when the broker came: it consumes.
        for number in range(3):
            await produce(*telemetry, "ready-van", sample("ready-van", number, start))
        assert await activity_samples(platform.bootstrap, activity_topic, 2) == 2

        # The broker lost under a running service, and back.
        broker.down()
        await eventually(lambda: status_is("NOT_SERVING"), timeout_s=20)
        async with pki.channel(fleet.target, OPERATOR) as channel:
            reply = await fleet_pb2_grpc.FleetTelemetryServiceStub(channel).GetVehicle(
                fleet_pb2.GetVehicleRequest(vehicle_id="ready-van"), timeout=5
            )
            assert reply.totals.samples_accepted == 3
        broker.up()
        await eventually(lambda: status_is("SERVING"), timeout_s=60)
        await produce(*telemetry, "ready-van", sample("ready-van", 3, start))
        assert await activity_samples(platform.bootstrap, activity_topic, 3) == 3
        process = platform.running(fleet)
        assert process is not None and process.poll() is None, "it never exited"
    finally:
        if not await _answers(broker):
            broker.up()


async def _answers(broker: LocalBroker) -> bool:
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    except OSError:
        return False
    writer.close()
    return True


async def test_a_consumer_stuck_on_one_batch_turns_the_service_not_serving(
    broker: LocalBroker, tmp_path: Path, pki: Pki
) -> None:
    namespace = unique_namespace("stall")
    # Provisioned as the platform is: the namespace's topics, users and ACLs.
    await kafka_access.apply(namespace, connection(broker.bootstrap))
    ledger = build_ledger(
        kafka_bootstrap_servers=broker.bootstrap,
        topic_namespace=namespace,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/ledger.db",
        grpc_port=0,
        readiness_consumer_stalled_s=1.5,
        consumer_retry_backoff_s=0.5,
    )
    consumer = next(c for c in ledger.consumers if c.topic.endswith(topics.ACTIVITY))
    handle = consumer.handle_batch
    database_down = True

    async def flaky(batch: Sequence[Delivered[Any]]) -> Sequence[Rejection]:
        if database_down:
            raise ConnectionError("database unreachable")
        return await handle(batch)

    consumer.handle_batch = flaky
    await ledger.start()
    try:
        at = datetime.now(UTC) - timedelta(hours=1)
        await produce(
            broker.bootstrap,
            ledger.topic(topics.ACTIVITY),
            "stall-van",
            fleet_pb2.VehicleActivity(
                event_id="stall-1",
                occurred_at=to_timestamp(at),
                vehicle=fleet_pb2.Vehicle(
                    vehicle_id="stall-van",
                    owner_partner_id=MUNICIPALITY,
                    municipality_id=MUNICIPALITY,
                    fuel_type=fleet_pb2.FUEL_TYPE_DIESEL,
                    vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
                ),
                period_start=to_timestamp(at),
                period_end=to_timestamp(at),
                distance_m=1_000,
                fuel_used_ml=100,
            ),
        )
        assert ledger.grpc is not None
        health = ledger.grpc.health

        async def status() -> int:
            reply = await health.Check(health_pb2.HealthCheckRequest(), None)  # type: ignore[arg-type]
            return int(reply.status)

        async def not_serving() -> None:
            assert await status() == health_pb2.HealthCheckResponse.NOT_SERVING

        def stalled() -> None:
            assert any("no progress" in problem for problem in ledger.readiness.problems), (
                ledger.readiness.problems
            )

        started = time.monotonic()
        await eventually(stalled, timeout_s=20)
        await eventually(not_serving, timeout_s=5)
        assert consumer.stalled_seconds() > 1.5
        assert metric_of(ledger, "kafka_consumer_stalled_seconds") > 1.5

        database_down = False

        async def serving() -> None:
            assert await status() == health_pb2.HealthCheckResponse.SERVING

        await eventually(serving, timeout_s=30)
        assert consumer.stalled_seconds() == 0
        assert time.monotonic() - started < 30
    finally:
        await ledger.stop()


async def test_the_short_chaos_run_loses_and_doubles_nothing(
    broker: LocalBroker, tmp_path: Path
) -> None:
    started = time.monotonic()
    report = await run_chaos(Options(), tmp_path, broker)
    print("\n".join(report.lines()))
    # Every service killed once, the broker restarted once (the run checks the totals, the
    # vehicles, the dead letters and the health itself, and raises on any difference).
    assert sorted(report.faults) == sorted(
        [
            "kill -9 fleet-telemetry",
            "kill -9 emissions-ledger",
            "kill -9 locker-hubs",
            "kill -9 partner-registry",
            "kill -9 partner-registry",
            "broker stop and start",
        ]
    )
    assert report.dead_letters == Options().garbage + Options().unregistered
    assert report.diesel_litres > 0 and report.avoided_kg > 0
    assert time.monotonic() - started < 90
