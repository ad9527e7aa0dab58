"""Wire form of the events and messages fleet-telemetry reads and writes.

Times cross as protobuf Timestamps and are integer microseconds inside, converted field by field
(no datetime per sample).
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from fleet_telemetry.domain import (
    Activity,
    CovenantSubsector,
    FuelType,
    QualityEvent,
    QualityKind,
    Reading,
    TelemetrySample,
    Vehicle,
    VehicleClass,
    VehicleTotals,
)
from greenpartners.fleet.v1 import fleet_pb2
from servicekit.enums import from_proto, to_proto

_QUALITY_KINDS = {
    QualityKind.COUNTER_RESET: fleet_pb2.QUALITY_EVENT_KIND_COUNTER_RESET,
    QualityKind.COUNTER_GLITCH: fleet_pb2.QUALITY_EVENT_KIND_COUNTER_GLITCH,
    QualityKind.BASELINE_SET: fleet_pb2.QUALITY_EVENT_KIND_BASELINE_SET,
}


def timestamp_us(stamp: Timestamp) -> int:
    return stamp.seconds * 1_000_000 + stamp.nanos // 1_000


def timestamp(at_us: int) -> Timestamp:
    seconds, micros = divmod(at_us, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1_000)


def sample_from_event(event: fleet_pb2.TelemetrySample) -> TelemetrySample:
    # Positional, each field read once: this runs for every sample.
    has = event.HasField
    if has("occurred_at"):
        # A protobuf Timestamp is always UTC: only a missing one has no usable time.
        stamp = event.occurred_at
        occurred_at_us: int | None = stamp.seconds * 1_000_000 + stamp.nanos // 1_000
    else:
        occurred_at_us = None
    return TelemetrySample(
        event.event_id,
        event.vehicle_id,
        occurred_at_us,
        event.odometer_m,
        event.fuel_used_ml if has("fuel_used_ml") else None,
        event.energy_used_wh if has("energy_used_wh") else None,
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


def reading_to_proto(reading: Reading) -> fleet_pb2.CounterReading:
    message = fleet_pb2.CounterReading(
        occurred_at=timestamp(reading.at_us),
        odometer_m=reading.odometer_m,
        sample_event_id=reading.event_id,
    )
    if reading.fuel_used_ml is not None:
        message.fuel_used_ml = reading.fuel_used_ml
    if reading.energy_used_wh is not None:
        message.energy_used_wh = reading.energy_used_wh
    return message


def totals_to_proto(totals: VehicleTotals) -> fleet_pb2.VehicleTotals:
    return fleet_pb2.VehicleTotals(
        distance_m=totals.distance_m,
        fuel_used_ml=totals.fuel_used_ml,
        energy_used_wh=totals.energy_used_wh,
        activity_records=totals.activity_records,
        samples_accepted=totals.samples_accepted,
        samples_late=totals.samples_late,
        samples_quarantined=totals.samples_quarantined,
        counter_resets=totals.counter_resets,
    )


def activity_event(vehicle: fleet_pb2.Vehicle, activity: Activity) -> fleet_pb2.VehicleActivity:
    period_end = timestamp(activity.period_end_us)
    return fleet_pb2.VehicleActivity(
        event_id=activity.event_id,
        # When the activity happened, not when it was handled: a batch handled again
        # produces the very same event.
        occurred_at=period_end,
        vehicle=vehicle,
        period_start=timestamp(activity.period_start_us),
        period_end=period_end,
        distance_m=activity.distance_m,
        fuel_used_ml=activity.fuel_used_ml,
        energy_used_wh=activity.energy_used_wh,
        source_sample_event_id=activity.source_sample_event_id,
        sample_count=activity.sample_count,
        first_sample_event_id=activity.first_sample_event_id,
        last_sample_event_id=activity.last_sample_event_id,
    )


def quality_event(event: QualityEvent) -> fleet_pb2.TelemetryQualityEvent:
    message = fleet_pb2.TelemetryQualityEvent(
        event_id=event.event_id,
        occurred_at=timestamp(event.at_us),
        vehicle_id=event.vehicle_id,
        kind=_QUALITY_KINDS[event.kind],
        sample_event_id=event.sample_event_id,
        detail=event.detail,
    )
    if event.previous_baseline is not None:
        message.previous_baseline.CopyFrom(reading_to_proto(event.previous_baseline))
    if event.new_baseline is not None:
        message.new_baseline.CopyFrom(reading_to_proto(event.new_baseline))
    return message
