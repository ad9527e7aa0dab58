"""fleet-telemetry's schema and its migrations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    case,
    insert,
    or_,
    select,
    text,
    update,
)

from fleet_telemetry.domain import microseconds
from servicekit.database import Migration, UtcDateTime, create_tables

metadata = MetaData()

vehicles = Table(
    "vehicles",
    metadata,
    Column("vehicle_id", String(64), primary_key=True),
    Column("owner_partner_id", String(64), nullable=False),
    Column("municipality_id", String(64), nullable=False),
    Column("fuel_type", String(32), nullable=False),
    Column("vehicle_class", String(32), nullable=False),
    Column("covenant_subsector", String(64), nullable=False),
    Column("registration_plate", String(16), nullable=False),
    # Bumped by every registration, re-classification and baseline correction: a consumer's
    # cached state of the vehicle with another revision is stale.
    Column("revision", BigInteger, nullable=False, server_default=text("1")),
    # The registration chose the sub-sector; otherwise it follows the owner's kind.
    Column("covenant_subsector_assigned", Boolean, nullable=False, server_default=text("false")),
    # Re-classifying an owner's vehicles when the registry changes its kind reads by owner.
    Index("ix_vehicles_owner", "owner_partner_id"),
)


def _reading_columns(prefix: str) -> list[Column[Any]]:
    """A counter reading; its time in microseconds since the epoch (UTC), exact and cheap to
    compare, as the fold keeps it."""
    return [
        Column(f"{prefix}_event_id", String(200), nullable=True),
        Column(f"{prefix}_at_us", BigInteger, nullable=True),
        Column(f"{prefix}_odometer_m", BigInteger, nullable=True),
        Column(f"{prefix}_fuel_used_ml", BigInteger, nullable=True),
        Column(f"{prefix}_energy_used_wh", BigInteger, nullable=True),
    ]


def _count(name: str) -> Column[int]:
    return Column(name, BigInteger, nullable=False, server_default=text("0"))


# Everything the fold of a vehicle's samples needs, one row per registered vehicle: the
# baseline, a pending reset candidate, the stream position of the last record taken in (the
# exactly-once high-water mark) and the running totals with their quality counters.
vehicle_state = Table(
    "vehicle_state",
    metadata,
    Column("vehicle_id", String(64), ForeignKey("vehicles.vehicle_id"), primary_key=True),
    *_reading_columns("baseline"),
    *_reading_columns("pending"),
    Column("position_partition", Integer, nullable=True),
    Column("position_offset", BigInteger, nullable=True),
    _count("distance_m"),
    _count("fuel_used_ml"),
    _count("energy_used_wh"),
    _count("activity_records"),
    _count("samples_accepted"),
    _count("samples_late"),
    _count("samples_quarantined"),
    _count("counter_resets"),
    # Preloading the states of newly assigned partitions reads by partition.
    Index("ix_vehicle_state_partition", "position_partition"),
)

# Audit trail of SetVehicleBaseline: who replaced which baseline with what, and why.
baseline_corrections = Table(
    "baseline_corrections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("vehicle_id", String(64), ForeignKey("vehicles.vehicle_id"), nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("set_at", UtcDateTime(), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("previous_event_id", String(200), nullable=True),
    Column("previous_at", UtcDateTime(), nullable=True),
    Column("previous_odometer_m", BigInteger, nullable=True),
    Column("previous_fuel_used_ml", BigInteger, nullable=True),
    Column("previous_energy_used_wh", BigInteger, nullable=True),
    Column("new_at", UtcDateTime(), nullable=False),
    Column("new_odometer_m", BigInteger, nullable=False),
    Column("new_fuel_used_ml", BigInteger, nullable=True),
    Column("new_energy_used_wh", BigInteger, nullable=True),
    # The reset candidate the correction dropped, if one was pending.
    Column("dropped_pending_event_id", String(200), nullable=True),
    Index("ix_baseline_corrections_vehicle", "vehicle_id", "revision"),
)

# The schema of migration 1, as released (counter_readings and vehicle_totals are gone since
# migration 2 moved their data into vehicle_state).
v1_metadata = MetaData()
v1_vehicles = Table(
    "vehicles",
    v1_metadata,
    Column("vehicle_id", String(64), primary_key=True),
    Column("owner_partner_id", String(64), nullable=False),
    Column("municipality_id", String(64), nullable=False),
    Column("fuel_type", String(32), nullable=False),
    Column("vehicle_class", String(32), nullable=False),
    Column("covenant_subsector", String(64), nullable=False),
    Column("registration_plate", String(16), nullable=False),
)
v1_counter_readings = Table(
    "counter_readings",
    v1_metadata,
    Column("vehicle_id", String(64), primary_key=True),
    Column("event_id", String(200), nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("odometer_m", BigInteger, nullable=False),
    Column("fuel_used_ml", BigInteger, nullable=True),
    Column("energy_used_wh", BigInteger, nullable=True),
)
v1_vehicle_totals = Table(
    "vehicle_totals",
    v1_metadata,
    Column("vehicle_id", String(64), primary_key=True),
    Column("distance_m", BigInteger, nullable=False),
    Column("fuel_used_ml", BigInteger, nullable=False),
    Column("energy_used_wh", BigInteger, nullable=False),
    Column("activity_records", BigInteger, nullable=False),
)


def _vehicle_state_from_released_tables(connection: Connection) -> None:
    connection.execute(text("ALTER TABLE vehicles ADD COLUMN revision BIGINT NOT NULL DEFAULT 1"))
    metadata.create_all(connection, tables=[vehicle_state, baseline_corrections])
    readings = v1_counter_readings
    totals = v1_vehicle_totals
    rows = connection.execute(
        select(
            v1_vehicles.c.vehicle_id,
            readings.c.event_id,
            readings.c.occurred_at,
            readings.c.odometer_m,
            readings.c.fuel_used_ml,
            readings.c.energy_used_wh,
            totals.c.distance_m,
            totals.c.fuel_used_ml.label("total_fuel_used_ml"),
            totals.c.energy_used_wh.label("total_energy_used_wh"),
            totals.c.activity_records,
        )
        .outerjoin(readings, readings.c.vehicle_id == v1_vehicles.c.vehicle_id)
        .outerjoin(totals, totals.c.vehicle_id == v1_vehicles.c.vehicle_id)
    ).all()
    states = [
        {
            "vehicle_id": row.vehicle_id,
            "baseline_event_id": row.event_id,
            "baseline_at_us": None if row.occurred_at is None else microseconds(row.occurred_at),
            "baseline_odometer_m": row.odometer_m,
            "baseline_fuel_used_ml": row.fuel_used_ml,
            "baseline_energy_used_wh": row.energy_used_wh,
            "distance_m": row.distance_m or 0,
            "fuel_used_ml": row.total_fuel_used_ml or 0,
            "energy_used_wh": row.total_energy_used_wh or 0,
            "activity_records": row.activity_records or 0,
            # Released versions counted no samples: each activity was one accepted sample after
            # the first (a lower bound, idle samples made no activity).
            "samples_accepted": (row.activity_records or 0) + (row.event_id is not None),
        }
        for row in rows
    ]
    if states:
        connection.execute(insert(vehicle_state), states)
    connection.execute(text("DROP TABLE counter_readings"))
    connection.execute(text("DROP TABLE vehicle_totals"))


# The owners whose vehicles defaulted to the municipal fleet before the registry said which
# owners are municipal (the setting MUNICIPAL_PARTNER_IDS, as deployed).
_MUNICIPAL_OWNERS_BEFORE_THE_REGISTRY = ("aalborg-kommune",)


def _subsectors_follow_the_registry(connection: Connection) -> None:
    """Marks the sub-sectors registrations chose: those that differ from the default of the
    time. The others follow the owner's kind in the registry from now on."""
    connection.execute(
        text(
            "ALTER TABLE vehicles ADD COLUMN covenant_subsector_assigned BOOLEAN NOT NULL "
            "DEFAULT false"
        )
    )
    defaulted_municipal = or_(
        vehicles.c.owner_partner_id == vehicles.c.municipality_id,
        vehicles.c.owner_partner_id.in_(_MUNICIPAL_OWNERS_BEFORE_THE_REGISTRY),
    )
    default_of_the_time = case(
        (defaulted_municipal, "municipal_fleet"), else_="private_commercial_transport"
    )
    connection.execute(
        update(vehicles)
        .where(vehicles.c.covenant_subsector != default_of_the_time)
        .values(covenant_subsector_assigned=True)
    )
    connection.execute(text("CREATE INDEX ix_vehicles_owner ON vehicles (owner_partner_id)"))


MIGRATIONS = [
    Migration(1, "vehicles, counter readings, totals", create_tables(v1_metadata)),
    Migration(
        2,
        "vehicle state (baseline, reset candidate, stream position, quality counters), "
        "vehicle revisions, baseline corrections",
        _vehicle_state_from_released_tables,
    ),
    Migration(
        3,
        "sub-sectors follow the owner's kind in the partner registry unless chosen",
        _subsectors_follow_the_registry,
    ),
]
