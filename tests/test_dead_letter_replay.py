"""An operator replays dead letters once their cause is fixed, and nothing is lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from fleet_telemetry.bootstrap import build
from greenpartners.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from servicekit import topics
from servicekit.runtime import ServiceRuntime
from tests.kafka_tools import produce, read_until, unique_namespace
from tests.test_fleet_telemetry_integration import sample
from tools.dlq import list_dead_letters, replay_dead_letters


@pytest.fixture
async def fleet(kafka: str, tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    runtime = build(
        kafka_bootstrap_servers=kafka,
        topic_namespace=unique_namespace(),
        database_url=f"sqlite+aiosqlite:///{tmp_path}/fleet.db",
        grpc_port=0,
        outbox_poll_interval_s=0.1,
    )
    await runtime.start()
    yield runtime
    await runtime.stop()


async def test_samples_of_an_unregistered_vehicle_count_once_it_is_registered(
    fleet: ServiceRuntime, kafka: str
) -> None:
    telemetry = fleet.topic(topics.TELEMETRY)
    dead_letters = fleet.topic(topics.dead_letter_topic(topics.TELEMETRY))
    # The telematics unit reports before the fleet manager registered the van.
    await produce(kafka, telemetry, "van-new", sample("van-new", "n1", 0, 500_000, 20_000))
    await produce(kafka, telemetry, "van-new", sample("van-new", "n2", 30, 512_000, 21_000))
    dead = await read_until(kafka, dead_letters, lambda r: len(r) >= 2)
    assert {r.headers["dlq-reason"] for r in dead} == {"unknown_vehicle"}
    assert await list_dead_letters(kafka, fleet.names, topics.TELEMETRY, "unknown_vehicle") == 2

    async with grpc.aio.insecure_channel(f"127.0.0.1:{fleet.grpc_port}") as channel:
        await fleet_pb2_grpc.FleetTelemetryServiceStub(channel).RegisterVehicle(
            fleet_pb2.RegisterVehicleRequest(
                vehicle=fleet_pb2.Vehicle(
                    vehicle_id="van-new",
                    owner_partner_id="aalborg-kommune",
                    municipality_id="aalborg-kommune",
                    fuel_type=fleet_pb2.FUEL_TYPE_DIESEL,
                    vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
                )
            )
        )

    assert await replay_dead_letters(kafka, fleet.names, topics.TELEMETRY, reason="") == 2
    activity = await read_until(
        kafka, fleet.topic(topics.ACTIVITY), lambda r: len(r) > 1, timeout_s=8
    )
    assert [
        (a.distance_m, a.fuel_used_ml)
        for a in map(fleet_pb2.VehicleActivity.FromString, (r.value for r in activity))
    ] == [(12_000, 1_000)]
    # The group remembers the replay: a second one sends nothing again.
    assert await replay_dead_letters(kafka, fleet.names, topics.TELEMETRY, reason="") == 0
