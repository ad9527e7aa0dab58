"""partner-registry's schema and its migrations."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Connection, Date, MetaData, String, Table, Text

from servicekit.database import Migration, UtcDateTime

metadata = MetaData()

initiatives = Table(
    "initiatives",
    metadata,
    Column("initiative_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("programme", String(200), nullable=False),
    Column("starts_on", Date, nullable=True),
    Column("ends_on", Date, nullable=True),
    # Since migration 2 (NULL in older rows: none).
    Column("hub_ids", JSON, nullable=True),
    Column("revision", BigInteger, nullable=False, server_default="1"),
)

# A partner is read and written whole, and the registry is small enough to filter in the
# domain, so its participations live in one JSON column rather than a child table.
partners = Table(
    "partners",
    metadata,
    Column("partner_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("country_code", String(2), nullable=False),
    Column("participations", JSON, nullable=False),
    Column("revision", BigInteger, nullable=False),
    # Since migration 2.
    Column("covenant_commitment", JSON, nullable=True),
    Column("carrier_authorizations", JSON, nullable=True),
    # A deleted partner keeps its row (and revision) as a tombstone: the seed does not bring it
    # back, and a partner created again under its id continues its revisions, so read models
    # never take the new partner's records for stale ones.
    Column("deleted_at", UtcDateTime(), nullable=True),
)

# What the seed last wrote to each record: a seed entry changed in a later release is applied
# only while the record is still at the revision the seed wrote (nobody changed it since).
seed_applied = Table(
    "seed_applied",
    metadata,
    Column("record_key", String(200), primary_key=True),
    Column("content_hash", String(64), nullable=False),
    Column("revision", BigInteger, nullable=False),
)


def _first_schema(connection: Connection) -> None:
    """The tables as migration 1 made them (migration 2 adds to them)."""
    first = MetaData()
    Table(
        "initiatives",
        first,
        Column("initiative_id", String(64), primary_key=True),
        Column("name", String(200), nullable=False),
        Column("description", Text, nullable=False),
        Column("programme", String(200), nullable=False),
        Column("starts_on", Date, nullable=True),
        Column("ends_on", Date, nullable=True),
    )
    Table(
        "partners",
        first,
        Column("partner_id", String(64), primary_key=True),
        Column("name", String(200), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("country_code", String(2), nullable=False),
        Column("participations", JSON, nullable=False),
        Column("revision", BigInteger, nullable=False),
    )
    first.create_all(connection)


def _write_api(connection: Connection) -> None:
    dialect = connection.dialect
    for table, column in (
        (initiatives, "hub_ids"),
        (partners, "covenant_commitment"),
        (partners, "carrier_authorizations"),
        (partners, "deleted_at"),
    ):
        column_type = table.c[column].type.compile(dialect=dialect)
        connection.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column} {column_type}")
    connection.exec_driver_sql(
        "ALTER TABLE initiatives ADD COLUMN revision BIGINT NOT NULL DEFAULT 1"
    )
    seed_applied.create(connection)
    # Records from before the write API could only come from the seed: recorded as written by
    # it (content unknown), so this release's seed entries bring them up to date.
    connection.exec_driver_sql(
        "INSERT INTO seed_applied (record_key, content_hash, revision) "
        "SELECT partner_id, '', revision FROM partners"
    )
    connection.exec_driver_sql(
        "INSERT INTO seed_applied (record_key, content_hash, revision) "
        "SELECT 'initiative:' || initiative_id, '', revision FROM initiatives"
    )


MIGRATIONS = [
    Migration(1, "initiatives and partners", _first_schema),
    Migration(
        2, "write API: commitments, authorisations, hubs, tombstones, seed record", _write_api
    ),
]
