"""The gateway's streams: which topic each reads, how its records are filtered and rendered.

Event streams send every record of a topic that matches the client's filter, as protobuf JSON.
State streams send whole derived states (one per key) each time a record changes one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.ledger.v1 import ledger_pb2
from greenpartners.lockers.v1 import lockers_pb2
from servicekit import topics
from servicekit.codec import from_timestamp
from stream_gateway.adapters import events
from stream_gateway.domain.filters import Subject
from stream_gateway.domain.states import FleetFold, InventoryFold, OccupancyFold, StateFold


@dataclass(frozen=True)
class EventStream:
    name: str
    topic: str
    message_type: type[Message]
    event: str
    subject: Callable[[Any], Subject]
    filters: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class StateStream:
    name: str
    topic: str
    message_type: type[Message]
    event: str
    filters: tuple[str, ...]
    description: str
    new_fold: Callable[[], StateFold[Any, Any]]
    # Folds one record; returns the keys whose state it changed.
    apply: Callable[[Any, Any, int, int], list[Any]]
    render: Callable[[Any, Any], str]
    # JSON Schema of one state (the AsyncAPI document and docs/streams.md show it).
    schema: dict[str, Any]


def _apply_entry(
    fold: InventoryFold, event: ledger_pb2.LedgerEntryPosted, p: int, o: int
) -> list[Any]:
    return [fold.apply(events.entry_facts(event), p, o)]


def _apply_activity(fold: FleetFold, event: fleet_pb2.VehicleActivity, p: int, o: int) -> list[Any]:
    return [fold.apply(events.activity_facts(event), p, o)]


def _apply_locker(fold: OccupancyFold, event: lockers_pb2.LockerEvent, p: int, o: int) -> list[Any]:
    deposit = events.deposit_of(event)
    if deposit is not None:
        at = from_timestamp(event.occurred_at)
        return [fold.deposited(event.hub_id, event.municipality_id, deposit, at, p, o)]
    collection = events.collection_of(event)
    if collection is not None:
        return [fold.collected(event.hub_id, event.municipality_id, collection, p, o)]
    return []


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


_INT = {"type": "integer"}
_STR = {"type": "string"}
_TIME = {"type": ["string", "null"], "format": "date-time"}

FLEET_SCHEMA = _object(
    {
        "municipalityId": _STR,
        "year": _INT,
        "fuels": {
            "type": "array",
            "items": _object(
                {
                    "fuelType": {**_STR, "description": "greenpartners.fleet.v1.FuelType name"},
                    "distanceM": _INT,
                    "fuelUsedMl": _INT,
                    "energyUsedWh": _INT,
                    "activities": _INT,
                }
            ),
        },
    },
    ["municipalityId", "year", "fuels"],
)

OCCUPANCY_SCHEMA = _object(
    {
        "hubId": _STR,
        "municipalityId": _STR,
        "depositsHeld": {
            **_INT,
            "description": "deposits (one compartment each) not collected yet",
        },
        "hazardousHeld": _INT,
        "massGHeld": _INT,
        "depositsTotal": _INT,
        "collectionsTotal": _INT,
        "massGCollected": _INT,
        "lastDepositAt": _TIME,
        "recentCollections": {
            "type": "array",
            "items": _object(
                {
                    "collectionId": _STR,
                    "carrierPartnerId": _STR,
                    "deposits": _INT,
                    "massG": _INT,
                    "carrierExtraDistanceM": _INT,
                    "occurredAt": _TIME,
                }
            ),
        },
    },
    ["hubId", "municipalityId", "depositsHeld", "massGHeld"],
)

EVENT_STREAMS: tuple[EventStream, ...] = (
    EventStream(
        "ledger-entries",
        topics.LEDGER_ENTRIES,
        ledger_pb2.LedgerEntryPosted,
        "ledger-entry",
        events.entry_subject,
        ("municipality", "year", "sector"),
        "Every ledger entry as it is posted, with its provenance (source event, factor, version).",
    ),
    EventStream(
        "fleet-activity",
        topics.ACTIVITY,
        fleet_pb2.VehicleActivity,
        "vehicle-activity",
        events.activity_subject,
        ("municipality", "year", "vehicle", "fuel"),
        "Fleet activity per vehicle and activity window.",
    ),
    EventStream(
        "locker-events",
        topics.LOCKER_EVENTS,
        lockers_pb2.LockerEvent,
        "locker-event",
        events.locker_subject,
        ("municipality", "hub"),
        "Waste deposited into and collected from the MoLo hubs' boxes.",
    ),
)

STATE_STREAMS: tuple[StateStream, ...] = (
    StateStream(
        "inventory",
        topics.LEDGER_ENTRIES,
        ledger_pb2.LedgerEntryPosted,
        "inventory",
        ("municipality", "year"),
        "Covenant of Mayors inventory totals per municipality and year, each time an entry is "
        "posted (the message GetInventory answers, greenpartners.ledger.v1.GetInventoryResponse).",
        InventoryFold,
        _apply_entry,
        lambda fold, key: events.inventory_json(fold.states[key]),
        {"$ref": "greenpartners.ledger.v1.GetInventoryResponse"},
    ),
    StateStream(
        "fleet-distance",
        topics.ACTIVITY,
        fleet_pb2.VehicleActivity,
        "fleet-distance",
        ("municipality", "year"),
        "Fleet distance, fuel and energy per municipality, reporting year and fuel type.",
        FleetFold,
        _apply_activity,
        lambda fold, key: events.fleet_json(fold.states[key]),
        FLEET_SCHEMA,
    ),
    StateStream(
        "hub-occupancy",
        topics.LOCKER_EVENTS,
        lockers_pb2.LockerEvent,
        "hub-occupancy",
        ("municipality", "hub"),
        "Occupancy of each MoLo hub: deposits held until a carrier collects them, and the "
        "recent collections.",
        OccupancyFold,
        _apply_locker,
        lambda fold, key: events.occupancy_json(fold.states[key]),
        OCCUPANCY_SCHEMA,
    ),
)

STREAMS: dict[str, EventStream | StateStream] = {
    **{stream.name: stream for stream in EVENT_STREAMS},
    **{stream.name: stream for stream in STATE_STREAMS},
}
