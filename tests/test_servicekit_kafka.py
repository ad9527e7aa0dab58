"""servicekit's delivery mechanics on the real broker: retries in place, dead letters,
commits after the effect, and an outbox that survives a crash before publication."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from faststream.kafka import KafkaBroker

from greenpartners.fleet.v1 import fleet_pb2
from servicekit import topics
from servicekit.codec import to_timestamp
from servicekit.database import Database
from servicekit.errors import PermanentEventError
from servicekit.kafka import EventConsumer, EventContext, create_broker
from servicekit.outbox import OutboxRelay, add_to_outbox
from servicekit.telemetry import setup_tracing
from servicekit.topics import TopicNames, ensure_topics
from tests.kafka_tools import eventually, produce, read_until, unique_namespace


def sample(event_id: str) -> fleet_pb2.TelemetrySample:
    return fleet_pb2.TelemetrySample(
        event_id=event_id, occurred_at=to_timestamp(datetime.now(UTC)), vehicle_id="v1"
    )


class Recorder:
    """A handler that fails as told, and records every attempt and every success."""

    def __init__(self, transient_failures: dict[str, int], permanent: set[str]) -> None:
        self.transient_failures = dict(transient_failures)
        self.permanent = permanent
        self.attempts: list[str] = []
        self.handled: list[str] = []

    async def __call__(self, event: fleet_pb2.TelemetrySample, _context: EventContext) -> None:
        self.attempts.append(event.event_id)
        if event.event_id in self.permanent:
            raise PermanentEventError("test_rejected", f"{event.event_id} is never valid")
        if self.transient_failures.get(event.event_id, 0) > 0:
            self.transient_failures[event.event_id] -= 1
            raise ConnectionError("database briefly unreachable")
        self.handled.append(event.event_id)


@pytest.fixture
async def names(kafka: str) -> TopicNames:
    names = TopicNames(unique_namespace("kit"))
    await ensure_topics(kafka, names.all_specs())
    return names


async def start_consumer(
    kafka: str, names: TopicNames, recorder: Recorder, max_attempts: int = 4
) -> KafkaBroker:
    broker = create_broker(kafka, "servicekit-test")
    EventConsumer(
        broker=broker,
        names=names,
        topic=topics.TELEMETRY,
        group_id="kit-consumer",
        message_type=fleet_pb2.TelemetrySample,
        handle=recorder,
        max_attempts=max_attempts,
        retry_backoff_s=0.05,
    )
    await broker.start()
    return broker


async def test_transient_failures_retry_in_place_and_keep_order(
    kafka: str, names: TopicNames
) -> None:
    recorder = Recorder(transient_failures={"e2": 2}, permanent=set())
    broker = await start_consumer(kafka, names, recorder)
    try:
        for event_id in ("e1", "e2", "e3"):
            await produce(kafka, names(topics.TELEMETRY), "v1", sample(event_id))

        def all_handled() -> None:
            assert recorder.handled == ["e1", "e2", "e3"]

        await eventually(all_handled)
        # e3 waited until e2 succeeded: the partition did not move past the failure.
        assert recorder.attempts == ["e1", "e2", "e2", "e2", "e3"]
    finally:
        await broker.stop()
    dead = await read_until(
        kafka, names(topics.dead_letter_topic(topics.TELEMETRY)), lambda r: False, timeout_s=2
    )
    assert dead == []


async def test_permanent_and_exhausted_failures_are_dead_lettered_and_the_stream_moves_on(
    kafka: str, names: TopicNames
) -> None:
    recorder = Recorder(transient_failures={"stuck": 99}, permanent={"bad"})
    broker = await start_consumer(kafka, names, recorder, max_attempts=3)
    try:
        for event_id in ("bad", "stuck", "good"):
            await produce(kafka, names(topics.TELEMETRY), "v1", sample(event_id))
        await produce(kafka, names(topics.TELEMETRY), "v1", b"\x01\x02 not a sample")

        def good_handled() -> None:
            assert recorder.handled == ["good"]

        await eventually(good_handled)
        assert recorder.attempts.count("bad") == 1
        assert recorder.attempts.count("stuck") == 3
        # The undecodable record came last: wait for its dead letter too before stopping.
        dead = await read_until(
            kafka, names(topics.dead_letter_topic(topics.TELEMETRY)), lambda r: len(r) >= 3
        )
    finally:
        await broker.stop()
    reasons = [(r.headers["dlq-reason"], r.headers["dlq-source-topic"]) for r in dead]
    assert reasons == [
        ("test_rejected", names(topics.TELEMETRY)),
        ("retries_exhausted", names(topics.TELEMETRY)),
        ("undecodable", names(topics.TELEMETRY)),
    ]
    assert "ConnectionError" in dead[1].headers["dlq-detail"]
    assert fleet_pb2.TelemetrySample.FromString(dead[0].value).event_id == "bad"
    assert dead[0].key == "v1"


async def test_offsets_are_committed_after_the_effect(kafka: str, names: TopicNames) -> None:
    first = Recorder(transient_failures={}, permanent=set())
    broker = await start_consumer(kafka, names, first)
    try:
        for event_id in ("c1", "c2"):
            await produce(kafka, names(topics.TELEMETRY), "v1", sample(event_id))

        def both_handled() -> None:
            assert first.handled == ["c1", "c2"]

        await eventually(both_handled)
    finally:
        await broker.stop()

    # The same group again: only what came after is delivered.
    second = Recorder(transient_failures={}, permanent=set())
    broker = await start_consumer(kafka, names, second)
    try:
        await produce(kafka, names(topics.TELEMETRY), "v1", sample("c3"))

        def third_handled() -> None:
            assert second.handled == ["c3"]

        await eventually(third_handled)
    finally:
        await broker.stop()


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/outbox.db")
    await database.migrate([])
    yield database
    await database.dispose()


async def test_outbox_rows_committed_before_a_crash_are_published_on_restart(
    kafka: str, names: TopicNames, database: Database
) -> None:
    setup_tracing("servicekit-test")  # as every service does at start
    # The service committed its change and events, then died before its relay ran.
    async with database.transaction() as session:
        for event_id in ("o1", "o2", "o3"):
            await add_to_outbox(session, names(topics.TELEMETRY), "v1", sample(event_id))

    broker = create_broker(kafka, "servicekit-test")
    await broker.start()
    relay = OutboxRelay(database, broker, poll_interval_s=0.05)
    relay.start()
    try:
        records = await read_until(kafka, names(topics.TELEMETRY), lambda r: len(r) >= 3)
    finally:
        await relay.stop()
        await broker.stop()
    assert [fleet_pb2.TelemetrySample.FromString(r.value).event_id for r in records] == [
        "o1",
        "o2",
        "o3",
    ]
    assert records[0].headers["event-type"] == "greenpartners.fleet.v1.TelemetrySample"
    assert "traceparent" in records[0].headers
    # Marked published: a second relay publishes nothing more.
    assert await OutboxRelay(database, broker).publish_pending() == 0


async def test_a_batch_commits_once_and_a_failure_in_it_loses_and_doubles_nothing(
    kafka: str, names: TopicNames, database: Database
) -> None:
    """Batched: effects and processed-event records commit together; a rejected event rolls
    back alone; a transient failure sends the batch round again one event at a time."""
    from sqlalchemy import Column, MetaData, String, Table, select

    from servicekit.database import Migration, claim_event, create_tables
    from servicekit.runtime import UnitOfWork

    metadata = MetaData()
    effects = Table("effects", metadata, Column("event_id", String(50), primary_key=True))
    await database.migrate([Migration(1, "effects", create_tables(metadata))])
    broker = create_broker(kafka, "servicekit-test")
    relay = OutboxRelay(database, broker)
    unit_of_work = UnitOfWork(database, relay)
    failures = {"b3": 2}
    attempts: list[str] = []

    async def handle(event: fleet_pb2.TelemetrySample, _context: EventContext) -> None:
        attempts.append(event.event_id)
        async with unit_of_work() as session:
            if not await claim_event(session, "batch-test", event.event_id):
                return
            await session.execute(effects.insert().values(event_id=event.event_id))
            if event.event_id == "b2":
                raise PermanentEventError("test_rejected", "b2 is never valid")
            if failures.get(event.event_id, 0) > 0:
                failures[event.event_id] -= 1
                raise ConnectionError("briefly unreachable")

    # Produced before the consumer starts, so that they arrive as one batch.
    for event_id in ("b1", "b2", "b3", "b4"):
        await produce(kafka, names(topics.TELEMETRY), "v1", sample(event_id))
    EventConsumer(
        broker=broker,
        names=names,
        topic=topics.TELEMETRY,
        group_id="kit-batch",
        message_type=fleet_pb2.TelemetrySample,
        handle=handle,
        max_attempts=3,
        retry_backoff_s=0.05,
        batch_scope=unit_of_work.batch,
    )
    await broker.start()
    try:

        async def all_effects() -> None:
            async with database.read() as session:
                rows = (await session.execute(select(effects.c.event_id))).scalars().all()
            assert sorted(rows) == ["b1", "b3", "b4"]

        await eventually(all_effects)
    finally:
        await broker.stop()
    # The batch ran to b3 and rolled back; then each event ran on its own, b3 retried in place.
    assert attempts[:3] == ["b1", "b2", "b3"]
    assert attempts[3:] == ["b1", "b2", "b3", "b3", "b4"]
    dead = await read_until(
        kafka, names(topics.dead_letter_topic(topics.TELEMETRY)), lambda r: len(r) > 1, timeout_s=3
    )
    assert [r.headers["dlq-reason"] for r in dead] == ["test_rejected"]
