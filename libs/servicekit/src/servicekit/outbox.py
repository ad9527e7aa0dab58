"""Transactional outbox: an event is stored in the same transaction as the change it announces,
then published by the relay. A crash between commit and publish loses nothing: the relay
publishes whatever is still in the outbox when it starts again (at least once; consumers
deduplicate by event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from opentelemetry import propagate
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.codec import event_headers
from servicekit.database import Database, outbox
from servicekit.kafka import Producer

log = logging.getLogger(__name__)

# The event type recorded for a tombstone (it has no message).
TOMBSTONE = "tombstone"


async def add_to_outbox(session: AsyncSession, topic: str, key: str, message: Message) -> None:
    """Stores an event for publication, with the current trace context so the trace goes on."""
    await add_many_to_outbox(session, [(topic, key, message)])


async def add_many_to_outbox(
    session: AsyncSession, items: Iterable[tuple[str, str, Message]]
) -> None:
    """Stores (topic, key, message) events with one statement, in the current trace context."""
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)
    now = datetime.now(UTC)
    rows = [
        {
            "topic": topic,
            "key": key,
            "event_type": message.DESCRIPTOR.full_name,
            "payload": message.SerializeToString(),
            "headers": {**event_headers(message), **trace_headers},
            "created_at": now,
        }
        for topic, key, message in items
    ]
    if rows:
        await session.execute(insert(outbox), rows)


async def add_tombstone_to_outbox(session: AsyncSession, topic: str, key: str) -> None:
    """Stores a tombstone for publication: a record of `key` without a value, which tells a
    compacted topic (and its readers) that the key is gone. It is stored with an empty payload,
    which no event has (every event carries its id), and published with none."""
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)
    await session.execute(
        insert(outbox).values(
            topic=topic,
            key=key,
            event_type=TOMBSTONE,
            payload=b"",
            headers=trace_headers,
            created_at=datetime.now(UTC),
        )
    )


class OutboxRelay:
    """Publishes the outbox in insertion order, a batch at a time, and deletes what it published.

    A batch is handed to the producer whole and its acknowledgements awaited together. On
    PostgreSQL the rows are claimed with FOR UPDATE SKIP LOCKED, so several instances of a
    service share the outbox and never publish a row twice (each instance keeps the order of
    its own claims). On SQLite, one process owns the database.
    """

    def __init__(
        self,
        database: Database,
        producer: Producer,
        poll_interval_s: float = 0.5,
        batch: int = 1000,
    ) -> None:
        self.database = database
        self.producer = producer
        self.poll_interval_s = poll_interval_s
        self.batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def notify(self) -> None:
        """Called after a commit that wrote to the outbox, so publication need not wait."""
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Lets the relay publish what is committed, then stops it."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(self._task, timeout_s)
        except TimeoutError:
            log.warning("outbox relay did not finish in %.0f s; unpublished rows wait", timeout_s)
        self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                while await self.publish_pending() == self.batch:
                    pass
            except Exception:
                log.exception("outbox relay failed; retrying")
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)

    async def publish_pending(self) -> int:
        """Publishes one batch of the outbox and deletes it; returns how many rows it published.

        Published rows are deleted, the topic being their record. A crash between publishing
        and deleting publishes the batch again, which consumers deduplicate by event id.
        """
        if self.database.is_sqlite:
            # One process owns a SQLite database: read, publish, then delete, so that the
            # service's writers go on while the batch is in flight.
            async with self.database.read() as session:
                rows = await self._pending(session)
            await self._publish(rows)
            async with self.database.transaction() as session:
                await self._delete(session, rows)
            return len(rows)
        async with self.database.transaction() as session:
            rows = await self._pending(session)
            await self._publish(rows)
            await self._delete(session, rows)
        return len(rows)

    async def _pending(self, session: AsyncSession) -> list[Any]:
        statement = (
            select(outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.payload, outbox.c.headers)
            .order_by(outbox.c.id)
            .limit(self.batch)
            .with_for_update(skip_locked=True)
        )
        return list((await session.execute(statement)).all())

    async def _publish(self, rows: list[Any]) -> None:
        await self.producer.send_all(
            [
                (
                    row.topic,
                    row.key.encode(),
                    bytes(row.payload) or None,  # empty: a tombstone
                    [(name, str(value).encode()) for name, value in dict(row.headers).items()],
                )
                for row in rows
            ]
        )

    @staticmethod
    async def _delete(session: AsyncSession, rows: list[Any]) -> None:
        if rows:
            await session.execute(delete(outbox).where(outbox.c.id.in_([row.id for row in rows])))
