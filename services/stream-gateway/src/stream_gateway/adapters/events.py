"""The topics' protobuf events as the gateway sees them: what each is about (for filters), the
facts the derived states fold, and JSON in protobuf's JSON mapping."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from google.protobuf import json_format
from google.protobuf.message import Message

from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.ledger.v1 import ledger_pb2
from greenpartners.lockers.v1 import lockers_pb2
from servicekit.codec import from_timestamp
from servicekit.database import decimal_text
from stream_gateway.domain.filters import Subject
from stream_gateway.domain.states import (
    ActivityFacts,
    Collection,
    Deposit,
    EntryFacts,
    FleetTotals,
    HubOccupancy,
    InventoryTotals,
)

# Reporting years are calendar years in the municipality's time, as in the ledger.
MUNICIPAL_TIME_ZONE = ZoneInfo("Europe/Copenhagen")
_LAST_INSTANT = timedelta(microseconds=1)


def to_json(message: Message) -> str:
    """Protobuf's canonical JSON mapping (lowerCamelCase names, enum names, 64-bit integers as
    strings, RFC 3339 times), fields at their default value included, on one line."""
    return json.dumps(
        json_format.MessageToDict(message, always_print_fields_with_no_presence=True),
        separators=(",", ":"),
    )


def _enum_name(enum: Any, number: int) -> str:
    try:
        return str(enum.Name(number))
    except ValueError:
        return str(number)


def reporting_year(period_end: datetime) -> int:
    """The year of an activity's last instant (its period is half-open)."""
    return (period_end - _LAST_INSTANT).astimezone(MUNICIPAL_TIME_ZONE).year


# ledger.entries.v1


def entry_subject(event: ledger_pb2.LedgerEntryPosted) -> Subject:
    entry = event.entry
    return Subject(
        municipality=entry.municipality_id,
        year=entry.year,
        sector=_enum_name(ledger_pb2.Sector, entry.sector),
    )


def entry_facts(event: ledger_pb2.LedgerEntryPosted) -> EntryFacts:
    entry = event.entry
    return EntryFacts(
        municipality_id=entry.municipality_id,
        year=entry.year,
        sector=_enum_name(ledger_pb2.Sector, entry.sector),
        subsector=_enum_name(ledger_pb2.Subsector, entry.subsector),
        energy_carrier=_enum_name(ledger_pb2.EnergyCarrier, entry.energy_carrier),
        kind=_enum_name(ledger_pb2.EntryKind, entry.kind),
        activity_unit=entry.activity_unit,
        activity_amount=Decimal(entry.activity_amount or "0"),
        kg_co2e=Decimal(entry.kg_co2e or "0"),
    )


def inventory_json(totals: InventoryTotals) -> str:
    """The same message as the ledger's GetInventory answers."""
    response = ledger_pb2.GetInventoryResponse(
        municipality_id=totals.municipality_id,
        year=totals.year,
        emissions_kg_co2e=decimal_text(totals.emissions_kg_co2e),
        avoided_kg_co2e=decimal_text(totals.avoided_kg_co2e),
        entry_count=totals.entry_count,
    )
    for (sector, subsector, carrier, kind, unit), line in sorted(totals.lines.items()):
        response.lines.append(
            ledger_pb2.InventoryLine(
                sector=ledger_pb2.Sector.Value(sector),
                subsector=ledger_pb2.Subsector.Value(subsector),
                energy_carrier=ledger_pb2.EnergyCarrier.Value(carrier),
                kind=ledger_pb2.EntryKind.Value(kind),
                activity_amount=decimal_text(line.activity_amount),
                activity_unit=unit,
                kg_co2e=decimal_text(line.kg_co2e),
                entry_count=line.entry_count,
            )
        )
    return to_json(response)


# fleet.activity.v1


def activity_subject(event: fleet_pb2.VehicleActivity) -> Subject:
    return Subject(
        municipality=event.vehicle.municipality_id,
        year=reporting_year(from_timestamp(event.period_end)),
        vehicle=event.vehicle.vehicle_id,
        fuel=_enum_name(fleet_pb2.FuelType, event.vehicle.fuel_type),
    )


def activity_facts(event: fleet_pb2.VehicleActivity) -> ActivityFacts:
    return ActivityFacts(
        municipality_id=event.vehicle.municipality_id,
        year=reporting_year(from_timestamp(event.period_end)),
        fuel_type=_enum_name(fleet_pb2.FuelType, event.vehicle.fuel_type),
        distance_m=event.distance_m,
        fuel_used_ml=event.fuel_used_ml,
        energy_used_wh=event.energy_used_wh,
    )


def fleet_json(totals: FleetTotals) -> str:
    return json.dumps(
        {
            "municipalityId": totals.municipality_id,
            "year": totals.year,
            "fuels": [
                {
                    "fuelType": fuel,
                    "distanceM": total.distance_m,
                    "fuelUsedMl": total.fuel_used_ml,
                    "energyUsedWh": total.energy_used_wh,
                    "activities": total.activities,
                }
                for fuel, total in sorted(totals.fuels.items())
            ],
        },
        separators=(",", ":"),
    )


# lockers.events.v1


def locker_subject(event: lockers_pb2.LockerEvent) -> Subject:
    return Subject(municipality=event.municipality_id, hub=event.hub_id)


def deposit_of(event: lockers_pb2.LockerEvent) -> Deposit | None:
    if event.WhichOneof("kind") != "waste_deposited":
        return None
    deposited = event.waste_deposited
    return Deposit(deposited.deposit_id, deposited.mass_g, deposited.hazardous)


def collection_of(event: lockers_pb2.LockerEvent) -> Collection | None:
    if event.WhichOneof("kind") != "waste_collected":
        return None
    collected = event.waste_collected
    return Collection(
        collection_id=collected.collection_id,
        carrier_partner_id=collected.carrier_partner_id,
        deposit_ids=tuple(collected.deposit_ids),
        mass_g=collected.mass_g,
        carrier_extra_distance_m=collected.carrier_extra_distance_m,
        occurred_at=from_timestamp(event.occurred_at),
    )


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def occupancy_json(hub: HubOccupancy) -> str:
    return json.dumps(
        {
            "hubId": hub.hub_id,
            "municipalityId": hub.municipality_id,
            "depositsHeld": len(hub.held),
            "hazardousHeld": hub.hazardous_held,
            "massGHeld": hub.mass_g_held,
            "depositsTotal": hub.deposits_total,
            "collectionsTotal": hub.collections_total,
            "massGCollected": hub.mass_g_collected,
            "lastDepositAt": _time(hub.last_deposit_at),
            "recentCollections": [
                {
                    "collectionId": c.collection_id,
                    "carrierPartnerId": c.carrier_partner_id,
                    "deposits": len(c.deposit_ids),
                    "massG": c.mass_g,
                    "carrierExtraDistanceM": c.carrier_extra_distance_m,
                    "occurredAt": _time(c.occurred_at),
                }
                for c in hub.recent_collections
            ],
        },
        separators=(",", ":"),
    )
