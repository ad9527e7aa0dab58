"""emissions-ledger against the real broker and its real gRPC server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from emissions_ledger.bootstrap import build
from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from greenpartners.lockers.v1 import lockers_pb2
from servicekit import topics
from servicekit.codec import to_timestamp
from servicekit.grpc_server import bad_request_field
from servicekit.runtime import ServiceRuntime
from tests.kafka_tools import eventually, produce, read_until, unique_namespace

AT = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


# Every test runs on a SQLite file and on PostgreSQL, what deployments use.
@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/ledger.db"
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture
async def ledger(kafka: str, database_url: str) -> AsyncIterator[ServiceRuntime]:
    runtime = build(
        kafka_bootstrap_servers=kafka,
        topic_namespace=unique_namespace(),
        database_url=database_url,
        grpc_port=0,
        outbox_poll_interval_s=0.1,
    )
    await runtime.start()
    yield runtime
    await runtime.stop()


def activity(
    event_id: str, fuel_type: int, fuel_ml: int = 0, energy_wh: int = 0
) -> fleet_pb2.VehicleActivity:
    return fleet_pb2.VehicleActivity(
        event_id=event_id,
        occurred_at=to_timestamp(AT),
        vehicle=fleet_pb2.Vehicle(
            vehicle_id=f"v-{event_id}",
            owner_partner_id="aalborg-kommune",
            municipality_id="aalborg-kommune",
            fuel_type=fuel_type,  # type: ignore[arg-type]
            vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
            covenant_subsector=fleet_pb2.COVENANT_SUBSECTOR_MUNICIPAL_FLEET,
        ),
        period_start=to_timestamp(AT),
        period_end=to_timestamp(AT),
        distance_m=10_000,
        fuel_used_ml=fuel_ml,
        energy_used_wh=energy_wh,
        source_sample_event_id=f"s-{event_id}",
    )


async def test_entries_inventory_redelivery_and_dead_letters(
    ledger: ServiceRuntime, kafka: str
) -> None:
    activity_topic = ledger.topic(topics.ACTIVITY)
    await produce(
        kafka, activity_topic, "v-a1", activity("a1", fleet_pb2.FUEL_TYPE_DIESEL, fuel_ml=12_345)
    )
    await produce(
        kafka,
        activity_topic,
        "v-a2",
        activity("a2", fleet_pb2.FUEL_TYPE_ELECTRIC, energy_wh=45_678),
    )
    # Not a VehicleActivity at all: dead-lettered, the stream moves on.
    await produce(
        kafka,
        activity_topic,
        "junk",
        b"\xff\xff not protobuf",
        {"event-type": "greenpartners.fleet.v1.VehicleActivity"},
    )
    # Redelivered a1: no second entry.
    await produce(
        kafka, activity_topic, "v-a1", activity("a1", fleet_pb2.FUEL_TYPE_DIESEL, fuel_ml=12_345)
    )
    collection = lockers_pb2.LockerEvent(
        event_id="c1",
        occurred_at=to_timestamp(AT),
        hub_id="molo-aalborg-01",
        municipality_id="aalborg-kommune",
        waste_collected=lockers_pb2.WasteCollected(
            collection_id="col-1",
            carrier_partner_id="homerunner",
            mass_g=2_000,
            carrier_extra_distance_m=500,
        ),
    )
    await produce(kafka, ledger.topic(topics.LOCKER_EVENTS), "molo-aalborg-01", collection)
    await produce(
        kafka, activity_topic, "v-a3", activity("a3", fleet_pb2.FUEL_TYPE_PETROL, fuel_ml=1_000)
    )

    diesel = Decimal("12.345") * Decimal("2.66")
    electric = Decimal("45.678") * Decimal("0.096")
    petrol = Decimal("1.000") * Decimal("2.32")
    avoided = (Decimal("14") * Decimal("0.08") - Decimal("0.5") * Decimal("0.08")) * Decimal("2.66")

    async with grpc.aio.insecure_channel(f"127.0.0.1:{ledger.grpc_port}") as channel:
        stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)

        async def inventory_complete() -> None:
            got = await stub.GetInventory(
                ledger_pb2.GetInventoryRequest(municipality_id="aalborg-kommune", year=2026)
            )
            assert got.entry_count == 4
            assert Decimal(got.emissions_kg_co2e) == diesel + electric + petrol
            assert Decimal(got.avoided_kg_co2e) == avoided

        await eventually(inventory_complete, timeout_s=45)

        entries = (
            await stub.ListEntries(
                ledger_pb2.ListEntriesRequest(municipality_id="aalborg-kommune", year=2026)
            )
        ).entries
        by_source = {entry.source_event_id: entry for entry in entries}
        assert by_source["a1"].emission_factor.value == "2.66"
        assert "Norwegian Environment Agency" in by_source["a1"].emission_factor.source
        assert by_source["a1"].activity_amount == "12.345"
        assert by_source["c1"].kind == ledger_pb2.ENTRY_KIND_AVOIDED_EMISSION
        assert by_source["c1"].avoided_trip.avoided_trip_distance_m == 14_000
        assert by_source["c1"].avoided_trip.carrier_extra_distance_m == 500

        # Pages follow posting order and add up to the whole list.
        query = {"municipality_id": "aalborg-kommune", "year": 2026}
        first = await stub.ListEntries(ledger_pb2.ListEntriesRequest(**query, page_size=3))
        assert len(first.entries) == 3 and first.next_page_token
        rest = await stub.ListEntries(
            ledger_pb2.ListEntriesRequest(**query, page_size=3, page_token=first.next_page_token)
        )
        assert (len(rest.entries), rest.next_page_token) == (1, "")
        assert [e.entry_id for e in [*first.entries, *rest.entries]] == [
            e.entry_id for e in entries
        ]
        with pytest.raises(grpc.aio.AioRpcError) as foreign_token:
            await stub.ListEntries(
                ledger_pb2.ListEntriesRequest(
                    municipality_id="aalborg-kommune", year=2025, page_token=first.next_page_token
                )
            )
        assert bad_request_field(foreign_token.value) == "page_token"

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetInventory(
                ledger_pb2.GetInventoryRequest(municipality_id="aalborg-kommune", year=12)
            )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_field(raised.value) == "year"

    dead = await read_until(
        kafka, ledger.topic(topics.dead_letter_topic(topics.ACTIVITY)), lambda r: len(r) >= 1
    )
    assert dead[0].headers["dlq-reason"] == "undecodable"
    assert dead[0].key == "junk"
    # Read past the expected four, so a duplicate posting would show.
    posted = await read_until(
        kafka, ledger.topic(topics.LEDGER_ENTRIES), lambda r: len(r) > 4, timeout_s=3
    )
    assert len(posted) == 4
    assert {r.key for r in posted} == {"aalborg-kommune"}
