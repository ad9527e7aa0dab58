"""The gateway's use cases: subscribe to a stream from a position, a time or now, and follow it.

One tail per topic reads it from its beginning and on (`adapters.kafka.TopicTail`), folds the
derived states and hands each record to the live subscribers whose filter it matches. A client
that starts behind the tail (a Last-Event-ID, a time, the last N records) first reads with a
catch-up reader of its own up to the tail's position, then joins the tail in the same step of
the event loop in which their positions are equal: nothing falls between the two, nothing is
sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from servicekit.topics import TopicNames
from stream_gateway.adapters.catalogue import (
    EVENT_STREAMS,
    STATE_STREAMS,
    EventStream,
    StateStream,
)
from stream_gateway.adapters.events import to_json
from stream_gateway.adapters.kafka import (
    CatchUpReader,
    KafkaClients,
    Skipped,
    TopicRecord,
    TopicTail,
)
from stream_gateway.domain.filters import StreamFilter
from stream_gateway.domain.positions import format_position
from stream_gateway.domain.states import StateFold

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """One SSE event: its name, its id (a position; None keeps the client's last one), data."""

    event: str
    data: str
    id: str | None = None

    @cached_property
    def wire(self) -> bytes:
        """The event as text/event-stream bytes, encoded once however many clients get it."""
        lines = [f"event: {self.event}"]
        if self.id is not None:
            lines.append(f"id: {self.id}")
        lines.extend(f"data: {line}" for line in self.data.splitlines() or [""])
        return ("\n".join(lines) + "\n\n").encode()


# Events sent to one client in one write when they are already waiting: under load a client
# takes many per write instead of one write (and TLS record) each.
MAX_BATCH = 500


@dataclass(frozen=True)
class Limits:
    max_clients: int = 1000
    queue_size: int = 1000
    heartbeat_s: float = 15.0
    max_catch_ups: int = 16
    # How long a client whose position lies ahead of the tail waits for the tail.
    ahead_wait_s: float = 10.0


@dataclass(frozen=True)
class Start:
    """Where a subscription starts: a position (Last-Event-ID), a time, the last N records per
    partition, or (none given) now."""

    position: dict[int, int] | None = None
    at_ms: int | None = None
    last: int | None = None


class TooManyClients(Exception):
    pass


class PositionAhead(Exception):
    """The client's position lies beyond what the topic holds."""


class SlowClient(Exception):
    pass


# Queued to a live subscriber when the gateway stops: its stream ends, and the client resumes
# from its last event at the next gateway.
_CLOSING = Outgoing("closing", "{}")


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.clients = Gauge(
            "gateway_clients", "Clients subscribed, by stream", ["stream"], registry=registry
        )
        self.events = Counter(
            "gateway_events_sent",
            "Events queued for clients, by stream",
            ["stream"],
            registry=registry,
        )
        self.slow_clients = Counter(
            "gateway_slow_clients",
            "Clients disconnected because their queue was full, by stream",
            ["stream"],
            registry=registry,
        )
        self.catch_ups = Counter(
            "gateway_catch_ups",
            "Subscriptions that read behind the tail first",
            ["stream"],
            registry=registry,
        )


@dataclass(eq=False)
class Subscriber:
    """A live client of one stream: a bounded queue that the tail fills without waiting."""

    stream: str
    wanted: StreamFilter
    queue_size: int
    queue: asyncio.Queue[Outgoing] = field(init=False)
    overflowed: bool = False

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)

    def offer(self, event: Outgoing) -> bool:
        """Queues the event; False (and the client is marked) when its queue is full."""
        if self.overflowed:
            return False
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            return False
        return True


class TopicHub:
    """A topic's tail, its derived states and its live subscribers."""

    def __init__(
        self,
        clients: KafkaClients,
        names: TopicNames,
        topic: str,
        event_streams: list[EventStream],
        state_streams: list[StateStream],
        metrics: GatewayMetrics,
    ) -> None:
        self.topic = topic
        self.broker_topic = names(topic)
        self.event_streams = event_streams
        self.state_streams = state_streams
        self.folds: dict[str, StateFold[Any, Any]] = {s.name: s.new_fold() for s in state_streams}
        self.subscribers: dict[str, set[Subscriber]] = {
            name: set()
            for name in [s.name for s in event_streams] + [s.name for s in state_streams]
        }
        self.metrics = metrics
        self._offered: dict[str, int] = {}
        message_type = (
            event_streams[0].message_type if event_streams else state_streams[0].message_type
        )
        self.message_type = message_type
        self.tail = TopicTail(clients, self.broker_topic, message_type, self._on_record)

    @property
    def next_offsets(self) -> dict[int, int]:
        return self.tail.next_offsets

    def position_id(self) -> str:
        return format_position(self.topic, self.tail.next_offsets)

    def _on_record(self, record: TopicRecord) -> None:
        position: str | None = None
        for state_stream in self.state_streams:
            fold = self.folds[state_stream.name]
            changed = state_stream.apply(fold, record.message, record.partition, record.offset)
            subscribers = self.subscribers[state_stream.name]
            if not subscribers:
                continue
            for key in changed:
                subject = fold.subject(key)
                outgoing: Outgoing | None = None
                for subscriber in list(subscribers):
                    if subscriber.wanted.matches(subject):
                        if outgoing is None:
                            position = position or self.position_id()
                            data = state_stream.render(fold, key)
                            outgoing = Outgoing(state_stream.event, data, position)
                        self._offer(subscriber, outgoing)
        for event_stream in self.event_streams:
            subscribers = self.subscribers[event_stream.name]
            if not subscribers:
                continue
            subject = event_stream.subject(record.message)
            outgoing = None
            for subscriber in list(subscribers):
                if subscriber.wanted.matches(subject):
                    if outgoing is None:
                        position = position or self.position_id()
                        outgoing = Outgoing(event_stream.event, to_json(record.message), position)
                    self._offer(subscriber, outgoing)
        self._count_offered()

    def _offer(self, subscriber: Subscriber, outgoing: Outgoing) -> None:
        if subscriber.offer(outgoing):
            self._offered[subscriber.stream] = self._offered.get(subscriber.stream, 0) + 1
        else:
            self.detach(subscriber)
            self.metrics.slow_clients.labels(subscriber.stream).inc()

    def _count_offered(self) -> None:
        # Counted per record rather than per client: a metric update per event and client
        # would cost as much as queuing the event.
        for stream, count in self._offered.items():
            self.metrics.events.labels(stream).inc(count)
        self._offered.clear()

    def attach(self, subscriber: Subscriber) -> None:
        self.subscribers[subscriber.stream].add(subscriber)

    def close_all(self) -> None:
        for subscribers in self.subscribers.values():
            for subscriber in list(subscribers):
                subscriber.offer(_CLOSING)
            subscribers.clear()

    def detach(self, subscriber: Subscriber) -> None:
        self.subscribers[subscriber.stream].discard(subscriber)


class StreamGateway:
    def __init__(
        self,
        clients: KafkaClients,
        names: TopicNames,
        limits: Limits,
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = clients
        self.limits = limits
        self.metrics = metrics
        self.clock = clock
        self.hubs: dict[str, TopicHub] = {}
        all_topics = [s.topic for s in EVENT_STREAMS] + [s.topic for s in STATE_STREAMS]
        for topic in dict.fromkeys(all_topics):
            self.hubs[topic] = TopicHub(
                clients,
                names,
                topic,
                [s for s in EVENT_STREAMS if s.topic == topic],
                [s for s in STATE_STREAMS if s.topic == topic],
                metrics,
            )
        self.clients_connected = 0
        self.catch_up_slots = asyncio.Semaphore(limits.max_catch_ups)
        self.closing = False

    async def start(self) -> None:
        for hub in self.hubs.values():
            await hub.tail.start()

    def close_streams(self) -> None:
        """Ends every subscription (live ones at once, catch-ups at their next record), so
        that the HTTP server can stop without waiting for them."""
        self.closing = True
        for hub in self.hubs.values():
            hub.close_all()

    async def stop(self) -> None:
        for hub in self.hubs.values():
            await hub.tail.stop()

    @property
    def ready(self) -> bool:
        return all(hub.tail.ready.is_set() for hub in self.hubs.values())

    def admit(self, stream: str) -> None:
        """Counts a client in, or refuses it when the gateway has as many as it takes."""
        if self.clients_connected >= self.limits.max_clients:
            raise TooManyClients(f"the gateway serves {self.limits.max_clients} clients at most")
        self.clients_connected += 1
        self.metrics.clients.labels(stream).inc()

    def leave(self, stream: str) -> None:
        self.clients_connected -= 1
        self.metrics.clients.labels(stream).dec()

    async def subscribe_events(
        self, stream: EventStream, wanted: StreamFilter, start: Start
    ) -> AsyncIterator[list[Outgoing]]:
        """The stream's events from the start asked for, in batches of those ready at once."""
        hub = self.hubs[stream.topic]
        await hub.tail.ready.wait()
        position = await self._start_position(hub, start)
        subscriber = Subscriber(stream.name, wanted, self.limits.queue_size)
        catch_up = _CatchUp(self, hub, stream, wanted, position)
        try:
            # The catch-up attaches the subscriber in the step in which the positions are equal.
            async for outgoing in catch_up.run(lambda: hub.attach(subscriber)):
                yield [outgoing]
            async for batch in self._follow(hub, subscriber):
                yield batch
        finally:
            hub.detach(subscriber)

    async def subscribe_states(
        self, stream: StateStream, wanted: StreamFilter, start: Start
    ) -> AsyncIterator[list[Outgoing]]:
        hub = self.hubs[stream.topic]
        await hub.tail.ready.wait()
        position = start.position or {}
        fold = hub.folds[stream.name]
        # One step of the event loop: the states changed since the client's position, then
        # joining; a change after this step reaches the subscriber's queue.
        position_id = hub.position_id()
        snapshot = [
            Outgoing(stream.event, stream.render(fold, key), position_id)
            for key in fold.changed_keys(position, wanted)
        ]
        subscriber = Subscriber(stream.name, wanted, self.limits.queue_size)
        hub.attach(subscriber)
        try:
            for start_at in range(0, len(snapshot), MAX_BATCH):
                yield snapshot[start_at : start_at + MAX_BATCH]
            if not snapshot:
                # Tells a client that starts on a quiet stream where it stands.
                yield [Outgoing("heartbeat", "{}", position_id)]
            async for batch in self._follow(hub, subscriber):
                yield batch
        finally:
            hub.detach(subscriber)

    async def _follow(self, hub: TopicHub, subscriber: Subscriber) -> AsyncIterator[list[Outgoing]]:
        """The live part of a subscription: events as the tail queues them, heartbeats (with
        the position, so a client that filters most events out resumes from near the end) when
        the stream is quiet, and SlowClient when the client fell too far behind.

        The queue can only overflow while it is full, so never while this waits on it."""
        while True:
            if self.closing:
                return
            if subscriber.overflowed:
                raise SlowClient(
                    f"more than {self.limits.queue_size} events waited for this client"
                )
            queue = subscriber.queue
            if queue.empty():
                try:
                    first = await asyncio.wait_for(queue.get(), self.limits.heartbeat_s)
                except TimeoutError:
                    # Queue empty: the client has every event up to the tail's position.
                    yield [Outgoing("heartbeat", "{}", hub.position_id())]
                    continue
            else:
                first = queue.get_nowait()  # no timer and no task when events are waiting
            batch = [first]
            while len(batch) < MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            if self.closing or any(outgoing is _CLOSING for outgoing in batch):
                return
            yield batch

    async def _start_position(self, hub: TopicHub, start: Start) -> dict[int, int]:
        if start.position is not None:
            return dict(start.position)
        if start.at_ms is None and start.last is None:
            return dict(hub.next_offsets)
        async with CatchUpReader(self.clients, hub.broker_topic, hub.message_type) as reader:
            partitions = sorted(hub.next_offsets)
            if start.at_ms is not None:
                return await reader.offsets_at_time(partitions, start.at_ms)
            return await reader.offsets_back_from_end(partitions, start.last or 0)


class _CatchUp:
    """Reads a client's stream from its position up to the tail's, in rounds: each round reads
    up to where the tail stood when it began; it ends when the two positions are equal."""

    def __init__(
        self,
        gateway: StreamGateway,
        hub: TopicHub,
        stream: EventStream,
        wanted: StreamFilter,
        position: dict[int, int],
    ) -> None:
        self.gateway = gateway
        self.hub = hub
        self.stream = stream
        self.wanted = wanted
        self.position = position
        for partition in hub.next_offsets:
            self.position.setdefault(partition, 0)

    def _behind(self) -> dict[int, int]:
        return {
            p: target for p, target in self.hub.next_offsets.items() if self.position[p] < target
        }

    def _ahead(self) -> bool:
        return any(offset > self.hub.next_offsets.get(p, 0) for p, offset in self.position.items())

    async def run(self, join: Callable[[], None]) -> AsyncIterator[Outgoing]:
        """Yields the client's events up to the tail's position, then calls `join` in the same
        step of the event loop as the check that the positions are equal."""
        waited_since = self.gateway.clock()
        while self._ahead():
            if self.gateway.clock() - waited_since > self.gateway.limits.ahead_wait_s:
                raise PositionAhead(
                    "the position lies beyond the end of the stream: "
                    + format_position(self.stream.topic, self.position)
                )
            await self.hub.tail.progressed(0.5)
        if not self._behind():
            join()
            return
        self.gateway.metrics.catch_ups.labels(self.stream.name).inc()
        heartbeat_s = self.gateway.limits.heartbeat_s
        async with (
            self.gateway.catch_up_slots,
            CatchUpReader(
                self.gateway.clients, self.hub.broker_topic, self.stream.message_type
            ) as reader,
        ):
            last_sent = self.gateway.clock()
            while behind := self._behind():
                async for item in reader.read(self.position, behind):
                    if self.gateway.closing:
                        return
                    if isinstance(item, Skipped):
                        yield Outgoing(
                            "gap",
                            f'{{"partition":{item.partition},"fromOffset":{item.from_offset},'
                            f'"toOffset":{item.to_offset},"reason":"retention"}}',
                        )
                        continue
                    if self.wanted.matches(self.stream.subject(item.message)):
                        last_sent = self.gateway.clock()
                        yield Outgoing(
                            self.stream.event,
                            to_json(item.message),
                            format_position(self.stream.topic, self.position),
                        )
                    elif self.gateway.clock() - last_sent > heartbeat_s:
                        last_sent = self.gateway.clock()
                        yield Outgoing(
                            "heartbeat", "{}", format_position(self.stream.topic, self.position)
                        )
            join()
