"""Kafka for the services: the broker, consumers with exactly-once effect, dead letters.

Delivery rules (see docs/delivery.md):
- producers use acks=all and the idempotent producer;
- a consumer commits an offset only after the event's effect is durable; a transient failure
  is retried in place with backoff, so the partition does not move past it, until it succeeds
  or is dead-lettered;
- an event that can never be processed goes to `<topic>.dlq` with the reason in headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar, cast

from aiokafka import TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from google.protobuf.message import Message
from opentelemetry import propagate, trace
from prometheus_client import CollectorRegistry, Gauge

from servicekit.codec import UndecodableEvent, decode
from servicekit.errors import PermanentEventError
from servicekit.topics import TopicNames, dead_letter_topic

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

MessageT = TypeVar("MessageT", bound=Message)


def create_broker(
    bootstrap_servers: str, client_id: str, metrics_registry: CollectorRegistry | None = None
) -> KafkaBroker:
    middlewares: list[Any] = [KafkaTelemetryMiddleware(tracer_provider=trace.get_tracer_provider())]
    if metrics_registry is not None:
        middlewares.append(KafkaPrometheusMiddleware(registry=metrics_registry, app_name=client_id))
    return KafkaBroker(
        bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        middlewares=middlewares,
        logger=logging.getLogger(f"{client_id}.kafka"),
    )


@dataclass(frozen=True)
class EventContext:
    """Where an event came from, for handlers that record provenance."""

    topic: str
    partition: int
    offset: int
    key: str


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    detail: str


@dataclass
class _Delivery:
    """One record of a fetched batch, decoded or already judged dead."""

    record: Any
    headers: dict[str, str]
    context: EventContext
    event: Message | None = None
    dead_letter: DeadLetter | None = None


BatchScope = Callable[[], AbstractAsyncContextManager[None]]


class EventConsumer(Generic[MessageT]):
    """Consumes one topic with one message type and one handler, in order, per partition.

    Records are fetched in batches. With a `batch_scope` (one database transaction, see
    `servicekit.runtime.UnitOfWork.batch`) a batch is handled in one transaction and its offsets
    committed once; if anything in it fails transiently, the batch is rolled back and its
    records are handled one at a time, each retried in place until it succeeds or is
    dead-lettered. Offsets are committed only after that.
    """

    def __init__(
        self,
        *,
        broker: KafkaBroker,
        names: TopicNames,
        topic: str,
        group_id: str,
        message_type: type[MessageT],
        handle: Callable[[MessageT, EventContext], Awaitable[None]],
        max_attempts: int = 8,
        retry_backoff_s: float = 0.2,
        batch_size: int = 200,
        batch_scope: BatchScope | None = None,
        lag: Gauge | None = None,
    ) -> None:
        self.broker = broker
        self.topic = names(topic)
        self.dead_letter_topic = names(dead_letter_topic(topic))
        self.group_id = names.group(group_id)
        self.message_type = message_type
        self.handle = handle
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.batch_scope = batch_scope
        self.lag = lag
        broker.subscriber(
            self.topic,
            group_id=self.group_id,
            auto_offset_reset="earliest",
            batch=True,
            max_records=batch_size,
            batch_timeout_ms=100,
            # Commit only after the handler returned: on an escaping error (the dead-letter
            # publish itself failed) the batch is sought back and delivered again.
            ack_policy=AckPolicy.NACK_ON_ERROR,
            max_poll_interval_ms=10 * 60 * 1000,
        )(self._on_batch)

    async def _on_batch(self, message: KafkaMessage) -> None:
        raw = message.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        deliveries = [self._decode(record) for record in records]
        for delivery in await self._process(deliveries):
            assert delivery.dead_letter is not None
            await self._dead_letter(delivery)
        self._record_lag(getattr(message, "consumer", None), records)

    def _record_lag(self, consumer: Any, records: tuple[Any, ...]) -> None:
        """Records left behind each partition after this batch (from the last fetch's highwater)."""
        if self.lag is None or consumer is None or not hasattr(consumer, "highwater"):
            return
        last_offsets: dict[tuple[str, int], int] = {}
        for record in records:
            last_offsets[(record.topic, record.partition)] = record.offset
        for (topic, partition), offset in last_offsets.items():
            highwater = consumer.highwater(TopicPartition(topic, partition))
            if highwater is not None:
                self.lag.labels(self.group_id, topic, str(partition)).set(highwater - offset - 1)

    def _decode(self, record: Any) -> _Delivery:
        headers = {key: value.decode(errors="replace") for key, value in record.headers or ()}
        delivery = _Delivery(
            record=record,
            headers=headers,
            context=EventContext(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=(record.key or b"").decode(errors="replace"),
            ),
        )
        try:
            delivery.event = decode(self.message_type, record.value or b"", headers)
        except UndecodableEvent as error:
            delivery.dead_letter = DeadLetter(error.reason, error.detail)
        return delivery

    async def _process(self, deliveries: list[_Delivery]) -> list[_Delivery]:
        """Handles the batch; returns the deliveries to dead-letter."""
        if self.batch_scope is not None and len(deliveries) > 1:
            try:
                return await self._process_in_one_transaction(deliveries)
            except Exception:
                log.warning(
                    "batch failed; handling its events one at a time",
                    extra={"topic": self.topic, "records": len(deliveries)},
                    exc_info=True,
                )
        dead = []
        for delivery in deliveries:
            if delivery.dead_letter is None:
                delivery.dead_letter = await self._process_one(delivery)
            if delivery.dead_letter is not None:
                dead.append(delivery)
        return dead

    async def _process_in_one_transaction(self, deliveries: list[_Delivery]) -> list[_Delivery]:
        assert self.batch_scope is not None
        rejected: dict[int, DeadLetter] = {}
        async with self.batch_scope():
            for index, delivery in enumerate(deliveries):
                if delivery.dead_letter is not None:
                    continue
                try:
                    await self._handle(delivery)
                except PermanentEventError as error:
                    rejected[index] = DeadLetter(error.reason, error.detail)
        # Only once the batch committed are its rejections final.
        for index, dead_letter in rejected.items():
            deliveries[index].dead_letter = dead_letter
        return [delivery for delivery in deliveries if delivery.dead_letter is not None]

    async def _process_one(self, delivery: _Delivery) -> DeadLetter | None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self._handle(delivery)
                return None
            except PermanentEventError as error:
                return DeadLetter(error.reason, error.detail)
            except Exception as error:  # transient until proven otherwise: retry in place
                if attempt == self.max_attempts:
                    return DeadLetter("retries_exhausted", f"{type(error).__name__}: {error}")
                delay = min(self.retry_backoff_s * 2 ** (attempt - 1), 10.0)
                log.warning(
                    "event handling failed, retrying",
                    extra={
                        "topic": delivery.context.topic,
                        "offset": delivery.context.offset,
                        "attempt": attempt,
                    },
                    exc_info=True,
                )
                await asyncio.sleep(delay)
        return None  # pragma: no cover - the loop always returns

    async def _handle(self, delivery: _Delivery) -> None:
        # Each event is handled in its own producer's trace, also when a batch holds several.
        with tracer.start_as_current_span(
            f"{delivery.context.topic} process",
            context=propagate.extract(delivery.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": delivery.context.topic,
                "messaging.kafka.offset": delivery.context.offset,
            },
        ):
            await self.handle(cast(MessageT, delivery.event), delivery.context)

    async def _dead_letter(self, delivery: _Delivery) -> None:
        dead_letter = delivery.dead_letter
        assert dead_letter is not None
        context = delivery.context
        log.warning(
            "event dead-lettered",
            extra={
                "topic": context.topic,
                "offset": context.offset,
                "reason": dead_letter.reason,
                "detail": dead_letter.detail,
            },
        )
        await self.broker.publish(
            delivery.record.value or b"",
            topic=self.dead_letter_topic,
            key=delivery.record.key,
            headers={
                **delivery.headers,
                "dlq-reason": dead_letter.reason,
                "dlq-detail": dead_letter.detail[:2000],
                "dlq-source-topic": context.topic,
                "dlq-source-partition": str(context.partition),
                "dlq-source-offset": str(context.offset),
                "dlq-consumer-group": self.group_id,
                "dlq-failed-at": datetime.now(UTC).isoformat(),
            },
        )
