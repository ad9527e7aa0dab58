"""Wire form of the events fleet-telemetry reads and writes."""

from __future__ import annotations

from datetime import UTC, datetime

from fleet_telemetry.domain import (
    Activity,
    CovenantSubsector,
    FuelType,
    TelemetrySample,
    Vehicle,
    VehicleClass,
)
from greenpartners.fleet.v1 import fleet_pb2
from servicekit.codec import from_timestamp, to_timestamp
from servicekit.enums import from_proto, to_proto


def sample_from_event(event: fleet_pb2.TelemetrySample) -> TelemetrySample:
    return TelemetrySample(
        event_id=event.event_id,
        vehicle_id=event.vehicle_id,
        occurred_at=from_timestamp(event.occurred_at),
        odometer_m=event.odometer_m,
        fuel_used_ml=event.fuel_used_ml if event.HasField("fuel_used_ml") else None,
        energy_used_wh=event.energy_used_wh if event.HasField("energy_used_wh") else None,
    )


def vehicle_to_proto(vehicle: Vehicle) -> fleet_pb2.Vehicle:
    return fleet_pb2.Vehicle(
        vehicle_id=vehicle.vehicle_id,
        owner_partner_id=vehicle.owner_partner_id,
        municipality_id=vehicle.municipality_id,
        fuel_type=to_proto(fleet_pb2.FuelType, vehicle.fuel_type),
        vehicle_class=to_proto(fleet_pb2.VehicleClass, vehicle.vehicle_class),
        covenant_subsector=to_proto(fleet_pb2.CovenantSubsector, vehicle.covenant_subsector),
        registration_plate=vehicle.registration_plate,
    )


def vehicle_fields_from_proto(
    vehicle: fleet_pb2.Vehicle,
) -> tuple[FuelType | None, VehicleClass | None, CovenantSubsector | None]:
    return (
        from_proto(fleet_pb2.FuelType, vehicle.fuel_type, FuelType),
        from_proto(fleet_pb2.VehicleClass, vehicle.vehicle_class, VehicleClass),
        from_proto(fleet_pb2.CovenantSubsector, vehicle.covenant_subsector, CovenantSubsector),
    )


def activity_event(vehicle: Vehicle, activity: Activity) -> fleet_pb2.VehicleActivity:
    return fleet_pb2.VehicleActivity(
        event_id=activity.event_id,
        occurred_at=to_timestamp(datetime.now(UTC)),
        vehicle=vehicle_to_proto(vehicle),
        period_start=to_timestamp(activity.period_start),
        period_end=to_timestamp(activity.period_end),
        distance_m=activity.distance_m,
        fuel_used_ml=activity.fuel_used_ml,
        energy_used_wh=activity.energy_used_wh,
        source_sample_event_id=activity.source_sample_event_id,
    )
