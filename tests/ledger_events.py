"""Vehicle activity as fleet-telemetry publishes it, for the ledger's tests."""

from __future__ import annotations

from datetime import datetime

from greenpartners.fleet.v1 import fleet_pb2
from servicekit.codec import to_timestamp

AALBORG = "aalborg-kommune"


def vehicle_activity(
    event_id: str,
    fuel_type: int,
    start: datetime,
    end: datetime | None = None,
    *,
    municipality: str = AALBORG,
    owner: str | None = None,
    distance_m: int = 10_000,
    fuel_used_ml: int = 0,
    energy_used_wh: int = 0,
    sample_count: int = 0,
    vehicle_id: str | None = None,
) -> fleet_pb2.VehicleActivity:
    """A van's activity over [start, end] (an instant when no end), vehicle `v-<event_id>`
    unless named; a
    vehicle the municipality owns is its fleet's, another owner's private and commercial
    transport. With `sample_count`, the samples it sums are named after the event."""
    owner = owner or municipality
    end = end or start
    return fleet_pb2.VehicleActivity(
        event_id=event_id,
        occurred_at=to_timestamp(end),
        vehicle=fleet_pb2.Vehicle(
            vehicle_id=vehicle_id or f"v-{event_id}",
            owner_partner_id=owner,
            municipality_id=municipality,
            fuel_type=fuel_type,  # type: ignore[arg-type]
            vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
            covenant_subsector=fleet_pb2.COVENANT_SUBSECTOR_MUNICIPAL_FLEET
            if owner == municipality
            else fleet_pb2.COVENANT_SUBSECTOR_PRIVATE_COMMERCIAL_TRANSPORT,
        ),
        period_start=to_timestamp(start),
        period_end=to_timestamp(end),
        distance_m=distance_m,
        fuel_used_ml=fuel_used_ml,
        energy_used_wh=energy_used_wh,
        source_sample_event_id=f"s-{event_id}-{sample_count}",
        sample_count=sample_count,
        first_sample_event_id=f"s-{event_id}-1" if sample_count else "",
        last_sample_event_id=f"s-{event_id}-{sample_count}" if sample_count else "",
    )
