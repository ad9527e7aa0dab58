"""Records a hostile or broken producer can write, on the real broker: none of them may stall a
stream, lose a good record beside it, or slip into a service unnoticed.

Each crafted record carries an `x-case` header; dead letters keep the source headers byte for
byte, so every dead letter says which case it was and the reason it got. Poison that the same
record would raise every time is dead-lettered at once, never retried for seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from google.protobuf.message import Message

from emissions_ledger.bootstrap import build as build_ledger
from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from greenpartners.lockers.v1 import lockers_pb2
from servicekit import topics
from servicekit.codec import to_timestamp
from servicekit.errors import PermanentEventError
from servicekit.identity import OPERATOR
from servicekit.kafka import BatchConsumer, Delivered, Producer, Rejection
from servicekit.topics import TopicNames, dead_letter_topic, ensure_topics
from tests.kafka_tools import connection, eventually, unique_namespace
from tests.ledger_events import vehicle_activity
from tests.registry_seed import publish_registry_seed
from tools.pki import Pki

SAMPLE_TYPE = b"greenpartners.fleet.v1.TelemetrySample"
LOCKER_TYPE = b"greenpartners.lockers.v1.LockerEvent"
ACTIVITY_TYPE = b"greenpartners.fleet.v1.VehicleActivity"
AT = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
AALBORG = "aalborg-kommune"

Headers = list[tuple[str, bytes | None]]


def sample(event_id: str, vehicle_id: str = "v1") -> fleet_pb2.TelemetrySample:
    return fleet_pb2.TelemetrySample(
        event_id=event_id, occurred_at=to_timestamp(AT), vehicle_id=vehicle_id, odometer_m=1
    )


@pytest.fixture
async def names(kafka: str) -> TopicNames:
    names = TopicNames(unique_namespace("abuse"))
    await ensure_topics(connection(kafka), names.all_specs())
    return names


@pytest.fixture
async def producer(kafka: str) -> AsyncIterator[Producer]:
    producer = Producer(connection(kafka), "abuse-test")
    await producer.start()
    yield producer
    await producer.stop()


async def send_raw(
    servers: str, topic: str, records: Sequence[tuple[bytes | None, bytes | None, Headers]]
) -> None:
    """(key, value, headers) exactly as given: null keys, values and header values included."""
    raw = AIOKafkaProducer(**connection(servers), acks="all", enable_idempotence=True)
    await raw.start()
    try:
        for key, value, headers in records:
            await raw.send_and_wait(topic, value, key=key, headers=headers, partition=0)
    finally:
        await raw.stop()


async def read_raw(servers: str, topic: str, count: int, timeout_s: float = 30) -> list[Any]:
    """At least `count` records of a topic from its start, as aiokafka gives them."""
    consumer = AIOKafkaConsumer(
        topic, **connection(servers), auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records += batch
    finally:
        await consumer.stop()
    return records


def case_of(record: Any) -> str:
    return dict(record.headers)["x-case"].decode()


def reasons_by_case(dead: Sequence[Any]) -> dict[str, str]:
    return {case_of(record): dict(record.headers)["dlq-reason"].decode() for record in dead}


class Recorder:
    """A telemetry handler that converts each event itself (`converted`)."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.calls = 0
        # Calls that raised: each makes the consumer split the batch to find the record.
        self.failures = 0

    async def __call__(
        self, batch: Sequence[Delivered[fleet_pb2.TelemetrySample]]
    ) -> list[Rejection]:
        self.calls += 1
        for delivered in batch:
            try:
                converted(delivered.event)
            except Exception:
                self.failures += 1
                raise
        self.handled += [delivered.event.event_id for delivered in batch]
        return []


def converted(event: fleet_pb2.TelemetrySample) -> fleet_pb2.TelemetrySample:
    """A service's conversion of a sample: an event id of `convert-fails` raises the ValueError
    a value out of range raises, one of `domain-refuses` raises PermanentEventError."""
    if event.event_id == "convert-fails":
        raise ValueError("year 10000 is out of range")
    if event.event_id == "domain-refuses":
        raise PermanentEventError("test_refused", "never valid")
    return event


def telemetry_consumer(
    kafka: str, names: TopicNames, producer: Producer, handler: Any, **options: Any
) -> BatchConsumer[fleet_pb2.TelemetrySample, fleet_pb2.TelemetrySample]:
    return BatchConsumer(
        connection=connection(kafka),
        client_id="abuse-test",
        producer=producer,
        names=names,
        topic=topics.TELEMETRY,
        group_id="abuse",
        message_type=fleet_pb2.TelemetrySample,
        handle_batch=handler,
        subject_of=lambda event: event.vehicle_id,
        # A transient retry would cost seconds: none may happen for any case below.
        retry_backoff_s=2.0,
        **options,
    )


def typed(event_type: bytes = SAMPLE_TYPE, **extra: bytes | None) -> Headers:
    return [("event-type", event_type), *extra.items()]


# (case, key, value, headers without x-case, expected dead-letter reason or None: handled)
POISON: list[tuple[str, bytes | None, bytes | None, Headers, str | None]] = [
    (
        "labelled-json",
        b"v1",
        sample("labelled-json").SerializeToString(),
        [("content-type", b"application/json"), *typed()],
        None,
    ),
    (
        "null-header-values",
        b"v1",
        sample("null-header-values").SerializeToString(),
        [("content-type", None), *typed(), ("traceparent", None), ("x-unit-firmware", None)],
        None,
    ),
    ("no-headers", b"v1", sample("no-headers").SerializeToString(), [], "missing_header"),
    (
        "null-event-type",
        b"v1",
        sample("null-event-type").SerializeToString(),
        [("event-type", None)],
        "missing_header",
    ),
    (
        "wrong-event-type",
        b"v1",
        sample("wrong-event-type").SerializeToString(),
        typed(ACTIVITY_TYPE),
        "wrong_event_type",
    ),
    ("garbage", b"v1", b"\xff\xff\xff not protobuf", typed(), "undecodable"),
    ("tombstone", b"v1", None, typed(), "schema_invalid"),
    ("null-key", None, sample("null-key").SerializeToString(), typed(), "key_mismatch"),
    ("empty-key", b"", sample("empty-key").SerializeToString(), typed(), "key_mismatch"),
    ("other-key", b"v2", sample("other-key").SerializeToString(), typed(), "key_mismatch"),
    (
        "huge-event-id",
        b"v1",
        sample("x" * 900_000).SerializeToString(),
        typed(),
        "id_too_long",
    ),
    (
        "long-vehicle-id",
        b"v" * 10_000,
        sample("long-vehicle-id", "v" * 10_000).SerializeToString(),
        typed(),
        "id_too_long",
    ),
    ("huge-key", b"k" * 100_000, sample("huge-key").SerializeToString(), typed(), "id_too_long"),
    (
        "year-10000",
        b"v1",
        fleet_pb2.TelemetrySample(
            event_id="year-10000", vehicle_id="v1", occurred_at={"seconds": 10**12}
        ).SerializeToString(),
        typed(),
        "invalid_timestamp",
    ),
    (
        "negative-nanos",
        b"v1",
        fleet_pb2.TelemetrySample(
            event_id="negative-nanos", vehicle_id="v1", occurred_at={"seconds": 1, "nanos": -1}
        ).SerializeToString(),
        typed(),
        "invalid_timestamp",
    ),
    (
        "convert-fails",
        b"v1",
        sample("convert-fails").SerializeToString(),
        typed(),
        "unprocessable",
    ),
    (
        "domain-refuses",
        b"v1",
        sample("domain-refuses").SerializeToString(),
        typed(),
        "test_refused",
    ),
]


@pytest.mark.parametrize("conversion", ["in the handler", "in the consumer"])
async def test_no_record_stalls_the_stream_or_takes_a_good_one_with_it(
    kafka: str,
    names: TopicNames,
    producer: Producer,
    caplog: pytest.LogCaptureFixture,
    conversion: str,
) -> None:
    records: list[tuple[bytes | None, bytes | None, Headers]] = []
    for index, (case, key, value, headers, _reason) in enumerate(POISON):
        records.append((key, value, [*headers, ("x-case", case.encode())]))
        # A good record after each bad one: it must be handled, whatever batch it lands in.
        good = f"good-{index}"
        records.append((b"v1", sample(good).SerializeToString(), [*typed(), ("x-case", b"ok")]))
    await send_raw(kafka, names(topics.TELEMETRY), records)

    recorder = Recorder()
    in_consumer = conversion == "in the consumer"
    consumer = telemetry_consumer(
        kafka, names, producer, recorder, convert=converted if in_consumer else None
    )
    expected_dead = [case for case, *_, reason in POISON if reason is not None]
    caplog.set_level(logging.WARNING, logger="servicekit.kafka")
    await consumer.start()
    try:
        dead = await read_raw(kafka, names(dead_letter_topic(topics.TELEMETRY)), len(expected_dead))

        def all_good_handled() -> None:
            handled = set(recorder.handled)
            assert {f"good-{index}" for index in range(len(POISON))} <= handled

        await eventually(all_good_handled)
    finally:
        await consumer.stop()

    assert reasons_by_case(dead) == {
        case: reason for case, *_, reason in POISON if reason is not None
    }
    # Handled once each (the recorder counts a batch only when it went through).
    handled_cases = {case for case, *_, reason in POISON if reason is None}
    assert sorted(recorder.handled) == sorted(
        [*handled_cases, *(f"good-{index}" for index in range(len(POISON)))]
    )
    # Poison was recognised, never retried as if the database had failed.
    assert "event handling failed, retrying" not in caplog.text
    if in_consumer:
        # A record the consumer cannot convert is dead-lettered alone, as it is decoded: the
        # handler never sees it, so no batch is split to find it.
        assert recorder.failures == 0
    else:
        assert recorder.failures > 0
    assert consumer.stalled_seconds() == 0
    by_case = {case_of(record): record for record in dead}
    # Byte for byte: null header values stay null, the value and key are the source's.
    assert by_case["null-event-type"].headers[0] == ("event-type", None)
    assert by_case["huge-event-id"].value == sample("x" * 900_000).SerializeToString()
    assert by_case["null-key"].key is None
    # A dead letter's detail never echoes a large input back.
    for record in dead:
        assert len(dict(record.headers)["dlq-detail"]) < 400, case_of(record)


async def test_a_record_at_the_size_limit_can_always_be_dead_lettered(
    kafka: str, names: TopicNames, producer: Producer
) -> None:
    """A record as large as the source topic takes is refused by the decoder or by the
    handler; its dead letter, with the dlq-* headers added, still fits its topic."""
    filler = 1_048_000
    garbage = b"\xff" * filler
    # A valid sample carrying a large unknown field: decoded, then refused by the handler.
    padded = sample("refused-big").SerializeToString()
    padded += b"\xa2\x06" + _varint(filler - len(padded) - 8) + b"p" * (filler - len(padded) - 8)
    await send_raw(
        kafka,
        names(topics.TELEMETRY),
        [
            (b"v1", garbage, [*typed(), ("x-case", b"garbage-big")]),
            (b"v1", padded, [*typed(), ("x-case", b"refused-big")]),
            (b"v1", sample("after").SerializeToString(), [*typed(), ("x-case", b"ok")]),
        ],
    )

    class Refuser(Recorder):
        async def __call__(
            self, batch: Sequence[Delivered[fleet_pb2.TelemetrySample]]
        ) -> list[Rejection]:
            rejections = [
                Rejection(index, "test_rejected", "too big to be true")
                for index, delivered in enumerate(batch)
                if delivered.event.event_id == "refused-big"
            ]
            self.handled += [d.event.event_id for d in batch if d.event.event_id != "refused-big"]
            return rejections

    refuser = Refuser()
    consumer = telemetry_consumer(kafka, names, producer, refuser)
    await consumer.start()
    try:
        dead = await read_raw(kafka, names(dead_letter_topic(topics.TELEMETRY)), 2)

        def after_handled() -> None:
            assert refuser.handled == ["after"]

        await eventually(after_handled)
    finally:
        await consumer.stop()
    assert reasons_by_case(dead) == {"garbage-big": "undecodable", "refused-big": "test_rejected"}
    assert {case_of(record): len(record.value) for record in dead} == {
        "garbage-big": filler,
        "refused-big": len(padded),
    }


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


async def test_a_locker_event_of_no_known_kind_is_dead_lettered(
    kafka: str, names: TopicNames, producer: Producer
) -> None:
    def event(event_id: str, **kind: Any) -> lockers_pb2.LockerEvent:
        return lockers_pb2.LockerEvent(
            event_id=event_id,
            occurred_at=to_timestamp(AT),
            hub_id="hub-1",
            municipality_id=AALBORG,
            **kind,
        )

    # A kind from a newer producer: field 12 is no kind this build knows.
    future_kind = event("future-kind").SerializeToString() + b"\x62\x02\x08\x01"
    headers = [("event-type", LOCKER_TYPE)]
    await send_raw(
        kafka,
        names(topics.LOCKER_EVENTS),
        [
            (b"hub-1", event("no-kind").SerializeToString(), [*headers, ("x-case", b"no-kind")]),
            (b"hub-1", future_kind, [*headers, ("x-case", b"future-kind")]),
            (
                b"hub-2",
                event(
                    "wrong-hub", waste_deposited=lockers_pb2.WasteDeposited(mass_g=1)
                ).SerializeToString(),
                [*headers, ("x-case", b"wrong-hub")],
            ),
            (
                b"hub-1",
                event(
                    "deposit", waste_deposited=lockers_pb2.WasteDeposited(mass_g=1)
                ).SerializeToString(),
                [*headers, ("x-case", b"ok")],
            ),
        ],
    )
    handled: list[str] = []

    async def handle(batch: Sequence[Delivered[lockers_pb2.LockerEvent]]) -> list[Rejection]:
        handled.extend(delivered.event.event_id for delivered in batch)
        return []

    consumer = BatchConsumer(
        connection=connection(kafka),
        client_id="abuse-test",
        producer=producer,
        names=names,
        topic=topics.LOCKER_EVENTS,
        group_id="abuse-lockers",
        message_type=lockers_pb2.LockerEvent,
        handle_batch=handle,
        subject_of=lambda locker_event: locker_event.hub_id,
    )
    await consumer.start()
    try:
        dead = await read_raw(kafka, names(dead_letter_topic(topics.LOCKER_EVENTS)), 3)

        def deposit_handled() -> None:
            assert handled == ["deposit"]

        await eventually(deposit_handled)
    finally:
        await consumer.stop()
    assert reasons_by_case(dead) == {
        "no-kind": "unknown_kind",
        "future-kind": "unknown_kind",
        "wrong-hub": "key_mismatch",
    }


def activity(event_id: str, fuel_ml: int, vehicle_id: str = "v-a") -> fleet_pb2.VehicleActivity:
    return vehicle_activity(
        event_id, fleet_pb2.FUEL_TYPE_DIESEL, AT, fuel_used_ml=fuel_ml, vehicle_id=vehicle_id
    )


def framed(message: Message, case: str) -> tuple[bytes, bytes, Headers]:
    assert isinstance(message, fleet_pb2.VehicleActivity)
    return (
        message.vehicle.vehicle_id.encode(),
        message.SerializeToString(),
        [("event-type", ACTIVITY_TYPE), ("x-case", case.encode())],
    )


async def test_the_ledger_posts_an_event_id_once_and_dead_letters_other_content_under_it(
    kafka: str, tmp_path: Path, pki: Pki
) -> None:
    """An activity delivered again is no conflict; the same event id with other litres is, in
    the same batch as the first and in a later one; a period_end that is no date is refused
    at once; and the ledger's totals count the first version only."""
    namespace = unique_namespace("abuse")
    # The ledger knows municipalities from the partner changelog.
    await publish_registry_seed(kafka, namespace)
    ledger = build_ledger(
        kafka_bootstrap_servers=kafka,
        topic_namespace=namespace,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/ledger.db",
        grpc_port=0,
        consumer_retry_backoff_s=2.0,
    )
    await ensure_topics(connection(kafka), ledger.names.all_specs())
    activity_topic = ledger.topic(topics.ACTIVITY)
    year_10000 = activity("year-10000", 1_000)
    year_10000.period_end.seconds = 10**12
    await send_raw(
        kafka,
        activity_topic,
        [
            framed(activity("a1", 1_000), "first"),
            framed(activity("a1", 1_000), "redelivered"),
            framed(activity("a1", 9_000), "conflict-in-batch"),
            framed(year_10000, "year-10000"),
        ],
    )
    await ledger.start()
    try:
        dead_topic = ledger.topic(dead_letter_topic(topics.ACTIVITY))
        dead = await read_raw(kafka, dead_topic, 2)
        # Once the first batch is posted, a later conflict meets the stored entry.
        await send_raw(
            kafka,
            activity_topic,
            [framed(activity("a1", 5_000), "conflict-later"), framed(activity("a2", 500), "ok")],
        )
        dead = await read_raw(kafka, dead_topic, 3)
        async with pki.channel(f"127.0.0.1:{ledger.grpc_port}", OPERATOR) as channel:
            stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)

            async def both_posted() -> None:
                inventory = await stub.GetInventory(
                    ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=2026)
                )
                assert inventory.entry_count == 2
                assert [line.activity_amount for line in inventory.lines] == ["1.5"]

            await eventually(both_posted)
    finally:
        await ledger.stop()
    assert reasons_by_case(dead) == {
        "conflict-in-batch": "duplicate_event_conflict",
        "conflict-later": "duplicate_event_conflict",
        "year-10000": "invalid_timestamp",
    }
