"""Test-side Kafka tools: a broker for the run, producing raw events, reading topics."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from google.protobuf.message import Message

from servicekit.codec import event_headers

ROOT = Path(__file__).resolve().parents[1]


KAFKA_SCRIPT = ROOT / "deploy/local/kafka.sh"


def start_broker() -> tuple[str, bool]:
    """The broker for this test run: KAFKA_BOOTSTRAP_SERVERS, or the local one.

    Returns its address and whether this call started it (and so should stop it).
    """
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        return configured, False
    already_running = (
        subprocess.run(["bash", str(KAFKA_SCRIPT), "status"], capture_output=True).returncode == 0
    )
    if not already_running:
        subprocess.run(["bash", str(KAFKA_SCRIPT), "up"], check=True)
    return "127.0.0.1:9092", not already_running


def stop_broker() -> None:
    subprocess.run(["bash", str(KAFKA_SCRIPT), "down"], check=True)


# Every namespace this test run made up: their topics are deleted when the run ends, so a
# developer's broker does not collect thousands of partitions run after run.
NAMESPACES_USED: set[str] = set()


def unique_namespace(prefix: str = "t") -> str:
    namespace = f"{prefix}{uuid.uuid4().hex[:10]}"
    NAMESPACES_USED.add(namespace)
    return namespace


async def delete_namespaced_topics(servers: str, namespaces: set[str]) -> int:
    """Deletes the topics of the namespaces; how many there were."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        prefixes = tuple(f"{namespace}." for namespace in namespaces)
        doomed = [topic for topic in await admin.list_topics() if topic.startswith(prefixes)]
        for start in range(0, len(doomed), 200):
            await admin.delete_topics(doomed[start : start + 200])
        return len(doomed)
    finally:
        await admin.close()


@dataclass(frozen=True)
class Record:
    key: str
    value: bytes
    headers: dict[str, str]


async def produce(
    servers: str,
    topic: str,
    key: str,
    message: Message | bytes,
    headers: dict[str, str] | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        if isinstance(message, Message):
            payload = message.SerializeToString()
            all_headers = {**event_headers(message), **(headers or {})}
        else:
            payload = message
            all_headers = dict(headers or {})
        await producer.send_and_wait(
            topic,
            payload,
            key=key.encode(),
            headers=[(name, value.encode()) for name, value in all_headers.items()],
        )
    finally:
        await producer.stop()


async def read_until(
    servers: str,
    topic: str,
    done: Callable[[list[Record]], bool],
    timeout_s: float = 30.0,
) -> list[Record]:
    """Reads a topic from the beginning until `done(records)` holds or the time is up."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not done(records) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for batch in batches.values():
                for raw in batch:
                    records.append(
                        Record(
                            key=(raw.key or b"").decode(),
                            value=raw.value or b"",
                            headers={k: v.decode() for k, v in raw.headers},
                        )
                    )
    finally:
        await consumer.stop()
    return records


async def eventually(check: Callable[[], object], timeout_s: float = 30.0) -> None:
    """Polls an async or sync check until it stops raising AssertionError."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                await result
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
