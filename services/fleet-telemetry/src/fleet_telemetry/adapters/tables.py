"""fleet-telemetry's schema and its migrations."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, String, Table

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
)

# The last accepted reading of each vehicle: the baseline the next sample is measured against.
counter_readings = Table(
    "counter_readings",
    metadata,
    Column("vehicle_id", String(64), primary_key=True),
    Column("event_id", String(200), nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("odometer_m", BigInteger, nullable=False),
    Column("fuel_used_ml", BigInteger, nullable=True),
    Column("energy_used_wh", BigInteger, nullable=True),
)

vehicle_totals = Table(
    "vehicle_totals",
    metadata,
    Column("vehicle_id", String(64), primary_key=True),
    Column("distance_m", BigInteger, nullable=False),
    Column("fuel_used_ml", BigInteger, nullable=False),
    Column("energy_used_wh", BigInteger, nullable=False),
    Column("activity_records", BigInteger, nullable=False),
)

MIGRATIONS = [
    Migration(1, "vehicles, counter readings, totals", create_tables(metadata)),
]
