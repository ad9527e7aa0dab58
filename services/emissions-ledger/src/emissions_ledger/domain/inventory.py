"""A municipality's yearly inventory: ledger entries totalled per Covenant of Mayors line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from emissions_ledger.domain.entries import (
    EXACT_ARITHMETIC,
    EntryKind,
    LedgerEntry,
    Sector,
    Subsector,
)
from emissions_ledger.domain.factors import EnergyCarrier


@dataclass(frozen=True)
class InventoryLine:
    sector: Sector
    subsector: Subsector
    energy_carrier: EnergyCarrier
    kind: EntryKind
    activity_unit: str
    activity_amount: Decimal
    kg_co2e: Decimal
    entry_count: int


@dataclass(frozen=True)
class Inventory:
    municipality_id: str
    year: int
    lines: tuple[InventoryLine, ...]
    emissions_kg_co2e: Decimal
    avoided_kg_co2e: Decimal
    entry_count: int


class DuplicateEntry(ValueError):
    """The same entry id was given twice; counting it twice would inflate the inventory."""


_LineKey = tuple[Sector, Subsector, EnergyCarrier, EntryKind, str]

_SECTOR_ORDER = {sector: index for index, sector in enumerate(Sector)}
_SUBSECTOR_ORDER = {subsector: index for index, subsector in enumerate(Subsector)}
_CARRIER_ORDER = {carrier: index for index, carrier in enumerate(EnergyCarrier)}
_KIND_ORDER = {kind: index for index, kind in enumerate(EntryKind)}


def _template_order(key: _LineKey) -> tuple[int, int, int, int, str]:
    # Lines follow the enums' declaration order, which mirrors the reporting template.
    sector, subsector, carrier, kind, unit = key
    return (
        _SECTOR_ORDER[sector],
        _SUBSECTOR_ORDER[subsector],
        _CARRIER_ORDER[carrier],
        _KIND_ORDER[kind],
        unit,
    )


@dataclass
class _Totals:
    activity_amount: Decimal = Decimal(0)
    kg_co2e: Decimal = Decimal(0)
    entry_count: int = 0


def summarise(municipality_id: str, year: int, entries: Iterable[LedgerEntry]) -> Inventory:
    """Total the entries of one municipality and year; other entries are ignored."""
    totals: dict[_LineKey, _Totals] = {}
    seen_entry_ids: set[str] = set()
    for entry in entries:
        if entry.municipality_id != municipality_id or entry.year != year:
            continue
        if entry.entry_id in seen_entry_ids:
            raise DuplicateEntry(f"entry_id: {entry.entry_id} appears more than once")
        seen_entry_ids.add(entry.entry_id)
        key = (entry.sector, entry.subsector, entry.energy_carrier, entry.kind, entry.activity_unit)
        line = totals.setdefault(key, _Totals())
        line.activity_amount = EXACT_ARITHMETIC.add(line.activity_amount, entry.activity_amount)
        line.kg_co2e = EXACT_ARITHMETIC.add(line.kg_co2e, entry.kg_co2e)
        line.entry_count += 1

    lines = tuple(
        InventoryLine(
            sector=key[0],
            subsector=key[1],
            energy_carrier=key[2],
            kind=key[3],
            activity_unit=key[4],
            activity_amount=line.activity_amount,
            kg_co2e=line.kg_co2e,
            entry_count=line.entry_count,
        )
        for key, line in sorted(totals.items(), key=lambda item: _template_order(item[0]))
    )
    return Inventory(
        municipality_id=municipality_id,
        year=year,
        lines=lines,
        emissions_kg_co2e=_total_kg(lines, EntryKind.EMISSION),
        avoided_kg_co2e=_total_kg(lines, EntryKind.AVOIDED_EMISSION),
        entry_count=len(seen_entry_ids),
    )


def _total_kg(lines: tuple[InventoryLine, ...], kind: EntryKind) -> Decimal:
    total = Decimal(0)
    for line in lines:
        if line.kind is kind:
            total = EXACT_ARITHMETIC.add(total, line.kg_co2e)
    return total
