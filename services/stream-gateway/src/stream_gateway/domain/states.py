"""Derived states, folded from the events of one topic in topic order.

Each fold keeps the current state per key and the position (partition, offset) of the record
that last changed it. A state is whole (never a delta): a client that resumes is sent the
current state of every key changed at or after its position and nothing else, so it has missed
no change and been sent none twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Generic, TypeVar

from stream_gateway.domain.filters import StreamFilter, Subject
from stream_gateway.domain.positions import changed_since

KeyT = TypeVar("KeyT")
StateT = TypeVar("StateT")

EMISSION = "ENTRY_KIND_EMISSION"
AVOIDED_EMISSION = "ENTRY_KIND_AVOIDED_EMISSION"
RECENT_COLLECTIONS = 5


class StateFold(Generic[KeyT, StateT]):
    def __init__(self) -> None:
        self.states: dict[KeyT, StateT] = {}
        self.changed_at: dict[KeyT, tuple[int, int]] = {}

    def subject(self, key: KeyT) -> Subject:
        raise NotImplementedError

    def _touch(self, key: KeyT, partition: int, offset: int) -> None:
        self.changed_at[key] = (partition, offset)

    def changed_keys(self, position: dict[int, int], wanted: StreamFilter) -> Iterator[KeyT]:
        """Keys whose state changed at or after `position` and that match the filter."""
        for key, change in self.changed_at.items():
            if changed_since(change, position) and wanted.matches(self.subject(key)):
                yield key


# Inventory totals per municipality and reporting year (the ledger's GetInventory, live).


@dataclass(frozen=True, slots=True)
class EntryFacts:
    municipality_id: str
    year: int
    sector: str
    subsector: str
    energy_carrier: str
    kind: str
    activity_unit: str
    activity_amount: Decimal
    kg_co2e: Decimal


@dataclass(slots=True)
class LineTotal:
    activity_amount: Decimal = Decimal(0)
    kg_co2e: Decimal = Decimal(0)
    entry_count: int = 0


# (sector, subsector, energy carrier, kind, activity unit)
LineKey = tuple[str, str, str, str, str]


@dataclass(slots=True)
class InventoryTotals:
    municipality_id: str
    year: int
    lines: dict[LineKey, LineTotal] = field(default_factory=dict)
    emissions_kg_co2e: Decimal = Decimal(0)
    avoided_kg_co2e: Decimal = Decimal(0)
    entry_count: int = 0

    def add(self, entry: EntryFacts) -> None:
        key = (entry.sector, entry.subsector, entry.energy_carrier, entry.kind, entry.activity_unit)
        line = self.lines.setdefault(key, LineTotal())
        line.activity_amount += entry.activity_amount
        line.kg_co2e += entry.kg_co2e
        line.entry_count += 1
        if entry.kind == AVOIDED_EMISSION:
            self.avoided_kg_co2e += entry.kg_co2e
        else:
            self.emissions_kg_co2e += entry.kg_co2e
        self.entry_count += 1


class InventoryFold(StateFold[tuple[str, int], InventoryTotals]):
    def apply(self, entry: EntryFacts, partition: int, offset: int) -> tuple[str, int]:
        key = (entry.municipality_id, entry.year)
        totals = self.states.get(key)
        if totals is None:
            totals = self.states[key] = InventoryTotals(entry.municipality_id, entry.year)
        totals.add(entry)
        self._touch(key, partition, offset)
        return key

    def subject(self, key: tuple[str, int]) -> Subject:
        return Subject(municipality=key[0], year=key[1])


# Fleet distance and energy per municipality, reporting year and fuel.


@dataclass(frozen=True, slots=True)
class ActivityFacts:
    municipality_id: str
    year: int
    fuel_type: str
    distance_m: int
    fuel_used_ml: int
    energy_used_wh: int


@dataclass(slots=True)
class FuelTotal:
    distance_m: int = 0
    fuel_used_ml: int = 0
    energy_used_wh: int = 0
    activities: int = 0


@dataclass(slots=True)
class FleetTotals:
    municipality_id: str
    year: int
    fuels: dict[str, FuelTotal] = field(default_factory=dict)


class FleetFold(StateFold[tuple[str, int], FleetTotals]):
    def apply(self, activity: ActivityFacts, partition: int, offset: int) -> tuple[str, int]:
        key = (activity.municipality_id, activity.year)
        totals = self.states.get(key)
        if totals is None:
            totals = self.states[key] = FleetTotals(activity.municipality_id, activity.year)
        fuel = totals.fuels.setdefault(activity.fuel_type, FuelTotal())
        fuel.distance_m += activity.distance_m
        fuel.fuel_used_ml += activity.fuel_used_ml
        fuel.energy_used_wh += activity.energy_used_wh
        fuel.activities += 1
        self._touch(key, partition, offset)
        return key

    def subject(self, key: tuple[str, int]) -> Subject:
        return Subject(municipality=key[0], year=key[1])


# Occupancy of the MoLo hubs: the deposits a hub holds until a carrier collects them.


@dataclass(frozen=True, slots=True)
class Deposit:
    deposit_id: str
    mass_g: int
    hazardous: bool


@dataclass(frozen=True, slots=True)
class Collection:
    collection_id: str
    carrier_partner_id: str
    deposit_ids: tuple[str, ...]
    mass_g: int
    carrier_extra_distance_m: int
    occurred_at: datetime


@dataclass(slots=True)
class HubOccupancy:
    hub_id: str
    municipality_id: str
    held: dict[str, Deposit] = field(default_factory=dict)
    deposits_total: int = 0
    collections_total: int = 0
    mass_g_collected: int = 0
    last_deposit_at: datetime | None = None
    recent_collections: deque[Collection] = field(
        default_factory=lambda: deque(maxlen=RECENT_COLLECTIONS)
    )

    @property
    def mass_g_held(self) -> int:
        return sum(deposit.mass_g for deposit in self.held.values())

    @property
    def hazardous_held(self) -> int:
        return sum(1 for deposit in self.held.values() if deposit.hazardous)


class OccupancyFold(StateFold[str, HubOccupancy]):
    def _hub(self, hub_id: str, municipality_id: str) -> HubOccupancy:
        hub = self.states.get(hub_id)
        if hub is None:
            hub = self.states[hub_id] = HubOccupancy(hub_id, municipality_id)
        return hub

    def deposited(
        self,
        hub_id: str,
        municipality_id: str,
        deposit: Deposit,
        at: datetime,
        partition: int,
        offset: int,
    ) -> str:
        hub = self._hub(hub_id, municipality_id)
        if deposit.deposit_id not in hub.held:
            hub.held[deposit.deposit_id] = deposit
            hub.deposits_total += 1
        hub.last_deposit_at = at
        self._touch(hub_id, partition, offset)
        return hub_id

    def collected(
        self, hub_id: str, municipality_id: str, collection: Collection, partition: int, offset: int
    ) -> str:
        """The deposits a collection names leave the hub (a deposit from before the topic's
        retained history is not known and not counted)."""
        hub = self._hub(hub_id, municipality_id)
        for deposit_id in collection.deposit_ids:
            hub.held.pop(deposit_id, None)
        hub.collections_total += 1
        hub.mass_g_collected += collection.mass_g
        hub.recent_collections.appendleft(collection)
        self._touch(hub_id, partition, offset)
        return hub_id

    def subject(self, key: str) -> Subject:
        return Subject(municipality=self.states[key].municipality_id, hub=key)
