"""locker-hubs' schema and its migrations."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    inspect,
    text,
)
from sqlalchemy.engine import Connection

from servicekit.database import Migration, UtcDateTime, create_tables

metadata = MetaData()

# Ids a caller chooses (collection ids, carrier ids) are stored up to this length.
ID_LENGTH = 200

hubs = Table(
    "hubs",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("municipality_id", String(64), nullable=False),
    Column("latitude", Float, nullable=False),
    Column("longitude", Float, nullable=False),
    # Bumped on every save: a save based on a stale copy of the hub is refused.
    Column("version", Integer, nullable=False),
)

deposits = Table(
    "deposits",
    metadata,
    Column("deposit_id", String(64), primary_key=True),
    Column("hub_id", String(64), ForeignKey("hubs.hub_id"), nullable=False, index=True),
    Column("compartment_id", String(128), nullable=False),
    Column("waste_type", String(32), nullable=False),
    Column("hazardous", Boolean, nullable=False),
    Column("mass_g", BigInteger, nullable=False),
    Column("deposited_at", UtcDateTime(), nullable=False),
    # Set when a carrier took the deposit.
    Column(
        "collection_id",
        String(ID_LENGTH),
        ForeignKey("collections.collection_id"),
        nullable=True,
        index=True,
    ),
    # "<resident>/<client request id>" of the call that registered it, for retries.
    Column("request_key", String(420), nullable=True),
    Index("ix_deposits_request_key", "request_key", unique=True),
)

compartments = Table(
    "compartments",
    metadata,
    Column("compartment_id", String(128), primary_key=True),
    Column("hub_id", String(64), ForeignKey("hubs.hub_id"), nullable=False, index=True),
    # Order within the hub: the first free compartment of a kind is reserved first.
    Column("position", Integer, nullable=False),
    Column("size", String(8), nullable=False),
    Column("hazardous_only", Boolean, nullable=False),
    Column("state", String(16), nullable=False),
    # Keyed hash of the open drop-off code; the plain code is never stored.
    Column("code_hash", String(64), nullable=True),
    Column("code_expires_at", UtcDateTime(), nullable=True),
    # The subject of the resident the open code was issued to (for the quota), or NULL.
    Column("code_holder", String(ID_LENGTH), nullable=True),
    # The client's request id of the open code, so a retried request renews it.
    Column("code_request_id", String(ID_LENGTH), nullable=True),
    # The deposit the compartment holds while it waits for collection.
    Column("deposit_id", String(64), ForeignKey("deposits.deposit_id"), nullable=True),
)

collections = Table(
    "collections",
    metadata,
    Column("collection_id", String(ID_LENGTH), primary_key=True),
    Column("hub_id", String(64), ForeignKey("hubs.hub_id"), nullable=False, index=True),
    Column("carrier_partner_id", String(ID_LENGTH), nullable=False),
    Column("extra_distance_m", BigInteger, nullable=False),
    # In the order the collection listed them, so a retried call gets the same answer.
    Column("deposit_ids", JSON, nullable=False),
    Column("mass_g", BigInteger, nullable=False),
    Column("includes_hazardous", Boolean, nullable=False),
    Column("collected_at", UtcDateTime(), nullable=False),
)


def _add_code_holder(connection: Connection) -> None:
    # Databases created before version 2 lack the column; newer ones got it at version 1.
    if "code_holder" not in {c["name"] for c in inspect(connection).get_columns("compartments")}:
        connection.execute(
            text(f"ALTER TABLE compartments ADD COLUMN code_holder VARCHAR({ID_LENGTH})")
        )


def _add_request_ids(connection: Connection) -> None:
    if "code_request_id" not in _columns(connection, "compartments"):
        connection.execute(
            text(f"ALTER TABLE compartments ADD COLUMN code_request_id VARCHAR({ID_LENGTH})")
        )
    if "request_key" not in _columns(connection, "deposits"):
        connection.execute(text("ALTER TABLE deposits ADD COLUMN request_key VARCHAR(420)"))
        connection.execute(
            text("CREATE UNIQUE INDEX ix_deposits_request_key ON deposits (request_key)")
        )


def _columns(connection: Connection, table: str) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns(table)}


MIGRATIONS = [
    Migration(1, "hubs, compartments, deposits, collections", create_tables(metadata)),
    Migration(2, "the holder of an open drop-off code", _add_code_holder),
    Migration(3, "client request ids of drop-off codes and deposits", _add_request_ids),
]
