"""The ledger's repository on both backends: a batch of entries of several kinds of source."""

from __future__ import annotations

from datetime import UTC, datetime

from emissions_ledger.adapters.data_files import load_avoided_trip_policy, load_factor_catalogue
from emissions_ledger.adapters.repository import LedgerRepository
from emissions_ledger.adapters.tables import MIGRATIONS
from emissions_ledger.domain import (
    FuelType,
    LedgerEntry,
    SampleProvenance,
    Subsector,
    VehicleActivity,
    WasteCollection,
    entries_for_collection,
    entry_for_activity,
)
from servicekit.database import Database

AALBORG = "aalborg-kommune"
AT = datetime(2025, 5, 6, 7, 15, tzinfo=UTC)


def vehicle_entry(event_id: str, samples: SampleProvenance | None) -> LedgerEntry:
    return entry_for_activity(
        VehicleActivity(
            event_id,
            "van-1",
            AALBORG,
            FuelType.DIESEL,
            Subsector.MUNICIPAL_FLEET,
            AT,
            5_000,
            1_234,
            0,
            samples,
            owner_partner_id=AALBORG,
        ),
        load_factor_catalogue(),
        "fleet.activity.v1",
    )


async def test_a_batch_mixing_kinds_of_source_is_posted_in_order_and_once(
    database_url: str,
) -> None:
    # Rows of different shapes (samples; a trip and a collection; neither) in runs.
    collection = WasteCollection("c1", "molo-02", AALBORG, "homerunner", AT, 900, 1_000, True)
    entries = [
        vehicle_entry("a0", SampleProvenance(15, "s-1", "s-15")),
        vehicle_entry("a1", SampleProvenance(3, "s-16", "s-18")),
        *entries_for_collection(
            collection, load_avoided_trip_policy(), load_factor_catalogue(), "lockers.events.v1"
        ),
        vehicle_entry("a2", None),
        vehicle_entry("a3", SampleProvenance(1, "s-19", "s-19")),
    ]
    database = Database(database_url)
    await database.migrate(MIGRATIONS)
    try:
        async with database.transaction() as session:
            appended = await LedgerRepository(session).append(entries, trace_id="f" * 32)
        async with database.transaction() as session:
            again = await LedgerRepository(session).append(entries, trace_id="f" * 32)
        async with database.read() as session:
            posted = await LedgerRepository(session).entries(AALBORG, 2025, 0, 100)
    finally:
        await database.dispose()

    assert appended == entries
    assert again == []
    assert [p.entry for p in posted] == entries
    assert [p.sequence for p in posted] == sorted(p.sequence for p in posted)
    assert {p.trace_id for p in posted} == {"f" * 32}
    assert posted[2].entry.collection is not None and posted[2].entry.avoided_trip is not None
    assert posted[4].entry.samples is None and posted[4].entry.collection is None
