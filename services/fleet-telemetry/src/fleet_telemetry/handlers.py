"""fleet-telemetry's use cases."""

from __future__ import annotations

from dataclasses import dataclass

from fleet_telemetry.adapters.events import activity_event
from fleet_telemetry.adapters.repository import FleetRepository
from fleet_telemetry.domain import (
    CovenantSubsector,
    FuelType,
    InvalidVehicle,
    SampleRejected,
    TelemetrySample,
    Vehicle,
    VehicleClass,
    derive_activity,
    new_vehicle,
)
from servicekit import topics
from servicekit.database import claim_event
from servicekit.errors import InvalidArgument, NotFound, PermanentEventError
from servicekit.outbox import add_to_outbox
from servicekit.runtime import UnitOfWork
from servicekit.topics import TopicNames

SAMPLE_CONSUMER = "fleet-telemetry.samples"


@dataclass(frozen=True)
class RegisterVehicle:
    vehicle_id: str
    owner_partner_id: str
    municipality_id: str
    fuel_type: FuelType | None
    vehicle_class: VehicleClass | None
    covenant_subsector: CovenantSubsector | None
    registration_plate: str


@dataclass(frozen=True)
class VehicleTotals:
    distance_m: int
    fuel_used_ml: int
    energy_used_wh: int
    activity_records: int


class FleetHandlers:
    def __init__(
        self, unit_of_work: UnitOfWork, names: TopicNames, municipal_partner_ids: frozenset[str]
    ) -> None:
        self.unit_of_work = unit_of_work
        self.names = names
        self.municipal_partner_ids = municipal_partner_ids

    async def register_vehicle(self, command: RegisterVehicle) -> Vehicle:
        try:
            vehicle = new_vehicle(
                vehicle_id=command.vehicle_id,
                owner_partner_id=command.owner_partner_id,
                municipality_id=command.municipality_id,
                fuel_type=command.fuel_type,
                vehicle_class=command.vehicle_class,
                covenant_subsector=command.covenant_subsector,
                registration_plate=command.registration_plate,
                municipal_partner_ids=self.municipal_partner_ids,
            )
        except InvalidVehicle as error:
            raise InvalidArgument(f"vehicle.{error.field}", error.message) from error
        async with self.unit_of_work() as session:
            repository = FleetRepository(session)
            await repository.save_vehicle(vehicle)
            await repository.open_totals(vehicle.vehicle_id)
        return vehicle

    async def get_vehicle(self, vehicle_id: str) -> tuple[Vehicle, VehicleTotals]:
        if not vehicle_id:
            raise InvalidArgument("vehicle_id", "required")
        async with self.unit_of_work.read() as session:
            repository = FleetRepository(session)
            vehicle = await repository.get_vehicle(vehicle_id)
            if vehicle is None:
                raise NotFound(f"no vehicle {vehicle_id!r}")
            totals = VehicleTotals(*await repository.totals(vehicle_id))
        return vehicle, totals

    async def record_sample(self, sample: TelemetrySample) -> None:
        """Turns a sample into activity since the vehicle's last reading, exactly once."""
        async with self.unit_of_work() as session:
            if not await claim_event(session, SAMPLE_CONSUMER, sample.event_id):
                return
            repository = FleetRepository(session)
            vehicle, previous = await repository.vehicle_with_reading(sample.vehicle_id)
            if vehicle is None:
                raise PermanentEventError(
                    "unknown_vehicle", f"vehicle {sample.vehicle_id!r} is not registered"
                )
            try:
                reading, activity = derive_activity(vehicle, previous, sample)
            except SampleRejected as error:
                raise PermanentEventError(error.reason, error.message) from error
            await repository.save_reading(vehicle.vehicle_id, reading)
            if activity is not None:
                await repository.add_to_totals(activity)
                await add_to_outbox(
                    session,
                    self.names(topics.ACTIVITY),
                    vehicle.vehicle_id,
                    activity_event(vehicle, activity),
                )
