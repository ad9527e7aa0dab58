"""fleet-telemetry against the real broker and its real gRPC server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from fleet_telemetry.bootstrap import build
from greenpartners.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from servicekit import topics
from servicekit.codec import to_timestamp
from servicekit.grpc_server import bad_request_field
from servicekit.runtime import ServiceRuntime
from tests.kafka_tools import eventually, produce, read_until, unique_namespace
from tools.dlq import list_dead_letters, replay_dead_letters

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


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


def sample(
    vehicle_id: str, event_id: str, minutes: int, odometer_m: int, fuel_ml: int
) -> fleet_pb2.TelemetrySample:
    return fleet_pb2.TelemetrySample(
        event_id=event_id,
        occurred_at=to_timestamp(START + timedelta(minutes=minutes)),
        vehicle_id=vehicle_id,
        odometer_m=odometer_m,
        fuel_used_ml=fuel_ml,
    )


async def test_samples_become_activity_and_bad_samples_are_dead_lettered(
    fleet: ServiceRuntime, kafka: str
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{fleet.grpc_port}") as channel:
        stub = fleet_pb2_grpc.FleetTelemetryServiceStub(channel)
        registered = await stub.RegisterVehicle(
            fleet_pb2.RegisterVehicleRequest(
                vehicle=fleet_pb2.Vehicle(
                    vehicle_id="van-7",
                    owner_partner_id="aalborg-kommune",
                    municipality_id="aalborg-kommune",
                    fuel_type=fleet_pb2.FUEL_TYPE_DIESEL,
                    vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
                )
            )
        )
        assert registered.vehicle.covenant_subsector == fleet_pb2.COVENANT_SUBSECTOR_MUNICIPAL_FLEET

        telemetry = fleet.topic(topics.TELEMETRY)
        await produce(kafka, telemetry, "van-7", sample("van-7", "s1", 0, 1_000_000, 500_000))
        await produce(kafka, telemetry, "van-7", sample("van-7", "s2", 30, 1_020_000, 501_700))
        # Odometer backwards: dead-lettered; the stream moves on to s4.
        await produce(kafka, telemetry, "van-7", sample("van-7", "s3", 40, 1_010_000, 501_800))
        await produce(kafka, telemetry, "van-7", sample("van-7", "s4", 60, 1_035_000, 503_000))
        # Redelivery of s2 changes nothing.
        await produce(kafka, telemetry, "van-7", sample("van-7", "s2", 30, 1_020_000, 501_700))

        records = await read_until(
            kafka, fleet.topic(topics.ACTIVITY), lambda r: len(r) > 2, timeout_s=5
        )
        activities = [fleet_pb2.VehicleActivity.FromString(r.value) for r in records]
        assert [(a.distance_m, a.fuel_used_ml) for a in activities] == [
            (20_000, 1_700),
            (15_000, 1_300),
        ]
        assert all(r.key == "van-7" for r in records)
        assert records[0].headers["event-type"] == "greenpartners.fleet.v1.VehicleActivity"

        dead = await read_until(
            kafka, fleet.topic(topics.dead_letter_topic(topics.TELEMETRY)), lambda r: len(r) >= 1
        )
        assert dead[0].headers["dlq-reason"] == "odometer_backwards"
        assert fleet_pb2.TelemetrySample.FromString(dead[0].value).event_id == "s3"

        async def totals_settled() -> None:
            got = await stub.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id="van-7"))
            assert (
                got.totals.distance_m,
                got.totals.fuel_used_ml,
                got.totals.activity_records,
            ) == (
                35_000,
                3_000,
                2,
            )

        await eventually(totals_settled)

        # Consumer lag is exported for Prometheus: nothing left behind once all is handled.
        lags = [
            point.value
            for metric in fleet.metrics.collect()
            if metric.name == "kafka_consumer_lag"
            for point in metric.samples
            if point.labels["topic"] == telemetry
        ]
        assert lags and all(lag == 0 for lag in lags)


async def test_register_vehicle_names_the_bad_field(fleet: ServiceRuntime) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{fleet.grpc_port}") as channel:
        stub = fleet_pb2_grpc.FleetTelemetryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.RegisterVehicle(
                fleet_pb2.RegisterVehicleRequest(
                    vehicle=fleet_pb2.Vehicle(
                        vehicle_id="van-8",
                        owner_partner_id="aalborg-kommune",
                        municipality_id="aalborg-kommune",
                        vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
                    )
                )
            )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_field(raised.value) == "vehicle.fuel_type"
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id="nope"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


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
