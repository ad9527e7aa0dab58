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
from servicekit.errors import PermanentEventError
from servicekit.kafka import Delivered, Rejection
from servicekit.runtime import ServiceRuntime

ACTIVITY_GROUP = "emissions-ledger.activity"
LOCKER_GROUP = "emissions-ledger.lockers"


def subscribe(runtime: ServiceRuntime, handlers: LedgerHandlers) -> None:
    async def post_activities(
        batch: Sequence[Delivered[fleet_pb2.VehicleActivity]],
    ) -> Sequence[Rejection]:
        activities: list[tuple[int, VehicleActivity]] = []
        rejections: list[Rejection] = []
        for index, delivered in enumerate(batch):
            try:
                activities.append((index, activity_from_event(delivered.event)))
            except PermanentEventError as error:
                rejections.append(Rejection(index, error.reason, error.detail))
        return [*rejections, *await handlers.post_activities(activities)]

    async def post_collections(
        batch: Sequence[Delivered[lockers_pb2.LockerEvent]],
    ) -> Sequence[Rejection]:
        # Deposits carry no emissions of their own, but say what a later collection takes; a
        # collection replaces a dedicated trip. One hub's events share a partition, in order.
        deposits: list[WasteDeposit] = []
        collections: list[tuple[int, WasteCollection]] = []
        for index, delivered in enumerate(batch):
            kind = delivered.event.WhichOneof("kind")
            if kind == "waste_deposited":
                deposits.append(deposit_from_event(delivered.event))
            elif kind == "waste_collected":
                collections.append((index, collection_from_event(delivered.event)))
        return await handlers.post_locker_events(deposits, collections)

    runtime.consume_batches(
        topics.ACTIVITY,
        ACTIVITY_GROUP,
        fleet_pb2.VehicleActivity,
        post_activities,
        subject_of=lambda activity: activity.vehicle.vehicle_id,
    )
    runtime.consume_batches(
        topics.LOCKER_EVENTS,
        LOCKER_GROUP,
        lockers_pb2.LockerEvent,
        post_collections,
        subject_of=lambda event: event.hub_id,
    )
