"""Kafka subscribers of emissions-ledger: fleet activity and locker events, a batch at a time."""

from __future__ import annotations

from collections.abc import Sequence

from emissions_ledger.adapters.events import (
    activity_from_event,
    collection_from_event,
    deposit_from_event,
)
from emissions_ledger.domain import VehicleActivity, WasteCollection, WasteDeposit
from emissions_ledger.handlers import LedgerHandlers
from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.lockers.v1 import lockers_pb2
from servicekit import topics
from servicekit.kafka import Delivered, Rejection
from servicekit.runtime import ServiceRuntime

ACTIVITY_GROUP = "emissions-ledger.activity"
LOCKER_GROUP = "emissions-ledger.lockers"


def locker_event(event: lockers_pb2.LockerEvent) -> WasteDeposit | WasteCollection | None:
    """What the ledger takes from a locker event: a deposit, a collection, or nothing."""
    kind = event.WhichOneof("kind")
    if kind == "waste_deposited":
        return deposit_from_event(event)
    if kind == "waste_collected":
        return collection_from_event(event)
    return None


def subscribe(runtime: ServiceRuntime, handlers: LedgerHandlers) -> None:
    async def post_activities(batch: Sequence[Delivered[VehicleActivity]]) -> Sequence[Rejection]:
        return await handlers.post_activities(
            [(index, delivered.event) for index, delivered in enumerate(batch)]
        )

    async def post_collections(
        batch: Sequence[Delivered[WasteDeposit | WasteCollection | None]],
    ) -> Sequence[Rejection]:
        # Deposits carry no emissions of their own, but say what a later collection takes; a
        # collection replaces a dedicated trip. One hub's events share a partition, in order.
        deposits: list[WasteDeposit] = []
        collections: list[tuple[int, WasteCollection]] = []
        for index, delivered in enumerate(batch):
            event = delivered.event
            if isinstance(event, WasteDeposit):
                deposits.append(event)
            elif isinstance(event, WasteCollection):
                collections.append((index, event))
        return await handlers.post_locker_events(deposits, collections)

    runtime.consume_batches(
        topics.ACTIVITY,
        ACTIVITY_GROUP,
        fleet_pb2.VehicleActivity,
        post_activities,
        # An activity the ledger cannot read (PermanentEventError) is dead-lettered alone.
        convert=activity_from_event,
        subject_of=lambda activity: activity.vehicle.vehicle_id,
    )
    runtime.consume_batches(
        topics.LOCKER_EVENTS,
        LOCKER_GROUP,
        lockers_pb2.LockerEvent,
        post_collections,
        convert=locker_event,
        subject_of=lambda event: event.hub_id,
    )
