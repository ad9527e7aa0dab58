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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from google.protobuf.message import Message
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from servicekit.codec import UndecodableEvent, decode, event_headers
from servicekit.errors import PermanentEventError
from servicekit.topics import TopicNames, dead_letter_topic

log = logging.getLogger(__name__)

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


async def publish_event(
    broker: KafkaBroker,
    topic: str,
    key: str,
    message: Message,
    headers: dict[str, str] | None = None,
) -> None:
    """Publishes one protobuf event and waits for the broker's acknowledgement."""
    await broker.publish(
        message.SerializeToString(),
        topic=topic,
        key=key.encode(),
        headers={**event_headers(message), **(headers or {})},
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


class EventConsumer(Generic[MessageT]):
    """Consumes one topic with one message type and one handler, in order, per partition."""

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
    ) -> None:
        self.broker = broker
        self.topic = names(topic)
        self.dead_letter_topic = names(dead_letter_topic(topic))
        self.group_id = names.group(group_id)
        self.message_type = message_type
        self.handle = handle
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        broker.subscriber(
            self.topic,
            group_id=self.group_id,
            auto_offset_reset="earliest",
            # Commit only after the handler returned: on an escaping error (the dead-letter
            # publish itself failed) the message is sought back and delivered again.
            ack_policy=AckPolicy.NACK_ON_ERROR,
            max_poll_interval_ms=10 * 60 * 1000,
        )(self._on_message)

    async def _on_message(self, message: KafkaMessage) -> None:
        raw = message.raw_message
        assert not isinstance(raw, tuple)
        headers = {key: value.decode(errors="replace") for key, value in raw.headers or ()}
        context = EventContext(
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            key=(raw.key or b"").decode(errors="replace"),
        )
        dead_letter = await self._process(raw.value or b"", headers, context)
        if dead_letter is not None:
            await self._dead_letter(raw.key, raw.value or b"", headers, context, dead_letter)

    async def _process(
        self, payload: bytes, headers: dict[str, str], context: EventContext
    ) -> DeadLetter | None:
        try:
            event = decode(self.message_type, payload, headers)
        except UndecodableEvent as error:
            return DeadLetter(error.reason, error.detail)
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self.handle(event, context)
                return None
            except PermanentEventError as error:
                return DeadLetter(error.reason, error.detail)
            except Exception as error:  # transient until proven otherwise: retry in place
                if attempt == self.max_attempts:
                    return DeadLetter("retries_exhausted", f"{type(error).__name__}: {error}")
                delay = min(self.retry_backoff_s * 2 ** (attempt - 1), 10.0)
                log.warning(
                    "event handling failed, retrying",
                    extra={"topic": context.topic, "offset": context.offset, "attempt": attempt},
                    exc_info=True,
                )
                await asyncio.sleep(delay)
        return None  # pragma: no cover - the loop always returns

    async def _dead_letter(
        self,
        key: bytes | None,
        payload: bytes,
        headers: dict[str, str],
        context: EventContext,
        dead_letter: DeadLetter,
    ) -> None:
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
            payload,
            topic=self.dead_letter_topic,
            key=key,
            headers={
                **headers,
                "dlq-reason": dead_letter.reason,
                "dlq-detail": dead_letter.detail[:2000],
                "dlq-source-topic": context.topic,
                "dlq-source-partition": str(context.partition),
                "dlq-source-offset": str(context.offset),
                "dlq-consumer-group": self.group_id,
                "dlq-failed-at": datetime.now(UTC).isoformat(),
            },
        )
