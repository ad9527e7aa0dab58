"""emissions-ledger's schema: an append-only table of entries, and its migrations."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
)

from servicekit.database import ExactDecimal, Migration, UtcDateTime, create_tables

metadata = MetaData()

# Append-only: rows are inserted, never updated or deleted; a correction is a new entry.
# Decimal amounts are stored as exact decimal text (SQLite has no exact numeric type).
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("sequence", Integer, primary_key=True, autoincrement=True),
    Column("entry_id", String(64), nullable=False, unique=True),
    Column("municipality_id", String(64), nullable=False),
    Column("year", Integer, nullable=False),
    Column("sector", String(32), nullable=False),
    Column("subsector", String(64), nullable=False),
    Column("energy_carrier", String(32), nullable=False),
    Column("activity_amount", String(64), nullable=False),
    Column("activity_unit", String(16), nullable=False),
    Column("factor_id", String(64), nullable=False),
    Column("factor_value", String(32), nullable=False),
    Column("factor_unit", String(32), nullable=False),
    Column("factor_activity_unit", String(16), nullable=False),
    Column("factor_source", Text, nullable=False),
    Column("factor_version", String(64), nullable=False),
    Column("factor_approach", String(128), nullable=False),
    Column("kg_co2e", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("source_event_id", String(200), nullable=False),
    Column("source_topic", String(200), nullable=False),
    Column("activity_at", UtcDateTime(), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("avoided_trip", JSON, nullable=True),
    # Vehicle activity only: sample_count, first and last sample event id (migration 4).
    Column("activity_samples", JSON, nullable=True),
    Column("trace_id", String(32), nullable=False),
    Column("posted_at", UtcDateTime(), nullable=False),
    UniqueConstraint("source_event_id", "kind", name="uq_entry_source"),
    Index("ix_entries_inventory", "municipality_id", "year"),
)

# Running totals per inventory line, kept with each posting in the same transaction, so that an
# inventory costs one read of a few rows however many entries the year holds. The amounts are
# added in SQL (additive upsert), so they are exact decimals the database can add: NUMERIC on
# PostgreSQL, decimal text added by servicekit's decimal_add function on SQLite.
inventory_lines = Table(
    "inventory_lines",
    metadata,
    Column("municipality_id", String(64), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("sector", String(32), primary_key=True),
    Column("subsector", String(64), primary_key=True),
    Column("energy_carrier", String(32), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("activity_unit", String(16), primary_key=True),
    Column("activity_amount", ExactDecimal(), nullable=False),
    Column("kg_co2e", ExactDecimal(), nullable=False),
    Column("entry_count", Integer, nullable=False),
)


# One row per municipality and year, bumped by every posting transaction before it appends
# entries of that inventory: the row lock makes postings to one inventory take turns, so its
# entries' sequence numbers are handed out in commit order and a watcher that reads "sequence >
# the last one I saw" never skips an entry committed late (docs/streams.md, WatchInventory).
# The version changes with every posting, which watchers poll as one cheap key lookup.
inventory_versions = Table(
    "inventory_versions",
    metadata,
    Column("municipality_id", String(64), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

# Entries of one inventory in posting order without reading them all: the latest one, or those
# after a position (WatchInventory, ListEntries' pages).
entries_by_position = Index(
    "ix_entries_inventory_sequence",
    ledger_entries.c.municipality_id,
    ledger_entries.c.year,
    ledger_entries.c.sequence,
)


def _create_inventory_versions(connection: Connection) -> None:
    metadata.create_all(connection, tables=[inventory_versions])
    entries_by_position.create(connection, checkfirst=True)


def _create_inventory_lines(connection: Connection) -> None:
    from emissions_ledger.adapters.repository import rebuild_inventory_lines

    metadata.create_all(connection, tables=[inventory_lines])
    rebuild_inventory_lines(connection)


def _exact_inventory_amounts(connection: Connection) -> None:
    # SQLite keeps the exact decimal text it always had; PostgreSQL converts it to NUMERIC, which
    # holds the same value exactly and adds without rounding.
    if connection.dialect.name != "postgresql":
        return
    for column in ("activity_amount", "kg_co2e"):
        connection.execute(
            text(
                f"ALTER TABLE inventory_lines ALTER COLUMN {column} TYPE NUMERIC "
                f"USING {column}::numeric"
            )
        )


def _add_activity_samples(connection: Connection) -> None:
    # Migration 1 creates the table as defined today, so a new ledger has the column already.
    if "activity_samples" in {c["name"] for c in inspect(connection).get_columns("ledger_entries")}:
        return
    column_type = JSON().compile(dialect=connection.dialect)
    connection.execute(
        text(f"ALTER TABLE ledger_entries ADD COLUMN activity_samples {column_type}")
    )


MIGRATIONS = [
    Migration(1, "append-only ledger entries", create_tables(metadata, ledger_entries)),
    Migration(2, "running inventory line totals, from the entries", _create_inventory_lines),
    Migration(
        3, "inventory line amounts as exact numbers the database adds", _exact_inventory_amounts
    ),
    Migration(4, "which samples an activity entry sums", _add_activity_samples),
    Migration(
        5,
        "inventory versions: postings to one inventory commit in order",
        _create_inventory_versions,
    ),
]
