"""Dead letters for operators: list them, and send them back once their cause is fixed.

    python -m tools.dlq list   --topic fleet.telemetry.v1 [--reason unknown_vehicle]
    python -m tools.dlq replay --topic fleet.telemetry.v1 [--reason unknown_vehicle]

`replay` republishes the dead letters of `<topic>.dlq` to `<topic>` unchanged (key, value and the
original headers; the dlq-* headers are dropped). Without --reason it remembers how far it got
in the consumer group `operators.dlq-replay.<topic>`, so the next replay sends only what was
dead-lettered since; with --reason it reads the whole dead-letter topic each time. A
dead-lettered event left no trace in the consumer's database (its transaction was rolled back),
so a replayed event is processed as if new, and one replayed twice is processed once (consumers
deduplicate by event id); one that fails again goes back to the dead-letter topic.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from servicekit.topics import TopicNames, dead_letter_topic
from tools.kafka_access import tool_connection

DLQ_HEADER_PREFIX = "dlq-"


@dataclass(frozen=True)
class DeadLetterRecord:
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str:
        return next((v.decode(errors="replace") for k, v in self.headers if k == name), "")

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith(DLQ_HEADER_PREFIX)]


async def read_dead_letters(
    connection: dict[str, Any], topic: str, group_id: str | None, idle_timeout_s: float = 2.0
) -> tuple[AIOKafkaConsumer, list[DeadLetterRecord]]:
    """Reads the dead-letter topic up to its current end (from the group's position)."""
    consumer = AIOKafkaConsumer(
        topic,
        **connection,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[DeadLetterRecord] = []
    while True:
        batches = await consumer.getmany(timeout_ms=int(idle_timeout_s * 1000))
        if not batches:
            return consumer, records
        for batch in batches.values():
            records.extend(
                DeadLetterRecord(r.offset, r.key, r.value or b"", tuple(r.headers)) for r in batch
            )


async def list_dead_letters(
    connection: dict[str, Any], names: TopicNames, topic: str, reason: str
) -> int:
    consumer, records = await read_dead_letters(
        connection, names(dead_letter_topic(topic)), group_id=None
    )
    await consumer.stop()
    shown = [r for r in records if not reason or r.header("dlq-reason") == reason]
    for record in shown:
        print(
            f"offset {record.offset}  key {(record.key or b'').decode(errors='replace')}  "
            f"{record.header('dlq-reason')}: {record.header('dlq-detail')}  "
            f"(from {record.header('dlq-source-topic')} "
            f"{record.header('dlq-source-partition')}/{record.header('dlq-source-offset')}, "
            f"{record.header('dlq-failed-at')})"
        )
    print(f"{len(shown)} dead letters" + (f" with reason {reason}" if reason else ""))
    return len(shown)


async def replay_dead_letters(
    connection: dict[str, Any], names: TopicNames, topic: str, reason: str
) -> int:
    """Republishes the dead letters (of one reason, or all); returns how many.

    `connection` is servicekit.kafka.client_options of the operator principal, who may read
    every dead-letter topic and write every source topic (servicekit.access)."""
    # A filtered replay must not move the group past the records it leaves out.
    group = None if reason else names.group(f"operators.dlq-replay.{topic}")
    consumer, records = await read_dead_letters(
        connection, names(dead_letter_topic(topic)), group_id=group
    )
    producer = AIOKafkaProducer(**connection, acks="all", enable_idempotence=True)
    await producer.start()
    replayed = 0
    try:
        for record in records:
            if reason and record.header("dlq-reason") != reason:
                continue
            await producer.send(
                names(topic), record.value, key=record.key, headers=record.original_headers
            )
            replayed += 1
        await producer.flush()
        if group is not None:
            # Only after every republished record is acknowledged does the replay move on.
            await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
    return replayed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("command", choices=["list", "replay"])
    parser.add_argument("--topic", required=True, help="source topic, e.g. fleet.telemetry.v1")
    parser.add_argument("--reason", default="", help="only dead letters with this dlq-reason")
    parser.add_argument("--namespace", default=os.environ.get("TOPIC_NAMESPACE", ""))
    arguments = parser.parse_args(argv)
    # As the operator on the local development broker, or as the environment's KAFKA_USERNAME.
    connection = tool_connection("operator")
    names = TopicNames(arguments.namespace)
    if arguments.command == "list":
        asyncio.run(list_dead_letters(connection, names, arguments.topic, arguments.reason))
    else:
        count = asyncio.run(
            replay_dead_letters(connection, names, arguments.topic, arguments.reason)
        )
        print(f"replayed {count} dead letters to {names(arguments.topic)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
