"""Restatement: re-pricing entries from their stored activity when a factor is published or
corrected, by posting a reversal and a replacement for each, never by editing an entry."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from emissions_ledger.domain.entries import (
    ENTRY_ID_NAMESPACE,
    EXACT_ARITHMETIC,
    EntryKind,
    LedgerEntry,
    Posting,
    Sector,
    Subsector,
    entry_id_for,
)
from emissions_ledger.domain.factors import (
    EmissionFactor,
    FactorApproach,
    FactorCatalogue,
    InventoryMethod,
    NoFactor,
)
from emissions_ledger.domain.hourly import HourlyPricing

# Entries posted before factors had approach keys name the approach by its description.
LEGACY_APPROACHES = {"IPCC, tank-to-wheel, CO2": "ipcc"}


def approach_key(approach: str) -> str:
    """The approach key of a factor as an entry recorded it (older entries: its description)."""
    return LEGACY_APPROACHES.get(approach, approach)


def revision_entry_id(entry: LedgerEntry, revision: int, posting: Posting) -> str:
    """Deterministic id of an entry of a source's revision: the same restatement computed
    twice (a retry, or two runs at once) posts the same entries, which the ledger holds once."""
    if posting is Posting.ORIGINAL:
        return entry_id_for(entry.source_event_id, entry.kind)
    name = f"{entry.source_event_id}:{entry.kind}:{revision}:{posting}"
    return str(uuid.uuid5(ENTRY_ID_NAMESPACE, name))


def method_of_entry(entry: LedgerEntry) -> InventoryMethod:
    """The approach and gas the entry was priced in."""
    return InventoryMethod(FactorApproach(approach_key(entry.factor.approach)), entry.factor.gas)


def current_factor(
    entry: LedgerEntry,
    catalogue: FactorCatalogue,
    hourly: HourlyPricing | None = None,
    method: InventoryMethod | None = None,
) -> EmissionFactor | None:
    """The factor the catalogue prices the entry's activity with today under `method` (the
    municipality's; None: the one the entry was priced in), when it differs from the entry's
    own; None when the entry is priced as the catalogue says (or cannot be re-priced: no
    factor for its year, or one in another activity unit).

    With `hourly`, electricity of a municipality priced by the hour takes the intensity of its
    hour when that is known now (an hour that arrived after the entry was posted with the
    yearly factor re-prices it), and the yearly factor otherwise (also for hourly entries of a
    municipality no longer priced by the hour)."""
    method = method or method_of_entry(entry)
    approach = method.approach.value
    try:
        factor = catalogue.for_method(entry.energy_carrier, entry.year, method)
    except NoFactor:
        return None
    if factor.activity_unit != entry.activity_unit:
        return None
    if hourly is not None:
        factor = hourly.factor_for(
            entry.municipality_id, entry.activity_started_at, entry.activity_at, factor, approach
        )
    if factor.prices_like(entry.factor):
        return None
    return factor


def restated_pair(
    entry: LedgerEntry, factor: EmissionFactor, restatement_id: str
) -> tuple[LedgerEntry, LedgerEntry]:
    """The reversal of `entry` and its replacement priced with `factor`, from its activity."""
    if entry.posting is Posting.REVERSAL:
        raise ValueError(f"entry {entry.entry_id} is a reversal; only what it reversed is current")
    revision = entry.revision + 1
    reversal = replace(
        entry,
        entry_id=revision_entry_id(entry, revision, Posting.REVERSAL),
        activity_amount=EXACT_ARITHMETIC.minus(entry.activity_amount),
        distance_m=None if entry.distance_m is None else -entry.distance_m,
        kg_co2e=EXACT_ARITHMETIC.minus(entry.kg_co2e),
        posting=Posting.REVERSAL,
        revision=revision,
        restates_entry_id=entry.entry_id,
        restatement_id=restatement_id,
        late=False,
    )
    restatement = replace(
        entry,
        entry_id=revision_entry_id(entry, revision, Posting.RESTATEMENT),
        factor=factor,
        kg_co2e=EXACT_ARITHMETIC.multiply(entry.activity_amount, factor.value),
        posting=Posting.RESTATEMENT,
        revision=revision,
        restates_entry_id=entry.entry_id,
        restatement_id=restatement_id,
        late=False,
    )
    return reversal, restatement


def restatement_entries(
    current: Iterable[LedgerEntry],
    catalogue: FactorCatalogue,
    restatement_id: str,
    hourly: HourlyPricing | None = None,
    method: InventoryMethod | None = None,
) -> list[LedgerEntry]:
    """Reversal and replacement of every current entry the catalogue (and, for electricity
    priced by the hour, the intensities known now) prices otherwise, under `method` (a
    municipality that changed its approach has its year re-priced in it)."""
    entries: list[LedgerEntry] = []
    for entry in current:
        factor = current_factor(entry, catalogue, hourly, method)
        if factor is not None:
            entries.extend(restated_pair(entry, factor, restatement_id))
    return entries


@dataclass(frozen=True)
class SectorChange:
    """What a restatement changed on one sector, sub-sector and kind, in kg."""

    sector: Sector
    subsector: Subsector
    kind: EntryKind
    kg_before: Decimal
    kg_after: Decimal
    restated_entries: int

    @property
    def kg_difference(self) -> Decimal:
        return EXACT_ARITHMETIC.subtract(self.kg_after, self.kg_before)


def changes_per_sector(posted: Iterable[LedgerEntry]) -> list[SectorChange]:
    """The difference the posted reversals and replacements make, per sector, sub-sector and
    kind, in the reporting template's order."""
    totals: dict[tuple[Sector, Subsector, EntryKind], tuple[Decimal, Decimal, int]] = {}
    for entry in posted:
        key = (entry.sector, entry.subsector, entry.kind)
        before, after, count = totals.get(key, (Decimal(0), Decimal(0), 0))
        if entry.posting is Posting.REVERSAL:
            before = EXACT_ARITHMETIC.subtract(before, entry.kg_co2e)
            count += 1
        elif entry.posting is Posting.RESTATEMENT:
            after = EXACT_ARITHMETIC.add(after, entry.kg_co2e)
        totals[key] = (before, after, count)
    sectors, subsectors, kinds = (list(Sector), list(Subsector), list(EntryKind))
    return [
        SectorChange(sector, subsector, kind, before, after, count)
        for (sector, subsector, kind), (before, after, count) in sorted(
            totals.items(),
            key=lambda item: (
                sectors.index(item[0][0]),
                subsectors.index(item[0][1]),
                kinds.index(item[0][2]),
            ),
        )
    ]
