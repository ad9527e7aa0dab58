"""Vehicles, their last counter readings and totals, in the service's database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_telemetry.adapters.tables import counter_readings, vehicle_totals, vehicles
from fleet_telemetry.domain import (
    Activity,
    CounterReading,
    CovenantSubsector,
    FuelType,
    Vehicle,
    VehicleClass,
)
from servicekit.database import insert_if_absent, upsert


class FleetRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_vehicle(self, vehicle_id: str) -> Vehicle | None:
        row = (
            await self.session.execute(select(vehicles).where(vehicles.c.vehicle_id == vehicle_id))
        ).first()
        return None if row is None else _vehicle_from_row(row)

    async def vehicle_with_reading(
        self, vehicle_id: str
    ) -> tuple[Vehicle | None, CounterReading | None]:
        """The vehicle and its last accepted reading in one query: the hot path of samples."""
        row = (
            await self.session.execute(
                select(
                    vehicles,
                    counter_readings.c.event_id.label("reading_event_id"),
                    counter_readings.c.occurred_at,
                    counter_readings.c.odometer_m,
                    counter_readings.c.fuel_used_ml,
                    counter_readings.c.energy_used_wh,
                )
                .outerjoin(counter_readings, counter_readings.c.vehicle_id == vehicles.c.vehicle_id)
                .where(vehicles.c.vehicle_id == vehicle_id)
            )
        ).first()
        if row is None:
            return None, None
        reading = None
        if row.reading_event_id is not None:
            reading = CounterReading(
                occurred_at=row.occurred_at,
                odometer_m=row.odometer_m,
                fuel_used_ml=row.fuel_used_ml,
                energy_used_wh=row.energy_used_wh,
                event_id=row.reading_event_id,
            )
        return _vehicle_from_row(row), reading

    async def save_vehicle(self, vehicle: Vehicle) -> None:
        await upsert(
            self.session,
            vehicles,
            {
                "vehicle_id": vehicle.vehicle_id,
                "owner_partner_id": vehicle.owner_partner_id,
                "municipality_id": vehicle.municipality_id,
                "fuel_type": vehicle.fuel_type.value,
                "vehicle_class": vehicle.vehicle_class.value,
                "covenant_subsector": vehicle.covenant_subsector.value,
                "registration_plate": vehicle.registration_plate,
            },
            key=["vehicle_id"],
        )

    async def save_reading(self, vehicle_id: str, reading: CounterReading) -> None:
        await upsert(
            self.session,
            counter_readings,
            {
                "vehicle_id": vehicle_id,
                "event_id": reading.event_id,
                "occurred_at": reading.occurred_at,
                "odometer_m": reading.odometer_m,
                "fuel_used_ml": reading.fuel_used_ml,
                "energy_used_wh": reading.energy_used_wh,
            },
            key=["vehicle_id"],
        )

    async def open_totals(self, vehicle_id: str) -> None:
        await insert_if_absent(
            self.session,
            vehicle_totals,
            {
                "vehicle_id": vehicle_id,
                "distance_m": 0,
                "fuel_used_ml": 0,
                "energy_used_wh": 0,
                "activity_records": 0,
            },
        )

    async def add_to_totals(self, activity: Activity) -> None:
        await self.session.execute(
            update(vehicle_totals)
            .where(vehicle_totals.c.vehicle_id == activity.vehicle_id)
            .values(
                distance_m=vehicle_totals.c.distance_m + activity.distance_m,
                fuel_used_ml=vehicle_totals.c.fuel_used_ml + activity.fuel_used_ml,
                energy_used_wh=vehicle_totals.c.energy_used_wh + activity.energy_used_wh,
                activity_records=vehicle_totals.c.activity_records + 1,
            )
        )

    async def totals(self, vehicle_id: str) -> tuple[int, int, int, int]:
        row = (
            await self.session.execute(
                select(vehicle_totals).where(vehicle_totals.c.vehicle_id == vehicle_id)
            )
        ).first()
        if row is None:
            return (0, 0, 0, 0)
        return (row.distance_m, row.fuel_used_ml, row.energy_used_wh, row.activity_records)


def _vehicle_from_row(row: Any) -> Vehicle:
    return Vehicle(
        vehicle_id=row.vehicle_id,
        owner_partner_id=row.owner_partner_id,
        municipality_id=row.municipality_id,
        fuel_type=FuelType(row.fuel_type),
        vehicle_class=VehicleClass(row.vehicle_class),
        covenant_subsector=CovenantSubsector(row.covenant_subsector),
        registration_plate=row.registration_plate,
    )
