"""Kafka for the services: one producer, batch consumers with exactly-once effect, dead letters.

Delivery rules (see docs/delivery.md):
- the producer uses acks=all and idempotence;
- a consumer hands its handler a whole fetched batch in one database transaction and commits
  the offsets only after that transaction committed; a transient failure is retried in place
  with backoff, so the partition does not move past it, until it succeeds or is dead-lettered;
- an event that can never be processed goes to `<topic>.dlq`, byte for byte as it came (key,
  value, headers), with the reason in added `dlq-*` headers;
- what is wrong with the record itself (it does not conform to the topic's contract, or a
  value in it cannot be converted) is known at once and dead-lettered without retries; only
  what may pass (the database, the broker) is retried;
- a consumer that makes no progress is visible: `stalled_seconds()` and the
  `kafka_consumer_stalled_seconds` gauge, which readiness turns into NOT_SERVING.

The consumer is plain aiokafka rather than a framework subscriber: it owns fetching, offsets,
rebalancing and tracing per batch, which is what a consumer at telematics rate needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaConnectionError
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.protocol.metadata import MetadataRequest
from google.protobuf.message import Message
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import SecretStr
from sqlalchemy.exc import DataError

from servicekit.codec import EVENT_TYPE_HEADER, Decoder, UndecodableEvent
from servicekit.errors import PermanentEventError
from servicekit.topics import DEAD_LETTER_MAX_MESSAGE_BYTES, TopicNames, dead_letter_topic

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

MessageT = TypeVar("MessageT", bound=Message)
# What a handler receives of each record: the message itself, or the value the consumer's
# `convert` made of it (a domain object).
EventT = TypeVar("EventT")

# A dead letter's detail is cut to this many characters (headers are not for essays).
MAX_DETAIL_CHARS = 2000

# The largest record the producer sends, key, value and headers together: as large as the
# dead-letter topics accept (servicekit.topics), so a record that came in at the source topics'
# limit can still be dead-lettered with the dlq-* headers added.
MAX_RECORD_BYTES = DEAD_LETTER_MAX_MESSAGE_BYTES

# Errors that the same record raises every time it is handled: a value that cannot be
# converted (ValueError: a date out of range, a malformed decimal; ArithmeticError: an
# overflow) or stored (the database's DataError). They dead-letter the record at once as
# `unprocessable` instead of being retried as if the database had hiccuped.
DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = (ValueError, ArithmeticError, DataError)


# Named tuples rather than frozen dataclasses: immutable all the same, and built for every
# record of a batch, where a frozen dataclass's __init__ costs several times as much.
class Delivered(NamedTuple, Generic[EventT]):
    """An event of a batch, with where it was read (for handlers that keep positions)."""

    event: EventT
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event of a batch that can never be processed: it is dead-lettered with the reason."""

    index: int
    reason: str
    detail: str


class KafkaClientSettings(Protocol):
    """Where and as whom a Kafka client connects: ServiceSettings, or a tool's settings."""

    @property
    def kafka_bootstrap_servers(self) -> str: ...
    @property
    def kafka_security_protocol(self) -> str: ...
    @property
    def kafka_sasl_mechanism(self) -> str: ...
    @property
    def kafka_username(self) -> str: ...
    @property
    def kafka_password(self) -> SecretStr: ...
    @property
    def kafka_ca_file(self) -> str: ...


def client_options(settings: KafkaClientSettings) -> dict[str, Any]:
    """The keyword arguments that connect an aiokafka client (producer, consumer, admin) to the
    broker as the configured principal. They hold the password: never log them."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_username
        options["sasl_plain_password"] = settings.kafka_password.get_secret_value()
    if settings.kafka_security_protocol == "SASL_SSL":
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ca_file or None)
    return options


BatchHandler = Callable[[Sequence[Delivered[EventT]]], Awaitable[Sequence[Rejection]]]
PartitionsHook = Callable[[set[int]], Awaitable[None]]
BatchScope = Callable[[], AbstractAsyncContextManager[None]]


CLIENT_START_TIMEOUT_S = 20.0


class KeyHashPartitioner:
    """aiokafka's default partitioning (Kafka's murmur2 of the key, as the Java client does), with
    each key's hash remembered: aiokafka computes it in pure Python, about 2 µs a record, and a
    relay publishes the same few thousand keys (vehicles, municipalities) again and again."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._hashes: dict[bytes, int] = {}
        self._default = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(self._default(key, all_partitions, available))
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.max_keys:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


class Producer:
    """The service's one Kafka producer: acks=all, idempotent, records sent without waiting
    for each acknowledgement in turn."""

    def __init__(self, connection: dict[str, Any], client_id: str) -> None:
        self.connection = connection
        self.client_id = client_id
        self._producer = self._new_client()
        self.started = False

    def _new_client(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **self.connection,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            partitioner=KeyHashPartitioner(),
            max_batch_size=256 * 1024,
            max_request_size=MAX_RECORD_BYTES,
        )

    async def start(self) -> None:
        """Connects; raises when the broker cannot be reached (start may be tried again)."""
        try:
            # aiokafka can wait forever for a producer id when the broker went away between
            # bootstrap and that request: give up and start again with a fresh client.
            await asyncio.wait_for(self._producer.start(), CLIENT_START_TIMEOUT_S)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = self._new_client()
            raise
        self.started = True

    async def stop(self) -> None:
        if self.started:
            await self._producer.stop()
            self.started = False

    async def probe(self) -> None:
        """Asks a broker for the cluster's brokers (no topics: a broker may hold thousands);
        raises when none answers."""
        client = self._producer.client
        node_id = client.get_random_node()
        if node_id is None:
            raise KafkaConnectionError("no broker known")
        await client.send(node_id, MetadataRequest([]))

    async def send_all(
        self,
        records: Sequence[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
    ) -> None:
        """Sends (topic, key, value, headers) records and returns once all are acknowledged
        (a value of None is a tombstone).

        All are handed to the producer first, so they travel in a few produce requests; with
        idempotence, records of one partition stay in order.
        """
        await (await self.hand_over(records))

    async def hand_over(
        self,
        records: Iterable[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
    ) -> asyncio.Future[Any]:
        """Hands the records to the producer and returns, without waiting for the broker, a
        future that completes once all of them are acknowledged (or fails with the first
        error)."""
        acknowledgements = [
            await self._producer.send(topic, value, key=key, headers=headers)
            for topic, key, value, headers in records
        ]
        return asyncio.gather(*acknowledgements)


class _DeadRecord(NamedTuple):
    """A fetched record that can never be processed, and why."""

    raw: Any
    reason: str
    detail: str


@dataclass(slots=True)
class _Batch:
    """Decoded records in fetch order: what the handler receives, each beside the record it
    came from (which a dead letter copies). Held as two lists rather than an object per record:
    a consumer at telematics rate builds thousands a second."""

    delivered: list[Delivered[Any]]
    raws: list[Any]
    # Whether any record carries a W3C trace header: most telemetry carries none, and its
    # headers are then not searched again.
    traced: bool

    def halves(self) -> tuple[_Batch, _Batch]:
        middle = len(self.delivered) // 2
        return (
            _Batch(self.delivered[:middle], self.raws[:middle], self.traced),
            _Batch(self.delivered[middle:], self.raws[middle:], self.traced),
        )

    def by_subjects(self, limit: int) -> list[_Batch]:
        """The batch cut, in order, into parts of at most `limit` distinct record keys."""
        parts: list[_Batch] = []
        keys: set[bytes | None] = set()
        start = 0
        for index, raw in enumerate(self.raws):
            if raw.key not in keys:
                if len(keys) == limit:
                    parts.append(
                        _Batch(self.delivered[start:index], self.raws[start:index], self.traced)
                    )
                    keys.clear()
                    start = index
                keys.add(raw.key)
        if not parts:
            return [self]
        parts.append(_Batch(self.delivered[start:], self.raws[start:], self.traced))
        return parts

    def singles(self) -> list[_Batch]:
        return [
            _Batch([delivered], [raw], self.traced)
            for delivered, raw in zip(self.delivered, self.raws, strict=True)
        ]


class _Outcome(Enum):
    HANDLED = "handled"
    # Several records, one of which fails deterministically: split the batch to find it.
    PERMANENT = "permanent"
    # Several records that keep failing as if transiently: try them one by one.
    EXHAUSTED = "exhausted"


class Throttle:
    """Lets a repeated message through once per interval and counts the ones held back, so that
    a loop retrying every fraction of a second logs a line per interval, not per attempt."""

    def __init__(self, interval_s: float = 30.0) -> None:
        self.interval_s = interval_s
        self._last: float | None = None
        self.suppressed = 0

    def due(self) -> bool:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval_s:
            self.suppressed += 1
            return False
        self._last = now
        return True

    def reset(self) -> None:
        self._last = None
        self.suppressed = 0

    def take_suppressed(self) -> int:
        suppressed, self.suppressed = self.suppressed, 0
        return suppressed


class RepeatedLogFilter(logging.Filter):
    """For the loggers of Kafka clients that retry on their own (aiokafka's, and read models'):
    a warning or error with the same template as one logged less than `interval_s` ago is held
    back, and the next one that passes says how many were (`suppressed`). While the broker is
    down, aiokafka's reconnect loops would otherwise log thousands of lines a second."""

    def __init__(
        self,
        interval_s: float = 30.0,
        prefixes: tuple[str, ...] = ("aiokafka", "servicekit.read_model"),
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.prefixes = prefixes
        self._throttles: dict[tuple[str, object], Throttle] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.msg)
        throttle = self._throttles.get(key)
        if throttle is None:
            throttle = self._throttles[key] = Throttle(self.interval_s)
        if not throttle.due():
            return False
        suppressed = throttle.take_suppressed()
        if suppressed:
            record.suppressed = suppressed
        return True


def install_repeated_log_filter(interval_s: float) -> None:
    """Puts a RepeatedLogFilter on the root logger's handlers (which all records reach)."""
    log_filter = RepeatedLogFilter(interval_s)
    for handler in logging.getLogger().handlers:
        handler.addFilter(log_filter)


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
        self.stalled_seconds = Gauge(
            "kafka_consumer_stalled_seconds",
            "Seconds the consumer has held a batch without handling any of it (0: not stalled)",
            ["group", "topic"],
            registry=registry,
        )


class BatchConsumer(Generic[MessageT, EventT]):
    """Consumes one topic with one message type; hands each fetched batch to one handler.

    Each batch runs in one database transaction (`batch_scope`) and one CONSUMER span, its
    rejections are dead-lettered before the transaction commits, and its offsets are committed
    after. A handler that raises is retried with backoff on the whole batch; if it keeps
    failing, the events go one by one, and one that still fails is dead-lettered as
    `retries_exhausted`. A handler that raises PermanentEventError or a deterministic error
    (DETERMINISTIC_ERRORS) is not retried: the batch is split in halves until the record at
    fault is alone, and that one is dead-lettered at once. Handlers are therefore written for
    any split of the stream into batches, and for a batch delivered again after its effect
    committed.

    `subject_of` gives an event's subject id (a vehicle id, a hub id); a record whose key is
    not that id is dead-lettered as `key_mismatch` before the handler sees it.

    `max_subjects_per_batch` (0: no limit) cuts a fetched batch into parts of at most that many
    distinct keys, each handled in its own transaction, in order; the offsets are committed
    after the last.

    `convert` turns each decoded message into what the handler works with (a domain object),
    as the record is decoded: the message is dropped at once, so a batch holds only what the
    handler needs, and a record that cannot be converted (PermanentEventError, or one of
    DETERMINISTIC_ERRORS) is dead-lettered alone, without splitting its batch. Without it the
    handler receives the messages.
    """

    def __init__(
        self,
        *,
        connection: dict[str, Any],
        client_id: str,
        producer: Producer,
        names: TopicNames,
        topic: str,
        group_id: str,
        message_type: type[MessageT],
        handle_batch: BatchHandler[EventT],
        subject_of: Callable[[MessageT], str] | None = None,
        convert: Callable[[MessageT], EventT] | None = None,
        batch_scope: BatchScope | None = None,
        max_attempts: int = 8,
        retry_backoff_s: float = 0.2,
        batch_size: int = 5000,
        max_subjects_per_batch: int = 0,
        partition_fetch_bytes: int = 4 * 1024 * 1024,
        fetch_bytes: int = 8 * 1024 * 1024,
        metrics: ConsumerMetrics | None = None,
        on_assigned: PartitionsHook | None = None,
        on_revoked: PartitionsHook | None = None,
        log_interval_s: float = 30.0,
    ) -> None:
        self.connection = connection
        self.client_id = client_id
        self.producer = producer
        self.topic = names(topic)
        self.dead_letter_topic = names(dead_letter_topic(topic))
        self.group_id = names.group(group_id)
        self.decoder = Decoder(message_type, subject_of)
        self.convert = convert
        self.handle_batch = handle_batch
        self.batch_scope = batch_scope
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.batch_size = batch_size
        self.max_subjects_per_batch = max_subjects_per_batch
        self.partition_fetch_bytes = partition_fetch_bytes
        self.fetch_bytes = fetch_bytes
        self.metrics = metrics
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Held while a batch is handled: a rebalance waits for it, so a partition changes
        # owner only between batches.
        self._working = asyncio.Lock()
        # Since when a fetched batch is in hand (None: none), and when part of one was last
        # handled: the two tell whether the consumer is stuck.
        self._in_hand_since: float | None = None
        self._progress_at = time.monotonic()
        self._failures_logged = Throttle(log_interval_s)
        if metrics is not None:
            metrics.stalled_seconds.labels(self.group_id, self.topic).set_function(
                self.stalled_seconds
            )

    @property
    def started(self) -> bool:
        return self._task is not None

    def stalled_seconds(self) -> float:
        """How long the consumer has held a batch without handling any of it (0 when it is
        not holding one): a batch retried in place, a handler that hangs."""
        if self._in_hand_since is None:
            return 0.0
        return time.monotonic() - max(self._in_hand_since, self._progress_at)

    async def start(self) -> None:
        """Joins the group and starts consuming; raises when the broker cannot be reached
        (start may be tried again)."""
        self._stopping = False
        consumer = AIOKafkaConsumer(
            **self.connection,
            client_id=self.client_id,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=10 * 60 * 1000,
            # A member learns of a rebalance at its next heartbeat: sooner than the default 3 s
            # lets a new instance take its share of partitions sooner.
            heartbeat_interval_ms=1000,
            # Enough bytes ahead that a backlog comes in whole batches, and no more: what is
            # fetched ahead is held in memory until it is handled.
            max_partition_fetch_bytes=self.partition_fetch_bytes,
            fetch_max_bytes=self.fetch_bytes,
        )
        consumer.subscribe([self.topic], listener=_Rebalance(self))
        try:
            # Bounded as the producer's start is: a broker that goes away mid-start can leave
            # aiokafka waiting forever; the runtime then tries again with a fresh client.
            await asyncio.wait_for(consumer.start(), CLIENT_START_TIMEOUT_S)
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        self._consumer = consumer
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
        self._in_hand_since = None

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping:
            try:
                fetched = await consumer.getmany(timeout_ms=100, max_records=self.batch_size)
            except Exception:
                self._log_failure(f"fetching from {self.topic} failed; retrying")
                await asyncio.sleep(self.retry_backoff_s)
                continue
            if not fetched:
                continue
            async with self._working:
                started = time.perf_counter()
                if self._in_hand_since is None:
                    self._in_hand_since = time.monotonic()
                try:
                    await self._process([record for rs in fetched.values() for record in rs])
                except Exception:
                    # Nothing committed for this batch: fetch it again from its first offsets.
                    self._log_failure(f"batch of {self.topic} failed; it is fetched again")
                    for partition, records in fetched.items():
                        with contextlib.suppress(IllegalStateError):
                            consumer.seek(partition, records[0].offset)
                    await asyncio.sleep(self.retry_backoff_s)
                    continue
                await self._commit(consumer, fetched)
                self._in_hand_since = None
                self._failures_logged.reset()
                self._record_metrics(consumer, fetched, time.perf_counter() - started)

    def _log_failure(self, message: str) -> None:
        """Logs a failure of the fetch loop with its traceback, once per interval while it
        repeats (a broker that is down fails every attempt)."""
        if self._failures_logged.due():
            log.warning(
                message,
                extra={"topic": self.topic, "suppressed": self._failures_logged.take_suppressed()},
                exc_info=True,
            )

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

    def _decode_all(self, raws: list[Any]) -> tuple[_Batch, list[_DeadRecord]]:
        """Decodes and converts the records: the batch for the handler, and the records that
        do not conform to the topic's contract or cannot be converted.

        The hot path of a consumer: one pass over each record's headers, no object per record
        beyond the handler's value and its position. A header may have a null value (Kafka
        allows it): for event-type that is no header."""
        decode = self.decoder.decode
        convert = self.convert
        delivered: list[Delivered[Any]] = []
        kept: list[Any] = []
        dead: list[_DeadRecord] = []
        traced = False
        for raw in raws:
            event_type = None
            for name, value in raw.headers or ():
                if name == EVENT_TYPE_HEADER:
                    event_type = value
                elif name in _TRACE_HEADERS:
                    traced = True
            try:
                message = decode(raw.value or b"", event_type, raw.key)
                event = message if convert is None else convert(message)
            except (UndecodableEvent, PermanentEventError) as error:
                dead.append(_DeadRecord(raw, error.reason, error.detail))
                continue
            except DETERMINISTIC_ERRORS as error:
                dead.append(_DeadRecord(raw, "unprocessable", f"{type(error).__name__}: {error}"))
                continue
            delivered.append(Delivered(event, raw.partition, raw.offset))
            kept.append(raw)
        return _Batch(delivered, kept, traced), dead

    async def _process(self, raws: list[Any]) -> None:
        batch, dead = self._decode_all(raws)
        if dead:
            await self._dead_letter(dead)
        if not batch.delivered:
            return
        if self.max_subjects_per_batch:
            # A handler's memory grows with the subjects (vehicles) of a batch more than with
            # its records: many records of a few subjects go in one transaction, records of
            # many subjects in several, one after another.
            for part in batch.by_subjects(self.max_subjects_per_batch):
                await self._handle_all(part)
        else:
            await self._handle_all(batch)

    async def _handle_all(self, batch: _Batch) -> None:
        """Handles the batch, narrowing down to the records at fault when some fail."""
        outcome = await self._handle_with_retries(batch)
        if outcome is _Outcome.PERMANENT:
            for half in batch.halves():
                await self._handle_all(half)
        elif outcome is _Outcome.EXHAUSTED:
            log.warning("batch of %s keeps failing; handling its events one by one", self.topic)
            for single in batch.singles():
                await self._handle_all(single)

    async def _handle_with_retries(self, batch: _Batch) -> _Outcome:
        """Handles the batch, retrying transient failures in place. A lone record that cannot
        be handled is dead-lettered; several are handed back to be split."""
        size = len(batch.delivered)
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self._handle(batch)
                self._progress_at = time.monotonic()
                return _Outcome.HANDLED
            except PermanentEventError as error:
                if size > 1:
                    return _Outcome.PERMANENT
                reason, detail = error.reason, error.detail
            except DETERMINISTIC_ERRORS as error:
                if size > 1:
                    return _Outcome.PERMANENT
                reason, detail = "unprocessable", f"{type(error).__name__}: {error}"
            except Exception as error:  # transient until proven otherwise: retry in place
                if attempt < self.max_attempts:
                    await self._back_off(attempt, size)
                    continue
                if size > 1:
                    return _Outcome.EXHAUSTED
                reason, detail = "retries_exhausted", f"{type(error).__name__}: {error}"
            await self._dead_letter([_DeadRecord(batch.raws[0], reason, detail)])
            self._progress_at = time.monotonic()
            return _Outcome.HANDLED
        raise AssertionError("unreachable: the last attempt returns")  # pragma: no cover

    async def _back_off(self, attempt: int, records: int) -> None:
        delay = min(self.retry_backoff_s * 2 ** (attempt - 1), 10.0)
        log.warning(
            "event handling failed, retrying",
            extra={"topic": self.topic, "attempt": attempt, "records": records},
            exc_info=True,
        )
        await asyncio.sleep(delay)

    async def _handle(self, batch: _Batch) -> None:
        with self._batch_span(batch):
            async with self._scope():
                rejections = await self.handle_batch(batch.delivered)
                if rejections:
                    # Published before the transaction commits: a crash in between sends them
                    # again (at least once), never loses one.
                    await self._dead_letter(
                        [
                            _DeadRecord(
                                batch.raws[rejection.index], rejection.reason, rejection.detail
                            )
                            for rejection in rejections
                        ]
                    )

    @contextlib.asynccontextmanager
    async def _scope(self) -> AsyncIterator[None]:
        if self.batch_scope is None:
            yield
            return
        async with self.batch_scope():
            yield

    @contextlib.contextmanager
    def _batch_span(self, batch: _Batch) -> Any:
        """One span per batch, linked to each record's producer span (OpenTelemetry messaging
        conventions for batch receive); a batch of one trace continues that trace.

        Records published together carry the same headers (a relay's step shares its batch's
        trace context): each distinct set is read once, and each producer span is linked once."""
        # By (trace id, span id), in the order first seen.
        valid: dict[tuple[int, int], SpanContext] = {}
        every_record_traced = batch.traced
        if batch.traced:
            read: dict[Any, SpanContext | None] = {}
            for raw in batch.raws:
                headers = raw.headers or ()
                if headers in read:
                    context = read[headers]
                else:
                    context = read[headers] = _producer_context(raw)
                if context is None:
                    every_record_traced = False
                else:
                    valid.setdefault((context.trace_id, context.span_id), context)
        parent: Context | None = None
        if every_record_traced and len({trace_id for trace_id, _ in valid}) == 1:
            parent = trace.set_span_in_context(trace.NonRecordingSpan(next(iter(valid.values()))))
        with tracer.start_as_current_span(
            f"{self.topic} process",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            links=[trace.Link(context) for context in valid.values()],
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": self.topic,
                "messaging.consumer.group.name": self.group_id,
                "messaging.batch.message_count": len(batch.raws),
            },
        ) as span:
            yield span

    async def _dead_letter(self, records: list[_DeadRecord]) -> None:
        failed_at = datetime.now(UTC).isoformat().encode()
        outgoing = []
        for raw, reason, detail in records:
            log.warning(
                "event dead-lettered",
                extra={
                    "topic": raw.topic,
                    "offset": raw.offset,
                    "reason": reason,
                    "detail": detail[:MAX_DETAIL_CHARS],
                },
            )
            if self.metrics is not None:
                self.metrics.dead_letters.labels(self.group_id, self.topic, reason).inc()
            # The original headers as they came (a null value stays null), then the reason: a
            # replay restores the record.
            headers: list[tuple[str, bytes | None]] = list(raw.headers or ())
            headers += [
                ("dlq-reason", reason.encode()),
                ("dlq-detail", detail[:MAX_DETAIL_CHARS].encode()),
                ("dlq-source-topic", raw.topic.encode()),
                ("dlq-source-partition", str(raw.partition).encode()),
                ("dlq-source-offset", str(raw.offset).encode()),
                ("dlq-consumer-group", self.group_id.encode()),
                ("dlq-failed-at", failed_at),
            ]
            outgoing.append((self.dead_letter_topic, raw.key, raw.value or b"", headers))
        await self.producer.send_all(outgoing)


_TRACE_HEADERS = frozenset(("traceparent", "tracestate"))


def _producer_context(raw: Any) -> SpanContext | None:
    """The span that produced the record, from its W3C trace headers; None without a valid one."""
    headers = _trace_headers(raw)
    if not headers:
        return None
    context = trace.get_current_span(propagate.extract(headers)).get_span_context()
    return context if context.is_valid else None


def _trace_headers(raw: Any) -> dict[str, str]:
    """The record's W3C trace headers."""
    return {
        name: (value or b"").decode(errors="replace")
        for name, value in raw.headers or ()
        if name in _TRACE_HEADERS
    }


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchConsumer[Any, Any]) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Waits for the batch in hand, whose offsets are then committed.
        async with self.owner._working:
            if self.owner.on_revoked is not None and revoked:
                await self.owner.on_revoked({partition.partition for partition in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.owner.on_assigned is not None:
            await self.owner.on_assigned({partition.partition for partition in assigned})
