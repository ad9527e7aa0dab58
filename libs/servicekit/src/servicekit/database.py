"""Each service's own database: SQLAlchemy 2 async, a SQLite file by default, PostgreSQL by URL.

Schema changes are ordered migrations recorded in `schema_migrations`, applied at start.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    ARRAY,
    JSON,
    Column,
    Connection,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    TypeDecorator,
    any_,
    bindparam,
    event,
    func,
    insert,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.elements import ColumnElement

log = logging.getLogger(__name__)

RowT = TypeVar("RowT")

# The most rows one multi-row statement is executed with (see `row_chunks`).
ROWS_PER_STATEMENT = 256


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the platform stores aware UTC times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_utc_text


@lru_cache(maxsize=4096)
def _sqlite_utc_text(value: datetime | None) -> str | None:
    """On SQLite, the text SQLAlchemy's DATETIME writes ("2026-01-02 03:04:05.000000", in UTC
    here), made in one step. Remembered: the rows of a batch repeat a few instants (the ends of
    aligned activity windows, the batch's own time), and equal instants have the same text."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime: the platform stores aware UTC times only")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class ExactDecimal(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC on PostgreSQL, plain decimal text on SQLite (whose NUMERIC
    would round through binary floating point). Add two of them in SQL with `add_exact`."""

    impl = String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(asdecimal=True))
        return dialect.type_descriptor(String(64))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return Decimal(value)
        return decimal_text(Decimal(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


def decimal_text(amount: Decimal) -> str:
    """Exact decimal as plain text: no exponent, no trailing zeros."""
    text = format(amount.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def add_exact(session: AsyncSession, left: Any, right: Any) -> ColumnElement[Any]:
    """SQL that adds two ExactDecimal values without rounding, for additive upserts."""
    if dialect_name(session) == "postgresql":
        return type_coerce(left, Numeric()) + type_coerce(right, Numeric())
    return func.decimal_add(left, right)


def _sqlite_decimal_add(left: str | None, right: str | None) -> str | None:
    if left is None or right is None:
        return None
    return decimal_text(Decimal(left) + Decimal(right))


kit_metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    kit_metadata,
    Column("version", Integer, primary_key=True),
    Column("description", String(200), nullable=False),
    Column("applied_at", UtcDateTime(), nullable=False),
)

# The transactional outbox: events written in the same transaction as the state they announce,
# published (and then deleted) by the relay. Ids are never reused, also on SQLite once the table
# was emptied (AUTOINCREMENT): a relay deletes what it published by id.
outbox = Table(
    "outbox",
    kit_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    sqlite_autoincrement=True,
)

_OUTBOX_COLUMNS = "id, topic, key, event_type, payload, headers, created_at"


def _upgrade_kit_tables(connection: Connection) -> None:
    """Brings servicekit's own tables of an older database to the current shape."""
    # Consumers deduplicate by their own keys and high-water marks now; the table of processed
    # event ids that earlier versions kept only grew.
    connection.exec_driver_sql("DROP TABLE IF EXISTS processed_events")
    if connection.dialect.name != "sqlite":
        return  # PostgreSQL sequences never hand out an id twice
    created = connection.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'"
    ).scalar()
    if created is None or "AUTOINCREMENT" in str(created).upper():
        return
    connection.exec_driver_sql("ALTER TABLE outbox RENAME TO outbox_reused_ids")
    outbox.create(connection)
    connection.exec_driver_sql(
        f"INSERT INTO outbox ({_OUTBOX_COLUMNS}) SELECT {_OUTBOX_COLUMNS} FROM outbox_reused_ids"
    )
    connection.exec_driver_sql("DROP TABLE outbox_reused_ids")


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def create_tables(metadata: MetaData, *tables: Table) -> Callable[[Connection], None]:
    """A migration step that creates the given tables (all of `metadata` when none named)."""

    def apply(connection: Connection) -> None:
        metadata.create_all(connection, tables=list(tables) or None)

    return apply


class Database:
    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        if self.url.get_backend_name() == "sqlite" and self.url.database:
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(self.url, pool_pre_ping=True)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self._write_sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads start a deferred transaction: on SQLite in WAL mode they never wait for a writer.
        self.read_sessions = async_sessionmaker(
            self.engine.execution_options(read_only=True), expire_on_commit=False
        )
        # Several statements that must see the same commits: PostgreSQL's default isolation
        # (READ COMMITTED) gives each statement its own snapshot; SQLite's read transaction
        # already keeps one.
        self.snapshot_sessions = (
            self.read_sessions
            if self.is_sqlite
            else async_sessionmaker(
                self.engine.execution_options(read_only=True, isolation_level="REPEATABLE READ"),
                expire_on_commit=False,
            )
        )
        # SQLite has one writer at a time. Its busy handler is not fair (a busy writer can
        # starve another connection past any timeout), so a process queues its own writers.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    async def migrate(self, migrations: Sequence[Migration]) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(_upgrade_kit_tables)
            await connection.run_sync(lambda c: kit_metadata.create_all(c))
            done = set((await connection.execute(select(schema_migrations.c.version))).scalars())
            for migration in sorted(migrations, key=lambda m: m.version):
                if migration.version in done:
                    continue
                log.info("applying migration %s: %s", migration.version, migration.description)
                await connection.run_sync(migration.apply)
                await connection.execute(
                    insert(schema_migrations).values(
                        version=migration.version,
                        description=migration.description,
                        applied_at=datetime.now(UTC),
                    )
                )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits on success, rolls back on any error."""
        async with self._writer_turn(), self._write_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction (a consistent snapshot; writes in it are a mistake)."""
        async with self.read_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction in which every statement sees the same commits."""
        async with self.snapshot_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def _writer_turn(self) -> AsyncIterator[None]:
        if self._write_lock is None:
            yield
            return
        async with self._write_lock:
            yield

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is switched off so that _sqlite_begin decides
    # how a transaction starts, and savepoints work.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the outbox relay read while a handler writes; a busy timeout waits for the lock
    # instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    dbapi_connection.create_function("decimal_add", 2, _sqlite_decimal_add, deterministic=True)


def _sqlite_begin(connection: Any) -> None:
    if connection.get_execution_options().get("read_only"):
        connection.exec_driver_sql("BEGIN")
        return
    # A writer takes the write lock at the start: a transaction that reads, then writes, would
    # otherwise fail with SQLITE_BUSY when another writer committed in between (the busy
    # timeout does not cover that case).
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def dialect_name(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


def insert_statement(session: AsyncSession, table: Table) -> Any:
    """The session's dialect of INSERT, which has on_conflict_do_nothing / _do_update."""
    return (pg_insert if dialect_name(session) == "postgresql" else sqlite_insert)(table)


def one_of(
    session: AsyncSession, column: ColumnElement[Any], values: Iterable[str | int]
) -> ColumnElement[bool]:
    """`column IN (values)` with one parameter, whatever the number of values.

    A plain IN list is a statement of its own for every number of values, and each driver keeps
    prepared statements per pooled connection (SQLite's: the last 128, each holding about
    200 bytes per value, 1 MB for 5,000 ids). Batches of varying size filled those caches with
    tens of MB per connection. Here the values travel as one JSON array read with `json_each`
    on SQLite (also about twice as fast as 3,000 bound values), as one array (`= ANY`) on
    PostgreSQL. For text and integer columns.
    """
    listed = list(values)
    if dialect_name(session) == "postgresql":
        return column == any_(bindparam(None, listed, type_=ARRAY(column.type)))
    each = func.json_each(bindparam(None, json.dumps(listed))).table_valued("value")
    return column.in_(select(each.c.value))


def row_chunks(rows: Sequence[RowT], largest: int = ROWS_PER_STATEMENT) -> Iterator[Sequence[RowT]]:
    """The rows in chunks of `largest` (a power of two), then in the powers of two the rest is
    made of: 1,000 rows go as 256, 256, 256, 128, 64, 32 and 8.

    A multi-row statement (INSERT ... VALUES (...), (...), or an executemany with RETURNING,
    which SQLAlchemy turns into such pages) has a text of its own for each number of rows, and
    drivers keep prepared statements per pooled connection: SQLite's last 128, each about 4 KB
    per row of 33 columns, so 4 MB for the 992-row page SQLAlchemy would send. Executed in
    these chunks, a statement has at most log2(largest) + 1 shapes, about 2 MB of SQLite's
    memory per connection for the widest table, however many batches of whatever size pass.
    """
    if largest < 1 or largest & (largest - 1):
        raise ValueError(f"largest must be a power of two, not {largest}")
    start, size = 0, largest
    while start < len(rows):
        while size > len(rows) - start:
            size //= 2
        yield rows[start : start + size]
        start += size


async def upsert(
    session: AsyncSession, table: Table, values: dict[str, Any], key: Sequence[str]
) -> None:
    """Inserts a row, or updates it when a row with the same key exists."""
    statement = insert_statement(session, table).values(**values)
    changed = {name: statement.excluded[name] for name in values if name not in key}
    await session.execute(statement.on_conflict_do_update(index_elements=list(key), set_=changed))


async def insert_if_absent(session: AsyncSession, table: Table, values: dict[str, Any]) -> bool:
    """Inserts a row unless one with the same primary key exists; True when it inserted."""
    result = await session.execute(
        insert_statement(session, table).values(**values).on_conflict_do_nothing()
    )
    return bool(getattr(result, "rowcount", 0) == 1)


@dataclass(frozen=True)
class _RowInsert:
    """A compiled multi-row INSERT for one dialect: its SQL, how to take a row's values in the
    statement's order, and the bind processors of the columns that have one."""

    sql: str
    values_of: Callable[[Mapping[str, Any]], tuple[Any, ...]]
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """The rows' parameters for the driver, in the statement's order.

        Worked out column by column: the rows' values are taken and put back together by
        itemgetter and zip (in C), and only the columns with a processor are visited value by
        value. Rows of a batch often share a value (its timestamp, a header dictionary): a
        value that is the very object of the row before reuses that row's processed form.
        """
        values = map(self.values_of, rows)
        if not self.processors:
            return list(values)
        columns: list[Sequence[Any]] = list(zip(*values, strict=True))
        for position, process in self.processors:
            columns[position] = _processed(columns[position], process)
        return list(zip(*columns, strict=True))


def _processed(values: Iterable[Any], process: Callable[[Any], Any]) -> list[Any]:
    processed = []
    last_in: Any = _NOTHING
    last_out: Any = None
    for value in values:
        if value is not last_in:
            last_in = value
            last_out = process(value)
        processed.append(last_out)
    return processed


# Stands for "no value seen yet" (None is a value).
_NOTHING = object()

_row_inserts: dict[
    tuple[str, Table, tuple[str, ...], tuple[str, ...] | None, bool], _RowInsert
] = {}


def _row_insert(
    dialect: Dialect,
    table: Table,
    names: tuple[str, ...],
    conflict: tuple[str, ...] | None,
    replace: bool,
) -> _RowInsert:
    key = (dialect.name, table, names, conflict, replace)
    found = _row_inserts.get(key)
    if found is not None:
        return found
    # The driver is handed the rows as they are: SQLAlchemy's client-side defaults would not
    # be applied to the columns left out.
    defaulted = [c.name for c in table.columns if c.default is not None and c.name not in names]
    if defaulted:
        raise ValueError(f"{table.name}: rows must give {defaulted} (client-side defaults)")
    statement = (pg_insert if dialect.name == "postgresql" else sqlite_insert)(table)
    if conflict is not None and replace:
        statement = statement.on_conflict_do_update(
            index_elements=list(conflict),
            set_={name: statement.excluded[name] for name in names if name not in conflict},
        )
    elif conflict is not None:
        statement = statement.on_conflict_do_nothing(index_elements=list(conflict))
    compiled = statement.compile(dialect=dialect, column_keys=list(names))
    order = list(compiled.positiontup or ())
    if sorted(order) != sorted(names):
        raise ValueError(f"{table.name}: rows name columns {names}, the statement binds {order}")
    processors = []
    for position, name in enumerate(order):
        column_type = table.c[name].type.dialect_impl(dialect)
        process = column_type.bind_processor(dialect)
        if process is not None:
            processors.append((position, process))
    getter = itemgetter(*order)
    found = _RowInsert(
        str(compiled),
        getter if len(order) > 1 else lambda row: (getter(row),),
        tuple(processors),
    )
    _row_inserts[key] = found
    return found


async def insert_rows(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    skip_conflicts_on: Sequence[str] | None = None,
    replace_conflicts_on: Sequence[str] | None = None,
) -> int:
    """Inserts rows with executemany calls of the driver; with `skip_conflicts_on`, rows that
    conflict on that unique key are skipped (ON CONFLICT DO NOTHING); with
    `replace_conflicts_on`, such a row's other columns overwrite the stored row's (an upsert).
    Returns how many rows were inserted or replaced where the driver says (SQLite), else -1.

    A row may leave out nullable columns (they are NULL, or their server default): rows in a
    row with the same columns go in one executemany, in their order.

    For hot paths writing thousands of wide rows: `session.execute(insert(table), rows)`
    works out every row's parameters one at a time (each value looked up by name and passed
    through its column type's bind processor by SQLAlchemy's generic machinery), which for a
    table of fifty columns costs more CPU than the database spends storing the row. Here the
    statement is compiled once per dialect and set of columns, each column's processor (the
    same SQLAlchemy would apply) is looked up once, and each row becomes a tuple. No RETURNING:
    a caller that must know which rows were skipped uses `session.execute` instead.
    """
    if not rows:
        return 0
    if skip_conflicts_on is not None and replace_conflicts_on is not None:
        raise ValueError("a conflict is either skipped or replaced")
    connection = await session.connection()
    replace = replace_conflicts_on is not None
    conflict_on = replace_conflicts_on if replace else skip_conflicts_on
    conflict = None if conflict_on is None else tuple(conflict_on)
    inserted = 0
    for names, same_columns in groupby(rows, key=tuple):
        prepared = _row_insert(connection.dialect, table, names, conflict, replace)
        result = await connection.exec_driver_sql(
            prepared.sql, prepared.parameters(list(same_columns))
        )
        inserted += result.rowcount
    return inserted if connection.dialect.name == "sqlite" else -1
