"""servicekit's database layer on both backends: a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
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
    insert_rows,
    one_of,
    outbox,
    row_chunks,
    schema_migrations,
    upsert,
)
from servicekit.outbox import (
    OutboxRelay,
    _records,
    add_many_to_outbox,
    add_to_outbox,
    add_tombstone_to_outbox,
)

metadata = MetaData()

hubs = Table(
    "hubs",
    metadata,
    Column("hub_id", String(50), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("boxes", Integer, nullable=False),
    Column("opened_at", UtcDateTime(), nullable=True),
)

# A table of every kind of column a hot path writes with insert_rows.
readings = Table(
    "readings",
    metadata,
    Column("reading_id", String(50), primary_key=True),
    Column("sensor", String(50), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("taken_at", UtcDateTime(), nullable=False),
    Column("calibrated", Boolean, nullable=False),
    Column("details", JSON(none_as_null=True), nullable=True),
    Column("note", String(100), nullable=True),
    Column("plain_at", DateTime(), nullable=True),
    UniqueConstraint("sensor", "revision", name="uq_reading_revision"),
)

MIGRATIONS = [
    Migration(1, "hubs", create_tables(metadata, hubs)),
    Migration(2, "readings", create_tables(metadata, readings)),
]


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


def _reading(number: int, taken_at: datetime, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "reading_id": f"r-{number}",
        "sensor": f"s-{number % 3}",
        "revision": number,
        "taken_at": taken_at,
        "calibrated": number % 2 == 0,
        "details": {"samples": number, "source": "æøå"} if number % 4 else None,
        "note": None,
        "plain_at": None,
    }
    row.update(changes)
    return row


async def test_insert_rows_stores_what_an_insert_through_sqlalchemy_stores(
    database: Database,
) -> None:
    copenhagen = timezone(timedelta(hours=1))
    shared_at = datetime(2026, 1, 2, 3, 4, 5, 60, tzinfo=copenhagen)
    rows = [_reading(n, shared_at if n < 5 else shared_at + timedelta(days=n)) for n in range(9)]
    async with database.transaction() as session:
        inserted = await insert_rows(session, readings, rows)
    async with database.transaction() as session:
        by_insert_rows = [
            tuple(row)
            for row in await session.execute(select(readings).order_by(readings.c.revision))
        ]
        await session.execute(readings.delete())
        await session.execute(readings.insert(), rows)
        by_sqlalchemy = [
            tuple(row)
            for row in await session.execute(select(readings).order_by(readings.c.revision))
        ]
    assert by_insert_rows == by_sqlalchemy
    assert by_insert_rows[0][3] == shared_at
    assert by_insert_rows[1][5] == {"samples": 1, "source": "æøå"}
    assert by_insert_rows[0][5] is None
    assert inserted == (9 if database.is_sqlite else -1)


async def test_insert_rows_skips_rows_that_conflict_on_the_key_given(database: Database) -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    async with database.transaction() as session:
        await insert_rows(session, readings, [_reading(1, at), _reading(2, at)])
    async with database.transaction() as session:
        inserted = await insert_rows(
            session,
            readings,
            [_reading(7, at, revision=1, sensor="s-1"), _reading(3, at)],
            skip_conflicts_on=["sensor", "revision"],
        )
        held = (await session.execute(select(readings.c.reading_id))).scalars().all()
    assert sorted(held) == ["r-1", "r-2", "r-3"]
    assert inserted == (1 if database.is_sqlite else -1)


async def test_insert_rows_replaces_the_rows_that_conflict_on_the_key_given(
    database: Database,
) -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    later = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    async with database.transaction() as session:
        await insert_rows(session, readings, [_reading(1, at), _reading(2, at, note="kept")])
    async with database.transaction() as session:
        written = await insert_rows(
            session,
            readings,
            [
                _reading(1, later, sensor="moved", revision=10, note="replaced"),
                _reading(3, at),
            ],
            replace_conflicts_on=["reading_id"],
        )
        stored = {
            row.reading_id: (row.sensor, row.revision, row.taken_at, row.note)
            for row in await session.execute(select(readings))
        }
    assert stored == {
        "r-1": ("moved", 10, later, "replaced"),
        "r-2": ("s-2", 2, at, "kept"),
        "r-3": ("s-0", 3, at, None),
    }
    assert written == (2 if database.is_sqlite else -1)
    with pytest.raises(ValueError, match="either skipped or replaced"):
        async with database.transaction() as session:
            await insert_rows(
                session,
                readings,
                [_reading(4, at)],
                skip_conflicts_on=["reading_id"],
                replace_conflicts_on=["reading_id"],
            )


async def test_insert_rows_takes_rows_that_leave_out_nullable_columns_in_order(
    database: Database,
) -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    full = [_reading(n, at, note=f"note {n}") for n in range(6)]
    rows: list[dict[str, object]] = []
    for number, row in enumerate(full):
        # Shapes alternate in runs: two with everything, one without note nor details, ...
        if number % 3 == 2:
            row = {k: v for k, v in row.items() if k not in ("note", "details")}
        rows.append(row)
    async with database.transaction() as session:
        inserted = await insert_rows(session, readings, rows)
        stored = (
            await session.execute(
                select(readings.c.reading_id, readings.c.note, readings.c.details).order_by(
                    readings.c.revision
                )
            )
        ).all()
    assert [tuple(row) for row in stored] == [
        (row["reading_id"], row.get("note"), row.get("details")) for row in rows
    ]
    assert stored[2].note is None and stored[2].details is None
    assert inserted == (6 if database.is_sqlite else -1)


async def test_insert_rows_refuses_a_naive_datetime(database: Database) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        async with database.transaction() as session:
            await insert_rows(session, readings, [_reading(1, datetime(2026, 1, 2))])


async def test_utc_datetime_is_stored_as_sqlalchemys_datetime_text_on_sqlite(
    tmp_path: Path,
) -> None:
    # Rows written before UtcDateTime formatted SQLite's text itself must compare and sort
    # with those written after.
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/kit.db")
    await database.migrate(MIGRATIONS)
    summer = timezone(timedelta(hours=2))
    moments = [
        datetime(2026, 5, 4, 12, 30, 15, 250_000, tzinfo=summer),
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ]
    try:
        async with database.transaction() as session:
            for number, moment in enumerate(moments):
                utc = moment.astimezone(UTC).replace(tzinfo=None)
                await session.execute(
                    readings.insert().values(_reading(number, moment, plain_at=utc))
                )
            stored = (
                await session.execute(
                    text("SELECT taken_at, plain_at FROM readings ORDER BY revision")
                )
            ).all()
    finally:
        await database.dispose()
    assert [taken for taken, _ in stored] == [plain for _, plain in stored]
    assert stored[0][0] == "2026-05-04 10:30:15.250000"


async def test_the_relay_hands_over_each_rows_headers_in_a_list_of_its_own(
    database: Database,
) -> None:
    samples = [fleet_pb2.TelemetrySample(event_id=f"s{n}") for n in range(3)]
    async with database.transaction() as session:
        await add_many_to_outbox(session, [("fleet.telemetry.v1", "v-1", s) for s in samples])
        await add_to_outbox(session, "fleet.activity.v1", "v-1", fleet_pb2.VehicleActivity())
        await add_tombstone_to_outbox(session, "fleet.vehicles.v1", "v-1")
        stored = (await session.execute(select(outbox.c.headers).order_by(outbox.c.id))).all()

    # Read as the relay reads a round (the producer is not needed for that).
    records = _records(await OutboxRelay(database, None)._read_round())  # type: ignore[arg-type]

    assert [r[3] for r in records] == [
        [(name, str(value).encode()) for name, value in row.headers.items()] for row in stored
    ]
    assert ("event-type", b"greenpartners.fleet.v1.TelemetrySample") in records[0][3]
    assert records[3][3] != records[0][3]
    assert len({id(r[3]) for r in records}) == len(records)
    assert records[4][2] is None  # the tombstone
    assert [r[1] for r in records] == [b"v-1"] * 5
