"""Read models: a service's own copy of a compacted changelog, kept in its database.

A compacted topic keeps the latest record of every key, so reading it from the beginning
rebuilds the producer's current state. A `ReadModel` does that at every start, without a
consumer group or committed offsets (every instance of a service reads the whole topic), and
then follows the topic. Each record is applied in the service's database, in table
`read_model_rows`:

- an upsert only when its revision is above the stored one, so a record published again (the
  outbox publishes at least once) or a stale copy never undoes a newer change;
- a tombstone (a record without a value) deletes the key's value; the row keeps the revision it
  had, so a stale upsert of the deleted record published again after the tombstone stays out.

`caught_up` is set once every partition has been read up to where it ended when the model
started: the service's readiness waits for it, so a service never answers from a model that
is still being rebuilt. A record that cannot be decoded is skipped, logged and counted in
`read_model_skipped_records_total`, not dead-lettered: the model rereads the topic at every
start and would dead-letter the same record each time, and only the producer writes the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.message import DecodeError, Message
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import BigInteger, Column, LargeBinary, String, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.database import Database, UtcDateTime, insert_statement, kit_metadata
from servicekit.kafka import CLIENT_START_TIMEOUT_S

log = logging.getLogger(__name__)

MessageT = TypeVar("MessageT", bound=Message)

read_model_rows = Table(
    "read_model_rows",
    kit_metadata,
    # The topic the model follows (namespaced): one database may hold several models.
    Column("model", String(200), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("revision", BigInteger, nullable=False),
    # NULL: deleted (a tombstone) at `revision`.
    Column("payload", LargeBinary, nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
)


@dataclass(frozen=True, slots=True)
class Change(Generic[MessageT]):
    """One record applied to the model: the new value of a key, or None when it was deleted."""

    key: str
    revision: int
    value: MessageT | None
    previous: MessageT | None


ChangeHook = Callable[[AsyncSession, Sequence[Change[MessageT]]], Awaitable[None]]


class ReadModelMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.applied = Counter(
            "read_model_applied_records",
            "Changelog records that changed a read model (stale and repeated ones excluded)",
            ["model"],
            registry=registry,
        )
        self.skipped = Counter(
            "read_model_skipped_records",
            "Changelog records a read model could not decode and skipped",
            ["model"],
            registry=registry,
        )
        self.caught_up = Gauge(
            "read_model_caught_up",
            "1 once the read model has read its topic up to where it ended at start",
            ["model"],
            registry=registry,
        )


class ReadModel(Generic[MessageT]):
    """Keeps the latest revision of every key of a compacted topic in the service's database.

    `revision_of` reads a record's revision from its message. `on_change`, when given, runs in
    the same transaction as the changes it is handed (only those that changed the model), so a
    service can act on a change exactly once per change of state.
    """

    def __init__(
        self,
        *,
        topic: str,
        message_type: type[MessageT],
        revision_of: Callable[[MessageT], int],
        database: Database,
        connection: dict[str, Any],
        client_id: str,
        on_change: ChangeHook[MessageT] | None = None,
        metrics: ReadModelMetrics | None = None,
        retry_backoff_s: float = 0.5,
    ) -> None:
        self.topic = topic
        self.message_type = message_type
        self.revision_of = revision_of
        self.database = database
        self.connection = connection
        self.client_id = client_id
        self.on_change = on_change
        self.metrics = metrics
        self.retry_backoff_s = retry_backoff_s
        self.caught_up = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._targets: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        """Assigns every partition of the topic from its beginning; the rest happens in the
        background (`caught_up` tells when the model is whole)."""
        # Without a group, a subscription is assigned every partition of the topic, new
        # ones included, and nothing is committed: each start reads from the beginning.
        consumer = AIOKafkaConsumer(
            self.topic,
            **self.connection,
            client_id=self.client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            # Bounded, so that a broker gone away mid-start (or a topic whose metadata never
            # comes) makes the runtime try again with a fresh client instead of waiting forever.
            self._targets = await asyncio.wait_for(
                self._assign_from_beginning(consumer), CLIENT_START_TIMEOUT_S
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name=f"read model {self.topic}")

    @staticmethod
    async def _assign_from_beginning(
        consumer: AIOKafkaConsumer,
    ) -> dict[TopicPartition, int]:
        """Starts the consumer at the beginning of every partition; the partitions' end offsets."""
        await consumer.start()
        # aiokafka assigns a group-less subscription once the topic's metadata arrives, and
        # signals it with nothing to wait on.
        while not consumer.assignment():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assigned = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*assigned)
        return dict(await consumer.end_offsets(assigned))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def wait_caught_up(self, log_every_s: float = 10.0) -> None:
        while True:
            try:
                await asyncio.wait_for(self.caught_up.wait(), log_every_s)
                return
            except TimeoutError:
                log.warning("read model of %s is still catching up", self.topic)

    # Queries, in a transaction of the caller's

    async def get(self, session: AsyncSession, key: str) -> MessageT | None:
        payload = (
            await session.execute(
                select(read_model_rows.c.payload).where(
                    read_model_rows.c.model == self.topic, read_model_rows.c.key == key
                )
            )
        ).scalar()
        return None if payload is None else self.message_type.FromString(payload)

    async def values(self, session: AsyncSession) -> list[MessageT]:
        payloads = (
            await session.execute(
                select(read_model_rows.c.payload)
                .where(
                    read_model_rows.c.model == self.topic,
                    read_model_rows.c.payload.is_not(None),
                )
                .order_by(read_model_rows.c.key)
            )
        ).scalars()
        return [self.message_type.FromString(payload) for payload in payloads]

    # Following the topic

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        await self._check_caught_up(consumer)
        while True:
            try:
                fetched = await consumer.getmany(timeout_ms=200, max_records=1000)
            except Exception:
                log.exception("reading %s failed; retrying", self.topic)
                await asyncio.sleep(self.retry_backoff_s)
                continue
            records = [record for batch in fetched.values() for record in batch]
            if records:
                await self._apply_with_retries(records)
            await self._check_caught_up(consumer)

    async def _apply_with_retries(self, records: list[Any]) -> None:
        while True:
            try:
                await self.apply(records)
                return
            except Exception:
                # The database may be away for a moment: the model must not skip a change.
                log.exception(
                    "applying %d records of %s failed; retrying", len(records), self.topic
                )
                await asyncio.sleep(self.retry_backoff_s)

    async def _check_caught_up(self, consumer: AIOKafkaConsumer) -> None:
        if self.caught_up.is_set():
            return
        for partition, end in self._targets.items():
            if await consumer.position(partition) < end:
                return
        self.caught_up.set()
        if self.metrics is not None:
            self.metrics.caught_up.labels(self.topic).set(1)
        log.info("read model of %s caught up", self.topic)

    async def apply(self, records: Sequence[Any]) -> list[Change[MessageT]]:
        """Applies fetched records (aiokafka ConsumerRecords, in topic order) in one
        transaction; returns the changes that changed the model."""
        changes: list[Change[MessageT]] = []
        async with self.database.transaction() as session:
            for record in records:
                key = record.key.decode(errors="replace") if record.key else ""
                if not key:
                    self._skip(record, "no key")
                    continue
                if record.value is None:
                    change = await self._delete(session, key)
                else:
                    try:
                        message = self.message_type.FromString(record.value)
                    except DecodeError as error:
                        self._skip(
                            record, f"not a {self.message_type.DESCRIPTOR.full_name}: {error}"
                        )
                        continue
                    change = await self._upsert(session, key, message)
                if change is not None:
                    changes.append(change)
            if changes and self.on_change is not None:
                await self.on_change(session, changes)
        if self.metrics is not None and changes:
            self.metrics.applied.labels(self.topic).inc(len(changes))
        return changes

    def _skip(self, record: Any, reason: str) -> None:
        log.warning(
            "changelog record skipped",
            extra={"topic": record.topic, "offset": record.offset, "reason": reason},
        )
        if self.metrics is not None:
            self.metrics.skipped.labels(self.topic).inc()

    async def _stored(self, session: AsyncSession, key: str) -> tuple[int, MessageT | None] | None:
        row = (
            await session.execute(
                select(read_model_rows.c.revision, read_model_rows.c.payload).where(
                    read_model_rows.c.model == self.topic, read_model_rows.c.key == key
                )
            )
        ).first()
        if row is None:
            return None
        value = None if row.payload is None else self.message_type.FromString(row.payload)
        return row.revision, value

    async def _upsert(
        self, session: AsyncSession, key: str, message: MessageT
    ) -> Change[MessageT] | None:
        revision = self.revision_of(message)
        stored = await self._stored(session, key)
        if stored is not None and stored[0] >= revision:
            return None  # stale, or the same revision published again
        values = {
            "model": self.topic,
            "key": key,
            "revision": revision,
            "payload": message.SerializeToString(),
            "updated_at": datetime.now(UTC),
        }
        statement = insert_statement(session, read_model_rows).values(**values)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["model", "key"],
                set_={
                    name: statement.excluded[name] for name in ("revision", "payload", "updated_at")
                },
                # Guarded in SQL too, should another instance share the database.
                where=read_model_rows.c.revision < statement.excluded.revision,
            )
        )
        return Change(key, revision, message, None if stored is None else stored[1])

    async def _delete(self, session: AsyncSession, key: str) -> Change[MessageT] | None:
        stored = await self._stored(session, key)
        if stored is None or stored[1] is None:
            return None
        await session.execute(
            update(read_model_rows)
            .where(read_model_rows.c.model == self.topic, read_model_rows.c.key == key)
            .values(payload=None, updated_at=datetime.now(UTC))
        )
        return Change(key, stored[0], None, stored[1])
