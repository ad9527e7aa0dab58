"""Upgrading a ledger keeps what it holds: running totals built from existing entries (2),
line amounts made exact numbers the database adds (3), sample provenance on entries (4)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, text

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
    entry_for_activity,
    entry_for_collection,
    increments_per_line,
    summarise,
)
from servicekit.database import Database, Migration, decimal_text

AALBORG = "aalborg-kommune"
AT = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/ledger.db"
    return str(request.getfixturevalue("postgres_database"))


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
    collection = entry_for_collection(
        WasteCollection("c1", "molo-aalborg-02", AALBORG, "homerunner", AT, 900, 1_000, True),
        load_avoided_trip_policy(),
        catalogue,
        "lockers.events.v1",
    )
    return [diesel_entry("a0", 1_234), diesel_entry("a1", 777), electric, collection]


def version_1_as_appended_today() -> list[Migration]:
    """Schema version 1, plus the inventory version rows today's append takes its turn on
    (migration 5, which touches nothing versions 2 to 4 change)."""
    return [migration for migration in MIGRATIONS if migration.version in (1, 5)]


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
