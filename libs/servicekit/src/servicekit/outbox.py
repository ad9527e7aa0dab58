"""Transactional outbox: an event is stored in the same transaction as the change it announces,
then published by the relay. A crash between commit and publish loses nothing: the relay
publishes whatever is still unpublished when it starts again (at least once; consumers
deduplicate by event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from faststream.kafka import KafkaBroker
from google.protobuf.message import Message
from opentelemetry import propagate, trace
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.codec import event_headers
from servicekit.database import Database, outbox

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


async def add_to_outbox(session: AsyncSession, topic: str, key: str, message: Message) -> None:
    """Stores an event for publication, with the current trace context so the trace goes on."""
    headers = event_headers(message)
    propagate.inject(headers)
    await session.execute(
        insert(outbox).values(
            topic=topic,
            key=key,
            event_type=message.DESCRIPTOR.full_name,
            payload=message.SerializeToString(),
            headers=headers,
            created_at=datetime.now(UTC),
        )
    )


class OutboxRelay:
    """Publishes the outbox in insertion order, one row after the other."""

    def __init__(
        self,
        database: Database,
        broker: KafkaBroker,
        poll_interval_s: float = 0.5,
        batch: int = 200,
    ) -> None:
        self.database = database
        self.broker = broker
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
        """Lets the relay finish its batch and publish what is committed, then stops it.

        Cancelling mid-batch would republish that batch on the next start; finishing it does not.
        """
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
            try:
                while await self.publish_pending() == self.batch:
                    pass
            except Exception:
                log.exception("outbox relay failed; retrying")
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
            self._wake.clear()

    async def publish_pending(self) -> int:
        async with self.database.read() as session:
            rows = (
                await session.execute(
                    select(
                        outbox.c.id,
                        outbox.c.topic,
                        outbox.c.key,
                        outbox.c.payload,
                        outbox.c.headers,
                    )
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.id)
                    .limit(self.batch)
                )
            ).all()
        for row in rows:
            headers: dict[str, str] = dict(row.headers)
            parent = propagate.extract(headers)
            with tracer.start_as_current_span(
                f"outbox publish {row.topic}", context=parent, kind=trace.SpanKind.INTERNAL
            ):
                # The telemetry middleware writes the current context into the headers.
                headers.pop("traceparent", None)
                headers.pop("tracestate", None)
                await self.broker.publish(
                    bytes(row.payload), topic=row.topic, key=row.key.encode(), headers=headers
                )
        if rows:
            # One mark per batch: a crash before it republishes the batch, which consumers
            # deduplicate by event id.
            async with self.database.transaction() as session:
                await session.execute(
                    update(outbox)
                    .where(outbox.c.id.in_([row.id for row in rows]))
                    .values(published_at=datetime.now(UTC))
                )
        return len(rows)
