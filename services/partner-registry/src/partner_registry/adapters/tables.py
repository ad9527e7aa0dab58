"""partner-registry's schema and its migrations."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Date, MetaData, String, Table, Text

from servicekit.database import Migration, create_tables

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
)

MIGRATIONS = [
    Migration(1, "initiatives and partners", create_tables(metadata)),
]
