"""The gateway's Kafka: one place builds every client, a tail per topic, and catch-up readers.

The gateway reads as the `dashboard` principal (servicekit.access): read-only, and it joins no
consumer group. Every client assigns itself partitions by hand and keeps its position in
memory; a subscriber's position travels in its SSE ids instead of committed offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.message import Message

from servicekit.codec import Decoder, UndecodableEvent
from servicekit.settings import ServiceSettings

log = logging.getLogger(__name__)

KAFKA_PRINCIPAL = "dashboard"


class KafkaClients:
    """Builds the gateway's aiokafka clients, all of them. Connection and security options
    (bootstrap servers today; SASL and TLS as `servicekit.kafka.client_options(settings)` once
    the broker has principals) are added here and nowhere else."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings

    def connection_options(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.settings.kafka_bootstrap_servers,
            "client_id": self.settings.service_name,
        }

    def consumer(self, **options: Any) -> AIOKafkaConsumer:
        """A consumer without a group: partitions are assigned by hand, nothing is committed."""
        return AIOKafkaConsumer(
            **self.connection_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **options,
        )


@dataclass(frozen=True, slots=True)
class TopicRecord:
    partition: int
    offset: int
    timestamp_ms: int
    key: str
    message: Message
    # The record's value as stored: what the gateway keeps of a record until it renders it.
    value: bytes


async def _partitions(consumer: AIOKafkaConsumer, topic: str, wait_s: float = 30.0) -> list[int]:
    """The topic's partitions, waiting for a topic another service is still creating."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    # Assigning a partition makes the client keep the topic's metadata up to date.
    consumer.assign([TopicPartition(topic, 0)])
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return sorted(partitions)
        if loop.time() > deadline:
            raise RuntimeError(f"topic {topic} does not exist")
        await asyncio.sleep(0.1)


def _decode(decoder: Decoder[Any], raw: Any) -> Message | None:
    event_type = None
    for name, value in raw.headers or ():
        if name == "event-type":
            event_type = value or b""
    try:
        message: Message = decoder.decode(raw.value or b"", event_type)
        return message
    except UndecodableEvent as error:
        log.warning(
            "record skipped",
            extra={"topic": raw.topic, "offset": raw.offset, "reason": error.reason},
        )
        return None


class TopicTail:
    """Reads one topic from its beginning and on, forever, handing each record in topic order
    to `on_record` after `next_offsets` has moved past it (so next_offsets is the position just
    after the record), and calling `on_batch` after each fetch's records. `ready` is set once it
    has read what the topic held when it started; `starts` are the offsets it started from."""

    def __init__(
        self,
        clients: KafkaClients,
        topic: str,
        message_type: type[Message],
        on_record: Callable[[TopicRecord], None],
        on_batch: Callable[[], None] = lambda: None,
    ) -> None:
        self.clients = clients
        self.topic = topic
        self.decoder: Decoder[Any] = Decoder(message_type)
        self.on_record = on_record
        self.on_batch = on_batch
        self.next_offsets: dict[int, int] = {}
        self.starts: dict[int, int] = {}
        self.partitions: list[int] = []
        self.ready = asyncio.Event()
        self._progress = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Opens the tail (its partitions and where it starts are then known), then reads."""
        await self.open()
        self.run()

    async def open(self) -> None:
        self._consumer = self.clients.consumer(
            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_wait_ms=100
        )
        await self._consumer.start()
        self.partitions = await _partitions(self._consumer, self.topic)
        assigned = [TopicPartition(self.topic, p) for p in self.partitions]
        self._consumer.assign(assigned)
        starts = await self._consumer.beginning_offsets(assigned)
        ends = await self._consumer.end_offsets(assigned)
        for tp in assigned:
            self._consumer.seek(tp, starts[tp])
            self.next_offsets[tp.partition] = starts[tp]
        self.starts = dict(self.next_offsets)
        self._ready_at = {tp.partition: ends[tp] for tp in assigned}

    def run(self) -> None:
        """Reads on, in a task of its own, from where `open` left it."""
        self._check_ready()
        self._task = asyncio.create_task(self._run(), name=f"tail {self.topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def progressed(self, timeout_s: float) -> None:
        """Returns after the tail's next batch, or after the timeout."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progress.wait(), timeout_s)

    def _check_ready(self) -> None:
        if not self.ready.is_set() and all(
            self.next_offsets[p] >= end for p, end in self._ready_at.items()
        ):
            self.ready.set()
            log.info("caught up", extra={"topic": self.topic, "positions": self.next_offsets})

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            try:
                fetched = await consumer.getmany(timeout_ms=500, max_records=2000)
            except Exception:
                log.exception("fetching %s failed; retrying", self.topic)
                await asyncio.sleep(1.0)
                continue
            for tp, records in fetched.items():
                for raw in records:
                    self.next_offsets[tp.partition] = raw.offset + 1
                    message = _decode(self.decoder, raw)
                    if message is not None:
                        self.on_record(_record(raw, message))
            if not fetched and not self.ready.is_set():
                # Control records or compaction gaps may leave the last offsets unseen.
                for tp in consumer.assignment():
                    self.next_offsets[tp.partition] = max(
                        self.next_offsets[tp.partition], await consumer.position(tp)
                    )
            self._check_ready()
            if fetched:
                self.on_batch()
            self._progress.set()
            self._progress = asyncio.Event()


def _record(raw: Any, message: Message) -> TopicRecord:
    key = raw.key.decode(errors="replace") if raw.key else ""
    return TopicRecord(raw.partition, raw.offset, raw.timestamp, key, message, raw.value or b"")


@dataclass(frozen=True, slots=True)
class Skipped:
    """Records a resume cannot deliver: the broker no longer holds them (retention)."""

    partition: int
    from_offset: int
    to_offset: int


class CatchUpReader:
    """A short-lived reader of one topic from a client's own position up to the tail's."""

    def __init__(self, clients: KafkaClients, topic: str, message_type: type[Message]) -> None:
        self.clients = clients
        self.topic = topic
        self.decoder: Decoder[Any] = Decoder(message_type)
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> CatchUpReader:
        self._consumer = self.clients.consumer(max_partition_fetch_bytes=1024 * 1024)
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "use the reader as an async context manager"
        return self._consumer

    def _tps(self, partitions: list[int]) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in partitions]

    async def offsets_at_time(self, partitions: list[int], at_ms: int) -> dict[int, int]:
        """Per partition, the first offset whose record is at or after `at_ms` (its end when
        none is)."""
        tps = self._tps(partitions)
        found = await self.consumer.offsets_for_times({tp: at_ms for tp in tps})
        ends = await self.consumer.end_offsets(tps)
        return {
            tp.partition: (found[tp].offset if found.get(tp) is not None else ends[tp])
            for tp in tps
        }

    async def offsets_back_from_end(self, partitions: list[int], count: int) -> dict[int, int]:
        """Per partition, `count` records before its end (or its beginning)."""
        tps = self._tps(partitions)
        starts = await self.consumer.beginning_offsets(tps)
        ends = await self.consumer.end_offsets(tps)
        return {tp.partition: max(starts[tp], ends[tp] - count) for tp in tps}

    async def read(
        self, position: dict[int, int], targets: Mapping[int, int]
    ) -> AsyncIterator[list[TopicRecord | Skipped]]:
        """Yields the records from `position` up to (not including) `targets`, each partition
        in order, a fetch at a time, and moves `position` past each record of a fetch before
        yielding it; afterwards position equals targets."""
        behind = [p for p, target in targets.items() if position.get(p, 0) < target]
        if not behind:
            return
        tps = self._tps(behind)
        consumer = self.consumer
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            start = position.get(tp.partition, 0)
            if start < starts[tp]:
                yield [Skipped(tp.partition, start, starts[tp])]
                start = position[tp.partition] = starts[tp]
            consumer.seek(tp, start)
        pending = {tp for tp in tps if position.get(tp.partition, 0) < targets[tp.partition]}
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=200, max_records=500)
            batch: list[TopicRecord | Skipped] = []
            for tp, records in fetched.items():
                target = targets[tp.partition]
                for raw in records:
                    if raw.offset >= target:
                        break
                    position[tp.partition] = raw.offset + 1
                    message = _decode(self.decoder, raw)
                    if message is not None:
                        batch.append(_record(raw, message))
            if batch:
                yield batch
            for tp in list(pending):
                if position[tp.partition] >= targets[tp.partition]:
                    pending.discard(tp)
                elif tp not in fetched and await consumer.position(tp) >= targets[tp.partition]:
                    # Nothing left below the target but control records or compaction gaps.
                    position[tp.partition] = targets[tp.partition]
                    pending.discard(tp)
