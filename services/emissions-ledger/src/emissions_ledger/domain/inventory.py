"""A municipality's yearly inventory: ledger entries totalled per Covenant of Mayors line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from emissions_ledger.domain.entries import (
    EXACT_ARITHMETIC,
    Basis,
    EntryKind,
    LedgerEntry,
    Posting,
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
    basis: Basis = Basis.METERED
    # The km behind the activity, summed over the entries that know theirs; the entries that
    # do not (posted before the ledger recorded distance) are counted apart.
    distance_km: Decimal = Decimal(0)
    entries_without_distance: int = 0


@dataclass(frozen=True)
class Inventory:
    municipality_id: str
    year: int
    lines: tuple[InventoryLine, ...]
    emissions_kg_co2e: Decimal
    avoided_kg_co2e: Decimal
    entry_count: int
    # When the year was locked (after submission), and how many entries came after that.
    locked_at: datetime | None = None
    late_entry_count: int = 0


class DuplicateEntry(ValueError):
    """The same entry id was given twice; counting it twice would inflate the inventory."""


_LineKey = tuple[Sector, Subsector, EnergyCarrier, EntryKind, Basis, str]

_SECTOR_ORDER = {sector: index for index, sector in enumerate(Sector)}
_SUBSECTOR_ORDER = {subsector: index for index, subsector in enumerate(Subsector)}
_CARRIER_ORDER = {carrier: index for index, carrier in enumerate(EnergyCarrier)}
_KIND_ORDER = {kind: index for index, kind in enumerate(EntryKind)}
_BASIS_ORDER = {basis: index for index, basis in enumerate(Basis)}


def _template_order(key: _LineKey) -> tuple[int, int, int, int, int, str]:
    # Lines follow the enums' declaration order, which mirrors the reporting template.
    sector, subsector, carrier, kind, basis, unit = key
    return (
        _SECTOR_ORDER[sector],
        _SUBSECTOR_ORDER[subsector],
        _CARRIER_ORDER[carrier],
        _KIND_ORDER[kind],
        _BASIS_ORDER[basis],
        unit,
    )


def line_key(entry: LedgerEntry) -> _LineKey:
    return (
        entry.sector,
        entry.subsector,
        entry.energy_carrier,
        entry.kind,
        entry.basis,
        entry.activity_unit,
    )


def line_of(entry: LedgerEntry) -> InventoryLine:
    """The inventory line that holds this one entry alone. A line counts the entries that
    make its figure: a reversal takes one away, as its replacement adds one."""
    sector, subsector, carrier, kind, basis, unit = line_key(entry)
    count = -1 if entry.posting is Posting.REVERSAL else 1
    return InventoryLine(
        sector,
        subsector,
        carrier,
        kind,
        unit,
        entry.activity_amount,
        entry.kg_co2e,
        count,
        basis,
        distance_km=distance_km(entry.distance_m),
        entries_without_distance=count if entry.distance_m is None else 0,
    )


def distance_km(distance_m: int | None) -> Decimal:
    """Metres as exact km; 0 when not known (the caller counts those apart)."""
    if distance_m is None:
        return Decimal(0)
    return EXACT_ARITHMETIC.scaleb(Decimal(distance_m), -3)


def add_lines(line: InventoryLine | None, other: InventoryLine) -> InventoryLine:
    """Two totals of the same line added (a line starts empty); exact."""
    if line is None:
        return other
    if _line_key_of(line) != _line_key_of(other):
        raise ValueError(f"line {_line_key_of(other)} cannot be added to {_line_key_of(line)}")
    return InventoryLine(
        sector=line.sector,
        subsector=line.subsector,
        energy_carrier=line.energy_carrier,
        kind=line.kind,
        activity_unit=line.activity_unit,
        activity_amount=EXACT_ARITHMETIC.add(line.activity_amount, other.activity_amount),
        kg_co2e=EXACT_ARITHMETIC.add(line.kg_co2e, other.kg_co2e),
        entry_count=line.entry_count + other.entry_count,
        basis=line.basis,
        distance_km=EXACT_ARITHMETIC.add(line.distance_km, other.distance_km),
        entries_without_distance=line.entries_without_distance + other.entries_without_distance,
    )


def add_to_line(line: InventoryLine | None, entry: LedgerEntry) -> InventoryLine:
    """The inventory line after one more entry (a line starts empty); exact."""
    if line is not None and _line_key_of(line) != line_key(entry):
        raise ValueError(f"entry {entry.entry_id} does not belong to line {_line_key_of(line)}")
    return add_lines(line, line_of(entry))


@dataclass(frozen=True)
class LineIncrement:
    """What some entries add to one inventory line of one municipality and year."""

    municipality_id: str
    year: int
    line: InventoryLine


def increments_per_line(entries: Iterable[LedgerEntry]) -> list[LineIncrement]:
    """The entries summed per inventory line: one increment per line they touch, exact.

    Increments come in one fixed order (municipality, year, template order), so writers that
    add them concurrently take the lines' locks in the same order and cannot deadlock.
    """
    # A batch holds thousands of entries and a few lines: each line's entries are gathered,
    # then summed in posting order (the same exact sums as adding entry by entry).
    per_line: dict[tuple[str, int, _LineKey], list[LedgerEntry]] = {}
    seen_entry_ids: set[str] = set()
    for entry in entries:
        if entry.entry_id in seen_entry_ids:
            raise DuplicateEntry(f"entry_id: {entry.entry_id} appears more than once")
        seen_entry_ids.add(entry.entry_id)
        key = (entry.municipality_id, entry.year, line_key(entry))
        line_entries = per_line.get(key)
        if line_entries is None:
            per_line[key] = [entry]
        else:
            line_entries.append(entry)
    return [
        LineIncrement(municipality_id, year, _line_total(per_line[(municipality_id, year, line)]))
        for municipality_id, year, line in sorted(
            per_line, key=lambda key: (key[0], key[1], _template_order(key[2]))
        )
    ]


def _line_total(entries: list[LedgerEntry]) -> InventoryLine:
    """The line of entries that share one line key, as `add_to_line` entry by entry makes it."""
    first = line_of(entries[0])
    activity_amount = first.activity_amount
    kg_co2e = first.kg_co2e
    entry_count = first.entry_count
    distance = first.distance_km
    without_distance = first.entries_without_distance
    add = EXACT_ARITHMETIC.add
    for entry in entries[1:]:
        count = -1 if entry.posting is Posting.REVERSAL else 1
        activity_amount = add(activity_amount, entry.activity_amount)
        kg_co2e = add(kg_co2e, entry.kg_co2e)
        entry_count += count
        distance = add(distance, distance_km(entry.distance_m))
        if entry.distance_m is None:
            without_distance += count
    return replace(
        first,
        activity_amount=activity_amount,
        kg_co2e=kg_co2e,
        entry_count=entry_count,
        distance_km=distance,
        entries_without_distance=without_distance,
    )


def inventory_from_lines(
    municipality_id: str, year: int, lines: Iterable[InventoryLine]
) -> Inventory:
    """The inventory made of running line totals, in the reporting template's order."""
    ordered = tuple(sorted(lines, key=lambda line: _template_order(_line_key_of(line))))
    return Inventory(
        municipality_id=municipality_id,
        year=year,
        lines=ordered,
        emissions_kg_co2e=_total_kg(ordered, EntryKind.EMISSION),
        avoided_kg_co2e=_total_kg(ordered, EntryKind.AVOIDED_EMISSION),
        entry_count=sum(line.entry_count for line in ordered),
    )


def summarise(municipality_id: str, year: int, entries: Iterable[LedgerEntry]) -> Inventory:
    """Total the entries of one municipality and year; other entries are ignored."""
    lines: dict[_LineKey, InventoryLine] = {}
    seen_entry_ids: set[str] = set()
    for entry in entries:
        if entry.municipality_id != municipality_id or entry.year != year:
            continue
        if entry.entry_id in seen_entry_ids:
            raise DuplicateEntry(f"entry_id: {entry.entry_id} appears more than once")
        seen_entry_ids.add(entry.entry_id)
        key = line_key(entry)
        lines[key] = add_to_line(lines.get(key), entry)
    return inventory_from_lines(municipality_id, year, lines.values())


def _line_key_of(line: InventoryLine) -> _LineKey:
    return (
        line.sector,
        line.subsector,
        line.energy_carrier,
        line.kind,
        line.basis,
        line.activity_unit,
    )


def _total_kg(lines: tuple[InventoryLine, ...], kind: EntryKind) -> Decimal:
    total = Decimal(0)
    for line in lines:
        if line.kind is kind:
            total = EXACT_ARITHMETIC.add(total, line.kg_co2e)
    return total
