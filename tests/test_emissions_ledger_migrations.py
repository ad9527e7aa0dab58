"""A ledger that predates the running inventory totals gets them from its entries on upgrade."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from emissions_ledger.adapters.data_files import load_avoided_trip_policy, load_factor_catalogue
from emissions_ledger.adapters.repository import LedgerRepository
from emissions_ledger.adapters.tables import MIGRATIONS
from emissions_ledger.domain import (
    FuelType,
    Subsector,
    VehicleActivity,
    WasteCollection,
    entry_for_activity,
    entry_for_collection,
    summarise,
)
from servicekit.database import Database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/ledger.db"
    return str(request.getfixturevalue("postgres_database"))


async def test_upgrade_builds_inventory_lines_from_existing_entries(database_url: str) -> None:
    catalogue, policy = load_factor_catalogue(), load_avoided_trip_policy()
    at = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    entries = [
        entry_for_activity(
            VehicleActivity(
                f"a{i}",
                "van-1",
                "aalborg-kommune",
                fuel,
                Subsector.MUNICIPAL_FLEET,
                at,
                5_000,
                ml,
                wh,
            ),
            catalogue,
            "fleet.activity.v1",
        )
        for i, (fuel, ml, wh) in enumerate(
            [(FuelType.DIESEL, 1_234, 0), (FuelType.DIESEL, 777, 0), (FuelType.ELECTRIC, 0, 4_321)]
        )
    ]
    entries.append(
        entry_for_collection(
            WasteCollection(
                "c1", "molo-aalborg-02", "aalborg-kommune", "homerunner", at, 900, 1_000, True
            ),
            policy,
            catalogue,
            "lockers.events.v1",
        )
    )

    database = Database(database_url)
    try:
        # A ledger at schema version 1 with entries posted...
        await database.migrate(MIGRATIONS[:1])
        async with database.transaction() as session:
            for entry in entries:
                assert await LedgerRepository(session).append(entry, trace_id="")
        # ...upgraded: the running totals equal the sum of all entries, exactly.
        await database.migrate(MIGRATIONS)
        async with database.read() as session:
            inventory = await LedgerRepository(session).inventory("aalborg-kommune", 2026)
        assert inventory == summarise("aalborg-kommune", 2026, entries)
        assert inventory.entry_count == 4
        assert inventory.emissions_kg_co2e == Decimal("2.011") * Decimal("2.66") + Decimal(
            "4.321"
        ) * Decimal("0.096")
    finally:
        await database.dispose()
