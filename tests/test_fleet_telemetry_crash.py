"""fleet-telemetry killed with SIGKILL in the middle of a catch-up, then started again, loses
and doubles nothing.

fleet-telemetry and the ledger run as processes on the real broker. A backlog of samples waits
in the telemetry topic before fleet-telemetry starts; small batches make the catch-up take many
transactions, and the process is killed as soon as its activity starts to appear and again
halfway through: some batches committed, perhaps one committed without its offsets, perhaps
outbox rows written but not yet published. Whatever the moment, the totals must come out exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bench.kafka_io import ActivityTally, produce_records
from bench.ledger_probe import LedgerProbe
from bench.workload import Backlog, minute_backlog, register_vehicles, vehicle_ids
from greenpartners.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from servicekit import topics
from servicekit.identity import OPERATOR
from servicekit.topics import TopicNames, dead_letter_topic, ensure_topics
from tests.conftest import PostgresDatabases
from tests.kafka_tools import read_until, unique_namespace
from tests.registry_seed import publish_registry_seed
from tools.platform import Platform, free_ports, services_on_ports

VEHICLES = 20
SAMPLES_PER_VEHICLE = 200
# Small batches: the 4,000 samples take about 80 transactions, so a kill lands mid-stream.
BATCH_SIZE = 50
DIESEL_KG_PER_L = Decimal("2.66")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def platform(
    kafka: str, tmp_path: Path, database_kind: str, postgres_databases: PostgresDatabases
) -> AsyncIterator[Platform]:
    """fleet-telemetry and the ledger as processes, not started yet; stopped afterwards. The
    registry's seed is on the partner changelog, without a registry."""
    ports = free_ports(8)
    services = services_on_ports(ports[:4], ports[4:])
    database_urls = {}
    if database_kind == "postgresql":
        database_urls = {service.name: await postgres_databases.create() for service in services}
    running = Platform(
        unique_namespace("crash"),
        tmp_path,
        services,
        database_urls,
        service_env={"fleet-telemetry": {"CONSUMER_BATCH_SIZE": str(BATCH_SIZE)}},
    )
    running.bootstrap = kafka
    await ensure_topics(kafka, TopicNames(running.namespace).all_specs())
    await publish_registry_seed(kafka, running.namespace)
    try:
        yield running
    finally:
        running.stop()


def per_vehicle_totals(backlog: Backlog) -> dict[str, tuple[int, int, int]]:
    """Distance, fuel and samples of each vehicle: last reading minus first."""
    readings: dict[str, list[fleet_pb2.TelemetrySample]] = {}
    for _key, payload in backlog.records:
        sample = fleet_pb2.TelemetrySample.FromString(payload)
        readings.setdefault(sample.vehicle_id, []).append(sample)
    return {
        vehicle_id: (
            samples[-1].odometer_m - samples[0].odometer_m,
            samples[-1].fuel_used_ml - samples[0].fuel_used_ml,
            len(samples),
        )
        for vehicle_id, samples in readings.items()
    }


async def test_killed_fleet_telemetry_resumes_with_exact_totals(
    platform: Platform, kafka: str
) -> None:
    names = TopicNames(platform.namespace)
    backlog = minute_backlog(
        SAMPLES_PER_VEHICLE,
        vehicle_ids(VEHICLES, prefix="crash"),
        datetime(2026, 3, 2, 6, 0, tzinfo=UTC),
        "crash",
    )
    platform.start_services({"fleet-telemetry", "emissions-ledger"})
    await platform.wait_healthy()
    await register_vehicles(platform, backlog.vehicle_ids)
    assert platform.stop_service(platform.fleet) == 0
    await produce_records(kafka, names(topics.TELEMETRY), backlog.records)

    tally = ActivityTally(kafka, names(topics.ACTIVITY))
    await tally.start()
    try:
        platform.start(platform.fleet)
        accounted_at_kill = []
        # Killed as soon as its first activity appears, and again halfway through.
        for accounted in (1, backlog.accountable_samples // 2):
            await tally.wait_for_samples(accounted, timeout_s=90)
            assert platform.kill_service(platform.fleet) == -9
            accounted_at_kill.append(tally.sample_count)
            platform.start(platform.fleet)
        # Otherwise the test proved nothing: the kills must have hit a catch-up under way.
        assert accounted_at_kill[-1] < backlog.accountable_samples, accounted_at_kill

        await tally.wait_for_samples(backlog.accountable_samples, timeout_s=120)
        async with platform.pki.channel(platform.ledger.target, OPERATOR) as channel:
            probe = LedgerProbe(channel, backlog.year)
            await probe.wait_for_litres(backlog.diesel_litres, timeout_s=90)
            await platform.wait_healthy()
            # Whatever was still to come after a kill (a republished outbox batch, a
            # redelivered telemetry batch) has had time to arrive by now.
            await read_until(kafka, names(topics.ACTIVITY), lambda records: False, timeout_s=3)
            assert await probe.diesel_litres() == backlog.diesel_litres
    finally:
        await tally.stop()

    # Every sample but each vehicle's baseline counted exactly once in the published activity;
    # an activity published twice (the outbox republishing after the kill) is the same event.
    assert tally.sample_count == backlog.accountable_samples == VEHICLES * (SAMPLES_PER_VEHICLE - 1)
    assert tally.fuel_used_ml == backlog.diesel_litres * 1000
    assert tally.conflicts == []

    # The fleet manager's view: each vehicle's totals are its last reading minus its first.
    async with platform.pki.channel(platform.fleet.target, OPERATOR) as channel:
        fleet = fleet_pb2_grpc.FleetTelemetryServiceStub(channel)
        for vehicle_id, (distance_m, fuel_ml, samples) in per_vehicle_totals(backlog).items():
            reply = await fleet.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id=vehicle_id))
            totals = reply.totals
            assert (totals.distance_m, totals.fuel_used_ml) == (distance_m, fuel_ml), vehicle_id
            assert (
                totals.samples_accepted,
                totals.samples_late,
                totals.samples_quarantined,
                totals.counter_resets,
            ) == (samples, 0, 0, 0), vehicle_id

    # The ledger: the diesel of the whole backlog at the declared factor, to the gram.
    async with platform.pki.channel(platform.ledger.target, OPERATOR) as channel:
        inventory = await LedgerProbe(channel, backlog.year).inventory()
    assert Decimal(inventory.emissions_kg_co2e) == backlog.diesel_litres * DIESEL_KG_PER_L

    # Nothing was dead-lettered on the way.
    dead = await read_until(
        kafka, names(dead_letter_topic(topics.TELEMETRY)), lambda records: False, timeout_s=1
    )
    assert dead == []
