"""Kafka for the services: one producer, batch consumers with exactly-once effect, dead letters.

Delivery rules (see docs/delivery.md):
- the producer uses acks=all and idempotence;
- a consumer hands its handler a whole fetched batch in one database transaction and commits
  the offsets only after that transaction committed; a transient failure is retried in place
  with backoff, so the partition does not move past it, until it succeeds or is dead-lettered;
- an event that can never be processed goes to `<topic>.dlq`, byte for byte as it came (key,
  value, headers), with the reason in added `dlq-*` headers.

The consumer is plain aiokafka rather than a framework subscriber: it owns fetching, offsets,
rebalancing and tracing per batch, which is what a consumer at telematics rate needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from google.protobuf.message import Message
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from servicekit.codec import Decoder, UndecodableEvent
from servicekit.errors import PermanentEventError
from servicekit.topics import TopicNames, dead_letter_topic

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

MessageT = TypeVar("MessageT", bound=Message)

# A dead letter's detail is cut to this many characters (headers are not for essays).
MAX_DETAIL_CHARS = 2000


@dataclass(frozen=True, slots=True)
class EventContext:
    """Where an event came from, for handlers that record provenance or positions."""

    topic: str
    partition: int
    offset: int
    key: str


@dataclass(frozen=True, slots=True)
class Delivered(Generic[MessageT]):
    event: MessageT
    context: EventContext


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event of a batch that can never be processed: it is dead-lettered with the reason."""

    index: int
    reason: str
    detail: str


BatchHandler = Callable[[Sequence[Delivered[MessageT]]], Awaitable[Sequence[Rejection]]]
PartitionsHook = Callable[[set[int]], Awaitable[None]]
BatchScope = Callable[[], AbstractAsyncContextManager[None]]


class Producer:
    """The service's one Kafka producer: acks=all, idempotent, records sent without waiting
    for each acknowledgement in turn."""

    def __init__(self, bootstrap_servers: str, client_id: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=256 * 1024,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send_all(
        self, records: Sequence[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]]
    ) -> None:
        """Sends (topic, key, value, headers) records and returns once all are acknowledged
        (a value of None is a tombstone).

        All are handed to the producer first, so they travel in a few produce requests; with
        idempotence, records of one partition stay in order.
        """
        acknowledgements = [
            await self._producer.send(topic, value, key=key, headers=headers)
            for topic, key, value, headers in records
        ]
        if acknowledgements:
            await asyncio.gather(*acknowledgements)


@dataclass(slots=True)
class _Record:
    """One fetched record, decoded or already judged dead."""

    raw: Any
    delivered: Delivered[Any] | None = None
    dead_reason: str = ""
    dead_detail: str = ""


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge(
            "kafka_consumer_lag",
            "Records behind the partition's end after the last handled batch",
            ["group", "topic", "partition"],
            registry=registry,
        )
        self.records = Counter(
            "kafka_consumed_records",
            "Records handled (committed), dead letters included",
            ["group", "topic"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "kafka_dead_letters",
            "Records sent to the dead-letter topic, by reason",
            ["group", "topic", "reason"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "kafka_batch_seconds",
            "Time to handle one fetched batch, commit included",
            ["group", "topic"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )


class BatchConsumer(Generic[MessageT]):
    """Consumes one topic with one message type; hands each fetched batch to one handler.

    Each batch runs in one database transaction (`batch_scope`) and one CONSUMER span, its
    rejections are dead-lettered before the transaction commits, and its offsets are committed
    after. A handler that raises is retried with backoff on the whole batch; if it keeps
    failing, the events go one by one, and one that still fails is dead-lettered as
    `retries_exhausted`. Handlers are therefore written for any split of the stream into
    batches, and for a batch delivered again after its effect committed.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        client_id: str,
        producer: Producer,
        names: TopicNames,
        topic: str,
        group_id: str,
        message_type: type[MessageT],
        handle_batch: BatchHandler[MessageT],
        batch_scope: BatchScope | None = None,
        max_attempts: int = 8,
        retry_backoff_s: float = 0.2,
        batch_size: int = 5000,
        metrics: ConsumerMetrics | None = None,
        on_assigned: PartitionsHook | None = None,
        on_revoked: PartitionsHook | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.producer = producer
        self.topic = names(topic)
        self.dead_letter_topic = names(dead_letter_topic(topic))
        self.group_id = names.group(group_id)
        self.decoder = Decoder(message_type)
        self.handle_batch = handle_batch
        self.batch_scope = batch_scope
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.batch_size = batch_size
        self.metrics = metrics
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Held while a batch is handled: a rebalance waits for it, so a partition changes
        # owner only between batches.
        self._working = asyncio.Lock()

    async def start(self) -> None:
        self._stopping = False
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=10 * 60 * 1000,
            # A member learns of a rebalance at its next heartbeat: sooner than the default 3 s
            # lets a new instance take its share of partitions sooner.
            heartbeat_interval_ms=1000,
            # Enough bytes per fetch that a backlog comes in batches of thousands.
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
        )
        self._consumer.subscribe([self.topic], listener=_Rebalance(self))
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"consume {self.topic}")

    async def stop(self) -> None:
        """Finishes the batch in hand (its effect and offsets), then leaves the group."""
        self._stopping = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping:
            try:
                fetched = await consumer.getmany(timeout_ms=100, max_records=self.batch_size)
            except Exception:
                log.exception("fetching from %s failed; retrying", self.topic)
                await asyncio.sleep(self.retry_backoff_s)
                continue
            if not fetched:
                continue
            async with self._working:
                started = time.perf_counter()
                try:
                    await self._process([record for rs in fetched.values() for record in rs])
                except Exception:
                    # Nothing committed for this batch: fetch it again from its first offsets.
                    log.exception("batch of %s failed; it is fetched again", self.topic)
                    for partition, records in fetched.items():
                        with contextlib.suppress(IllegalStateError):
                            consumer.seek(partition, records[0].offset)
                    await asyncio.sleep(self.retry_backoff_s)
                    continue
                await self._commit(consumer, fetched)
                self._record_metrics(consumer, fetched, time.perf_counter() - started)

    async def _commit(
        self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[Any]]
    ) -> None:
        offsets = {partition: records[-1].offset + 1 for partition, records in fetched.items()}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The partitions moved to another member meanwhile; it receives the batch again and
            # the handler's high-water marks or unique keys make that a no-op.
            log.warning("offset commit refused after a rebalance: %s", error)

    def _record_metrics(
        self,
        consumer: AIOKafkaConsumer,
        fetched: dict[TopicPartition, list[Any]],
        seconds: float,
    ) -> None:
        if self.metrics is None:
            return
        count = sum(len(records) for records in fetched.values())
        self.metrics.records.labels(self.group_id, self.topic).inc(count)
        self.metrics.batch_seconds.labels(self.group_id, self.topic).observe(seconds)
        for partition, records in fetched.items():
            highwater = consumer.highwater(partition)
            if highwater is not None:
                self.metrics.lag.labels(self.group_id, self.topic, str(partition.partition)).set(
                    highwater - records[-1].offset - 1
                )

    def _decode(self, raw: Any) -> _Record:
        # The hot path of a consumer: one pass over the headers, no dictionary per record.
        event_type = None
        for name, value in raw.headers or ():
            if name == "event-type":
                event_type = value or b""
        record = _Record(raw)
        try:
            event = self.decoder.decode(raw.value or b"", event_type)
        except UndecodableEvent as error:
            record.dead_reason, record.dead_detail = error.reason, error.detail
            return record
        key = raw.key.decode(errors="replace") if raw.key else ""
        record.delivered = Delivered(event, EventContext(raw.topic, raw.partition, raw.offset, key))
        return record

    async def _process(self, raws: list[Any]) -> None:
        records = [self._decode(raw) for raw in raws]
        undecodable = [record for record in records if record.delivered is None]
        if undecodable:
            await self._dead_letter(undecodable)
        decoded = [record for record in records if record.delivered is not None]
        if not decoded:
            return
        if not await self._handle_with_retries(decoded):
            log.warning("batch of %s keeps failing; handling its events one by one", self.topic)
            for record in decoded:
                await self._handle_with_retries([record])

    async def _handle_with_retries(self, records: list[_Record]) -> bool:
        """Handles the records, retrying in place. False when several keep failing and must be
        handled one by one; a lone record that cannot be handled is dead-lettered."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self._handle(records)
                return True
            except PermanentEventError as error:
                if len(records) > 1:
                    return False  # one of them is at fault: find it by going one by one
                reason, detail = error.reason, error.detail
            except Exception as error:  # transient until proven otherwise: retry in place
                if attempt < self.max_attempts:
                    await self._back_off(attempt, len(records))
                    continue
                if len(records) > 1:
                    return False
                reason, detail = "retries_exhausted", f"{type(error).__name__}: {error}"
            records[0].dead_reason, records[0].dead_detail = reason, detail
            await self._dead_letter(records)
            return True
        return False  # pragma: no cover - the loop always returns

    async def _back_off(self, attempt: int, records: int) -> None:
        delay = min(self.retry_backoff_s * 2 ** (attempt - 1), 10.0)
        log.warning(
            "event handling failed, retrying",
            extra={"topic": self.topic, "attempt": attempt, "records": records},
            exc_info=True,
        )
        await asyncio.sleep(delay)

    async def _handle(self, records: list[_Record]) -> None:
        delivered = [record.delivered for record in records]
        with self._batch_span(records):
            async with self._scope():
                rejections = await self.handle_batch(delivered)  # type: ignore[arg-type]
                if rejections:
                    rejected = []
                    for rejection in rejections:
                        record = records[rejection.index]
                        record.dead_reason, record.dead_detail = rejection.reason, rejection.detail
                        rejected.append(record)
                    # Published before the transaction commits: a crash in between sends them
                    # again (at least once), never loses one.
                    await self._dead_letter(rejected)

    @contextlib.asynccontextmanager
    async def _scope(self) -> AsyncIterator[None]:
        if self.batch_scope is None:
            yield
            return
        async with self.batch_scope():
            yield

    @contextlib.contextmanager
    def _batch_span(self, records: list[_Record]) -> Any:
        """One span per batch, linked to each record's producer span (OpenTelemetry messaging
        conventions for batch receive); a batch of one trace continues that trace."""
        producer_contexts = [
            trace.get_current_span(propagate.extract(headers)).get_span_context()
            for headers in map(_trace_headers, records)
            if headers
        ]
        valid = [context for context in producer_contexts if context.is_valid]
        parent: Context | None = None
        if (
            valid
            and len({context.trace_id for context in valid}) == 1
            and len(valid) == len(records)
        ):
            parent = trace.set_span_in_context(trace.NonRecordingSpan(valid[0]))
        with tracer.start_as_current_span(
            f"{self.topic} process",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            links=[trace.Link(context) for context in valid],
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": self.topic,
                "messaging.consumer.group.name": self.group_id,
                "messaging.batch.message_count": len(records),
            },
        ) as span:
            yield span

    async def _dead_letter(self, records: list[_Record]) -> None:
        failed_at = datetime.now(UTC).isoformat().encode()
        outgoing = []
        for record in records:
            raw = record.raw
            log.warning(
                "event dead-lettered",
                extra={
                    "topic": raw.topic,
                    "offset": raw.offset,
                    "reason": record.dead_reason,
                    "detail": record.dead_detail,
                },
            )
            if self.metrics is not None:
                self.metrics.dead_letters.labels(
                    self.group_id, self.topic, record.dead_reason
                ).inc()
            # The original headers as they came, then the reason: a replay restores the record.
            headers = [(key, value or b"") for key, value in raw.headers or ()]
            headers += [
                ("dlq-reason", record.dead_reason.encode()),
                ("dlq-detail", record.dead_detail[:MAX_DETAIL_CHARS].encode()),
                ("dlq-source-topic", raw.topic.encode()),
                ("dlq-source-partition", str(raw.partition).encode()),
                ("dlq-source-offset", str(raw.offset).encode()),
                ("dlq-consumer-group", self.group_id.encode()),
                ("dlq-failed-at", failed_at),
            ]
            outgoing.append((self.dead_letter_topic, raw.key, raw.value or b"", headers))
        await self.producer.send_all(outgoing)


def _trace_headers(record: _Record) -> dict[str, str]:
    """The record's W3C trace headers (empty when it carries none, as most telemetry)."""
    return {
        name: (value or b"").decode(errors="replace")
        for name, value in record.raw.headers or ()
        if name in ("traceparent", "tracestate")
    }


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchConsumer[Any]) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Waits for the batch in hand, whose offsets are then committed.
        async with self.owner._working:
            if self.owner.on_revoked is not None and revoked:
                await self.owner.on_revoked({partition.partition for partition in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.owner.on_assigned is not None:
            await self.owner.on_assigned({partition.partition for partition in assigned})
