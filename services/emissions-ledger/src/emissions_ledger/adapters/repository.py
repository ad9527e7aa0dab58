"""The ledger's entries in its database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from emissions_ledger.adapters.tables import inventory_lines, ledger_entries
from emissions_ledger.domain import (
    AvoidedTrip,
    EmissionFactor,
    EnergyCarrier,
    EntryKind,
    Inventory,
    InventoryLine,
    LedgerEntry,
    Sector,
    Subsector,
    add_to_line,
    inventory_from_lines,
)
from servicekit.database import insert_if_absent, upsert


def decimal_text(amount: Decimal) -> str:
    """Exact decimal as plain text: no exponent, no trailing zeros."""
    text = format(amount.normalize(), "f")
    return "0" if text in ("-0", "0") else text


@dataclass(frozen=True)
class PostedEntry:
    """An entry as the ledger holds it, with the trace of the processing that posted it."""

    entry: LedgerEntry
    trace_id: str
    # Posting order within the ledger.
    sequence: int


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def append(self, entry: LedgerEntry, trace_id: str) -> bool:
        """Appends an entry; False when an entry with that id is already there."""
        factor = entry.factor
        trip = entry.avoided_trip
        return await insert_if_absent(
            self.session,
            ledger_entries,
            {
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
                "trace_id": trace_id,
                "posted_at": datetime.now(UTC),
            },
        )

    async def add_to_inventory(self, entry: LedgerEntry) -> None:
        """Adds a newly appended entry to its inventory line's running total."""
        key = _line_key_values(entry)
        row = (
            await self.session.execute(select(inventory_lines).filter_by(**key).with_for_update())
        ).first()
        line = add_to_line(None if row is None else _line_from_row(row), entry)
        await upsert(
            self.session,
            inventory_lines,
            {**key, **_line_totals(line)},
            key=list(key),
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


def rebuild_inventory_lines(connection: Connection) -> None:
    """Recomputes every running line total from the entries (a migration step, synchronous)."""
    lines: dict[tuple[Any, ...], InventoryLine] = {}
    for row in connection.execute(select(ledger_entries).order_by(ledger_entries.c.sequence)):
        entry = _entry_from_row(row)
        key = tuple(_line_key_values(entry).values())
        lines[key] = add_to_line(lines.get(key), entry)
    connection.execute(delete(inventory_lines))
    for key, line in lines.items():
        connection.execute(
            insert(inventory_lines).values(
                municipality_id=key[0], year=key[1], **_line_key_of(line), **_line_totals(line)
            )
        )


def _line_key_values(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "municipality_id": entry.municipality_id,
        "year": entry.year,
        "sector": entry.sector.value,
        "subsector": entry.subsector.value,
        "energy_carrier": entry.energy_carrier.value,
        "kind": entry.kind.value,
        "activity_unit": entry.activity_unit,
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
        "activity_amount": decimal_text(line.activity_amount),
        "kg_co2e": decimal_text(line.kg_co2e),
        "entry_count": line.entry_count,
    }


def _line_from_row(row: Any) -> InventoryLine:
    return InventoryLine(
        sector=Sector(row.sector),
        subsector=Subsector(row.subsector),
        energy_carrier=EnergyCarrier(row.energy_carrier),
        kind=EntryKind(row.kind),
        activity_unit=row.activity_unit,
        activity_amount=Decimal(row.activity_amount),
        kg_co2e=Decimal(row.kg_co2e),
        entry_count=row.entry_count,
    )


def _entry_from_row(row: Any) -> LedgerEntry:
    trip = row.avoided_trip
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
    )
