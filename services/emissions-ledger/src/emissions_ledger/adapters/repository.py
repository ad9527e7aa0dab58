"""The ledger's entries in its database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from emissions_ledger.adapters.tables import inventory_lines, inventory_versions, ledger_entries
from emissions_ledger.domain import (
    AvoidedTrip,
    EmissionFactor,
    EnergyCarrier,
    EntryKind,
    Inventory,
    InventoryLine,
    LedgerEntry,
    LineIncrement,
    SampleProvenance,
    Sector,
    Subsector,
    add_lines,
    inventory_from_lines,
)
from servicekit.database import add_exact, decimal_text, insert_statement

# Inventory lines per upsert statement: far below any driver's bound-parameter limit (10 per
# line); a batch touches a few lines per municipality and year, so one statement in practice.
_LINES_PER_STATEMENT = 1000


@dataclass(frozen=True)
class PostedEntry:
    """An entry as the ledger holds it, with the trace of the processing that posted it."""

    entry: LedgerEntry
    trace_id: str
    # Posting order within the ledger.
    sequence: int


@dataclass(frozen=True)
class InventorySnapshot:
    """One inventory's totals, its version and its last entry's sequence, read together."""

    inventory: Inventory
    version: int
    last_sequence: int


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def append(self, entries: Sequence[LedgerEntry], trace_id: str) -> list[LedgerEntry]:
        """Appends the entries the ledger does not hold yet; returns those, in the given order.

        One multi-row INSERT whatever the number of entries (SQLAlchemy splits it into pages
        below the driver's bound-parameter limit). The unique source of an entry makes the
        append idempotent: an entry already posted, by this batch or an earlier delivery of
        it, is skipped by the database and not returned.
        """
        unique: dict[str, LedgerEntry] = {}
        for entry in entries:
            unique.setdefault(entry.entry_id, entry)
        if not unique:
            return []
        await self._bump_versions({(e.municipality_id, e.year) for e in unique.values()})
        posted_at = datetime.now(UTC)
        statement = (
            insert_statement(self.session, ledger_entries)
            .on_conflict_do_nothing(index_elements=["source_event_id", "kind"])
            .returning(ledger_entries.c.entry_id)
        )
        inserted = set(
            (
                await self.session.execute(
                    statement,
                    [_entry_row(entry, trace_id, posted_at) for entry in unique.values()],
                )
            ).scalars()
        )
        return [entry for entry in unique.values() if entry.entry_id in inserted]

    async def posted_for_sources(
        self, entries: Sequence[LedgerEntry]
    ) -> dict[str, list[LedgerEntry]]:
        """The entries the ledger holds for the source events of these, by source event id."""
        if not entries:
            return {}
        rows = (
            await self.session.execute(
                select(ledger_entries).where(
                    ledger_entries.c.source_event_id.in_(
                        {entry.source_event_id for entry in entries}
                    )
                )
            )
        ).all()
        held: dict[str, list[LedgerEntry]] = {}
        for row in rows:
            held.setdefault(row.source_event_id, []).append(_entry_from_row(row))
        return held

    async def _bump_versions(self, inventories: set[tuple[str, int]]) -> None:
        """Takes each inventory's turn (its version row, locked until commit) before any of its
        entries is given a sequence number, so that one inventory's entries commit in sequence
        order. Rows are locked in key order: two postings never wait for each other in a circle.
        """
        statement = insert_statement(self.session, inventory_versions).values(
            [
                {"municipality_id": municipality_id, "year": year, "version": 1}
                for municipality_id, year in sorted(inventories)
            ]
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["municipality_id", "year"],
                set_={"version": inventory_versions.c.version + 1},
            )
        )

    async def add_to_inventory(self, increments: Sequence[LineIncrement]) -> None:
        """Adds each increment to its line's running total, creating lines that are new.

        The addition happens in the database (INSERT ... ON CONFLICT DO UPDATE SET total =
        total + excluded), never read, added and written back: on PostgreSQL, a transaction
        that meets a line another one is creating waits for it and then adds to it, so
        concurrent first postings to a line both count.
        """
        for start in range(0, len(increments), _LINES_PER_STATEMENT):
            chunk = increments[start : start + _LINES_PER_STATEMENT]
            statement = insert_statement(self.session, inventory_lines).values(
                [
                    {
                        "municipality_id": increment.municipality_id,
                        "year": increment.year,
                        **_line_key_of(increment.line),
                        **_line_totals(increment.line),
                    }
                    for increment in chunk
                ]
            )
            added = statement.excluded
            await self.session.execute(
                statement.on_conflict_do_update(
                    index_elements=[column.name for column in inventory_lines.primary_key],
                    set_={
                        "activity_amount": add_exact(
                            self.session,
                            inventory_lines.c.activity_amount,
                            added.activity_amount,
                        ),
                        "kg_co2e": add_exact(
                            self.session, inventory_lines.c.kg_co2e, added.kg_co2e
                        ),
                        "entry_count": inventory_lines.c.entry_count + added.entry_count,
                    },
                )
            )

    async def inventory(self, municipality_id: str, year: int) -> Inventory:
        rows = (
            await self.session.execute(
                select(inventory_lines).filter_by(municipality_id=municipality_id, year=year)
            )
        ).all()
        return inventory_from_lines(municipality_id, year, [_line_from_row(row) for row in rows])

    async def entries(
        self, municipality_id: str, year: int, after_sequence: int, limit: int
    ) -> list[PostedEntry]:
        """Entries in posting order, from just after `after_sequence` (0: from the start)."""
        rows = (
            await self.session.execute(
                select(ledger_entries)
                .where(ledger_entries.c.municipality_id == municipality_id)
                .where(ledger_entries.c.year == year)
                .where(ledger_entries.c.sequence > after_sequence)
                .order_by(ledger_entries.c.sequence)
                .limit(limit)
            )
        ).all()
        return [PostedEntry(_entry_from_row(row), row.trace_id, row.sequence) for row in rows]

    async def inventory_version(self, municipality_id: str, year: int) -> int:
        """How many postings the inventory has had (0: none yet); changes with each posting."""
        version = await self.session.scalar(
            select(inventory_versions.c.version).filter_by(
                municipality_id=municipality_id, year=year
            )
        )
        return int(version or 0)

    async def inventory_snapshot(self, municipality_id: str, year: int) -> InventorySnapshot:
        """The totals with the version and last sequence they correspond to; the session must
        be a snapshot (all its statements see the same commits)."""
        version = await self.inventory_version(municipality_id, year)
        last_sequence = await self.session.scalar(
            select(func.max(ledger_entries.c.sequence))
            .where(ledger_entries.c.municipality_id == municipality_id)
            .where(ledger_entries.c.year == year)
        )
        return InventorySnapshot(
            await self.inventory(municipality_id, year), version, int(last_sequence or 0)
        )

    async def entries_between(
        self, municipality_id: str, year: int, after_sequence: int, up_to: int, limit: int
    ) -> list[PostedEntry]:
        """Entries with after_sequence < sequence <= up_to, in posting order, at most limit."""
        rows = (
            await self.session.execute(
                select(ledger_entries)
                .where(ledger_entries.c.municipality_id == municipality_id)
                .where(ledger_entries.c.year == year)
                .where(ledger_entries.c.sequence > after_sequence)
                .where(ledger_entries.c.sequence <= up_to)
                .order_by(ledger_entries.c.sequence)
                .limit(limit)
            )
        ).all()
        return [PostedEntry(_entry_from_row(row), row.trace_id, row.sequence) for row in rows]


def rebuild_inventory_lines(connection: Connection) -> None:
    """Recomputes every running line total from the entries (a migration step, synchronous).

    Reads only columns the first schema version had, so it runs on a ledger of any version.
    """
    entries = ledger_entries.c
    rows = connection.execute(
        select(
            entries.municipality_id,
            entries.year,
            entries.sector,
            entries.subsector,
            entries.energy_carrier,
            entries.kind,
            entries.activity_unit,
            entries.activity_amount,
            entries.kg_co2e,
        )
    )
    lines: dict[tuple[Any, ...], InventoryLine] = {}
    for row in rows:
        line = _line_from_row(row, entry_count=1)
        key = (row.municipality_id, row.year, *_line_key_of(line).values())
        lines[key] = add_lines(lines.get(key), line)
    connection.execute(delete(inventory_lines))
    if lines:
        connection.execute(
            insert(inventory_lines),
            [
                {
                    "municipality_id": municipality_id,
                    "year": year,
                    **_line_key_of(line),
                    **_line_totals(line),
                }
                for (municipality_id, year, *_), line in lines.items()
            ],
        )


def _entry_row(entry: LedgerEntry, trace_id: str, posted_at: datetime) -> dict[str, Any]:
    factor = entry.factor
    trip = entry.avoided_trip
    samples = entry.samples
    return {
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
        "factor_approach": factor.approach,
        "kg_co2e": decimal_text(entry.kg_co2e),
        "kind": entry.kind.value,
        "source_event_id": entry.source_event_id,
        "source_topic": entry.source_topic,
        "activity_at": entry.activity_at,
        "subject_id": entry.subject_id,
        "avoided_trip": None
        if trip is None
        else {
            "avoided_trip_distance_m": trip.avoided_trip_distance_m,
            "avoided_vehicle": trip.avoided_vehicle,
            "avoided_kg_co2e": decimal_text(trip.avoided_kg_co2e),
            "carrier_extra_distance_m": trip.carrier_extra_distance_m,
            "carrier_vehicle": trip.carrier_vehicle,
            "carrier_extra_kg_co2e": decimal_text(trip.carrier_extra_kg_co2e),
        },
        "activity_samples": None
        if samples is None
        else {
            "sample_count": samples.sample_count,
            "first_sample_event_id": samples.first_sample_event_id,
            "last_sample_event_id": samples.last_sample_event_id,
        },
        "trace_id": trace_id,
        "posted_at": posted_at,
    }


def _line_key_of(line: InventoryLine) -> dict[str, Any]:
    return {
        "sector": line.sector.value,
        "subsector": line.subsector.value,
        "energy_carrier": line.energy_carrier.value,
        "kind": line.kind.value,
        "activity_unit": line.activity_unit,
    }


def _line_totals(line: InventoryLine) -> dict[str, Any]:
    return {
        "activity_amount": line.activity_amount,
        "kg_co2e": line.kg_co2e,
        "entry_count": line.entry_count,
    }


def _line_from_row(row: Any, entry_count: int | None = None) -> InventoryLine:
    """An inventory line from a line row, or from an entry row when entry_count is given."""
    return InventoryLine(
        sector=Sector(row.sector),
        subsector=Subsector(row.subsector),
        energy_carrier=EnergyCarrier(row.energy_carrier),
        kind=EntryKind(row.kind),
        activity_unit=row.activity_unit,
        activity_amount=Decimal(row.activity_amount),
        kg_co2e=Decimal(row.kg_co2e),
        entry_count=row.entry_count if entry_count is None else entry_count,
    )


def _entry_from_row(row: Any) -> LedgerEntry:
    trip = row.avoided_trip
    samples = row.activity_samples
    return LedgerEntry(
        entry_id=row.entry_id,
        municipality_id=row.municipality_id,
        year=row.year,
        sector=Sector(row.sector),
        subsector=Subsector(row.subsector),
        energy_carrier=EnergyCarrier(row.energy_carrier),
        activity_amount=Decimal(row.activity_amount),
        activity_unit=row.activity_unit,
        factor=EmissionFactor(
            factor_id=row.factor_id,
            energy_carrier=EnergyCarrier(row.energy_carrier),
            value=Decimal(row.factor_value),
            unit=row.factor_unit,
            activity_unit=row.factor_activity_unit,
            source=row.factor_source,
            version=row.factor_version,
            approach=row.factor_approach,
        ),
        kg_co2e=Decimal(row.kg_co2e),
        kind=EntryKind(row.kind),
        source_event_id=row.source_event_id,
        source_topic=row.source_topic,
        activity_at=row.activity_at,
        subject_id=row.subject_id,
        avoided_trip=None
        if trip is None
        else AvoidedTrip(
            avoided_trip_distance_m=int(trip["avoided_trip_distance_m"]),
            avoided_vehicle=str(trip["avoided_vehicle"]),
            avoided_kg_co2e=Decimal(trip["avoided_kg_co2e"]),
            carrier_extra_distance_m=int(trip["carrier_extra_distance_m"]),
            carrier_vehicle=str(trip["carrier_vehicle"]),
            carrier_extra_kg_co2e=Decimal(trip["carrier_extra_kg_co2e"]),
        ),
        samples=None
        if samples is None
        else SampleProvenance(
            sample_count=int(samples["sample_count"]),
            first_sample_event_id=str(samples["first_sample_event_id"]),
            last_sample_event_id=str(samples["last_sample_event_id"]),
        ),
    )
