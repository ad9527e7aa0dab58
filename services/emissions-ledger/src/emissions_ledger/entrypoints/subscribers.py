"""Kafka subscribers of emissions-ledger: fleet activity and locker events."""

from __future__ import annotations

from emissions_ledger.adapters.events import activity_from_event, collection_from_event
from emissions_ledger.handlers import LedgerHandlers
from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.lockers.v1 import lockers_pb2
from servicekit import topics
from servicekit.kafka import EventContext
from servicekit.runtime import ServiceRuntime


def subscribe(runtime: ServiceRuntime, handlers: LedgerHandlers) -> None:
    async def on_activity(event: fleet_pb2.VehicleActivity, _context: EventContext) -> None:
        await handlers.post_activity(activity_from_event(event))

    async def on_locker_event(event: lockers_pb2.LockerEvent, _context: EventContext) -> None:
        # Deposits carry no emissions of their own; a collection replaces a dedicated trip.
        if event.WhichOneof("kind") == "waste_collected":
            await handlers.post_collection(collection_from_event(event))

    runtime.consume(
        topics.ACTIVITY, "emissions-ledger.activity", fleet_pb2.VehicleActivity, on_activity
    )
    runtime.consume(
        topics.LOCKER_EVENTS, "emissions-ledger.lockers", lockers_pb2.LockerEvent, on_locker_event
    )
