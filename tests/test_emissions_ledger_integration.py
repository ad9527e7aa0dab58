"""emissions-ledger against the real broker, its real gRPC server on loopback and real databases."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from emissions_ledger.adapters.data_files import load_factor_catalogue
from emissions_ledger.adapters.repository import LedgerRepository
from emissions_ledger.adapters.tables import MIGRATIONS
from emissions_ledger.bootstrap import build
from emissions_ledger.domain import (
    FuelType,
    LedgerEntry,
    SampleProvenance,
    Subsector,
    VehicleActivity,
    entry_for_activity,
    increments_per_line,
    summarise,
)
from emissions_ledger.entrypoints.subscribers import ACTIVITY_GROUP, LOCKER_GROUP
from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from greenpartners.lockers.v1 import lockers_pb2
from servicekit import topics
from servicekit.codec import to_timestamp
from servicekit.database import Database
from servicekit.grpc_server import bad_request_field
from servicekit.identity import OPERATOR
from servicekit.topics import ensure_topics
from tests.kafka_tools import connection, eventually, produce, read_until, unique_namespace
from tests.ledger_events import vehicle_activity
from tests.registry_seed import publish_registry_seed
from tools.pki import Pki

AALBORG = "aalborg-kommune"
AT = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def activity(
    event_id: str,
    fuel_type: int,
    fuel_ml: int = 0,
    energy_wh: int = 0,
    at: datetime = AT,
    sample_count: int = 0,
) -> fleet_pb2.VehicleActivity:
    return vehicle_activity(
        event_id,
        fuel_type,
        at,
        fuel_used_ml=fuel_ml,
        energy_used_wh=energy_wh,
        sample_count=sample_count,
    )


def locker_event(event_id: str, **kind: Any) -> lockers_pb2.LockerEvent:
    return lockers_pb2.LockerEvent(
        event_id=event_id,
        occurred_at=to_timestamp(AT),
        hub_id="molo-aalborg-01",
        municipality_id=AALBORG,
        **kind,
    )


@contextlib.asynccontextmanager
async def group_offsets(
    servers: str, group: str, topic: str, partitions: int = 3
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A client of the group's committed offsets that does not join the group."""
    consumer = AIOKafkaConsumer(**connection(servers), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, partition) for partition in range(partitions)]
        consumer.assign(assigned)
        yield consumer, assigned
    finally:
        await consumer.stop()


async def rewind_group(servers: str, group: str, topic: str) -> None:
    """Commits offset 0 for the group: what a crash after the effect, before the offset commit,
    leaves behind, for every batch at once."""
    async with group_offsets(servers, group, topic) as (consumer, partitions):
        await consumer.commit(dict.fromkeys(partitions, 0))


async def caught_up(servers: str, group: str, topic: str) -> None:
    async with group_offsets(servers, group, topic) as (consumer, partitions):
        ends = await consumer.end_offsets(partitions)
        for partition in partitions:
            assert (await consumer.committed(partition) or 0) == ends[partition]


async def test_batches_post_each_entry_once_and_dead_letter_what_cannot_be_accounted(
    kafka: str, database_url: str, pki: Pki
) -> None:
    settings: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka,
        "topic_namespace": unique_namespace(),
        "database_url": database_url,
        "grpc_port": 0,
        "outbox_poll_interval_s": 0.1,
    }
    ledger = build(**settings)
    await ensure_topics(connection(kafka), ledger.names.all_specs())
    # The municipalities the ledger keeps inventories for come from the registry's changelog.
    await publish_registry_seed(kafka, settings["topic_namespace"])
    activity_topic = ledger.topic(topics.ACTIVITY)
    locker_topic = ledger.topic(topics.LOCKER_EVENTS)
    # A backlog before the ledger starts, so that its first batches hold many events,
    # a duplicate among them.
    backlog: list[tuple[str, str, Any, dict[str, str] | None]] = [
        (
            activity_topic,
            "v-a1",
            activity("a1", fleet_pb2.FUEL_TYPE_DIESEL, 12_345, 0, AT, 30),
            None,
        ),
        (
            activity_topic,
            "v-a2",
            activity("a2", fleet_pb2.FUEL_TYPE_ELECTRIC, energy_wh=45_678),
            None,
        ),
        (
            activity_topic,
            "junk",
            b"\xff\xff not protobuf",
            {"event-type": "greenpartners.fleet.v1.VehicleActivity"},
        ),
        (
            activity_topic,
            "v-a1",
            activity("a1", fleet_pb2.FUEL_TYPE_DIESEL, 12_345, 0, AT, 30),
            None,
        ),
        # No electricity mix published for 2010 or any year before it: no emission factor.
        (
            activity_topic,
            "v-old",
            activity(
                "old", fleet_pb2.FUEL_TYPE_ELECTRIC, energy_wh=1_000, at=AT.replace(year=2010)
            ),
            None,
        ),
        (activity_topic, "v-gas", activity("gas", fleet_pb2.FUEL_TYPE_NATURAL_GAS, 5_000), None),
        (activity_topic, "v-nofuel", activity("nofuel", fleet_pb2.FUEL_TYPE_UNSPECIFIED), None),
        (
            locker_topic,
            "molo-aalborg-01",
            locker_event(
                "d1",
                waste_deposited=lockers_pb2.WasteDeposited(
                    deposit_id="dep-1",
                    waste_type=lockers_pb2.WASTE_TYPE_BATTERIES,
                    hazardous=True,
                    mass_g=2_000,
                ),
            ),
            None,
        ),
        (
            locker_topic,
            "molo-aalborg-01",
            locker_event(
                "c1",
                waste_collected=lockers_pb2.WasteCollected(
                    collection_id="col-1",
                    carrier_partner_id="homerunner",
                    deposit_ids=["dep-1"],
                    mass_g=2_000,
                    carrier_extra_distance_m=500,
                    includes_hazardous=True,
                ),
            ),
            None,
        ),
        (activity_topic, "v-a3", activity("a3", fleet_pb2.FUEL_TYPE_PETROL, 1_000), None),
    ]
    for topic, key, message, headers in backlog:
        await produce(kafka, topic, key, message, headers)

    diesel = Decimal("12.345") * Decimal("2.66")
    electric = Decimal("45.678") * Decimal("0.096")
    petrol = Decimal("1.000") * Decimal("2.32")
    # The collection: a 14 km trip not driven and the carrier's 0.5 km detour, at 8 l/100 km.
    avoided = Decimal("14") * Decimal("0.08") * Decimal("2.66")
    detour = Decimal("0.5") * Decimal("0.08") * Decimal("2.66")
    later = Decimal("0.777") * Decimal("2.66")

    await ledger.start()
    try:
        async with pki.channel(f"127.0.0.1:{ledger.grpc_port}", OPERATOR) as channel:
            stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)

            async def inventory_complete() -> None:
                got = await stub.GetInventory(
                    ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=2026)
                )
                assert got.entry_count == 5
                assert Decimal(got.emissions_kg_co2e) == diesel + electric + petrol + detour
                assert Decimal(got.avoided_kg_co2e) == avoided

            await eventually(inventory_complete, timeout_s=45)

            entries = (
                await stub.ListEntries(
                    ledger_pb2.ListEntriesRequest(municipality_id=AALBORG, year=2026)
                )
            ).entries
            by_key = {(entry.source_event_id, entry.kind): entry for entry in entries}
            emission = ledger_pb2.ENTRY_KIND_EMISSION
            avoided_kind = ledger_pb2.ENTRY_KIND_AVOIDED_EMISSION
            assert set(by_key) == {
                ("a1", emission),
                ("a2", emission),
                ("a3", emission),
                ("c1", avoided_kind),
                ("c1", emission),
            }
            # The collection's avoided trip stands for it; its detour is looked at apart.
            detour_entry = by_key.pop(("c1", emission))
            by_source = {source: entry for (source, _), entry in by_key.items()}
            assert by_source["a1"].emission_factor.value == "2.66"
            assert "Norwegian Environment Agency" in by_source["a1"].emission_factor.source
            assert by_source["a1"].activity_amount == "12.345"
            assert by_source["c1"].kind == ledger_pb2.ENTRY_KIND_AVOIDED_EMISSION
            assert by_source["c1"].avoided_trip.avoided_trip_distance_m == 14_000
            assert by_source["c1"].avoided_trip.carrier_extra_distance_m == 500
            # Both sides of the collection, modelled, with what was collected and by whom.
            for side in (by_source["c1"], detour_entry):
                assert side.basis == ledger_pb2.BASIS_MODELLED
                assert side.collection == ledger_pb2.CollectionProvenance(
                    collection_id="col-1",
                    carrier_partner_id="homerunner",
                    hub_id="molo-aalborg-01",
                    mass_g=2_000,
                    includes_hazardous=True,
                    waste_types=["batteries"],
                    deposit_count=1,
                )
            assert (detour_entry.activity_amount, detour_entry.kg_co2e) == ("0.04", "0.1064")
            assert by_source["a1"].basis == ledger_pb2.BASIS_METERED
            # Every inventory line lists the entries behind it.
            inventory = await stub.GetInventory(
                ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=2026)
            )
            for line in inventory.lines:
                behind = await stub.ListEntries(
                    ledger_pb2.ListEntriesRequest(
                        municipality_id=AALBORG,
                        year=2026,
                        line=ledger_pb2.InventoryLineKey(
                            sector=line.sector,
                            subsector=line.subsector,
                            energy_carrier=line.energy_carrier,
                            kind=line.kind,
                            activity_unit=line.activity_unit,
                            basis=line.basis,
                        ),
                    )
                )
                assert len(behind.entries) == line.entry_count
                assert sum(Decimal(e.kg_co2e) for e in behind.entries) == Decimal(line.kg_co2e)
            assert len(inventory.lines) == 5
            # The samples behind an aggregated activity's entry, on the wire too.
            assert by_source["a1"].samples == ledger_pb2.SampleProvenance(
                sample_count=30, first_sample_event_id="s-a1-1", last_sample_event_id="s-a1-30"
            )
            assert not by_source["c1"].HasField("samples")

            # Pages follow posting order and add up to the whole list.
            query = {"municipality_id": AALBORG, "year": 2026}
            first = await stub.ListEntries(ledger_pb2.ListEntriesRequest(**query, page_size=3))
            assert len(first.entries) == 3 and first.next_page_token
            rest = await stub.ListEntries(
                ledger_pb2.ListEntriesRequest(
                    **query, page_size=3, page_token=first.next_page_token
                )
            )
            assert (len(rest.entries), rest.next_page_token) == (2, "")
            assert [e.entry_id for e in [*first.entries, *rest.entries]] == [
                e.entry_id for e in entries
            ]
            with pytest.raises(grpc.aio.AioRpcError) as foreign_token:
                await stub.ListEntries(
                    ledger_pb2.ListEntriesRequest(
                        municipality_id=AALBORG, year=2025, page_token=first.next_page_token
                    )
                )
            assert bad_request_field(foreign_token.value) == "page_token"

            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.GetInventory(
                    ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=12)
                )
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert bad_request_field(raised.value) == "year"

            # A municipality the registry does not know has no inventory, rather than an
            # empty one; a partner that is not a municipality neither.
            for unknown in ("aalborg-komune", "homerunner"):
                for call in (
                    stub.GetInventory(
                        ledger_pb2.GetInventoryRequest(municipality_id=unknown, year=2026)
                    ),
                    stub.ListEntries(
                        ledger_pb2.ListEntriesRequest(municipality_id=unknown, year=2026)
                    ),
                ):
                    with pytest.raises(grpc.aio.AioRpcError) as not_found:
                        await call
                    assert not_found.value.code() == grpc.StatusCode.NOT_FOUND, unknown
                watch = stub.WatchInventory(
                    ledger_pb2.WatchInventoryRequest(municipality_id=unknown, year=2026)
                )
                with pytest.raises(grpc.aio.AioRpcError) as not_watched:
                    await watch.read()
                assert not_watched.value.code() == grpc.StatusCode.NOT_FOUND, unknown

        # The entry of an aggregated activity keeps which samples it sums.
        async with ledger.unit_of_work.read() as session:
            posted = await LedgerRepository(session).entries(AALBORG, 2026, 0, 10)
        samples = {p.entry.source_event_id: p.entry.samples for p in posted}
        assert samples["a1"] == SampleProvenance(30, "s-a1-1", "s-a1-30")
        assert samples["a2"] is None and samples["c1"] is None

        dead = await read_until(
            kafka, ledger.topic(topics.dead_letter_topic(topics.ACTIVITY)), lambda r: len(r) >= 4
        )
        assert {(r.key, r.headers["dlq-reason"]) for r in dead} == {
            ("junk", "undecodable"),
            ("v-old", "no_emission_factor"),
            ("v-gas", "unaccountable_activity"),
            ("v-nofuel", "schema_invalid"),
        }
        # Deposits are no one's concern here, neither entries nor dead letters.
        locker_dead = await read_until(
            kafka,
            ledger.topic(topics.dead_letter_topic(topics.LOCKER_EVENTS)),
            lambda r: len(r) > 0,
            timeout_s=2,
        )
        assert locker_dead == []
    finally:
        await ledger.stop()

    # As if the ledger had crashed after each batch's commit and before its offset commit:
    # everything is delivered again, with one new event behind it.
    for group, topic in ((ACTIVITY_GROUP, activity_topic), (LOCKER_GROUP, locker_topic)):
        await rewind_group(kafka, ledger.names.group(group), topic)
    await produce(kafka, activity_topic, "v-a4", activity("a4", fleet_pb2.FUEL_TYPE_DIESEL, 777))
    restarted = build(**settings)
    await restarted.start()
    try:
        async with pki.channel(f"127.0.0.1:{restarted.grpc_port}", OPERATOR) as channel:
            stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)

            async def only_the_new_event_counted() -> None:
                got = await stub.GetInventory(
                    ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=2026)
                )
                assert got.entry_count == 6
                assert Decimal(got.emissions_kg_co2e) == (
                    diesel + electric + petrol + detour + later
                )
                assert Decimal(got.avoided_kg_co2e) == avoided

            await eventually(only_the_new_event_counted, timeout_s=45)
            # Once all that was delivered again is handled, still only the new event counts.
            for group, topic in ((ACTIVITY_GROUP, activity_topic), (LOCKER_GROUP, locker_topic)):
                await eventually(
                    partial(caught_up, kafka, restarted.names.group(group), topic), timeout_s=45
                )
            await only_the_new_event_counted()
    finally:
        await restarted.stop()

    # The backlog was handled again: its rejections are dead letters again (at least once).
    dead_again = await read_until(
        kafka, ledger.topic(topics.dead_letter_topic(topics.ACTIVITY)), lambda r: len(r) >= 8
    )
    assert len(dead_again) >= 8

    # Read past the expected six, so a duplicate posting would show.
    posted_events = await read_until(
        kafka, ledger.topic(topics.LEDGER_ENTRIES), lambda r: len(r) > 6, timeout_s=3
    )
    assert len(posted_events) == 6
    assert {r.key for r in posted_events} == {AALBORG}


def diesel_entries(prefix: str, count: int) -> list[LedgerEntry]:
    catalogue = load_factor_catalogue()
    return [
        entry_for_activity(
            VehicleActivity(
                f"{prefix}-{n}",
                f"van-{prefix}",
                AALBORG,
                FuelType.DIESEL,
                Subsector.MUNICIPAL_FLEET,
                AT,
                1_000,
                # Odd millilitres, so that every gram of every entry counts.
                1_001 + 37 * n,
                0,
            ),
            catalogue,
            "fleet.activity.v1",
        )
        for n in range(count)
    ]


async def test_concurrent_first_postings_to_a_new_line_are_both_counted(
    postgres_database: str,
) -> None:
    database = Database(postgres_database)
    try:
        await database.migrate(MIGRATIONS)
        first, second = diesel_entries("first", 20), diesel_entries("second", 30)
        first_posted, commit_first = asyncio.Event(), asyncio.Event()

        async def post(entries: list[LedgerEntry], hold_open: bool) -> None:
            async with database.transaction() as session:
                repository = LedgerRepository(session)
                appended = await repository.append(entries, trace_id="")
                await repository.add_to_inventory(increments_per_line(appended))
                if hold_open:
                    first_posted.set()
                    await commit_first.wait()

        # The first creates the line and keeps its transaction open...
        first_task = asyncio.create_task(post(first, hold_open=True))
        await first_posted.wait()
        # ...while the second posts to the same line, which it cannot see yet.
        second_task = asyncio.create_task(post(second, hold_open=False))

        async def second_waits_for_the_first() -> None:
            async with database.read() as session:
                waiting = await session.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                        "current_database() AND wait_event_type = 'Lock'"
                    )
                )
            assert waiting == 1

        await eventually(second_waits_for_the_first, timeout_s=10)
        commit_first.set()
        await asyncio.wait_for(asyncio.gather(first_task, second_task), timeout=30)

        async with database.read() as session:
            inventory = await LedgerRepository(session).inventory(AALBORG, 2026)
        assert inventory == summarise(AALBORG, 2026, [*first, *second])
        assert inventory.entry_count == 50
        assert inventory.emissions_kg_co2e == sum(
            (entry.kg_co2e for entry in [*first, *second]), Decimal(0)
        )
    finally:
        await database.dispose()
