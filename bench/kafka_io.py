"""The benchmark's own Kafka clients: preloading a backlog, the plain-consumer baseline, and a
tally of the activity fleet-telemetry publishes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from greenpartners.fleet.v1 import fleet_pb2
from servicekit.access import ADMIN
from servicekit.codec import event_headers
from tools.kafka_access import connection_as

TELEMETRY_HEADERS = [
    (name, value.encode()) for name, value in event_headers(fleet_pb2.TelemetrySample()).items()
]


def telemetry_producer(servers: str) -> AIOKafkaProducer:
    """As a fleet's gateway would produce (as the telematics-unit principal): acknowledged by
    the broker, idempotent, batched."""
    return AIOKafkaProducer(
        **connection_as("telematics-unit", servers),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )


async def produce_records(
    servers: str, topic: str, records: Sequence[tuple[bytes, bytes]]
) -> float:
    """Produces (key, payload) telemetry records and waits for every acknowledgement; seconds."""
    started = time.perf_counter()
    producer = telemetry_producer(servers)
    await producer.start()
    try:
        for key, payload in records:
            # send() only queues the record; flush() waits for the acknowledgements.
            await producer.send(topic, payload, key=key, headers=TELEMETRY_HEADERS)
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


# Large fetches (4 MiB per partition, 32 MiB per request: the services' sizes before a request
# was bounded to 8 MiB, servicekit.settings): the baseline is measured both with them and with
# aiokafka's defaults, and the faster run is the yardstick, as demanding as before.
LARGE_FETCH = {
    "max_partition_fetch_bytes": 4 * 1024 * 1024,
    "fetch_max_bytes": 32 * 1024 * 1024,
}
LARGE_FETCH_BATCH_RECORDS = 5000
# A waiting phase fails when its figure has not moved for this long: a stage that lost
# events would otherwise keep the benchmark waiting for its whole timeout.
STALLED_S = 60.0


async def consume_and_decode(
    servers: str, topic: str, expected: int, timeout_s: float, large_fetch: bool
) -> float:
    """The baseline: a plain consumer reads the topic from the beginning and parses every
    record, nothing else. Seconds from starting the consumer to the last record parsed."""
    started = time.perf_counter()
    consumer = AIOKafkaConsumer(
        topic,
        **connection_as(ADMIN, servers),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **(LARGE_FETCH if large_fetch else {}),
    )
    max_records = LARGE_FETCH_BATCH_RECORDS if large_fetch else None
    await consumer.start()
    seen = 0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"baseline read {seen} of {expected} records of {topic}")
            fetched = await consumer.getmany(timeout_ms=200, max_records=max_records)
            for records in fetched.values():
                for record in records:
                    fleet_pb2.TelemetrySample().ParseFromString(record.value or b"")
                seen += len(records)
    finally:
        await consumer.stop()
    return time.perf_counter() - started


class ActivityTally:
    """Reads fleet.activity.v1 from the beginning and sums `sample_count` over distinct activity
    event ids. A redelivered activity must be identical to the first copy; a different one is
    counted as a conflict (it would post twice or post a different amount)."""

    def __init__(self, servers: str, topic: str) -> None:
        self.servers = servers
        self.topic = topic
        self.payloads: dict[str, bytes] = {}
        self.sample_count = 0
        self.fuel_used_ml = 0
        self.copies = 0
        self.conflicts: list[str] = []
        # When the first activity arrived, and the samples counted by then (its fetch).
        self.first_at: float | None = None
        self.counted_at_first = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            # as a dashboard reads the activity stream
            **connection_as("dashboard", self.servers),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._read(self._consumer))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            fetched = await consumer.getmany(timeout_ms=100)
            for records in fetched.values():
                for record in records:
                    self._count(record.value or b"")
            if fetched and self.first_at is None:
                self.first_at, self.counted_at_first = time.perf_counter(), self.sample_count
            self._changed.set()

    def _count(self, payload: bytes) -> None:
        activity = fleet_pb2.VehicleActivity()
        activity.ParseFromString(payload)
        first = self.payloads.get(activity.event_id)
        if first is not None:
            self.copies += 1
            if not _same_activity(first, activity):
                self.conflicts.append(activity.event_id)
            return
        self.payloads[activity.event_id] = payload
        self.sample_count += activity.sample_count
        self.fuel_used_ml += activity.fuel_used_ml

    async def wait_for_samples(
        self, expected: int, timeout_s: float, stalled_s: float = STALLED_S
    ) -> float:
        """perf_counter() when the distinct activities first sum to `expected` samples. Fails
        after `timeout_s`, or sooner when the sum has not moved for `stalled_s`."""
        deadline = time.monotonic() + timeout_s
        last_count, last_change = self.sample_count, time.monotonic()
        while self.sample_count < expected:
            if self._task is not None and self._task.done():
                self._task.result()
            now = time.monotonic()
            if self.sample_count != last_count:
                last_count, last_change = self.sample_count, now
            if now > deadline or now - last_change > stalled_s:
                raise TimeoutError(
                    f"activity accounts {self.sample_count} of {expected} samples, unchanged "
                    f"for {now - last_change:.0f} s"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)
        return time.perf_counter()


def _same_activity(first_payload: bytes, again: fleet_pb2.VehicleActivity) -> bool:
    first = fleet_pb2.VehicleActivity()
    first.ParseFromString(first_payload)
    return first == again
