"""Programme views: what the Green Fleets and MoLo Hubs programmes report, computed from the
same entries as the Covenant inventory. Each entry belongs to one programme at most, by its
provenance: metered vehicle activity to Green Fleets, a carrier collection's modelled entries
(its avoided trip and its detour) to MoLo Hubs. So the views never add up to more than the
entries hold.

Reversals count negatively (amounts, km and counts), so a restated entry counts once, priced
as restated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum

from emissions_ledger.domain.entries import (
    EXACT_ARITHMETIC,
    KILOWATT_HOUR,
    LITRE,
    EntryKind,
    LedgerEntry,
    Posting,
)
from emissions_ledger.domain.factors import EnergyCarrier, InventoryMethod
from emissions_ledger.domain.inventory import distance_km

# Shares and per-km figures come from a division and are rounded to one decimal.
_RATIO_ARITHMETIC = Context(prec=40, rounding=ROUND_HALF_EVEN)
_ONE_DECIMAL = Decimal("0.1")
# Carriers whose km count as fossil-free: electricity and biofuels (HVO100, biogas).
FOSSIL_FREE_CARRIERS = frozenset({EnergyCarrier.ELECTRICITY, EnergyCarrier.BIOFUEL})


class Programme(StrEnum):
    GREEN_FLEETS = "green_fleets"
    MOLO_HUBS = "molo_hubs"


class FleetOwnership(StrEnum):
    """Whose vehicles: the municipality's own, or another partner's (contractors)."""

    MUNICIPAL = "municipal"
    CONTRACTOR = "contractor"
    UNKNOWN = "unknown"


def ownership_of(entry: LedgerEntry) -> FleetOwnership:
    if entry.owner_partner_id is None:
        return FleetOwnership.UNKNOWN
    if entry.owner_partner_id == entry.municipality_id:
        return FleetOwnership.MUNICIPAL
    return FleetOwnership.CONTRACTOR


def _sign(entry: LedgerEntry) -> int:
    return -1 if entry.posting is Posting.REVERSAL else 1


def _add(left: Decimal, right: Decimal) -> Decimal:
    return EXACT_ARITHMETIC.add(left, right)


@dataclass(frozen=True)
class CarrierFigures:
    energy_carrier: EnergyCarrier
    distance_km: Decimal = Decimal(0)
    litres: Decimal = Decimal(0)
    kwh: Decimal = Decimal(0)
    kg_co2e: Decimal = Decimal(0)
    # kg of the entries that know their km: the numerator of CO2 per km.
    kg_co2e_with_distance: Decimal = Decimal(0)
    entry_count: int = 0
    entries_without_distance: int = 0

    def plus(self, entry: LedgerEntry) -> CarrierFigures:
        known = entry.distance_m is not None
        return CarrierFigures(
            energy_carrier=self.energy_carrier,
            distance_km=_add(self.distance_km, distance_km(entry.distance_m)),
            litres=_add(self.litres, entry.activity_amount)
            if entry.activity_unit == LITRE
            else self.litres,
            kwh=_add(self.kwh, entry.activity_amount)
            if entry.activity_unit == KILOWATT_HOUR
            else self.kwh,
            kg_co2e=_add(self.kg_co2e, entry.kg_co2e),
            kg_co2e_with_distance=_add(self.kg_co2e_with_distance, entry.kg_co2e)
            if known
            else self.kg_co2e_with_distance,
            entry_count=self.entry_count + _sign(entry),
            entries_without_distance=self.entries_without_distance + (0 if known else _sign(entry)),
        )


@dataclass(frozen=True)
class FleetFigures:
    ownership: FleetOwnership | None
    carriers: tuple[CarrierFigures, ...]
    distance_km: Decimal
    fossil_free_distance_km: Decimal
    # Percent to one decimal; None without km.
    fossil_free_share_percent: Decimal | None
    kg_co2e: Decimal
    # Grams per km to one decimal over the entries that know their km; None without km.
    g_co2e_per_km: Decimal | None


def fleet_figures(
    ownership: FleetOwnership | None, carriers: Iterable[CarrierFigures]
) -> FleetFigures:
    ordered = tuple(sorted(carriers, key=lambda c: list(EnergyCarrier).index(c.energy_carrier)))
    km = fossil_free = kg = kg_with_km = Decimal(0)
    for carrier in ordered:
        km = _add(km, carrier.distance_km)
        kg = _add(kg, carrier.kg_co2e)
        kg_with_km = _add(kg_with_km, carrier.kg_co2e_with_distance)
        if carrier.energy_carrier in FOSSIL_FREE_CARRIERS:
            fossil_free = _add(fossil_free, carrier.distance_km)
    return FleetFigures(
        ownership=ownership,
        carriers=ordered,
        distance_km=km,
        fossil_free_distance_km=fossil_free,
        fossil_free_share_percent=_ratio(fossil_free * 100, km),
        kg_co2e=kg,
        g_co2e_per_km=_ratio(kg_with_km * 1000, km),
    )


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    if denominator <= 0:
        return None
    return _RATIO_ARITHMETIC.divide(numerator, denominator).quantize(
        _ONE_DECIMAL, rounding=ROUND_HALF_EVEN
    )


@dataclass(frozen=True)
class GreenFleetsView:
    fleets: tuple[FleetFigures, ...]
    total: FleetFigures


@dataclass
class GreenFleetsTally:
    """Green Fleets' figures, an entry at a time (a year may hold many): metered vehicle
    emissions only, per fleet (by the vehicle's owner) and energy carrier."""

    _figures: dict[tuple[FleetOwnership, EnergyCarrier], CarrierFigures] = field(
        default_factory=dict
    )

    def add(self, entry: LedgerEntry) -> None:
        if not is_fleet_entry(entry):
            raise ValueError(f"entry {entry.entry_id} is not metered vehicle activity")
        key = (ownership_of(entry), entry.energy_carrier)
        figures = self._figures.get(key, CarrierFigures(entry.energy_carrier))
        self._figures[key] = figures.plus(entry)

    def view(self) -> GreenFleetsView:
        fleets = tuple(
            fleet_figures(
                ownership,
                [figures for (owner, _), figures in self._figures.items() if owner is ownership],
            )
            for ownership in FleetOwnership
            if any(owner is ownership for owner, _ in self._figures)
        )
        totals: dict[EnergyCarrier, CarrierFigures] = {}
        for figures in self._figures.values():
            totals[figures.energy_carrier] = _sum_carriers(
                totals.get(figures.energy_carrier), figures
            )
        return GreenFleetsView(fleets, fleet_figures(None, totals.values()))


def _sum_carriers(one: CarrierFigures | None, other: CarrierFigures) -> CarrierFigures:
    if one is None:
        return other
    return CarrierFigures(
        energy_carrier=one.energy_carrier,
        distance_km=_add(one.distance_km, other.distance_km),
        litres=_add(one.litres, other.litres),
        kwh=_add(one.kwh, other.kwh),
        kg_co2e=_add(one.kg_co2e, other.kg_co2e),
        kg_co2e_with_distance=_add(one.kg_co2e_with_distance, other.kg_co2e_with_distance),
        entry_count=one.entry_count + other.entry_count,
        entries_without_distance=one.entries_without_distance + other.entries_without_distance,
    )


def is_fleet_entry(entry: LedgerEntry) -> bool:
    """Metered vehicle activity: an emission that is no collection's modelled figure."""
    return (
        entry.collection is None
        and entry.avoided_trip is None
        and entry.kind is (EntryKind.EMISSION)
    )


@dataclass(frozen=True)
class DepositTotals:
    """The deposits the ledger saw at a municipality's hubs in a year."""

    count: int = 0
    mass_g: int = 0
    hazardous_mass_g: int = 0


@dataclass(frozen=True)
class MoloHubsView:
    deposit_count: int
    deposited_kg: Decimal
    hazardous_deposited_kg: Decimal
    collection_count: int
    collected_kg: Decimal
    avoided_trip_km: Decimal
    avoided_kg_co2e: Decimal
    detour_km: Decimal
    detour_kg_co2e: Decimal
    # Detours of carriers whose own vehicles are metered that year (inside metered fuel).
    detour_kg_co2e_within_metered: Decimal

    @property
    def net_avoided_kg_co2e(self) -> Decimal:
        return EXACT_ARITHMETIC.subtract(self.avoided_kg_co2e, self.detour_kg_co2e)


@dataclass
class MoloHubsTally:
    """MoLo Hubs' figures, an entry at a time: the collections' modelled entries only."""

    deposits: DepositTotals
    # Partners whose vehicles' activity is metered in the ledger that year.
    metered_owners: frozenset[str]
    _collections: int = 0
    _collected_g: int = 0
    _avoided_km: Decimal = Decimal(0)
    _avoided_kg: Decimal = Decimal(0)
    _detour_km: Decimal = Decimal(0)
    _detour_kg: Decimal = Decimal(0)
    _within_metered_kg: Decimal = Decimal(0)

    def add(self, entry: LedgerEntry) -> None:
        collection = entry.collection
        if collection is None:
            raise ValueError(f"entry {entry.entry_id} is no carrier collection's")
        km = distance_km(entry.distance_m)
        if entry.kind is EntryKind.AVOIDED_EMISSION:
            # One avoided trip per collection: it counts the collection and its mass.
            self._collections += _sign(entry)
            self._collected_g += _sign(entry) * collection.mass_g
            self._avoided_km = _add(self._avoided_km, km)
            self._avoided_kg = _add(self._avoided_kg, entry.kg_co2e)
            return
        self._detour_km = _add(self._detour_km, km)
        self._detour_kg = _add(self._detour_kg, entry.kg_co2e)
        if collection.carrier_partner_id in self.metered_owners:
            self._within_metered_kg = _add(self._within_metered_kg, entry.kg_co2e)

    def view(self) -> MoloHubsView:
        return MoloHubsView(
            deposit_count=self.deposits.count,
            deposited_kg=_kg(self.deposits.mass_g),
            hazardous_deposited_kg=_kg(self.deposits.hazardous_mass_g),
            collection_count=self._collections,
            collected_kg=_kg(self._collected_g),
            avoided_trip_km=self._avoided_km,
            avoided_kg_co2e=self._avoided_kg,
            detour_km=self._detour_km,
            detour_kg_co2e=self._detour_kg,
            detour_kg_co2e_within_metered=self._within_metered_kg,
        )


def _kg(grams: int) -> Decimal:
    return EXACT_ARITHMETIC.scaleb(Decimal(grams), -3)


def detours_within_metered(
    entries: Iterable[LedgerEntry], metered_owners: frozenset[str]
) -> list[LedgerEntry]:
    """The carrier detours whose carrier's own vehicles are metered in the ledger the same
    year: the metered fuel already holds the detour, so the Covenant inventory leaves the
    modelled figure out rather than count those litres twice."""
    return [
        entry
        for entry in entries
        if entry.collection is not None
        and entry.kind is EntryKind.EMISSION
        and entry.collection.carrier_partner_id in metered_owners
    ]


@dataclass(frozen=True)
class ProgrammeView:
    """One programme's figures for a municipality's year, with the method they are priced in."""

    municipality_id: str
    year: int
    method: InventoryMethod
    green_fleets: GreenFleetsView | None = None
    molo_hubs: MoloHubsView | None = None
