"""Wire form of hubs and of the events locker-hubs writes."""

from __future__ import annotations

from greenpartners.lockers.v1 import lockers_pb2
from locker_hubs.adapters.repository import RecordedCollection
from locker_hubs.domain import Deposit, Hub, WasteType
from servicekit.codec import to_timestamp
from servicekit.enums import from_proto, to_proto


def hub_to_proto(hub: Hub) -> lockers_pb2.Hub:
    return lockers_pb2.Hub(
        hub_id=hub.hub_id,
        name=hub.name,
        municipality_id=hub.municipality_id,
        latitude=hub.latitude,
        longitude=hub.longitude,
        compartments=[
            lockers_pb2.Compartment(
                compartment_id=compartment.compartment_id,
                size=to_proto(lockers_pb2.CompartmentSize, compartment.size),
                hazardous_only=compartment.hazardous_only,
                state=to_proto(lockers_pb2.CompartmentState, compartment.state),
            )
            for compartment in hub.compartments
        ],
    )


def waste_type_from_proto(number: int) -> WasteType | None:
    return from_proto(lockers_pb2.WasteType, number, WasteType)


def waste_deposited_event(hub: Hub, deposit: Deposit, event_id: str) -> lockers_pb2.LockerEvent:
    return lockers_pb2.LockerEvent(
        event_id=event_id,
        occurred_at=to_timestamp(deposit.deposited_at),
        hub_id=hub.hub_id,
        municipality_id=hub.municipality_id,
        waste_deposited=lockers_pb2.WasteDeposited(
            deposit_id=deposit.deposit_id,
            compartment_id=deposit.compartment_id,
            waste_type=to_proto(lockers_pb2.WasteType, deposit.waste_type),
            hazardous=deposit.hazardous,
            mass_g=deposit.mass_g,
        ),
    )


def waste_collected_event(
    hub: Hub, collection: RecordedCollection, event_id: str
) -> lockers_pb2.LockerEvent:
    return lockers_pb2.LockerEvent(
        event_id=event_id,
        occurred_at=to_timestamp(collection.collected_at),
        hub_id=hub.hub_id,
        municipality_id=hub.municipality_id,
        waste_collected=lockers_pb2.WasteCollected(
            collection_id=collection.collection_id,
            carrier_partner_id=collection.carrier_partner_id,
            deposit_ids=list(collection.deposit_ids),
            mass_g=collection.mass_g,
            carrier_extra_distance_m=collection.extra_distance_m,
            includes_hazardous=collection.includes_hazardous,
        ),
    )
