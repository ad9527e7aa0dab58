"""servicekit's delivery mechanics on the real broker: batches in one transaction, retries in
place, dead letters byte for byte, commits after the effect, and an outbox that survives a crash
before publication and is never published twice by two relays."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Column, MetaData, String, Table, func, select

from greenpartners.fleet.v1 import fleet_pb2
from servicekit import topics
from servicekit.codec import event_headers, to_timestamp
from servicekit.database import Database, Migration, create_tables, outbox
from servicekit.kafka import BatchConsumer, Delivered, KeyHashPartitioner, Producer, Rejection
from servicekit.outbox import OutboxRelay, add_many_to_outbox, add_to_outbox
from servicekit.runtime import UnitOfWork
from servicekit.telemetry import setup_tracing
from servicekit.topics import TopicNames, ensure_topics
from tests.kafka_tools import connection, eventually, produce, read_until, unique_namespace


def sample(event_id: str) -> fleet_pb2.TelemetrySample:
    return fleet_pb2.TelemetrySample(
        event_id=event_id, occurred_at=to_timestamp(datetime.now(UTC)), vehicle_id="v1"
    )


class Recorder:
    """A batch handler that fails as told, and records every batch it saw and every success."""

    def __init__(self, transient_failures: dict[str, int], rejected: set[str]) -> None:
        self.transient_failures = dict(transient_failures)
        self.rejected = rejected
        self.batches: list[list[str]] = []
        self.handled: list[str] = []

    async def __call__(
        self, batch: Sequence[Delivered[fleet_pb2.TelemetrySample]]
    ) -> list[Rejection]:
        ids = [delivered.event.event_id for delivered in batch]
        self.batches.append(ids)
        for event_id in ids:
            if self.transient_failures.get(event_id, 0) > 0:
                self.transient_failures[event_id] -= 1
                raise ConnectionError("database briefly unreachable")
        rejections = [
            Rejection(index, "test_rejected", f"{event_id} is never valid")
            for index, event_id in enumerate(ids)
            if event_id in self.rejected
        ]
        self.handled += [event_id for event_id in ids if event_id not in self.rejected]
        return rejections


@pytest.fixture
async def names(kafka: str) -> TopicNames:
    names = TopicNames(unique_namespace("kit"))
    await ensure_topics(connection(kafka), names.all_specs())
    return names


@pytest.fixture
async def producer(kafka: str) -> AsyncIterator[Producer]:
    producer = Producer(connection(kafka), "servicekit-test")
    await producer.start()
    yield producer
    await producer.stop()


def consumer_for(
    kafka: str,
    names: TopicNames,
    producer: Producer,
    handler: Any,
    max_attempts: int = 4,
    batch_scope: Any = None,
    group: str = "kit-consumer",
    max_subjects_per_batch: int = 0,
) -> BatchConsumer[fleet_pb2.TelemetrySample, fleet_pb2.TelemetrySample]:
    return BatchConsumer(
        connection=connection(kafka),
        client_id="servicekit-test",
        producer=producer,
        names=names,
        topic=topics.TELEMETRY,
        group_id=group,
        message_type=fleet_pb2.TelemetrySample,
        handle_batch=handler,
        batch_scope=batch_scope,
        max_attempts=max_attempts,
        retry_backoff_s=0.05,
        max_subjects_per_batch=max_subjects_per_batch,
    )


async def test_transient_failures_retry_the_batch_in_place(
    kafka: str, names: TopicNames, producer: Producer
) -> None:
    recorder = Recorder(transient_failures={"e2": 2}, rejected=set())
    for event_id in ("e1", "e2", "e3"):
        await produce(kafka, names(topics.TELEMETRY), "v1", sample(event_id))
    consumer = consumer_for(kafka, names, producer, recorder)
    await consumer.start()
    try:

        def all_handled() -> None:
            assert recorder.handled == ["e1", "e2", "e3"]

        await eventually(all_handled)
    finally:
        await consumer.stop()
    # One batch, failed twice, then handled whole: nothing moved past the failure.
    assert recorder.batches == [["e1", "e2", "e3"]] * 3
    dead = await read_until(
        kafka, names(topics.dead_letter_topic(topics.TELEMETRY)), lambda r: False, timeout_s=2
    )
    assert dead == []


async def test_a_batch_of_many_subjects_is_handled_a_few_subjects_at_a_time(
    kafka: str, names: TopicNames, producer: Producer
) -> None:
    recorder = Recorder(transient_failures={}, rejected={"v3-b"})
    order = ["v1-a", "v2-a", "v1-b", "v3-a", "v3-b", "v4-a", "v4-b", "v5-a", "v1-c", "v6-a"]
    for event_id in order:
        event = sample(event_id)
        event.vehicle_id = event_id.split("-")[0]
        await produce(kafka, names(topics.TELEMETRY), event.vehicle_id, event)
    consumer = consumer_for(kafka, names, producer, recorder, max_subjects_per_batch=2)
    await consumer.start()
    try:

        def all_handled() -> None:
            assert len(recorder.handled) == len(order) - 1

        await eventually(all_handled)
    finally:
        await consumer.stop()
    seen = [event_id for batch in recorder.batches for event_id in batch]

    def vehicle(event_id: str) -> str:
        return event_id.split("-")[0]

    # Each transaction saw at most two vehicles, so six took at least three; every record came
    # once, each vehicle's in its order; the rejection was told apart within its part.
    assert all(len({vehicle(event_id) for event_id in batch}) <= 2 for batch in recorder.batches)
    assert len(recorder.batches) >= 3
    assert sorted(seen) == sorted(order)
    for name in {vehicle(event_id) for event_id in order}:
        assert [e for e in seen if vehicle(e) == name] == [e for e in order if vehicle(e) == name]
    assert sorted(recorder.handled) == sorted(e for e in order if e != "v3-b")
    dead = await read_until(
        kafka, names(topics.dead_letter_topic(topics.TELEMETRY)), lambda r: len(r) >= 1
    )
    assert [(record.key, dict(record.headers)["dlq-reason"]) for record in dead] == [
        ("v3", "test_rejected")
    ]


async def test_rejected_and_exhausted_events_are_dead_lettered_and_the_stream_moves_on(
    kafka: str, names: TopicNames, producer: Producer
) -> None:
    recorder = Recorder(transient_failures={"stuck": 99}, rejected={"bad"})
    for event_id in ("bad", "stuck", "good"):
        await produce(kafka, names(topics.TELEMETRY), "v1", sample(event_id))
    await produce(
        kafka,
        names(topics.TELEMETRY),
        "v1",
        b"\x01\x02 not a sample",
        {"event-type": "greenpartners.fleet.v1.TelemetrySample"},
    )
    consumer = consumer_for(kafka, names, producer, recorder, max_attempts=3)
    await consumer.start()
    try:

        def good_handled() -> None:
            assert "good" in recorder.handled

        await eventually(good_handled)
        dead = await read_until(
            kafka, names(topics.dead_letter_topic(topics.TELEMETRY)), lambda r: len(r) >= 3
        )
    finally:
        await consumer.stop()
    # The batch failed three times, then each event went alone: "stuck" alone three times.
    assert recorder.batches[:3] == [["bad", "stuck", "good"]] * 3
    assert recorder.batches[3:] == [["bad"], ["stuck"], ["stuck"], ["stuck"], ["good"]]
    reasons = sorted((r.headers["dlq-reason"], r.headers["dlq-source-topic"]) for r in dead)
    assert reasons == [
        ("retries_exhausted", names(topics.TELEMETRY)),
        ("test_rejected", names(topics.TELEMETRY)),
        ("undecodable", names(topics.TELEMETRY)),
    ]
    by_reason = {r.headers["dlq-reason"]: r for r in dead}
    assert "ConnectionError" in by_reason["retries_exhausted"].headers["dlq-detail"]
    assert fleet_pb2.TelemetrySample.FromString(by_reason["test_rejected"].value).event_id == "bad"
    assert by_reason["test_rejected"].key == "v1"


async def test_a_dead_letter_keeps_key_value_and_headers_byte_for_byte(
    kafka: str, names: TopicNames, producer: Producer
) -> None:
    original_headers = [
        *[(name, value.encode()) for name, value in event_headers(sample("x")).items()],
        ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("tracestate", b"vendor=opaque"),
        ("x-unit-firmware", b"\xff\xfe raw bytes"),
    ]
    value = sample("poison").SerializeToString()
    raw_producer = AIOKafkaProducer(**connection(kafka))
    await raw_producer.start()
    try:
        await raw_producer.send_and_wait(
            names(topics.TELEMETRY), value, key=b"unit-7", headers=original_headers
        )
    finally:
        await raw_producer.stop()
    consumer = consumer_for(kafka, names, producer, Recorder({}, rejected={"poison"}))
    await consumer.start()
    try:
        dead = await read_raw(kafka, names(topics.dead_letter_topic(topics.TELEMETRY)), 1)
    finally:
        await consumer.stop()
    assert dead[0].key == b"unit-7"
    assert dead[0].value == value
    assert list(dead[0].headers[: len(original_headers)]) == original_headers
    added = dict(dead[0].headers[len(original_headers) :])
    assert added["dlq-reason"] == b"test_rejected"


async def read_raw(servers: str, topic: str, count: int, timeout_s: float = 30) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, **connection(servers), auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=300)).values():
                    records += batch
    finally:
        await consumer.stop()
    return records


async def test_offsets_are_committed_after_the_effect(
    kafka: str, names: TopicNames, producer: Producer
) -> None:
    first = Recorder(transient_failures={}, rejected=set())
    consumer = consumer_for(kafka, names, producer, first)
    await consumer.start()
    try:
        for event_id in ("c1", "c2"):
            await produce(kafka, names(topics.TELEMETRY), "v1", sample(event_id))

        def both_handled() -> None:
            assert first.handled == ["c1", "c2"]

        await eventually(both_handled)
    finally:
        await consumer.stop()

    # The same group again: only what came after is delivered.
    second = Recorder(transient_failures={}, rejected=set())
    consumer = consumer_for(kafka, names, producer, second)
    await consumer.start()
    try:
        await produce(kafka, names(topics.TELEMETRY), "v1", sample("c3"))

        def third_handled() -> None:
            assert second.handled == ["c3"]

        await eventually(third_handled)
    finally:
        await consumer.stop()


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/outbox.db")
    await database.migrate([])
    yield database
    await database.dispose()


async def test_outbox_rows_committed_before_a_crash_are_published_on_restart(
    kafka: str, names: TopicNames, database: Database, producer: Producer
) -> None:
    setup_tracing("servicekit-test")  # as every service does at start
    # The service committed its change and events, then died before its relay ran.
    async with database.transaction() as session:
        await add_to_outbox(session, names(topics.TELEMETRY), "v1", sample("o1"))
        await add_many_to_outbox(
            session, [(names(topics.TELEMETRY), "v1", sample(e)) for e in ("o2", "o3")]
        )

    relay = OutboxRelay(database, producer, poll_interval_s=0.05)
    relay.start()
    try:
        records = await read_until(kafka, names(topics.TELEMETRY), lambda r: len(r) >= 3)
    finally:
        await relay.stop()
    assert [fleet_pb2.TelemetrySample.FromString(r.value).event_id for r in records] == [
        "o1",
        "o2",
        "o3",
    ]
    assert records[0].headers["event-type"] == "greenpartners.fleet.v1.TelemetrySample"
    # Published rows are gone: a second relay publishes nothing more.
    assert await OutboxRelay(database, producer).publish_pending() == 0
    async with database.read() as session:
        assert (await session.execute(select(func.count()).select_from(outbox))).scalar() == 0


async def test_two_relays_on_postgresql_never_publish_a_row_twice(
    kafka: str, names: TopicNames, producer: Producer, postgres_database: str
) -> None:
    database = Database(postgres_database)
    await database.migrate([])
    try:
        async with database.transaction() as session:
            await add_many_to_outbox(
                session,
                [(names(topics.TELEMETRY), f"v{i % 7}", sample(f"p{i}")) for i in range(600)],
            )
        relays = [OutboxRelay(database, producer, batch=50) for _ in range(2)]

        async def drain(relay: OutboxRelay) -> int:
            published = 0
            while count := await relay.publish_pending():
                published += count
            return published

        counts = await asyncio.gather(*(drain(relay) for relay in relays))
        records = await read_until(kafka, names(topics.TELEMETRY), lambda r: len(r) >= 600)
        # Give a duplicate, if there were one, the time to arrive.
        records = await read_until(kafka, names(topics.TELEMETRY), lambda r: False, timeout_s=2)
    finally:
        await database.dispose()
    assert sum(counts) == 600
    ids = [fleet_pb2.TelemetrySample.FromString(r.value).event_id for r in records]
    assert sorted(ids) == sorted(f"p{i}" for i in range(600))


async def test_a_batch_commits_once_and_a_failure_in_it_loses_and_doubles_nothing(
    kafka: str, names: TopicNames, database: Database, producer: Producer
) -> None:
    """The batch's effects commit together; a rejected event's effect is not kept; a transient
    failure rolls the whole batch back and it is handled again."""
    metadata = MetaData()
    effects = Table("effects", metadata, Column("event_id", String(50), primary_key=True))
    await database.migrate([Migration(1, "effects", create_tables(metadata))])
    relay = OutboxRelay(database, producer)
    unit_of_work = UnitOfWork(database, relay)
    failures = {"b3": 1}
    batches: list[list[str]] = []

    async def handle(batch: Sequence[Delivered[fleet_pb2.TelemetrySample]]) -> list[Rejection]:
        ids = [delivered.event.event_id for delivered in batch]
        batches.append(ids)
        async with unit_of_work() as session:
            for event_id in ids:
                if event_id != "b2":
                    await session.execute(effects.insert().values(event_id=event_id))
                if failures.get(event_id, 0) > 0:
                    failures[event_id] -= 1
                    raise ConnectionError("briefly unreachable")
        return [Rejection(ids.index("b2"), "test_rejected", "never valid")] if "b2" in ids else []

    # Produced before the consumer starts, so that they arrive as one batch.
    for event_id in ("b1", "b2", "b3", "b4"):
        await produce(kafka, names(topics.TELEMETRY), "v1", sample(event_id))
    consumer = consumer_for(
        kafka, names, producer, handle, max_attempts=3, batch_scope=unit_of_work.batch
    )
    await consumer.start()
    try:

        async def all_effects() -> None:
            async with database.read() as session:
                rows = (await session.execute(select(effects.c.event_id))).scalars().all()
            assert sorted(rows) == ["b1", "b3", "b4"]

        await eventually(all_effects)
    finally:
        await consumer.stop()
    assert batches == [["b1", "b2", "b3", "b4"]] * 2
    dead = await read_until(
        kafka, names(topics.dead_letter_topic(topics.TELEMETRY)), lambda r: len(r) > 1, timeout_s=3
    )
    assert [r.headers["dlq-reason"] for r in dead] == ["test_rejected"]


async def test_a_batch_is_one_span_linked_to_each_producer_trace(
    kafka: str, names: TopicNames, producer: Producer
) -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("servicekit-test", exporter=exporter)
    traces = ["0af7651916cd43dd8448eb211c80319c", "4bf92f3577b34da6a3ce929d0e0e4736"]
    # Two records of one producer span (as a relay's step publishes them), one of another.
    for index, trace_id in enumerate([traces[0], *traces]):
        await produce(
            kafka,
            names(topics.TELEMETRY),
            "v1",
            sample(f"t{index}"),
            headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
        )
    recorder = Recorder({}, set())
    consumer = consumer_for(kafka, names, producer, recorder, group="kit-trace")
    await consumer.start()
    try:

        def all_handled() -> None:
            assert recorder.handled == ["t0", "t1", "t2"]

        await eventually(all_handled)
    finally:
        await consumer.stop()
    spans = [
        s for s in exporter.get_finished_spans() if s.name == f"{names(topics.TELEMETRY)} process"
    ]
    linked = {format(link.context.trace_id, "032x") for span in spans for link in span.links}
    assert linked == set(traces)
    assert sum(span.attributes["messaging.batch.message_count"] for span in spans) == 3
    for span in spans:
        # A producer span is linked once, however many of the batch's records it produced.
        pairs = [(link.context.trace_id, link.context.span_id) for link in span.links]
        assert len(pairs) == len(set(pairs))


async def test_a_relay_killed_mid_batch_republishes_a_handful_not_the_batch(
    kafka: str, names: TopicNames, database: Database, producer: Producer
) -> None:
    """The relay is stopped dead (its task cancelled, nothing cleaned up: as a kill leaves it)
    while a batch of 1,000 rows is in flight; a new relay then publishes the rest. What is
    published twice is at most the steps in flight, never the batch."""
    topic = names(topics.TELEMETRY)
    rows = 1000
    async with database.transaction() as session:
        await add_many_to_outbox(
            session, [(topic, f"v{i % 7}", sample(f"k{i}")) for i in range(rows)]
        )

    async def remaining() -> int:
        async with database.read() as session:
            return int((await session.execute(select(func.count()).select_from(outbox))).scalar())

    relay = OutboxRelay(database, producer, batch=rows)
    publishing = asyncio.create_task(relay.publish_pending())
    # Killed as soon as the first step is deleted.
    for _poll in range(10_000):
        if await remaining() < rows:
            break
        await asyncio.sleep(0.001)
    publishing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await publishing
    left = await remaining()
    assert 0 < left < rows, "the kill must land in the middle of the batch"

    assert await OutboxRelay(database, producer, batch=rows).publish_pending() == left
    records = await read_until(kafka, topic, lambda r: False, timeout_s=3)
    ids = [fleet_pb2.TelemetrySample.FromString(r.value).event_id for r in records]
    assert set(ids) == {f"k{i}" for i in range(rows)}
    republished = len(ids) - rows
    print(f"killed with {left} of {rows} rows left: {republished} records published twice")
    assert 0 <= republished <= relay.step * relay.steps_in_flight == 400, republished


@given(key=st.binary(max_size=64), partitions=st.integers(min_value=1, max_value=64))
def test_the_producer_partitions_a_key_as_kafka_s_default_partitioner_does(
    key: bytes, partitions: int
) -> None:
    all_partitions = list(range(partitions))
    partitioner = KeyHashPartitioner(max_keys=4)
    expected = DefaultPartitioner()(key, all_partitions, all_partitions)
    # Twice: computed, then remembered.
    assert partitioner(key, all_partitions, all_partitions) == expected
    assert partitioner(key, all_partitions, all_partitions) == expected


def test_the_partitioner_forgets_keys_beyond_its_bound() -> None:
    partitioner = KeyHashPartitioner(max_keys=3)
    for index in range(10):
        partitioner(f"van-{index}".encode(), [0, 1, 2], [0, 1, 2])
    assert len(partitioner._hashes) <= 3
    # Kafka's own test vector for murmur2 ("21" hashes to -973932308).
    assert partitioner(b"21", list(range(1000)), []) == (-973932308 & 0x7FFFFFFF) % 1000
