"""Transactional outbox: an event is stored in the same transaction as the change it announces,
then published by the relay. A crash between commit and publish loses nothing: the relay
publishes whatever is still in the outbox when it starts again (at least once; consumers
deduplicate by event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from opentelemetry import propagate
from sqlalchemy import Delete, Select, Text, cast, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.codec import event_headers
from servicekit.database import Database, insert_rows, one_of, outbox
from servicekit.kafka import Producer, Throttle

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
    # Events of one type carry the same headers: one dictionary per type, shared by its rows.
    headers_of_type: dict[str, dict[str, str]] = {}
    rows = []
    for topic, key, message in items:
        event_type = message.DESCRIPTOR.full_name
        headers = headers_of_type.get(event_type)
        if headers is None:
            headers = headers_of_type[event_type] = {**event_headers(message), **trace_headers}
        rows.append(
            {
                "topic": topic,
                "key": key,
                "event_type": event_type,
                "payload": message.SerializeToString(),
                "headers": headers,
                "created_at": now,
            }
        )
    await insert_rows(session, outbox, rows)


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
    """Publishes the outbox in insertion order and deletes what it published, in small steps.

    Up to `batch` rows are read per round and published `step` rows at a time: a step is handed
    to the producer while the steps before it still await their acknowledgements (at most
    `steps_in_flight` steps handed over and not deleted), and the steps acknowledged are
    deleted as soon as they are, together when several are (a database slow to commit then
    deletes less often, in larger pieces). A kill between publishing and deleting republishes
    at most `step * steps_in_flight` records (400 by default), not a whole batch.

    On PostgreSQL each step claims its rows with FOR UPDATE SKIP LOCKED in a transaction of its
    own, which deletes them and commits once the step is acknowledged, so several instances of
    a service share the outbox and never publish a row twice (each instance keeps the order of
    its own claims). On SQLite, one process owns the database: rows are read without a lock and
    deleted by id.
    """

    def __init__(
        self,
        database: Database,
        producer: Producer,
        poll_interval_s: float = 0.5,
        batch: int = 1000,
        step: int = 100,
        steps_in_flight: int = 4,
        log_interval_s: float = 30.0,
    ) -> None:
        self.database = database
        self.producer = producer
        self.poll_interval_s = poll_interval_s
        self.batch = batch
        self.step = min(step, batch)
        self.steps_in_flight = steps_in_flight
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failures_logged = Throttle(log_interval_s)

    def notify(self) -> None:
        """Called after a commit that wrote to the outbox, so publication need not wait."""
        self._wake.set()

    def start(self) -> None:
        """Starts publishing (a relay already running is left as it is)."""
        if self._task is not None:
            return
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
                self._failures_logged.reset()
            except Exception:
                # The broker or the database is away: logged once per interval while it lasts.
                if self._failures_logged.due():
                    log.warning(
                        "outbox relay failed; retrying",
                        extra={"suppressed": self._failures_logged.take_suppressed()},
                        exc_info=True,
                    )
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)

    async def publish_pending(self) -> int:
        """Publishes up to `batch` rows of the outbox, in steps, deleting each step once it is
        acknowledged; returns how many rows it published.

        Published rows are deleted, the topic being their record. A crash between publishing a
        step and deleting it publishes that step again (and those in flight with it), which
        consumers deduplicate by event id.
        """
        in_flight: deque[_Step] = deque()
        published = 0
        claimed = 0
        exhausted = False
        # One process owns a SQLite database: the round is read at once, without a lock, so
        # that the service's writers go on while it is in flight.
        round_rows = await self._read_round() if self.database.is_sqlite else []

        async def hand_over_steps(up_to: int) -> None:
            nonlocal claimed, exhausted
            while not exhausted and claimed < self.batch and len(in_flight) < up_to:
                limit = min(self.step, self.batch - claimed)
                if self.database.is_sqlite:
                    step = _Step(round_rows[claimed : claimed + limit])
                else:
                    step = await self._claim(limit)
                if not step.rows:
                    await step.close()
                    exhausted = True
                    return
                in_flight.append(step)
                claimed += len(step.rows)
                step.acknowledged = await self.producer.hand_over(_records(step.rows))

        try:
            while True:
                await hand_over_steps(self.steps_in_flight)
                if not in_flight:
                    return published
                oldest = in_flight[0].acknowledged
                assert oldest is not None
                await oldest
                # Every step acknowledged by now is deleted at once: while the database is
                # slow to commit, acknowledgements gather and one deletion marks them all.
                steps = []
                for step in in_flight:
                    acknowledged = step.acknowledged
                    if acknowledged is None or not acknowledged.done():
                        break
                    await acknowledged  # raises a failed step's error
                    steps.append(step)
                await self._delete(steps)
                for step in steps:
                    in_flight.popleft()
                    published += len(step.rows)
        except BaseException as error:
            # Steps not deleted stay in the outbox (their transactions roll back), for the
            # next round; records of theirs that reached the broker are published again.
            for step in in_flight:
                await step.close(error)
                _abandon(step.acknowledged)
            raise

    @staticmethod
    def _pending(limit: int) -> Select[Any]:
        # Headers as their JSON text: `_records` decodes each distinct text once.
        headers = cast(outbox.c.headers, Text).label("headers")
        return (
            select(outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.payload, headers)
            .order_by(outbox.c.id)
            .limit(limit)
        )

    async def _read_round(self) -> list[Any]:
        async with self.database.read() as session:
            return list((await session.execute(self._pending(self.batch))).all())

    async def _claim(self, limit: int) -> _Step:
        """A step's rows on PostgreSQL, in a transaction of the step's own, open until the step
        is deleted: its row locks keep other instances (and this one's next steps) off them."""
        transaction = contextlib.AsyncExitStack()
        session = await transaction.enter_async_context(self.database.transaction())
        try:
            statement = self._pending(limit).with_for_update(skip_locked=True)
            rows = (await session.execute(statement)).all()
        except BaseException as error:
            await transaction.__aexit__(type(error), error, error.__traceback__)
            raise
        return _Step(list(rows), session, transaction)

    async def _delete(self, steps: list[_Step]) -> None:
        """Deletes acknowledged steps: on PostgreSQL each in (and with the commit of) its own
        transaction, on SQLite all in one."""
        for step in steps:
            if step.session is not None:
                await step.session.execute(_deletion(step.session, step.rows))
                await step.close()  # commits
        rows = [row for step in steps if step.session is None for row in step.rows]
        if rows:
            async with self.database.transaction() as session:
                await session.execute(_deletion(session, rows))


def _abandon(acknowledged: asyncio.Future[Any] | None) -> None:
    """Gives up waiting for a step's acknowledgements. Whatever they end with (a failure, or the
    cancellation itself, which a gathering future reports as its exception) is taken as seen:
    the round's own error is what is raised."""
    if acknowledged is None:
        return
    acknowledged.add_done_callback(_take_outcome)
    acknowledged.cancel()


def _take_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _deletion(session: AsyncSession, rows: list[Any]) -> Delete:
    return delete(outbox).where(one_of(session, outbox.c.id, [row.id for row in rows]))


@dataclass
class _Step:
    """Rows handed to the producer together, deleted together once acknowledged."""

    rows: list[Any]
    # The step's own transaction (PostgreSQL), None on SQLite.
    session: AsyncSession | None = None
    transaction: contextlib.AsyncExitStack | None = None
    acknowledged: asyncio.Future[Any] | None = None

    async def close(self, error: BaseException | None = None) -> None:
        """Ends the step's transaction: commits it, or rolls it back after an error."""
        transaction, self.transaction = self.transaction, None
        if transaction is None:
            return
        if error is None:
            await transaction.aclose()
        else:
            await transaction.__aexit__(type(error), error, error.__traceback__)


def _records(
    rows: list[Any],
) -> list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes | None]]]]:
    """The rows as the producer takes them. The rows of a round mostly share their headers (a
    few event types, a few trace contexts): each distinct JSON text is decoded once, and every
    record gets its own copy of the list (tracing may add to a record's headers)."""
    decoded: dict[str, list[tuple[str, bytes | None]]] = {}
    records = []
    for row in rows:
        headers = decoded.get(row.headers)
        if headers is None:
            headers = decoded[row.headers] = [
                (name, str(value).encode()) for name, value in json.loads(row.headers).items()
            ]
        records.append(
            (
                row.topic,
                row.key.encode(),
                bytes(row.payload) or None,  # empty: a tombstone
                list(headers),
            )
        )
    return records
