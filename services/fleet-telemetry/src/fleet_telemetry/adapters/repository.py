"""Vehicles and their counter state in the service's database.

The sample path costs a fixed number of statements per batch, whatever its size: one query
locking and versioning the batch's vehicles, one loading the states not cached, one upsert of
the changed states (and the outbox insert beside it).
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_telemetry.adapters.tables import baseline_corrections, vehicle_state, vehicles
from fleet_telemetry.domain import (
    CovenantSubsector,
    FuelType,
    OwnerKind,
    Reading,
    StreamPosition,
    Vehicle,
    VehicleClass,
    VehicleState,
    VehicleTotals,
    reclassified,
    to_datetime,
)
from servicekit.database import insert_if_absent, insert_rows, insert_statement, one_of

_TOTALS = (
    "distance_m",
    "fuel_used_ml",
    "energy_used_wh",
    "activity_records",
    "samples_accepted",
    "samples_late",
    "samples_quarantined",
    "counter_resets",
)
_STATE_COLUMNS = [column for column in vehicle_state.c if column.name != "vehicle_id"]


class FleetRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_vehicle(self, vehicle_id: str) -> Vehicle | None:
        row = (
            await self.session.execute(select(vehicles).where(vehicles.c.vehicle_id == vehicle_id))
        ).first()
        return None if row is None else _vehicle_from_row(row)

    async def save_vehicle(self, vehicle: Vehicle) -> int:
        """Registers or updates a vehicle (a new revision either way); returns the revision."""
        fields = {
            "owner_partner_id": vehicle.owner_partner_id,
            "municipality_id": vehicle.municipality_id,
            "fuel_type": vehicle.fuel_type.value,
            "vehicle_class": vehicle.vehicle_class.value,
            "covenant_subsector": vehicle.covenant_subsector.value,
            "registration_plate": vehicle.registration_plate,
            "covenant_subsector_assigned": vehicle.subsector_assigned,
        }
        statement = insert_statement(self.session, vehicles).values(
            vehicle_id=vehicle.vehicle_id, revision=1, **fields
        )
        revision: int = (
            await self.session.execute(
                statement.on_conflict_do_update(
                    index_elements=["vehicle_id"],
                    set_={**fields, "revision": vehicles.c.revision + 1},
                ).returning(vehicles.c.revision)
            )
        ).scalar_one()
        await insert_if_absent(self.session, vehicle_state, {"vehicle_id": vehicle.vehicle_id})
        return revision

    async def reclassify_owner(self, owner_partner_id: str, owner_kind: OwnerKind) -> int:
        """Moves the owner's vehicles whose sub-sector follows its kind to the kind's
        sub-sector, each as a new revision (so cached states reload and the next activity
        carries it); returns how many moved."""
        rows = await self.session.execute(
            select(vehicles)
            .where(
                vehicles.c.owner_partner_id == owner_partner_id,
                vehicles.c.covenant_subsector_assigned.is_(False),
            )
            .order_by(vehicles.c.vehicle_id)
            .with_for_update()
        )
        moved = 0
        for row in rows:
            vehicle = _vehicle_from_row(row)
            after = reclassified(vehicle, owner_kind)
            if after == vehicle:
                continue
            await self.session.execute(
                update(vehicles)
                .where(vehicles.c.vehicle_id == vehicle.vehicle_id)
                .values(
                    covenant_subsector=after.covenant_subsector.value,
                    revision=vehicles.c.revision + 1,
                )
            )
            moved += 1
        return moved

    async def lock_versions(
        self, vehicle_ids: Collection[str]
    ) -> dict[str, tuple[int, StreamPosition | None]]:
        """Revision and stream position of the registered ones among the vehicles, locked for
        the rest of the transaction (on PostgreSQL; SQLite's writer lock already is)."""
        rows = await self.session.execute(
            select(
                vehicles.c.vehicle_id,
                vehicles.c.revision,
                vehicle_state.c.position_partition,
                vehicle_state.c.position_offset,
            )
            .join(vehicle_state, vehicle_state.c.vehicle_id == vehicles.c.vehicle_id)
            .where(one_of(self.session, vehicles.c.vehicle_id, vehicle_ids))
            # One order for every locker, so two transactions cannot deadlock on these rows.
            .order_by(vehicles.c.vehicle_id)
            .with_for_update()
        )
        return {
            row.vehicle_id: (
                row.revision,
                None
                if row.position_partition is None
                else (row.position_partition, row.position_offset),
            )
            for row in rows
        }

    async def load_states(self, vehicle_ids: Collection[str]) -> list[VehicleState]:
        rows = await self.session.execute(
            _states_query().where(one_of(self.session, vehicles.c.vehicle_id, vehicle_ids))
        )
        return [_state_from_row(row) for row in rows]

    async def states_in_partitions(self, partitions: Collection[int]) -> list[VehicleState]:
        """The states whose last record came from one of the partitions."""
        rows = await self.session.execute(
            _states_query().where(vehicle_state.c.position_partition.in_(partitions))
        )
        return [_state_from_row(row) for row in rows]

    async def state(self, vehicle_id: str, *, for_update: bool = False) -> VehicleState | None:
        query = _states_query().where(vehicles.c.vehicle_id == vehicle_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).first()
        return None if row is None else _state_from_row(row)

    async def save_states(self, states: Sequence[VehicleState]) -> None:
        """Writes the states with one multi-row upsert (revisions are the vehicles' own)."""
        await insert_rows(
            self.session,
            vehicle_state,
            [_state_values(state) for state in states],
            replace_conflicts_on=["vehicle_id"],
        )

    async def next_revision(self, vehicle_id: str) -> int:
        revision: int = (
            await self.session.execute(
                update(vehicles)
                .where(vehicles.c.vehicle_id == vehicle_id)
                .values(revision=vehicles.c.revision + 1)
                .returning(vehicles.c.revision)
            )
        ).scalar_one()
        return revision

    async def record_correction(
        self,
        *,
        vehicle_id: str,
        revision: int,
        requested_by: str,
        reason: str,
        previous: Reading | None,
        new: Reading,
        dropped_pending: Reading | None,
    ) -> None:
        await self.session.execute(
            baseline_corrections.insert().values(
                vehicle_id=vehicle_id,
                revision=revision,
                set_at=datetime.now(UTC),
                requested_by=requested_by,
                reason=reason,
                previous_event_id=None if previous is None else previous.event_id,
                previous_at=None if previous is None else to_datetime(previous.at_us),
                previous_odometer_m=None if previous is None else previous.odometer_m,
                previous_fuel_used_ml=None if previous is None else previous.fuel_used_ml,
                previous_energy_used_wh=None if previous is None else previous.energy_used_wh,
                new_at=to_datetime(new.at_us),
                new_odometer_m=new.odometer_m,
                new_fuel_used_ml=new.fuel_used_ml,
                new_energy_used_wh=new.energy_used_wh,
                dropped_pending_event_id=None
                if dropped_pending is None
                else dropped_pending.event_id,
            )
        )

    async def corrections(self, vehicle_id: str) -> list[Row[Any]]:
        """The vehicle's baseline corrections, oldest first."""
        rows = await self.session.execute(
            select(baseline_corrections)
            .where(baseline_corrections.c.vehicle_id == vehicle_id)
            .order_by(baseline_corrections.c.id)
        )
        return list(rows)


def _states_query() -> Any:
    return select(vehicles, *_STATE_COLUMNS).join(
        vehicle_state, vehicle_state.c.vehicle_id == vehicles.c.vehicle_id
    )


def _vehicle_from_row(row: Any) -> Vehicle:
    # Owners and municipalities repeat across a fleet: one string each, not one per vehicle of
    # the state cache (which holds every vehicle of the partitions this instance owns).
    return Vehicle(
        vehicle_id=row.vehicle_id,
        owner_partner_id=sys.intern(row.owner_partner_id),
        municipality_id=sys.intern(row.municipality_id),
        fuel_type=FuelType(row.fuel_type),
        vehicle_class=VehicleClass(row.vehicle_class),
        covenant_subsector=CovenantSubsector(row.covenant_subsector),
        registration_plate=row.registration_plate,
        subsector_assigned=row.covenant_subsector_assigned,
    )


def _reading_from_row(row: Any, prefix: str) -> Reading | None:
    at_us = getattr(row, f"{prefix}_at_us")
    if at_us is None:
        return None
    return Reading(
        at_us=at_us,
        odometer_m=getattr(row, f"{prefix}_odometer_m"),
        fuel_used_ml=getattr(row, f"{prefix}_fuel_used_ml"),
        energy_used_wh=getattr(row, f"{prefix}_energy_used_wh"),
        event_id=getattr(row, f"{prefix}_event_id") or "",
    )


def _state_from_row(row: Any) -> VehicleState:
    return VehicleState(
        vehicle=_vehicle_from_row(row),
        revision=row.revision,
        baseline=_reading_from_row(row, "baseline"),
        pending_reset=_reading_from_row(row, "pending"),
        position=(
            None
            if row.position_partition is None
            else (row.position_partition, row.position_offset)
        ),
        totals=VehicleTotals(**{name: getattr(row, name) for name in _TOTALS}),
    )


def _reading_values(reading: Reading | None, prefix: str) -> dict[str, Any]:
    if reading is None:
        return {
            f"{prefix}_event_id": None,
            f"{prefix}_at_us": None,
            f"{prefix}_odometer_m": None,
            f"{prefix}_fuel_used_ml": None,
            f"{prefix}_energy_used_wh": None,
        }
    return {
        f"{prefix}_event_id": reading.event_id,
        f"{prefix}_at_us": reading.at_us,
        f"{prefix}_odometer_m": reading.odometer_m,
        f"{prefix}_fuel_used_ml": reading.fuel_used_ml,
        f"{prefix}_energy_used_wh": reading.energy_used_wh,
    }


def _state_values(state: VehicleState) -> dict[str, Any]:
    totals = state.totals
    position = state.position
    return {
        "vehicle_id": state.vehicle.vehicle_id,
        **_reading_values(state.baseline, "baseline"),
        **_reading_values(state.pending_reset, "pending"),
        "position_partition": None if position is None else position[0],
        "position_offset": None if position is None else position[1],
        "distance_m": totals.distance_m,
        "fuel_used_ml": totals.fuel_used_ml,
        "energy_used_wh": totals.energy_used_wh,
        "activity_records": totals.activity_records,
        "samples_accepted": totals.samples_accepted,
        "samples_late": totals.samples_late,
        "samples_quarantined": totals.samples_quarantined,
        "counter_resets": totals.counter_resets,
    }
