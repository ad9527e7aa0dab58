"""Upgrading a ledger keeps what it holds: running totals built from existing entries (2),
line amounts made exact numbers the database adds (3), sample provenance on entries (4),
revisions for restatement (6), metered and modelled lines apart (7), hourly pricing (10)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    inspect,
    text,
)

from emissions_ledger.adapters.data_files import load_avoided_trip_policy, load_factor_catalogue
from emissions_ledger.adapters.repository import LedgerRepository
from emissions_ledger.adapters.tables import MIGRATIONS
from emissions_ledger.domain import (
    Basis,
    FuelType,
    LedgerEntry,
    Posting,
    SampleProvenance,
    Subsector,
    VehicleActivity,
    WasteCollection,
    entries_for_collection,
    entry_for_activity,
    increments_per_line,
    restated_pair,
    summarise,
)
from servicekit.database import Database, Migration, UtcDateTime, create_tables, decimal_text

AALBORG = "aalborg-kommune"
AT = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def diesel_entry(
    event_id: str, fuel_used_ml: int, samples: SampleProvenance | None = None
) -> LedgerEntry:
    return entry_for_activity(
        VehicleActivity(
            event_id,
            "van-1",
            AALBORG,
            FuelType.DIESEL,
            Subsector.MUNICIPAL_FLEET,
            AT,
            5_000,
            fuel_used_ml,
            0,
            samples,
        ),
        load_factor_catalogue(),
        "fleet.activity.v1",
    )


def entries_of_a_released_ledger() -> list[LedgerEntry]:
    catalogue = load_factor_catalogue()
    electric = entry_for_activity(
        VehicleActivity(
            "a2",
            "van-2",
            AALBORG,
            FuelType.ELECTRIC,
            Subsector.MUNICIPAL_FLEET,
            AT,
            5_000,
            0,
            4_321,
        ),
        catalogue,
        "fleet.activity.v1",
    )
    return [diesel_entry("a0", 1_234), diesel_entry("a1", 777), electric, released_collection()]


RELEASED_COLLECTION = WasteCollection(
    "c1", "molo-aalborg-02", AALBORG, "homerunner", AT, 900, 1_000, True
)


def released_collection() -> LedgerEntry:
    """A collection's one entry as versions before 7 posted it: the avoided trip net of the
    detour (1.12 l - 0.072 l), modelled, without the collection's provenance."""
    avoided, detour = entries_for_collection(
        RELEASED_COLLECTION,
        load_avoided_trip_policy(),
        load_factor_catalogue(),
        "lockers.events.v1",
    )
    return replace(
        avoided,
        activity_amount=avoided.activity_amount - detour.activity_amount,
        kg_co2e=avoided.kg_co2e - detour.kg_co2e,
        collection=None,
    )


def version_1_as_appended_today() -> list[Migration]:
    """Schema version 1, plus the inventory version rows today's append takes its turn on
    (migration 5) and the year locks it looks at (6); neither touches what versions 2 to 4
    change."""
    return [migration for migration in MIGRATIONS if migration.version in (1, 5, 6)]


async def test_upgrade_builds_inventory_lines_from_existing_entries(database_url: str) -> None:
    entries = entries_of_a_released_ledger()
    database = Database(database_url)
    try:
        # A ledger at schema version 1 with entries posted...
        await database.migrate(version_1_as_appended_today())
        async with database.transaction() as session:
            assert len(await LedgerRepository(session).append(entries, trace_id="")) == 4
        # ...upgraded: the running totals equal the sum of all entries, exactly.
        await database.migrate(MIGRATIONS)
        async with database.read() as session:
            inventory = await LedgerRepository(session).inventory(AALBORG, 2026)
        assert inventory == summarise(AALBORG, 2026, entries)
        assert inventory.entry_count == 4
        assert inventory.emissions_kg_co2e == Decimal("2.011") * Decimal("2.66") + Decimal(
            "4.321"
        ) * Decimal("0.096")
    finally:
        await database.dispose()


# inventory_lines as version 2 released it: amounts as decimal text on every database.
released_metadata = MetaData()
released_inventory_lines = Table(
    "inventory_lines",
    released_metadata,
    *(
        Column(name, String(64), primary_key=True)
        for name in ("municipality_id", "sector", "subsector", "energy_carrier", "kind")
    ),
    Column("year", Integer, primary_key=True),
    Column("activity_unit", String(16), primary_key=True),
    Column("activity_amount", String(64), nullable=False),
    Column("kg_co2e", String(64), nullable=False),
    Column("entry_count", Integer, nullable=False),
)


def released_version_2(entries: list[LedgerEntry]) -> Migration:
    """The schema and totals a released ledger at version 2 has, however version 1 is made
    today: entries without sample provenance, line totals kept as text by the old code."""

    def apply(connection: Connection) -> None:
        connection.execute(text("ALTER TABLE ledger_entries DROP COLUMN activity_samples"))
        released_metadata.create_all(connection)
        for line in summarise(AALBORG, 2026, entries).lines:
            connection.execute(
                released_inventory_lines.insert().values(
                    municipality_id=AALBORG,
                    year=2026,
                    sector=line.sector.value,
                    subsector=line.subsector.value,
                    energy_carrier=line.energy_carrier.value,
                    kind=line.kind.value,
                    activity_unit=line.activity_unit,
                    activity_amount=decimal_text(line.activity_amount),
                    kg_co2e=decimal_text(line.kg_co2e),
                    entry_count=line.entry_count,
                )
            )

    return Migration(2, "running inventory line totals, as released", apply)


async def test_upgrade_keeps_line_totals_and_adds_to_them_exactly(database_url: str) -> None:
    entries = entries_of_a_released_ledger()
    database = Database(database_url)
    try:
        await database.migrate(version_1_as_appended_today())
        async with database.transaction() as session:
            await LedgerRepository(session).append(entries, trace_id="")
        await database.migrate([MIGRATIONS[0], released_version_2(entries)])

        await database.migrate(MIGRATIONS)

        async with database.read() as session:
            kept = await LedgerRepository(session).inventory(AALBORG, 2026)
            old_entries = await LedgerRepository(session).entries(AALBORG, 2026, 0, 10)
        assert kept == summarise(AALBORG, 2026, entries)
        assert [posted.entry.samples for posted in old_entries] == [None] * 4
        if database_url.startswith("postgresql"):
            async with database.read() as session:
                types = set(
                    (
                        await session.execute(
                            text(
                                "SELECT data_type FROM information_schema.columns WHERE "
                                "table_name = 'inventory_lines' AND column_name IN "
                                "('activity_amount', 'kg_co2e')"
                            )
                        )
                    ).scalars()
                )
            assert types == {"numeric"}

        # Postings after the upgrade add to the converted totals without losing a digit.
        samples = SampleProvenance(40, "s-1", "s-40")
        later = [diesel_entry("a3", 1), diesel_entry("a4", 123_457, samples)]
        async with database.transaction() as session:
            repository = LedgerRepository(session)
            await repository.add_to_inventory(
                increments_per_line(await repository.append(later, trace_id=""))
            )
        async with database.read() as session:
            upgraded = await LedgerRepository(session).inventory(AALBORG, 2026)
            newest = await LedgerRepository(session).entries(AALBORG, 2026, 0, 10)
        assert upgraded == summarise(AALBORG, 2026, [*entries, *later])
        assert upgraded.emissions_kg_co2e == kept.emissions_kg_co2e + Decimal("123.458") * Decimal(
            "2.66"
        )
        assert newest[-1].entry.samples == samples
    finally:
        await database.dispose()


# ledger_entries as versions 1 to 5 released it: one entry per event and kind for ever.
version_5_metadata = MetaData()
version_5_entries = Table(
    "ledger_entries",
    version_5_metadata,
    Column("sequence", Integer, primary_key=True, autoincrement=True),
    Column("entry_id", String(64), nullable=False, unique=True),
    *(
        Column(name, String(200), nullable=False)
        for name in (
            "municipality_id",
            "sector",
            "subsector",
            "energy_carrier",
            "activity_amount",
            "activity_unit",
            "factor_id",
            "factor_value",
            "factor_unit",
            "factor_activity_unit",
            "factor_source",
            "factor_version",
            "factor_approach",
            "kg_co2e",
            "kind",
            "source_event_id",
            "source_topic",
            "subject_id",
            "trace_id",
        )
    ),
    Column("year", Integer, nullable=False),
    Column("activity_at", UtcDateTime(), nullable=False),
    Column("posted_at", UtcDateTime(), nullable=False),
    Column("avoided_trip", JSON, nullable=True),
    Column("activity_samples", JSON, nullable=True),
    UniqueConstraint("source_event_id", "kind", name="uq_entry_source"),
    Index("ix_entries_inventory", "municipality_id", "year"),
    Index("ix_entries_inventory_sequence", "municipality_id", "year", "sequence"),
)


def released_version_1() -> Migration:
    return Migration(
        1, "append-only ledger entries, as released", create_tables(version_5_metadata)
    )


async def test_upgrade_to_restatement_keeps_entries_and_lets_them_be_restated(
    database_url: str,
) -> None:
    """A ledger of version 5 (its entries unique per event and kind, written by the code of
    then; upgraded from 1 here) gains revisions: every entry stays, with its sequence, as an
    original."""
    entries = entries_of_a_released_ledger()
    database = Database(database_url)
    try:
        await database.migrate([released_version_1()])
        posted_at = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
        async with database.transaction() as session:
            for sequence, entry in enumerate(entries, start=1):
                await session.execute(
                    version_5_entries.insert().values(
                        **_version_5_row(entry, sequence * 10, posted_at)
                    )
                )

        await database.migrate(MIGRATIONS)

        async with database.read() as session:
            repository = LedgerRepository(session)
            kept = await repository.entries(AALBORG, 2026, 0, 10)
            inventory = await repository.inventory(AALBORG, 2026)
        assert [posted.sequence for posted in kept] == [10, 20, 30, 40]
        assert [posted.entry.entry_id for posted in kept] == [e.entry_id for e in entries]
        assert {(p.entry.posting, p.entry.revision, p.entry.late) for p in kept} == {
            (Posting.ORIGINAL, 0, False)
        }
        # Entries of then knew neither their km nor the vehicle's owner (migration 8): each
        # line counts them as entries without distance, and no amount changes.
        as_released = [replace(e, distance_m=None, owner_partner_id=None) for e in entries]
        assert inventory == summarise(AALBORG, 2026, as_released)
        assert all(line.entries_without_distance == line.entry_count for line in inventory.lines)
        assert {(p.entry.distance_m, p.entry.owner_partner_id) for p in kept} == {(None, None)}
        # The collection's net entry is known for what it is: modelled, on a line of its own.
        assert [p.entry.basis for p in kept] == [Basis.METERED] * 3 + [Basis.MODELLED]
        # Hourly pricing (10): no start of their activity is known, so none is priced by the
        # hour, and their factors are yearly ones.
        assert {(p.entry.activity_started_at, p.entry.factor.hourly) for p in kept} == {
            (None, None)
        }

        # A redelivered event still posts nothing, also a collection that today's code
        # accounts in two entries (the detour would be new); a restatement posts its pair once.
        async with database.transaction() as session:
            repository = LedgerRepository(session)
            assert await repository.append([entries[0]], trace_id="") == []
            redelivered = entries_for_collection(
                RELEASED_COLLECTION,
                load_avoided_trip_policy(),
                load_factor_catalogue(),
                "lockers.events.v1",
            )
            assert len(redelivered) == 2
            assert await repository.append(redelivered, trace_id="") == []
            diesel = next(e for e in kept if e.entry.factor.factor_id == "diesel-nea-nir2021")
            factor = await repository.pricing_groups(AALBORG, 2026)
            assert ("diesel", "IPCC, tank-to-wheel, CO2") in factor
            corrected = replace(diesel.entry.factor, value=Decimal("2.70"), version="corrected")
            pair = restated_pair(diesel.entry, corrected, "r1")
            appended = await repository.append(list(pair), trace_id="")
            assert len(appended) == 2
            assert await repository.append(list(pair), trace_id="") == []
    finally:
        await database.dispose()


def _version_5_row(entry: LedgerEntry, sequence: int, posted_at: datetime) -> dict[str, object]:
    factor = entry.factor
    return {
        "sequence": sequence,
        "entry_id": entry.entry_id,
        "municipality_id": entry.municipality_id,
        "year": entry.year,
        "sector": entry.sector.value,
        "subsector": entry.subsector.value,
        "energy_carrier": entry.energy_carrier.value,
        "activity_amount": decimal_text(entry.activity_amount),
        "activity_unit": entry.activity_unit,
        "factor_id": factor.factor_id,
        "factor_value": decimal_text(factor.value),
        "factor_unit": factor.unit,
        "factor_activity_unit": factor.activity_unit,
        "factor_source": factor.source,
        "factor_version": factor.version,
        # What the catalogue of then called its one approach.
        "factor_approach": "IPCC, tank-to-wheel, CO2",
        "kg_co2e": decimal_text(entry.kg_co2e),
        "kind": entry.kind.value,
        "source_event_id": entry.source_event_id,
        "source_topic": entry.source_topic,
        "subject_id": entry.subject_id,
        "trace_id": "",
        "activity_at": entry.activity_at,
        "posted_at": posted_at,
        "avoided_trip": None
        if entry.avoided_trip is None
        else {
            "avoided_trip_distance_m": entry.avoided_trip.avoided_trip_distance_m,
            "avoided_vehicle": entry.avoided_trip.avoided_vehicle,
            "avoided_kg_co2e": decimal_text(entry.avoided_trip.avoided_kg_co2e),
            "carrier_extra_distance_m": entry.avoided_trip.carrier_extra_distance_m,
            "carrier_vehicle": entry.avoided_trip.carrier_vehicle,
            "carrier_extra_kg_co2e": decimal_text(entry.avoided_trip.carrier_extra_kg_co2e),
        },
    }


async def test_upgrade_drops_the_entry_index_others_begin_with(database_url: str) -> None:
    database = Database(database_url)
    try:
        await database.migrate([m for m in MIGRATIONS if m.version < 11])
        async with database.transaction() as session:
            # As versions before 11 created it.
            await session.execute(
                text("CREATE INDEX ix_entries_inventory ON ledger_entries (municipality_id, year)")
            )
        await database.migrate(MIGRATIONS)
        async with database.read() as session:
            indexes = await session.run_sync(
                lambda s: {i["name"] for i in inspect(s.connection()).get_indexes("ledger_entries")}
            )
        assert "ix_entries_inventory" not in indexes
        assert {"ix_entries_inventory_sequence", "ix_entries_late"} <= indexes
    finally:
        await database.dispose()
