"""fleet-telemetry against the real broker and its real gRPC server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import text

from fleet_telemetry.adapters.events import sample_from_event
from fleet_telemetry.adapters.partners import FleetPartners
from fleet_telemetry.adapters.repository import FleetRepository
from fleet_telemetry.adapters.tables import (
    MIGRATIONS,
    v1_counter_readings,
    v1_vehicle_totals,
    v1_vehicles,
)
from fleet_telemetry.bootstrap import build
from fleet_telemetry.domain import (
    FuelType,
    Reading,
    TelemetrySample,
    VehicleClass,
    VehicleTotals,
    microseconds,
    window_length_us,
)
from fleet_telemetry.handlers import FleetHandlers, RegisterVehicle, SetVehicleBaseline
from greenpartners.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from greenpartners.registry.v1 import registry_pb2
from servicekit import topics
from servicekit.codec import to_timestamp
from servicekit.database import Database
from servicekit.grpc_server import bad_request_field
from servicekit.identity import OPERATOR, Principal
from servicekit.kafka import Delivered
from servicekit.partners import PartnerDirectory
from servicekit.runtime import ServiceRuntime
from tests.kafka_tools import Record, connection, eventually, produce, read_until, unique_namespace
from tests.registry_seed import publish_partner_changes, publish_registry_seed, seed_changelog
from tools.dlq import list_dead_letters, replay_dead_letters
from tools.pki import Pki

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
QUARTER = timedelta(minutes=15)


AN_OPERATOR = Principal(subject="operator:test", roles=frozenset({OPERATOR}))


@pytest.fixture
async def fleet(kafka: str, database_url: str) -> AsyncIterator[ServiceRuntime]:
    namespace = unique_namespace()
    await publish_registry_seed(kafka, namespace)
    runtime = build(
        kafka_bootstrap_servers=kafka,
        topic_namespace=namespace,
        database_url=database_url,
        grpc_port=0,
        outbox_poll_interval_s=0.1,
    )
    await runtime.start()
    yield runtime
    await runtime.stop()


@pytest.fixture
async def stub(
    fleet: ServiceRuntime, pki: Pki
) -> AsyncIterator[fleet_pb2_grpc.FleetTelemetryServiceStub]:
    async with pki.channel(f"127.0.0.1:{fleet.grpc_port}", OPERATOR) as channel:
        yield fleet_pb2_grpc.FleetTelemetryServiceStub(channel)


async def register(stub: fleet_pb2_grpc.FleetTelemetryServiceStub, vehicle_id: str) -> None:
    await stub.RegisterVehicle(
        fleet_pb2.RegisterVehicleRequest(
            vehicle=fleet_pb2.Vehicle(
                vehicle_id=vehicle_id,
                owner_partner_id="aalborg-kommune",
                municipality_id="aalborg-kommune",
                fuel_type=fleet_pb2.FUEL_TYPE_DIESEL,
                vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
            )
        )
    )


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


def activities(records: list[Record]) -> list[fleet_pb2.VehicleActivity]:
    return [fleet_pb2.VehicleActivity.FromString(record.value) for record in records]


def distance_reaches(metres: int) -> Callable[[list[Record]], bool]:
    return lambda records: sum(a.distance_m for a in activities(records)) >= metres


def by_window(
    found: list[fleet_pb2.VehicleActivity],
) -> dict[datetime, tuple[int, int, int]]:
    """(distance, fuel, samples) summed per activity window (the batches may split a window)."""
    sums: dict[datetime, tuple[int, int, int]] = {}
    for activity in found:
        start = activity.period_start.ToDatetime(tzinfo=UTC)
        window = START + (start - START) // QUARTER * QUARTER
        distance, fuel, count = sums.get(window, (0, 0, 0))
        sums[window] = (
            distance + activity.distance_m,
            fuel + activity.fuel_used_ml,
            count + activity.sample_count,
        )
        end = activity.period_end.ToDatetime(tzinfo=UTC)
        assert window <= start < end <= window + QUARTER
    return sums


def window(index: int) -> datetime:
    return START + index * QUARTER


async def test_samples_become_aggregated_activity_and_bad_samples_are_quarantined(
    fleet: ServiceRuntime, stub: fleet_pb2_grpc.FleetTelemetryServiceStub, kafka: str
) -> None:
    await register(stub, "van-7")
    telemetry = fleet.topic(topics.TELEMETRY)
    for event in (
        sample("van-7", "s1", 0, 1_000_000, 500_000),
        sample("van-7", "s2", 30, 1_020_000, 501_700),
        # Odometer backwards, and the next sample goes on from s2: a glitch, not a reset.
        sample("van-7", "s3", 40, 1_010_000, 501_800),
        sample("van-7", "s4", 60, 1_035_000, 503_000),
        # Redelivery of s2: late, changes nothing.
        sample("van-7", "s2", 30, 1_020_000, 501_700),
        # 100 km in a minute: implausible, dead-lettered.
        sample("van-7", "s5", 61, 1_135_000, 503_100),
    ):
        await produce(kafka, telemetry, "van-7", event)

    records = await read_until(
        kafka, fleet.topic(topics.ACTIVITY), distance_reaches(35_000), timeout_s=15
    )
    assert all(r.key == "van-7" for r in records)
    assert records[0].headers["event-type"] == "greenpartners.fleet.v1.VehicleActivity"
    found = activities(records)
    # Each 30-minute increment is apportioned to the two windows it covers.
    assert by_window(found) == {
        window(0): (10_000, 850, 1),
        window(1): (10_000, 850, 1),
        window(2): (7_500, 650, 1),
        window(3): (7_500, 650, 1),
    }
    assert [(a.first_sample_event_id, a.last_sample_event_id) for a in found] == [
        ("s2", "s2"),
        ("s2", "s2"),
        ("s4", "s4"),
        ("s4", "s4"),
    ]
    assert all(a.source_sample_event_id == a.last_sample_event_id for a in found)

    dead = await read_until(
        kafka, fleet.topic(topics.dead_letter_topic(topics.TELEMETRY)), lambda r: len(r) >= 1
    )
    assert [r.headers["dlq-reason"] for r in dead] == ["implausible_speed"]
    assert fleet_pb2.TelemetrySample.FromString(dead[0].value).event_id == "s5"

    quality = await read_until(kafka, fleet.topic(topics.QUALITY), lambda r: len(r) >= 1)
    [glitch] = [fleet_pb2.TelemetryQualityEvent.FromString(r.value) for r in quality]
    assert glitch.kind == fleet_pb2.QUALITY_EVENT_KIND_COUNTER_GLITCH
    assert (glitch.vehicle_id, glitch.sample_event_id) == ("van-7", "s3")
    assert glitch.previous_baseline.sample_event_id == "s2"

    async def totals_settled() -> None:
        got = await stub.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id="van-7"))
        totals = got.totals
        assert (totals.distance_m, totals.fuel_used_ml, totals.activity_records) == (
            35_000,
            3_000,
            len(found),
        )
        # Accepted s1, s2, s4; late: the resent s2; quarantined: the glitch s3 and s5.
        assert (
            totals.samples_accepted,
            totals.samples_late,
            totals.samples_quarantined,
            totals.counter_resets,
        ) == (3, 1, 2, 0)
        assert got.baseline.sample_event_id == "s4"
        assert (got.baseline.odometer_m, got.baseline.fuel_used_ml) == (1_035_000, 503_000)
        assert not got.HasField("pending_reset")

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
    outcomes = {
        point.labels["outcome"]: point.value
        for metric in fleet.metrics.collect()
        if metric.name == "fleet_telemetry_samples"
        for point in metric.samples
        if point.name == "fleet_telemetry_samples_total"
    }
    assert outcomes == {"accepted": 3, "late": 1, "quarantined": 2}


async def test_samples_within_a_window_are_summed(
    fleet: ServiceRuntime, stub: fleet_pb2_grpc.FleetTelemetryServiceStub, kafka: str
) -> None:
    await register(stub, "van-9")
    telemetry = fleet.topic(topics.TELEMETRY)
    # One sample a minute for 20 minutes, 600 m and 60 ml each.
    for minute in range(21):
        await produce(
            kafka,
            telemetry,
            "van-9",
            sample("van-9", f"m{minute}", minute, 500_000 + 600 * minute, 9_000 + 60 * minute),
        )
    records = await read_until(
        kafka, fleet.topic(topics.ACTIVITY), distance_reaches(12_000), timeout_s=15
    )
    found = activities(records)
    assert by_window(found) == {window(0): (9_000, 900, 15), window(1): (3_000, 300, 5)}
    assert found[0].first_sample_event_id == "m1"
    assert found[-1].last_sample_event_id == "m20"


async def test_a_unit_swap_mid_stream_counts_everything_after_it(
    fleet: ServiceRuntime, stub: fleet_pb2_grpc.FleetTelemetryServiceStub, kafka: str
) -> None:
    await register(stub, "refuse-3")
    telemetry = fleet.topic(topics.TELEMETRY)
    for event in (
        sample("refuse-3", "a1", 0, 1_000_000, 500_000),
        sample("refuse-3", "a2", 10, 1_010_000, 501_000),
        # The telematics unit is replaced: its counters start near zero.
        sample("refuse-3", "b1", 20, 1_000, 100),
        sample("refuse-3", "b2", 30, 16_000, 1_400),
        sample("refuse-3", "b3", 40, 26_000, 2_200),
    ):
        await produce(kafka, telemetry, "refuse-3", event)

    records = await read_until(
        kafka, fleet.topic(topics.ACTIVITY), distance_reaches(35_000), timeout_s=15
    )
    found = activities(records)
    assert sum(a.distance_m for a in found) == 35_000
    assert sum(a.fuel_used_ml for a in found) == 1_000 + 1_300 + 800

    quality = await read_until(kafka, fleet.topic(topics.QUALITY), lambda r: len(r) >= 1)
    [reset] = [fleet_pb2.TelemetryQualityEvent.FromString(r.value) for r in quality]
    assert reset.kind == fleet_pb2.QUALITY_EVENT_KIND_COUNTER_RESET
    assert reset.sample_event_id == "b1"
    assert (reset.previous_baseline.odometer_m, reset.new_baseline.odometer_m) == (1_010_000, 1_000)

    async def totals_settled() -> None:
        got = await stub.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id="refuse-3"))
        assert (got.totals.distance_m, got.totals.fuel_used_ml) == (35_000, 3_100)
        assert (got.totals.samples_accepted, got.totals.counter_resets) == (5, 1)
        assert got.baseline.sample_event_id == "b3"

    await eventually(totals_settled)


async def test_set_vehicle_baseline_then_a_replay_recovers_rejected_samples(
    fleet: ServiceRuntime, stub: fleet_pb2_grpc.FleetTelemetryServiceStub, kafka: str, pki: Pki
) -> None:
    await register(stub, "van-12")
    telemetry = fleet.topic(topics.TELEMETRY)
    for event in (
        sample("van-12", "a1", 0, 1_000_000, 500_000),
        sample("van-12", "a2", 10, 1_010_000, 501_000),
        # A replacement unit whose odometer starts far ahead: every sample looks implausibly
        # fast against the old baseline, so each is dead-lettered.
        sample("van-12", "c1", 20, 5_000_000, 900_000),
        sample("van-12", "c2", 30, 5_015_000, 901_300),
        sample("van-12", "c3", 40, 5_025_000, 902_000),
    ):
        await produce(kafka, telemetry, "van-12", event)
    dead_letters = fleet.topic(topics.dead_letter_topic(topics.TELEMETRY))
    dead = await read_until(kafka, dead_letters, lambda r: len(r) >= 3)
    assert {r.headers["dlq-reason"] for r in dead} == {"implausible_speed"}

    # The fleet's own manager sets it; the audit trail names the token's subject.
    manager = ("fleet-manager", "aalborg-kommune", "fleet-manager@aalborg.dk")
    async with pki.channel(f"127.0.0.1:{fleet.grpc_port}", *manager) as channel:
        corrected = await fleet_pb2_grpc.FleetTelemetryServiceStub(channel).SetVehicleBaseline(
            fleet_pb2.SetVehicleBaselineRequest(
                vehicle_id="van-12",
                baseline=fleet_pb2.CounterReading(
                    occurred_at=to_timestamp(START + timedelta(minutes=20)),
                    odometer_m=5_000_000,
                    fuel_used_ml=900_000,
                ),
                reason="telematics unit replaced in the workshop",
            )
        )
    assert corrected.previous_baseline.sample_event_id == "a2"
    assert (corrected.baseline.odometer_m, corrected.baseline.sample_event_id) == (5_000_000, "")

    quality = await read_until(kafka, fleet.topic(topics.QUALITY), lambda r: len(r) >= 1)
    [baseline_set] = [fleet_pb2.TelemetryQualityEvent.FromString(r.value) for r in quality]
    assert baseline_set.kind == fleet_pb2.QUALITY_EVENT_KIND_BASELINE_SET
    assert baseline_set.new_baseline.fuel_used_ml == 900_000
    assert "fleet-manager@aalborg.dk" in baseline_set.detail

    async with fleet.unit_of_work.read() as session:
        [audit] = await FleetRepository(session).corrections("van-12")
    assert (audit.requested_by, audit.previous_event_id, audit.new_odometer_m) == (
        "fleet-manager@aalborg.dk",
        "a2",
        5_000_000,
    )
    assert audit.reason == "telematics unit replaced in the workshop"

    assert (
        await replay_dead_letters(
            connection(kafka), fleet.names, topics.TELEMETRY, "implausible_speed"
        )
        == 3
    )

    async def recovered() -> None:
        got = await stub.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id="van-12"))
        # 10 km before the swap, 25 km after it; c1 is the operator's baseline itself.
        assert (got.totals.distance_m, got.totals.fuel_used_ml) == (35_000, 3_000)
        assert (
            got.totals.samples_accepted,
            got.totals.samples_late,
            got.totals.samples_quarantined,
        ) == (4, 1, 3)
        assert got.baseline.sample_event_id == "c3"

    await eventually(recovered)
    records = await read_until(kafka, fleet.topic(topics.ACTIVITY), distance_reaches(35_000))
    assert sum(a.fuel_used_ml for a in activities(records)) == 3_000


async def test_bad_requests_name_the_field(
    fleet: ServiceRuntime, stub: fleet_pb2_grpc.FleetTelemetryServiceStub
) -> None:
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

    await register(stub, "van-8")
    good = fleet_pb2.SetVehicleBaselineRequest(
        vehicle_id="van-8",
        baseline=fleet_pb2.CounterReading(
            occurred_at=to_timestamp(START), odometer_m=10, fuel_used_ml=5
        ),
        reason="unit replaced",
    )
    bad_requests: list[tuple[str, fleet_pb2.SetVehicleBaselineRequest]] = []
    for field, change in (
        ("reason", lambda r: r.ClearField("reason")),
        ("baseline.occurred_at", lambda r: r.baseline.ClearField("occurred_at")),
        ("baseline.odometer_m", lambda r: setattr(r.baseline, "odometer_m", -1)),
        ("baseline.fuel_used_ml", lambda r: r.baseline.ClearField("fuel_used_ml")),
        ("baseline.energy_used_wh", lambda r: setattr(r.baseline, "energy_used_wh", -2)),
    ):
        request = fleet_pb2.SetVehicleBaselineRequest()
        request.CopyFrom(good)
        change(request)
        bad_requests.append((field, request))
    for field, request in bad_requests:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SetVehicleBaseline(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert bad_request_field(refused.value) == field
    unknown = fleet_pb2.SetVehicleBaselineRequest()
    unknown.CopyFrom(good)
    unknown.vehicle_id = "nope"
    with pytest.raises(grpc.aio.AioRpcError) as not_found:
        await stub.SetVehicleBaseline(unknown)
    assert not_found.value.code() == grpc.StatusCode.NOT_FOUND

    # Nothing of the refused calls stayed behind.
    got = await stub.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id="van-8"))
    assert not got.HasField("baseline")
    async with fleet.unit_of_work.read() as session:
        assert await FleetRepository(session).corrections("van-8") == []


def vehicle_of(
    vehicle_id: str,
    owner: str,
    municipality: str = "aalborg-kommune",
    subsector: fleet_pb2.CovenantSubsector.ValueType = fleet_pb2.COVENANT_SUBSECTOR_UNSPECIFIED,
) -> fleet_pb2.Vehicle:
    return fleet_pb2.Vehicle(
        vehicle_id=vehicle_id,
        owner_partner_id=owner,
        municipality_id=municipality,
        fuel_type=fleet_pb2.FUEL_TYPE_DIESEL,
        vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
        covenant_subsector=subsector,
    )


async def test_the_registry_decides_owners_municipalities_and_subsectors(
    fleet: ServiceRuntime, stub: fleet_pb2_grpc.FleetTelemetryServiceStub, kafka: str
) -> None:
    refused = [
        (vehicle_of("van-x", "aalborg-komune"), "vehicle.owner_partner_id"),
        (vehicle_of("van-x", "aalborg-kommune", "aalborg-komune"), "vehicle.municipality_id"),
        # A partner the registry knows, but not a municipality.
        (vehicle_of("van-x", "nordvaerk", "homerunner"), "vehicle.municipality_id"),
    ]
    for vehicle, field in refused:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.RegisterVehicle(fleet_pb2.RegisterVehicleRequest(vehicle=vehicle))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert bad_request_field(raised.value) == field
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id="van-x"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    # Nordværk is a company in the registry: a contractor, private and commercial transport,
    # unless the registration chose otherwise.
    await stub.RegisterVehicle(
        fleet_pb2.RegisterVehicleRequest(vehicle=vehicle_of("nv-1", "nordvaerk"))
    )
    chosen = vehicle_of("nv-2", "nordvaerk", subsector=fleet_pb2.COVENANT_SUBSECTOR_MUNICIPAL_FLEET)
    await stub.RegisterVehicle(fleet_pb2.RegisterVehicleRequest(vehicle=chosen))
    telemetry = fleet.topic(topics.TELEMETRY)
    await produce(kafka, telemetry, "nv-1", sample("nv-1", "a1", 0, 100_000, 1_000))
    await produce(kafka, telemetry, "nv-1", sample("nv-1", "a2", 5, 103_000, 1_300))
    before = activities(
        await read_until(kafka, fleet.topic(topics.ACTIVITY), distance_reaches(3_000))
    )
    assert {a.vehicle.covenant_subsector for a in before} == {
        fleet_pb2.COVENANT_SUBSECTOR_PRIVATE_COMMERCIAL_TRANSPORT
    }

    # The registry says Nordværk runs public transport now: its vehicles follow from then on.
    (nordvaerk,) = [event for key, event in seed_changelog() if key == "nordvaerk"]
    nordvaerk.partner.kind = registry_pb2.ORGANISATION_KIND_PUBLIC_TRANSPORT_OPERATOR
    nordvaerk.partner.revision = 2
    await publish_partner_changes(kafka, fleet.names.namespace, [("nordvaerk", nordvaerk)])

    async def reclassified() -> None:
        got = await stub.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id="nv-1"))
        assert got.vehicle.covenant_subsector == fleet_pb2.COVENANT_SUBSECTOR_PUBLIC_TRANSPORT

    await eventually(reclassified, timeout_s=30)
    kept = await stub.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id="nv-2"))
    assert kept.vehicle.covenant_subsector == fleet_pb2.COVENANT_SUBSECTOR_MUNICIPAL_FLEET

    await produce(kafka, telemetry, "nv-1", sample("nv-1", "a3", 20, 107_000, 1_700))
    records = await read_until(kafka, fleet.topic(topics.ACTIVITY), distance_reaches(7_000))
    published = activities(records)
    # What was published before the change keeps its sub-sector; what came after has the new.
    assert published[: len(before)] == before
    assert {a.vehicle.covenant_subsector for a in published[len(before) :]} == {
        fleet_pb2.COVENANT_SUBSECTOR_PUBLIC_TRANSPORT
    }

    # Deleted from the registry: no new vehicles for it; those it has stay as they are.
    await publish_partner_changes(kafka, fleet.names.namespace, [("nordvaerk", None)])

    # Waited for in the read model itself: a registration tried before the deletion arrived
    # would succeed, and its repetition is then a harmless no-op.
    async def deleted() -> None:
        async with fleet.database.read() as session:
            assert await fleet.read_models[0].get(session, "nordvaerk") is None

    await eventually(deleted, timeout_s=30)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.RegisterVehicle(
            fleet_pb2.RegisterVehicleRequest(vehicle=vehicle_of("nv-3", "nordvaerk"))
        )
    assert bad_request_field(refused.value) == "vehicle.owner_partner_id"
    await stub.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id="nv-1"))


async def test_samples_of_an_unregistered_vehicle_count_once_it_is_registered(
    fleet: ServiceRuntime, stub: fleet_pb2_grpc.FleetTelemetryServiceStub, kafka: str
) -> None:
    telemetry = fleet.topic(topics.TELEMETRY)
    dead_letters = fleet.topic(topics.dead_letter_topic(topics.TELEMETRY))
    # The telematics unit reports before the fleet manager registered the van.
    await produce(kafka, telemetry, "van-new", sample("van-new", "n1", 0, 500_000, 20_000))
    await produce(kafka, telemetry, "van-new", sample("van-new", "n2", 30, 512_000, 21_000))
    dead = await read_until(kafka, dead_letters, lambda r: len(r) >= 2)
    assert {r.headers["dlq-reason"] for r in dead} == {"unknown_vehicle"}
    assert (
        await list_dead_letters(connection(kafka), fleet.names, topics.TELEMETRY, "unknown_vehicle")
        == 2
    )

    await register(stub, "van-new")
    assert (
        await replay_dead_letters(connection(kafka), fleet.names, topics.TELEMETRY, reason="") == 2
    )
    records = await read_until(
        kafka, fleet.topic(topics.ACTIVITY), distance_reaches(12_000), timeout_s=15
    )
    assert by_window(activities(records)) == {
        window(0): (6_000, 500, 1),
        window(1): (6_000, 500, 1),
    }
    # The group remembers the replay: a second one sends nothing again.
    assert (
        await replay_dead_letters(connection(kafka), fleet.names, topics.TELEMETRY, reason="") == 0
    )


async def test_upgrade_moves_readings_and_totals_into_vehicle_state(database_url: str) -> None:
    database = Database(database_url)
    try:
        await database.migrate(MIGRATIONS[:1])
        read_at = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
        async with database.transaction() as session:
            # van-2 is a contractor's with the municipal fleet chosen for it.
            for vehicle_id, owner in (("van-1", "aalborg-kommune"), ("van-2", "nordvaerk")):
                await session.execute(
                    v1_vehicles.insert().values(
                        vehicle_id=vehicle_id,
                        owner_partner_id=owner,
                        municipality_id="aalborg-kommune",
                        fuel_type="diesel",
                        vehicle_class="van",
                        covenant_subsector="municipal_fleet",
                        registration_plate="",
                    )
                )
            await session.execute(
                v1_counter_readings.insert().values(
                    vehicle_id="van-1",
                    event_id="s9",
                    occurred_at=read_at,
                    odometer_m=1_234_000,
                    fuel_used_ml=98_000,
                    energy_used_wh=None,
                )
            )
            await session.execute(
                v1_vehicle_totals.insert(),
                [
                    {
                        "vehicle_id": "van-1",
                        "distance_m": 34_000,
                        "fuel_used_ml": 3_100,
                        "energy_used_wh": 0,
                        "activity_records": 8,
                    },
                    {
                        "vehicle_id": "van-2",
                        "distance_m": 0,
                        "fuel_used_ml": 0,
                        "energy_used_wh": 0,
                        "activity_records": 0,
                    },
                ],
            )

        await database.migrate(MIGRATIONS)

        async with database.read() as session:
            repository = FleetRepository(session)
            van_1 = await repository.state("van-1")
            van_2 = await repository.state("van-2")
            tables = await session.run_sync(
                lambda sync: set(
                    sync.execute(
                        text(
                            "SELECT name FROM sqlite_master WHERE type = 'table'"
                            if database.is_sqlite
                            else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                        )
                    ).scalars()
                )
            )
        assert van_1 is not None and van_2 is not None
        assert van_1.baseline == Reading(microseconds(read_at) or 0, 1_234_000, 98_000, None, "s9")
        assert van_1.totals == VehicleTotals(
            distance_m=34_000,
            fuel_used_ml=3_100,
            activity_records=8,
            samples_accepted=9,
        )
        assert (van_1.revision, van_1.position, van_1.pending_reset) == (1, None, None)
        assert (van_2.baseline, van_2.totals) == (None, VehicleTotals())
        # A sub-sector that was the default of the time follows the registry from now on; one
        # that differed from it was chosen, and stays.
        assert not van_1.vehicle.subsector_assigned
        assert van_2.vehicle.subsector_assigned
        assert not {"counter_readings", "vehicle_totals"} & tables
        assert {"vehicle_state", "baseline_corrections"} <= tables
    finally:
        await database.dispose()


class Instance:
    """One fleet-telemetry instance's handlers on a shared database, driven batch by batch as
    its consumer would (no broker: the order of batches is the test's)."""

    def __init__(self, database_url: str, kafka: str = "", namespace: str = "") -> None:
        self.runtime = build(
            database_url=database_url,
            grpc_port=0,
            kafka_bootstrap_servers=kafka or "127.0.0.1:9092",
            topic_namespace=namespace,
        )
        # The instances share a database, and with it the partners' read model.
        (self.partners,) = self.runtime.read_models
        self.handlers = FleetHandlers(
            self.runtime.unit_of_work,
            self.runtime.names,
            FleetPartners(PartnerDirectory(self.partners)),
            window_length_us(15),
        )

    async def read_partners(self) -> None:
        await self.partners.start()
        await self.partners.wait_caught_up()

    async def handle(self, batch: list[Delivered[TelemetrySample]]) -> list[str]:
        async with self.runtime.unit_of_work.batch():
            rejections = await self.handlers.record_samples(batch)
        return [rejection.reason for rejection in rejections]

    async def totals(self, vehicle_id: str) -> VehicleTotals:
        return (await self.handlers.get_vehicle(vehicle_id, AN_OPERATOR)).totals

    async def close(self) -> None:
        await self.partners.stop()
        await self.runtime.producer.stop()
        await self.runtime.database.dispose()


def delivered(
    partition: int, offset: int, event: fleet_pb2.TelemetrySample
) -> Delivered[TelemetrySample]:
    """The sample as the service's consumer hands it over: converted, with its position."""
    return Delivered(sample_from_event(event), partition, offset)


async def test_cached_states_follow_the_database(database_url: str, kafka: str) -> None:
    namespace = unique_namespace()
    await publish_registry_seed(kafka, namespace)
    first, second = Instance(database_url, kafka, namespace), Instance(database_url)
    await first.runtime.database.migrate(MIGRATIONS)
    try:
        await first.read_partners()
        for vehicle_id in ("van-1", "van-2"):
            await first.handlers.register_vehicle(
                RegisterVehicle(
                    vehicle_id=vehicle_id,
                    owner_partner_id="aalborg-kommune",
                    municipality_id="aalborg-kommune",
                    fuel_type=FuelType.DIESEL,
                    vehicle_class=VehicleClass.VAN,
                    covenant_subsector=None,
                    registration_plate="",
                ),
                AN_OPERATOR,
            )
        stream = [
            delivered(4, offset, sample("van-1", f"s{offset}", 5 * offset, 1_000 * offset, offset))
            for offset in range(12)
        ]
        assert await first.handle(stream[0:3]) == []
        # The partition moves to the second instance, then back: the first one's cache is
        # stale by then, and the stored position tells it so.
        assert await second.handle(stream[3:5]) == []
        assert await first.handle(stream[5:7]) == []
        moved_back = await first.totals("van-1")
        assert (moved_back.distance_m, moved_back.samples_accepted) == (6_000, 7)

        # A batch redelivered after its effect committed changes nothing.
        assert await second.handle(stream[3:7]) == []
        assert (await second.totals("van-1")).distance_m == 6_000

        # A batch whose transaction rolls back leaves the cache ahead of the database; the
        # batch comes again and counts once.
        with pytest.raises(RuntimeError):
            async with first.runtime.unit_of_work.batch():
                await first.handlers.record_samples(stream[7:9])
                raise RuntimeError("crash before the commit")
        assert (await first.totals("van-1")).distance_m == 6_000
        assert await first.handle(stream[7:9]) == []
        assert (await first.totals("van-1")).distance_m == 8_000

        # The operator corrects the baseline through the other instance: the first sees it.
        await second.handlers.set_vehicle_baseline(
            SetVehicleBaseline(
                vehicle_id="van-1",
                occurred_at_us=microseconds(START + timedelta(minutes=50)),
                odometer_m=9_500,
                fuel_used_ml=9,
                energy_used_wh=None,
                reason="odometer calibrated",
            ),
            AN_OPERATOR,
        )
        assert await first.handle(stream[9:12]) == []
        totals = await first.totals("van-1")
        # s9 (at 45 minutes) and s10 (at the new baseline's time) are late; s11 counts 1.5 km.
        assert (totals.distance_m, totals.samples_late) == (9_500, 2)

        # Unknown vehicles are rejected; registered ones in the same batch are not held up.
        assert await first.handle(
            [
                delivered(1, 0, sample("ghost", "g1", 0, 10, 1)),
                delivered(1, 1, sample("van-2", "v1", 0, 10, 1)),
            ]
        ) == ["unknown_vehicle"]

        # On assignment, an instance preloads the states last seen in its new partitions.
        fresh = Instance(database_url)
        await fresh.handlers.partitions_assigned({4})
        assert len(fresh.handlers.states) == 1
        await fresh.handlers.partitions_revoked({4})
        assert len(fresh.handlers.states) == 0
        await fresh.close()
    finally:
        await first.close()
        await second.close()
