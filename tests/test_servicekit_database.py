"""servicekit's database layer on both backends: a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    event,
    func,
    select,
    text,
)
from sqlalchemy.exc import StatementError

from greenpartners.fleet.v1 import fleet_pb2
from servicekit.codec import CONTENT_TYPE
from servicekit.database import (
    Database,
    Migration,
    UtcDateTime,
    create_tables,
    insert_if_absent,
    one_of,
    outbox,
    row_chunks,
    schema_migrations,
    upsert,
)
from servicekit.outbox import add_to_outbox

metadata = MetaData()

hubs = Table(
    "hubs",
    metadata,
    Column("hub_id", String(50), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("boxes", Integer, nullable=False),
    Column("opened_at", UtcDateTime(), nullable=True),
)

MIGRATIONS = [Migration(1, "hubs", create_tables(metadata, hubs))]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/kit.db"
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    await db.migrate(MIGRATIONS)
    yield db
    await db.dispose()


async def test_migrations_apply_once_and_are_recorded(database_url: str) -> None:
    applied: list[int] = []

    def counting(version: int) -> Migration:
        def apply(connection: Connection) -> None:
            applied.append(version)
            if version == 1:
                metadata.create_all(connection, tables=[hubs])

        return Migration(version, f"step {version}", apply)

    first = Database(database_url)
    try:
        await first.migrate([counting(2), counting(1)])
        assert applied == [1, 2]
        await first.migrate([counting(1), counting(2)])
        assert applied == [1, 2]
    finally:
        await first.dispose()

    # A fresh engine (a restarted service) finds the record and applies only what is new.
    second = Database(database_url)
    try:
        await second.migrate([counting(1), counting(2), counting(3)])
        assert applied == [1, 2, 3]
        async with second.transaction() as session:
            recorded = (
                await session.execute(
                    select(schema_migrations.c.version, schema_migrations.c.applied_at).order_by(
                        schema_migrations.c.version
                    )
                )
            ).all()
            hub_rows = (await session.execute(select(func.count()).select_from(hubs))).scalar()
    finally:
        await second.dispose()
    assert [row.version for row in recorded] == [1, 2, 3]
    assert all(row.applied_at.tzinfo is UTC for row in recorded)
    assert hub_rows == 0


async def test_upsert_inserts_then_updates(database: Database) -> None:
    async with database.transaction() as session:
        await upsert(
            session, hubs, {"hub_id": "molo-01", "name": "Nørresundby", "boxes": 8}, key=["hub_id"]
        )
    async with database.transaction() as session:
        await upsert(
            session, hubs, {"hub_id": "molo-01", "name": "Nørresundby", "boxes": 12}, key=["hub_id"]
        )
        await upsert(
            session, hubs, {"hub_id": "molo-02", "name": "Vejgaard", "boxes": 4}, ["hub_id"]
        )
    async with database.transaction() as session:
        rows = (await session.execute(select(hubs).order_by(hubs.c.hub_id))).all()
    assert [(row.hub_id, row.name, row.boxes) for row in rows] == [
        ("molo-01", "Nørresundby", 12),
        ("molo-02", "Vejgaard", 4),
    ]


async def test_insert_if_absent_keeps_the_first_row(database: Database) -> None:
    async with database.transaction() as session:
        assert await insert_if_absent(
            session, hubs, {"hub_id": "molo-01", "name": "first", "boxes": 8}
        )
    async with database.transaction() as session:
        assert not await insert_if_absent(
            session, hubs, {"hub_id": "molo-01", "name": "second", "boxes": 99}
        )
    async with database.transaction() as session:
        rows = (await session.execute(select(hubs.c.name, hubs.c.boxes))).all()
    assert [(row.name, row.boxes) for row in rows] == [("first", 8)]


async def test_one_of_selects_the_values_with_the_same_statement_for_any_number(
    database: Database,
) -> None:
    async with database.transaction() as session:
        await session.execute(
            hubs.insert(),
            [{"hub_id": f"molo-{n:04d}", "name": "hub", "boxes": n} for n in range(3000)],
        )
    statements: list[str] = []

    def sent(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", sent)
    try:
        found = {}
        for wanted in ([], ["molo-0007"], [f"molo-{n:04d}" for n in range(0, 3000, 2)]):
            async with database.read() as session:
                by_id = select(hubs.c.hub_id).where(one_of(session, hubs.c.hub_id, wanted))
                by_boxes = select(hubs.c.hub_id).where(one_of(session, hubs.c.boxes, [3, 5]))
                found[len(wanted)] = set((await session.execute(by_id)).scalars())
                assert set((await session.execute(by_boxes)).scalars()) == {
                    "molo-0003",
                    "molo-0005",
                }
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", sent)
    assert found == {
        0: set(),
        1: {"molo-0007"},
        1500: {f"molo-{n:04d}" for n in range(0, 3000, 2)},
    }
    # Prepared statements are cached per statement text: one text, however many values.
    by_id_statements = {statement for statement in statements if "hub_id IN" in statement}
    by_id_statements |= {statement for statement in statements if "hub_id = ANY" in statement}
    assert len(by_id_statements) == 1, by_id_statements


def test_row_chunks_keep_every_row_in_order_in_a_few_sizes() -> None:
    assert [len(chunk) for chunk in row_chunks(list(range(1000)))] == [
        256, 256, 256, 128, 64, 32, 8,
    ]  # fmt: skip
    assert list(row_chunks([])) == []
    sizes_seen: set[int] = set()
    for count in range(1, 1200):
        rows = list(range(count))
        chunks = list(row_chunks(rows, largest=64))
        assert [row for chunk in chunks for row in chunk] == rows
        sizes_seen.update(len(chunk) for chunk in chunks)
    # However many rows a batch has: one prepared statement per size, 7 sizes in all.
    assert sizes_seen == {1, 2, 4, 8, 16, 32, 64}
    with pytest.raises(ValueError, match="power of two"):
        list(row_chunks([1, 2, 3], largest=100))


async def test_utc_datetime_returns_aware_utc_and_refuses_naive(database: Database) -> None:
    copenhagen_summer = timezone(timedelta(hours=2))
    opened = datetime(2026, 5, 4, 12, 30, 15, 250_000, tzinfo=copenhagen_summer)
    async with database.transaction() as session:
        await session.execute(
            hubs.insert().values(hub_id="molo-01", name="Nørresundby", boxes=8, opened_at=opened)
        )
    async with database.transaction() as session:
        stored = (await session.execute(select(hubs.c.opened_at))).scalar_one()
    assert stored == opened
    assert stored.tzinfo is UTC
    assert stored.hour == 10

    with pytest.raises(StatementError, match="naive datetime"):
        async with database.transaction() as session:
            await session.execute(
                hubs.insert().values(
                    hub_id="molo-02", name="Vejgaard", boxes=4, opened_at=datetime(2026, 5, 4)
                )
            )
    async with database.transaction() as session:
        count = (await session.execute(select(func.count()).select_from(hubs))).scalar()
    assert count == 1


async def test_add_to_outbox_stores_the_event_with_its_headers(database: Database) -> None:
    event = fleet_pb2.VehicleActivity(event_id="a1", distance_m=10_000)
    async with database.transaction() as session:
        await add_to_outbox(session, "fleet.activity.v1", "v-1", event)
    async with database.transaction() as session:
        row = (await session.execute(select(outbox))).one()
    assert (row.topic, row.key) == ("fleet.activity.v1", "v-1")
    assert row.event_type == "greenpartners.fleet.v1.VehicleActivity"
    assert fleet_pb2.VehicleActivity.FromString(bytes(row.payload)) == event
    assert row.headers["event-type"] == "greenpartners.fleet.v1.VehicleActivity"
    assert row.headers["content-type"] == CONTENT_TYPE
    assert row.created_at.tzinfo is UTC


async def test_outbox_ids_are_never_reused_once_the_table_was_emptied(database: Database) -> None:
    # The relay deletes what it published by id; a reused id would delete an unpublished row.
    event = fleet_pb2.VehicleActivity(event_id="a1")
    async with database.transaction() as session:
        await add_to_outbox(session, "fleet.activity.v1", "v-1", event)
        await add_to_outbox(session, "fleet.activity.v1", "v-1", event)
    async with database.transaction() as session:
        first_ids = (await session.execute(select(outbox.c.id))).scalars().all()
        await session.execute(outbox.delete())
    async with database.transaction() as session:
        await add_to_outbox(session, "fleet.activity.v1", "v-1", event)
        later_id = (await session.execute(select(outbox.c.id))).scalar_one()
    assert later_id > max(first_ids)


async def test_an_older_sqlite_outbox_is_rebuilt_with_ids_that_are_never_reused(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    old = Database(url)
    async with old.engine.begin() as connection:
        # The outbox as earlier versions created it, with one row not yet published.
        await connection.exec_driver_sql(
            "CREATE TABLE outbox (id INTEGER NOT NULL PRIMARY KEY, topic VARCHAR(200) NOT NULL, "
            "key VARCHAR(200) NOT NULL, event_type VARCHAR(200) NOT NULL, payload BLOB NOT NULL, "
            "headers JSON NOT NULL, created_at DATETIME NOT NULL, published_at DATETIME)"
        )
        await connection.exec_driver_sql(
            "INSERT INTO outbox VALUES (7, 't', 'k', 'e', x'00', '{}', '2026-11-01 10:00:00', NULL)"
        )
        await connection.exec_driver_sql(
            "CREATE TABLE processed_events (consumer VARCHAR(200), event_id VARCHAR(200))"
        )
    await old.dispose()
    database = Database(url)
    try:
        await database.migrate([])
        async with database.read() as session:
            assert (await session.execute(select(outbox.c.id, outbox.c.topic))).all() == [(7, "t")]
            created = (
                await session.execute(
                    select(func.group_concat(text("sql"))).select_from(text("sqlite_master"))
                )
            ).scalar()
        assert "AUTOINCREMENT" in created
        assert "processed_events" not in created
    finally:
        await database.dispose()
