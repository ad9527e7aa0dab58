"""emissions-ledger's schema: an append-only table of entries, and its migrations."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
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
    # The years the factor is published for (NULL on entries from before migration 6) and
    # whether it stood in, provisionally, for a year without a published factor.
    Column("factor_valid_from_year", Integer, nullable=True),
    Column("factor_valid_to_year", Integer, nullable=True),
    Column("factor_provisional", Boolean, nullable=False, server_default=text("false")),
    Column("kg_co2e", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("source_event_id", String(200), nullable=False),
    Column("source_topic", String(200), nullable=False),
    Column("activity_at", UtcDateTime(), nullable=False),
    Column("subject_id", String(64), nullable=False),
    # Absent provenance is SQL NULL (older rows may hold JSON null): most entries have only one
    # of these documents, and serialising the others as JSON null costs every posting.
    Column("avoided_trip", JSON(none_as_null=True), nullable=True),
    # Vehicle activity only: sample_count, first and last sample event id (migration 4).
    Column("activity_samples", JSON(none_as_null=True), nullable=True),
    Column("trace_id", String(32), nullable=False),
    Column("posted_at", UtcDateTime(), nullable=False),
    # Restatement (migration 6): original, reversal or restatement; the revision it makes (0 for
    # the original); the entry it reverses or replaces; the run that posted it.
    Column("posting", String(16), nullable=False, server_default=text("'original'")),
    Column("revision", Integer, nullable=False, server_default=text("0")),
    Column("restates_entry_id", String(64), nullable=True),
    Column("restatement_id", String(64), nullable=True),
    # Posted after its year was locked.
    Column("late", Boolean, nullable=False, server_default=text("false")),
    # Metered or modelled (migration 7); a collection's carrier, hub, mass and waste types.
    Column("basis", String(16), nullable=False, server_default=text("'metered'")),
    Column("collection", JSON(none_as_null=True), nullable=True),
    # Migration 8: the distance behind the activity (metres; negated on a reversal) and the
    # vehicle's owner. NULL on entries posted before: not known.
    Column("distance_m", Integer, nullable=True),
    Column("owner_partner_id", String(64), nullable=True),
    # Reported activity (migration 9): who recorded it, when, in which batch, from which file
    # line, and how its amount was converted to the factor's unit.
    Column("reported", JSON(none_as_null=True), nullable=True),
    # Hourly pricing (migration 10): when a vehicle activity's period started, and the hour it
    # lies within (NULL when it spans hours or its start is unknown), which a restatement
    # matches against the cached intensities; the hour's intensity behind an hourly factor,
    # and why a yearly factor priced what hourly pricing applied to.
    Column("activity_started_at", UtcDateTime(), nullable=True),
    Column("activity_hour", UtcDateTime(), nullable=True),
    Column("factor_hourly", Boolean, nullable=False, server_default=text("false")),
    Column("factor_hourly_intensity", JSON(none_as_null=True), nullable=True),
    Column("factor_hourly_fallback", Text, nullable=True),
    # An event's entry of one kind is posted once per revision and posting: redelivered events
    # and repeated restatements cannot post twice.
    UniqueConstraint("source_event_id", "kind", "revision", "posting", name="uq_entry_revision"),
    # (ix_entries_inventory on municipality_id and year, until migration 11: the two indexes
    # below, and ix_entries_inventory_sequence, begin with those columns.)
    Index("ix_entries_restates", "restates_entry_id"),
    Index("ix_entries_late", "municipality_id", "year", "late"),
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
    Column("basis", String(16), primary_key=True, server_default=text("'metered'")),
    Column("activity_amount", ExactDecimal(), nullable=False),
    Column("kg_co2e", ExactDecimal(), nullable=False),
    Column("entry_count", Integer, nullable=False),
    # Migration 8: km summed over the entries that know theirs, and how many do not.
    Column("distance_km", ExactDecimal(), nullable=False, server_default=text("'0'")),
    Column("entries_without_distance", Integer, nullable=False, server_default=text("0")),
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


# Years locked after submission: entries posted to them later are flagged late.
inventory_locks = Table(
    "inventory_locks",
    metadata,
    Column("municipality_id", String(64), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("locked_at", UtcDateTime(), nullable=False),
    Column("locked_by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
)

# The audit trail of restatements that posted entries: who asked, with which factor catalogue,
# and what changed per sector (the entries themselves name the restatement too).
restatements = Table(
    "restatements",
    metadata,
    Column("restatement_id", String(64), primary_key=True),
    Column("municipality_id", String(64), nullable=False),
    Column("year", Integer, nullable=False),
    Column("catalogue_version", String(64), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("requested_at", UtcDateTime(), nullable=False),
    Column("restated_entry_count", Integer, nullable=False),
    Column("changes", JSON, nullable=False),
    Index("ix_restatements_inventory", "municipality_id", "year"),
)


# The deposits the ledger saw at locker hubs: a collection's waste types come from them.
hub_deposits = Table(
    "hub_deposits",
    metadata,
    Column("deposit_id", String(128), primary_key=True),
    Column("hub_id", String(64), nullable=False),
    Column("municipality_id", String(64), nullable=False),
    Column("waste_type", String(64), nullable=False),
    Column("hazardous", Boolean, nullable=False),
    Column("mass_g", Integer, nullable=False),
    Column("deposited_at", UtcDateTime(), nullable=False),
    Column("source_event_id", String(200), nullable=False),
    Index("ix_hub_deposits_municipality", "municipality_id", "deposited_at"),
)


# Batches of reported activity (RecordActivity), once per municipality and idempotency key: a
# batch sent again answers the entries it posted, and the key with other lines is refused.
activity_batches = Table(
    "activity_batches",
    metadata,
    Column("municipality_id", String(64), primary_key=True),
    Column("idempotency_key", String(128), primary_key=True),
    Column("batch_id", String(64), nullable=False, unique=True),
    # sha256 of what the batch says (domain.reported.content_digest).
    Column("content_digest", String(64), nullable=False),
    Column("line_count", Integer, nullable=False),
    Column("recorded_by", String(200), nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
)

# Hourly CO2 intensities of the electricity consumed in a price area, as fetched from Energi
# Data Service (docs/ledger.md, "Danish electricity by the hour"). Written once per hour and
# never changed: an hour once fetched is never fetched again, so every entry priced with it,
# at posting or in a restatement, gets the same factor.
grid_intensity_hours = Table(
    "grid_intensity_hours",
    metadata,
    Column("dataset", String(64), primary_key=True),
    Column("price_area", String(8), primary_key=True),
    Column("hour_start", UtcDateTime(), primary_key=True),
    # Exact decimal text, g CO2 per kWh.
    Column("g_co2_per_kwh", String(32), nullable=False),
    Column("five_minute_values", Integer, nullable=False),
    Column("fetched_at", UtcDateTime(), nullable=False),
)

# Columns migration 10 adds to ledger_entries, with the value older entries get.
_HOURLY_COLUMNS = {
    "activity_started_at": "",
    "activity_hour": "",
    "factor_hourly": " DEFAULT false NOT NULL",
    "factor_hourly_intensity": "",
    "factor_hourly_fallback": "",
}


def _hourly_pricing(connection: Connection) -> None:
    """Entries say when their activity started and which hour it lies within, and carry an
    hourly factor's intensity; the cache of hourly intensities. A ledger created at this
    version (or rebuilt by migration 6) has the columns already."""
    existing = {c["name"] for c in inspect(connection).get_columns("ledger_entries")}
    for name, suffix in _HOURLY_COLUMNS.items():
        if name in existing:
            continue
        column_type = ledger_entries.c[name].type.compile(dialect=connection.dialect)
        connection.execute(
            text(f"ALTER TABLE ledger_entries ADD COLUMN {name} {column_type}{suffix}")
        )
    metadata.create_all(connection, tables=[grid_intensity_hours])


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


# Columns migration 6 adds to a ledger of an earlier version, with the value older entries get.
_RESTATEMENT_COLUMNS = {
    "factor_valid_from_year": "NULL",
    "factor_valid_to_year": "NULL",
    "factor_provisional": "false",
    "posting": "'original'",
    "revision": "0",
    "restates_entry_id": "NULL",
    "restatement_id": "NULL",
    "late": "false",
}


def _entries_for_restatement(connection: Connection) -> None:
    """Factor validity and provisional marks, revisions, late flags; an event's entry is unique
    per revision and posting instead of once for ever. SQLite cannot drop a constraint, so
    there the table is rebuilt, keeping every row and its sequence."""
    existing = {c["name"] for c in inspect(connection).get_columns("ledger_entries")}
    if "revision" not in existing:
        if connection.dialect.name == "sqlite":
            _rebuild_sqlite_entries(connection, existing)
        else:
            for name, default in _RESTATEMENT_COLUMNS.items():
                column = ledger_entries.c[name]
                column_type = column.type.compile(dialect=connection.dialect)
                null = "" if column.nullable else " NOT NULL"
                connection.execute(
                    text(
                        f"ALTER TABLE ledger_entries ADD COLUMN {name} {column_type} "
                        f"DEFAULT {default}{null}"
                    )
                )
            connection.execute(text("ALTER TABLE ledger_entries DROP CONSTRAINT uq_entry_source"))
            connection.execute(
                text(
                    "ALTER TABLE ledger_entries ADD CONSTRAINT uq_entry_revision "
                    "UNIQUE (source_event_id, kind, revision, posting)"
                )
            )
    for index in ledger_entries.indexes:
        index.create(connection, checkfirst=True)
    metadata.create_all(connection, tables=[inventory_locks, restatements])


def _rebuild_sqlite_entries(connection: Connection, existing: set[str]) -> None:
    kept = [c.name for c in ledger_entries.columns if c.name in existing]
    columns = ", ".join(kept)
    connection.execute(text("ALTER TABLE ledger_entries RENAME TO ledger_entries_before_6"))
    # Index names are per database in SQLite: the old table's must go before the new ones.
    for row in connection.execute(
        text(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND "
            "tbl_name = 'ledger_entries_before_6' AND sql IS NOT NULL"
        )
    ).all():
        connection.execute(text(f'DROP INDEX "{row.name}"'))
    ledger_entries.create(connection)
    connection.execute(
        text(
            f"INSERT INTO ledger_entries ({columns}) SELECT {columns} FROM ledger_entries_before_6"
        )
    )
    connection.execute(text("DROP TABLE ledger_entries_before_6"))


def _modelled_lines_apart(connection: Connection) -> None:
    """Entries say whether they are metered or modelled, and modelled amounts get lines of
    their own: the entries of carrier collections (the only modelled ones so far) are marked
    modelled, and the running line totals are rebuilt from the entries with the basis in
    their key."""
    from emissions_ledger.adapters.repository import rebuild_inventory_lines

    existing = {c["name"] for c in inspect(connection).get_columns("ledger_entries")}
    for name in ("basis", "collection"):
        if name in existing:
            continue
        column = ledger_entries.c[name]
        column_type = column.type.compile(dialect=connection.dialect)
        default = " DEFAULT 'metered' NOT NULL" if name == "basis" else ""
        connection.execute(
            text(f"ALTER TABLE ledger_entries ADD COLUMN {name} {column_type}{default}")
        )
    # A classification the entries always implied (they carry the trip they model), filled in
    # for the new column; no amount changes.
    # (An absent trip may be SQL NULL or JSON null, which SQLAlchemy writes for None.)
    connection.execute(
        text(
            "UPDATE ledger_entries SET basis = 'modelled' "
            "WHERE avoided_trip IS NOT NULL AND CAST(avoided_trip AS TEXT) <> 'null'"
        )
    )
    connection.execute(text("DROP TABLE inventory_lines"))
    metadata.create_all(connection, tables=[inventory_lines, hub_deposits])
    rebuild_inventory_lines(connection)


def _distance_and_owner(connection: Connection) -> None:
    """Entries carry the distance behind their activity and the vehicle's owner; inventory
    lines sum the km. Entries posted before have neither (NULL: not known): the line totals are
    rebuilt from the entries, counting those apart; no amount changes."""
    from emissions_ledger.adapters.repository import rebuild_inventory_lines

    entry_columns = {c["name"] for c in inspect(connection).get_columns("ledger_entries")}
    for name in ("distance_m", "owner_partner_id"):
        if name not in entry_columns:
            column_type = ledger_entries.c[name].type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE ledger_entries ADD COLUMN {name} {column_type}"))
    line_columns = {c["name"] for c in inspect(connection).get_columns("inventory_lines")}
    if "distance_km" not in line_columns:
        column_type = inventory_lines.c.distance_km.type.compile(dialect=connection.dialect)
        connection.execute(
            text(
                f"ALTER TABLE inventory_lines ADD COLUMN distance_km {column_type} "
                "DEFAULT '0' NOT NULL"
            )
        )
    if "entries_without_distance" not in line_columns:
        connection.execute(
            text(
                "ALTER TABLE inventory_lines ADD COLUMN entries_without_distance INTEGER "
                "DEFAULT 0 NOT NULL"
            )
        )
    rebuild_inventory_lines(connection)


def _reported_activity(connection: Connection) -> None:
    """Entries say who reported their activity and how its unit was converted; batches of
    reported activity are remembered by their idempotency key."""
    existing = {c["name"] for c in inspect(connection).get_columns("ledger_entries")}
    if "reported" not in existing:
        column_type = JSON().compile(dialect=connection.dialect)
        connection.execute(text(f"ALTER TABLE ledger_entries ADD COLUMN reported {column_type}"))
    metadata.create_all(connection, tables=[activity_batches])


def _drop_redundant_entry_index(connection: Connection) -> None:
    # Every posting wrote it; the indexes that begin with the same columns serve its queries.
    connection.execute(text("DROP INDEX IF EXISTS ix_entries_inventory"))


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
    Migration(
        6,
        "restatement: factor validity, revisions, late entries, year locks, audit trail",
        _entries_for_restatement,
    ),
    Migration(
        7,
        "metered and modelled amounts on lines of their own; collection provenance; deposits",
        _modelled_lines_apart,
    ),
    Migration(
        8, "distance and vehicle owner on entries; km on inventory lines", _distance_and_owner
    ),
    Migration(
        9,
        "reported activity: its provenance on entries, batches by idempotency key",
        _reported_activity,
    ),
    Migration(
        10,
        "hourly pricing of electricity: activity start and hour on entries, hourly factors, "
        "cached grid intensities",
        _hourly_pricing,
    ),
    Migration(
        11,
        "entries without the index on municipality and year that others begin with",
        _drop_redundant_entry_index,
    ),
]
