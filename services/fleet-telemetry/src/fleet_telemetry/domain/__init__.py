"""Fleet telemetry domain: vehicles and the activity derived from their cumulative counters."""

from fleet_telemetry.domain.activity import (
    ACTIVITY_ID_NAMESPACE,
    MAX_PLAUSIBLE_SPEED_KMH,
    Activity,
    CounterReading,
    SampleRejected,
    TelemetrySample,
    activity_event_id,
    derive_activity,
)
from fleet_telemetry.domain.vehicles import (
    COMBUSTION_FUEL_TYPES,
    MAX_REGISTRATION_PLATE_LENGTH,
    CovenantSubsector,
    FuelType,
    InvalidVehicle,
    Vehicle,
    VehicleClass,
    default_subsector,
    is_slug,
    new_vehicle,
)

__all__ = [
    "ACTIVITY_ID_NAMESPACE",
    "COMBUSTION_FUEL_TYPES",
    "MAX_PLAUSIBLE_SPEED_KMH",
    "MAX_REGISTRATION_PLATE_LENGTH",
    "Activity",
    "CounterReading",
    "CovenantSubsector",
    "FuelType",
    "InvalidVehicle",
    "SampleRejected",
    "TelemetrySample",
    "Vehicle",
    "VehicleClass",
    "activity_event_id",
    "default_subsector",
    "derive_activity",
    "is_slug",
    "new_vehicle",
]
