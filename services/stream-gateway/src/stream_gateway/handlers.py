"""The gateway's use cases: subscribe to a stream from a position, a time or now, and follow it.

One tail per topic reads it from its beginning and on (`adapters.kafka.TopicTail`), folds the
derived states and appends each record to its event stream's replay log
(`domain.replay.ReplayLog`): the last records, bounded in number and bytes, each rendered once
(the first time a client needs it) for every client. An event-stream client is a cursor into
that log. A client whose position lies within the log (now, a Last-Event-ID, a client that
fell behind) is served from it; only a position older than the log is read from the broker,
with a catch-up reader of the client's own, until the client's position is within the log
again. Reading the log and moving the cursor happen in one step of the event loop, so nothing
falls between the broker and the log and nothing is sent twice.

State-stream clients keep a bounded queue of whole states, as the states are rendered per key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
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
from stream_gateway.domain.filters import StreamFilter, Subject
from stream_gateway.domain.positions import format_position
from stream_gateway.domain.replay import Catch, Logged, ReplayLog, Vector
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


# Events sent to one client in one write: a client that is behind takes many per write
# instead of one write (and TLS record) each. The bytes bound what a client that does not
# read holds in the gateway's send buffers (one write plus the transport's high-water mark).
MAX_BATCH = 500
MAX_WRITE_BYTES = 64 * 1024
# Bytes of the log's joined batches kept for the next client that asks for the same batch.
_CHUNK_CACHE_BYTES = 4 * 1024 * 1024
# What a rendered event costs beyond its bytes (the objects that hold it), for the log's bound.
_EVENT_OVERHEAD_BYTES = 200


@dataclass(frozen=True)
class Limits:
    max_clients: int = 1000
    # State streams: states waiting for one client. Event streams: how many records a client
    # that has reached the live end may fall behind it again (it costs no memory of its own:
    # the records are the replay log's). Beyond either, the client is disconnected as slow.
    queue_size: int = 10_000
    heartbeat_s: float = 15.0
    max_catch_ups: int = 16
    # How long a client whose position lies ahead of the tail waits for the tail.
    ahead_wait_s: float = 10.0
    # Each event stream's replay log: at most this many records and bytes of rendered events.
    replay_records: int = 50_000
    replay_bytes: int = 32 * 1024 * 1024
    # Clients waiting at the live end are woken at most this often: what the tail reads
    # meanwhile goes to each in one write (a write per client and fetch would cost more than
    # the events themselves under load). The first record after a quiet spell goes at once.
    batch_interval_s: float = 0.05


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


# Queued to a live state subscriber when the gateway stops: its stream ends, and the client
# resumes from its last event at the next gateway.
_CLOSING = Outgoing("closing", "{}")


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.clients = Gauge(
            "gateway_clients", "Clients subscribed, by stream", ["stream"], registry=registry
        )
        self.events = Counter(
            "gateway_events_sent",
            "Events sent to clients, by stream",
            ["stream"],
            registry=registry,
        )
        self.slow_clients = Counter(
            "gateway_slow_clients",
            "Clients disconnected because they fell too far behind, by stream",
            ["stream"],
            registry=registry,
        )
        self.catch_ups = Counter(
            "gateway_catch_ups",
            "Subscriptions that read from the broker first (a position older than the replay log)",
            ["stream"],
            registry=registry,
        )
        self.replays = Counter(
            "gateway_replays",
            "Subscriptions that started behind the live end and read from the replay log",
            ["stream"],
            registry=registry,
        )
        self.replay_records = Gauge(
            "gateway_replay_log_records",
            "Records held in the replay log",
            ["stream"],
            registry=registry,
        )
        self.replay_bytes = Gauge(
            "gateway_replay_log_bytes",
            "Bytes the replay log counts against its bound",
            ["stream"],
            registry=registry,
        )


@dataclass(eq=False)
class Subscriber:
    """A live client of a state stream: a bounded queue that the tail fills without waiting."""

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


class RenderedEvent:
    """A record of an event stream in the replay log: its value as stored until a client
    first needs it (a decoded message would take several times the memory), then its SSE bytes
    (id: the position after it) and its subject, made once for all clients."""

    __slots__ = ("subject", "value", "wire")

    def __init__(self, value: bytes) -> None:
        self.value: bytes | None = value
        self.subject = Subject()
        self.wire = b""


class EventLog:
    """An event stream's replay log, its rendering, and the wake-up of its waiting readers."""

    def __init__(
        self,
        stream: EventStream,
        partitions: list[int],
        starts: dict[int, int],
        limits: Limits,
        metrics: GatewayMetrics,
    ) -> None:
        self.stream = stream
        self.log: ReplayLog[RenderedEvent] = ReplayLog(
            partitions, starts, limits.replay_records, limits.replay_bytes
        )
        self.appended = asyncio.Event()
        self.batch_interval_s = limits.batch_interval_s
        self._last_wake = 0.0
        self._wake_timer: asyncio.TimerHandle | None = None
        self._chunks: dict[tuple[int, int, StreamFilter], tuple[bytes, int, int]] = {}
        self._chunk_bytes = 0
        self._records_gauge = metrics.replay_records.labels(stream.name)
        self._bytes_gauge = metrics.replay_bytes.labels(stream.name)

    def position_id(self, vector: Vector) -> str:
        return format_position(
            self.stream.topic, dict(zip(self.log.partitions, vector, strict=True))
        )

    def append(self, record: TopicRecord, after: Vector) -> None:
        self.log.append(
            record.partition,
            record.offset,
            after,
            RenderedEvent(record.value),
            len(record.value) + _EVENT_OVERHEAD_BYTES,
        )

    def appended_batch(self) -> None:
        """Wakes the readers waiting at the end of the log, at once if the last wake-up is
        batch_interval_s ago, else when it will be."""
        self._records_gauge.set(len(self.log))
        self._bytes_gauge.set(self.log.bytes)
        if self._wake_timer is not None:
            return
        loop = asyncio.get_running_loop()
        due = self._last_wake + self.batch_interval_s
        if loop.time() >= due:
            self.wake()
        else:
            self._wake_timer = loop.call_at(due, self.wake)

    def wake(self) -> None:
        if self._wake_timer is not None:
            self._wake_timer.cancel()
            self._wake_timer = None
        self._last_wake = asyncio.get_running_loop().time()
        self._chunks.clear()
        self._chunk_bytes = 0
        woken, self.appended = self.appended, asyncio.Event()
        woken.set()

    def rendered(self, logged: Logged[RenderedEvent]) -> RenderedEvent:
        event = logged.item
        if event.value is not None:
            # The tail decoded it once already (and skipped it had it not decoded).
            message = self.stream.message_type.FromString(event.value)
            event.value = None
            event.subject = self.stream.subject(message)
            event.wire = Outgoing(
                self.stream.event, to_json(message), self.position_id(logged.after)
            ).wire
            self.log.resize(logged, len(event.wire) + _EVENT_OVERHEAD_BYTES)
        return event

    def chunk(self, start: int, end: int, wanted: StreamFilter) -> tuple[bytes, int, int]:
        """One write's worth of the events from `start` on (before `end`) that pass `wanted`:
        the bytes, how many events, and where the next write starts. Joined once for every
        client that asks for the same records with the same filter (the live clients, woken
        together, all do)."""
        key = (start, end, wanted)
        cached = self._chunks.get(key)
        if cached is None:
            everything = wanted.everything
            wires = []
            size = 0
            stop = start
            for logged in self.log.range(start, min(end, start + MAX_BATCH)):
                stop += 1
                event = self.rendered(logged)
                if everything or wanted.matches(event.subject):
                    wires.append(event.wire)
                    size += len(event.wire)
                    if size >= MAX_WRITE_BYTES:
                        break
            cached = (b"".join(wires), len(wires), stop)
            if self._chunk_bytes + len(cached[0]) > _CHUNK_CACHE_BYTES:
                self._chunks.clear()
                self._chunk_bytes = 0
            self._chunks[key] = cached
            self._chunk_bytes += len(cached[0])
        return cached

    def with_id(self, event: RenderedEvent, position_id: str) -> bytes:
        """The event with another id: for a client whose position is its own until it meets
        the log's."""
        body = event.wire[event.wire.index(b"\ndata:") + 1 :]
        return f"event: {self.stream.event}\nid: {position_id}\n".encode() + body


class TopicHub:
    """A topic's tail, its event streams' replay logs, its derived states and their live
    subscribers."""

    def __init__(
        self,
        clients: KafkaClients,
        names: TopicNames,
        topic: str,
        event_streams: list[EventStream],
        state_streams: list[StateStream],
        limits: Limits,
        metrics: GatewayMetrics,
    ) -> None:
        self.topic = topic
        self.broker_topic = names(topic)
        self.event_streams = event_streams
        self.state_streams = state_streams
        self.limits = limits
        self.folds: dict[str, StateFold[Any, Any]] = {s.name: s.new_fold() for s in state_streams}
        self.subscribers: dict[str, set[Subscriber]] = {s.name: set() for s in state_streams}
        self.logs: dict[str, EventLog] = {}
        self.metrics = metrics
        self._offered: dict[str, int] = {}
        message_type = (
            event_streams[0].message_type if event_streams else state_streams[0].message_type
        )
        self.message_type = message_type
        self.tail = TopicTail(
            clients, self.broker_topic, message_type, self._on_record, self._on_batch
        )

    async def start(self) -> None:
        await self.tail.open()
        for stream in self.event_streams:
            self.logs[stream.name] = EventLog(
                stream, self.tail.partitions, self.tail.starts, self.limits, self.metrics
            )
        self.tail.run()

    @property
    def next_offsets(self) -> dict[int, int]:
        return self.tail.next_offsets

    def position_id(self) -> str:
        return format_position(self.topic, self.tail.next_offsets)

    def _on_record(self, record: TopicRecord) -> None:
        if self.logs:
            offsets = self.tail.next_offsets
            after = tuple(offsets[p] for p in self.tail.partitions)
            for event_log in self.logs.values():
                event_log.append(record, after)
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
        # Counted per record rather than per client: a metric update per event and client
        # would cost as much as queuing the event.
        for stream, count in self._offered.items():
            self.metrics.events.labels(stream).inc(count)
        self._offered.clear()

    def _on_batch(self) -> None:
        for event_log in self.logs.values():
            event_log.appended_batch()

    def _offer(self, subscriber: Subscriber, outgoing: Outgoing) -> None:
        if subscriber.offer(outgoing):
            self._offered[subscriber.stream] = self._offered.get(subscriber.stream, 0) + 1
        else:
            self.detach(subscriber)
            self.metrics.slow_clients.labels(subscriber.stream).inc()

    def attach(self, subscriber: Subscriber) -> None:
        self.subscribers[subscriber.stream].add(subscriber)

    def close_all(self) -> None:
        for subscribers in self.subscribers.values():
            for subscriber in list(subscribers):
                subscriber.offer(_CLOSING)
            subscribers.clear()
        for event_log in self.logs.values():
            event_log.wake()

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
                limits,
                metrics,
            )
        self.clients_connected = 0
        self.catch_up_slots = asyncio.Semaphore(limits.max_catch_ups)
        self.closing = False

    async def start(self) -> None:
        for hub in self.hubs.values():
            await hub.start()

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
    ) -> AsyncIterator[bytes]:
        """The stream's events from the start asked for, as SSE bytes, a batch at a time."""
        hub = self.hubs[stream.topic]
        await hub.tail.ready.wait()
        position = await self._start_position(hub, start)
        reader = _EventReader(self, hub, hub.logs[stream.name], wanted, position)
        async for chunk in reader.run():
            yield chunk

    async def subscribe_states(
        self, stream: StateStream, wanted: StreamFilter, start: Start
    ) -> AsyncIterator[bytes]:
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
                yield b"".join(o.wire for o in snapshot[start_at : start_at + MAX_BATCH])
            if not snapshot:
                # Tells a client that starts on a quiet stream where it stands.
                yield Outgoing("heartbeat", "{}", position_id).wire
            async for batch in self._follow(hub, subscriber):
                yield b"".join(outgoing.wire for outgoing in batch)
        finally:
            hub.detach(subscriber)

    async def _follow(self, hub: TopicHub, subscriber: Subscriber) -> AsyncIterator[list[Outgoing]]:
        """The live part of a state subscription: states as the tail queues them, heartbeats
        (with the position) when the stream is quiet, and SlowClient when the client fell too
        far behind.

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


class _EventReader:
    """One client of an event stream: from its position, through the replay log when the
    position lies within it, else first through the broker until it does."""

    def __init__(
        self,
        gateway: StreamGateway,
        hub: TopicHub,
        events: EventLog,
        wanted: StreamFilter,
        position: dict[int, int],
    ) -> None:
        self.gateway = gateway
        self.hub = hub
        self.events = events
        self.stream = events.stream
        self.wanted = wanted
        self.position = position
        # The client's position as the log writes it, kept up to date as events go out.
        self.here: Vector = events.log.vector(position)
        self.sent = gateway.metrics.events.labels(self.stream.name)
        self.last_sent = gateway.clock()

    def _heartbeat(self) -> bytes:
        self.last_sent = self.gateway.clock()
        return Outgoing("heartbeat", "{}", self.events.position_id(self.here)).wire

    async def run(self) -> AsyncIterator[bytes]:
        await self._wait_unless_ahead()
        while not self.gateway.closing:
            if self.events.log.covers(self.here):
                async for chunk in self._from_log():
                    yield chunk
            else:
                async for chunk in self._from_broker():
                    yield chunk

    async def _wait_unless_ahead(self) -> None:
        waited_since = self.gateway.clock()
        while any(o > self.hub.next_offsets.get(p, 0) for p, o in self.position.items()):
            if self.gateway.clock() - waited_since > self.gateway.limits.ahead_wait_s:
                raise PositionAhead(
                    "the position lies beyond the end of the stream: "
                    + format_position(self.stream.topic, self.position)
                )
            await self.hub.tail.progressed(0.5)

    async def _from_log(self) -> AsyncIterator[bytes]:
        """Serves the client from the log until the gateway closes, the client falls behind
        it (raises SlowClient once it had reached the live end; returns, to read the broker,
        while it is still catching up) or its connection ends."""
        gateway, events, replay = self.gateway, self.events, self.events.log
        limits = gateway.limits
        cursor = replay.first_unseen(self.here)
        # Until the client's position is the log's at its cursor, its events carry its own.
        catch = (
            None if self.here == replay.position_before(cursor) else Catch(replay.index, self.here)
        )
        if cursor < replay.end_seq:
            gateway.metrics.replays.labels(self.stream.name).inc()
        live = False
        while not gateway.closing:
            if cursor < replay.first_seq:
                if live:
                    self._slow(f"it fell more than the replay log's {len(replay)} events behind")
                return
            end = replay.end_seq
            if cursor == end:
                live = True
                remaining = limits.heartbeat_s - (gateway.clock() - self.last_sent)
                if remaining <= 0:
                    yield self._heartbeat()
                    continue
                try:
                    async with asyncio.timeout(remaining):
                        await events.appended.wait()
                except TimeoutError:
                    pass
                continue
            if live and end - cursor > limits.queue_size:
                self._slow(f"more than {limits.queue_size} events waited for this client")
            if catch is None:
                chunk, count, stop = events.chunk(cursor, end, self.wanted)
                self.here = replay.get(stop - 1).after
                cursor = stop
            else:
                parts = []
                size = 0
                for logged in replay.range(cursor, min(end, cursor + MAX_BATCH)):
                    cursor += 1
                    if catch.take(logged):
                        event = events.rendered(logged)
                        if self.wanted.matches(event.subject):
                            own = events.position_id(tuple(catch.position))
                            parts.append(events.with_id(event, own))
                            size += len(parts[-1])
                    if catch.caught(logged):
                        catch = None
                        break
                    if size >= MAX_WRITE_BYTES:
                        break
                self.here = replay.get(cursor - 1).after if catch is None else tuple(catch.position)
                chunk, count = b"".join(parts), len(parts)
            if count:
                self.sent.inc(count)
                self.last_sent = gateway.clock()
                yield chunk
            elif gateway.clock() - self.last_sent > limits.heartbeat_s:
                yield self._heartbeat()

    def _slow(self, reason: str) -> None:
        self.gateway.metrics.slow_clients.labels(self.stream.name).inc()
        raise SlowClient(reason)

    async def _from_broker(self) -> AsyncIterator[bytes]:
        """Reads the client's records from the broker, up to the tail's position in rounds,
        until its position lies within the replay log (then returns)."""
        gateway, hub, stream, replay = self.gateway, self.hub, self.stream, self.events.log
        gateway.metrics.catch_ups.labels(stream.name).inc()
        position = dict(zip(replay.partitions, self.here, strict=True))
        async with (
            gateway.catch_up_slots,
            CatchUpReader(gateway.clients, hub.broker_topic, stream.message_type) as reader,
        ):
            while behind := {p: t for p, t in hub.next_offsets.items() if position[p] < t}:
                mine = dict(position)
                async for batch in reader.read(position, behind):
                    if gateway.closing:
                        return
                    parts: list[bytes] = []
                    count = 0
                    for item in batch:
                        if isinstance(item, Skipped):
                            mine[item.partition] = item.to_offset
                            parts.append(_gap(item).wire)
                            continue
                        mine[item.partition] = item.offset + 1
                        if self.wanted.matches(stream.subject(item.message)):
                            own = format_position(stream.topic, mine)
                            parts.append(Outgoing(stream.event, to_json(item.message), own).wire)
                            count += 1
                    mine = dict(position)
                    self.here = replay.vector(position)
                    if parts:
                        self.sent.inc(count)
                        self.last_sent = gateway.clock()
                        for write in _in_writes(parts):
                            yield write
                    elif gateway.clock() - self.last_sent > gateway.limits.heartbeat_s:
                        yield self._heartbeat()
                    if replay.covers(self.here):
                        return
            self.here = replay.vector(position)


def _in_writes(parts: list[bytes]) -> Iterator[bytes]:
    """The events joined into writes of about MAX_WRITE_BYTES."""
    start, size = 0, 0
    for end, part in enumerate(parts, 1):
        size += len(part)
        if size >= MAX_WRITE_BYTES or end == len(parts):
            yield b"".join(parts[start:end])
            start, size = end, 0


def _gap(skipped: Skipped) -> Outgoing:
    return Outgoing(
        "gap",
        f'{{"partition":{skipped.partition},"fromOffset":{skipped.from_offset},'
        f'"toOffset":{skipped.to_offset},"reason":"retention"}}',
    )
