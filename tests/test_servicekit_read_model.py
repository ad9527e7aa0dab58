"""servicekit.read_model on the real broker and both databases: a compacted topic read from the
beginning without a group, upserts guarded by revision, deletions on tombstones, caught up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession

from greenpartners.registry.v1 import registry_pb2
from servicekit import topics
from servicekit.codec import event_headers
from servicekit.database import Database
from servicekit.partners import changelog_revision
from servicekit.read_model import Change, ReadModel, ReadModelMetrics
from servicekit.topics import TopicNames, ensure_topics
from tests.conftest import PostgresDatabases
from tests.kafka_tools import eventually, unique_namespace

Changed = registry_pb2.PartnerChanged


def partner(partner_id: str, revision: int, name: str = "") -> Changed:
    return Changed(
        event_id=f"{partner_id}-{revision}",
        partner=registry_pb2.Partner(
            partner_id=partner_id, name=name or partner_id, revision=revision
        ),
    )


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases
) -> AsyncIterator[Database]:
    url = (
        await postgres_databases.create()
        if request.param == "postgresql"
        else f"sqlite+aiosqlite:///{tmp_path / 'model.db'}"
    )
    database = Database(url)
    await database.migrate([])  # creates servicekit's own tables, the read model's among them
    yield database
    await database.dispose()


class Topic:
    def __init__(self, kafka: str) -> None:
        self.kafka = kafka
        self.names = TopicNames(unique_namespace("rm"))
        self.name = self.names(topics.PARTNERS)

    async def create(self) -> None:
        await ensure_topics(self.kafka, self.names.all_specs())

    async def send(self, *records: tuple[str, Changed | bytes | None]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.kafka, acks="all")
        await producer.start()
        try:
            for key, value in records:
                payload = value.SerializeToString() if isinstance(value, Changed) else value
                headers = event_headers(value) if isinstance(value, Changed) else {}
                await producer.send_and_wait(
                    self.name,
                    payload,
                    key=key.encode(),
                    headers=[(name, text.encode()) for name, text in headers.items()],
                )
        finally:
            await producer.stop()


def model_of(
    topic: Topic,
    database: Database,
    seen: list[Change[Changed]] | None = None,
    metrics: ReadModelMetrics | None = None,
) -> ReadModel[Changed]:
    async def record(session: AsyncSession, changes: Sequence[Change[Changed]]) -> None:
        if seen is not None:
            seen.extend(changes)

    return ReadModel(
        topic=topic.name,
        message_type=Changed,
        revision_of=changelog_revision,
        database=database,
        connection={"bootstrap_servers": topic.kafka},
        client_id="read-model-test",
        on_change=record,
        metrics=metrics,
    )


async def names(model: ReadModel[Changed], database: Database) -> dict[str, tuple[str, int]]:
    async with database.read() as session:
        return {
            event.partner.partner_id: (event.partner.name, event.partner.revision)
            for event in await model.values(session)
            if event.HasField("partner")
        }


async def test_the_model_holds_the_newest_revision_of_each_key_and_forgets_deleted_ones(
    kafka: str, database: Database
) -> None:
    topic = Topic(kafka)
    await topic.create()
    await topic.send(
        ("a", partner("a", 1)),
        ("b", partner("b", 1)),
        ("a", partner("a", 3, "A three")),
        ("a", partner("a", 2, "A two, published late")),  # stale: must not undo revision 3
        ("c", partner("c", 1)),
        ("b", None),  # tombstone
        ("b", partner("b", 1)),  # the deleted record published again: stays deleted
        ("d", b"\xff not protobuf"),  # skipped, counted
        ("initiative:kimo", Changed(event_id="i", initiative=registry_pb2.Initiative(revision=1))),
    )
    seen: list[Change[Changed]] = []
    registry = CollectorRegistry()
    model = model_of(topic, database, seen, ReadModelMetrics(registry))
    await model.start()
    try:
        await asyncio.wait_for(model.caught_up.wait(), 30)
        assert await names(model, database) == {"a": ("A three", 3), "c": ("c", 1)}
        async with database.read() as session:
            assert await model.get(session, "b") is None
            assert (await model.get(session, "initiative:kimo")) is not None
        # The hook saw each change of state once, with what it replaced.
        assert [(c.key, c.revision, c.value is None) for c in seen] == [
            ("a", 1, False),
            ("b", 1, False),
            ("a", 3, False),
            ("c", 1, False),
            ("b", 1, True),
            ("initiative:kimo", 1, False),
        ]
        assert seen[2].previous is not None and seen[2].previous.partner.revision == 1
        assert (
            registry.get_sample_value("read_model_skipped_records_total", {"model": topic.name})
            == 1
        )
        assert registry.get_sample_value("read_model_caught_up", {"model": topic.name}) == 1

        # It follows the topic once caught up.
        await topic.send(("c", partner("c", 2, "C two")), ("a", None))

        async def followed() -> None:
            assert await names(model, database) == {"c": ("C two", 2)}

        await eventually(followed, timeout_s=30)
    finally:
        await model.stop()

    # A restart reads the topic again from the beginning, without a group, to the same state.
    again = model_of(topic, database)
    await again.start()
    try:
        await asyncio.wait_for(again.caught_up.wait(), 30)
        assert await names(again, database) == {"c": ("C two", 2)}
    finally:
        await again.stop()


async def test_a_model_of_an_empty_topic_is_caught_up_at_once(
    kafka: str, database: Database
) -> None:
    topic = Topic(kafka)
    await topic.create()
    model = model_of(topic, database)
    await model.start()
    try:
        await asyncio.wait_for(model.caught_up.wait(), 10)
    finally:
        await model.stop()
