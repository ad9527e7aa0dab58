"""Test-side Kafka tools: a broker for the run, producing raw events, reading topics.

The broker requires SASL/SCRAM: the tests log in as platform-admin (a super user) unless a test
names another principal of servicekit.access.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from google.protobuf.message import Message

from servicekit.access import ADMIN
from servicekit.codec import event_headers
from tools import kafka_access

ROOT = Path(__file__).resolve().parents[1]


KAFKA_SCRIPT = ROOT / "deploy/local/kafka.sh"


def start_broker() -> tuple[str, bool]:
    """The broker for this test run: KAFKA_BOOTSTRAP_SERVERS, or the local one (on KAFKA_PORT,
    default 9092), with the users and the catalogue's ACLs applied.

    Unless the environment names a Kafka user already, this process (and the services it
    starts) then logs in as platform-admin. Returns the broker's address and whether this call
    started it (and so should stop it).
    """
    started = kafka_access.start_local_broker()
    servers = kafka_access.local_bootstrap()
    if kafka_access.uses_principals() and not os.environ.get("KAFKA_USERNAME"):
        identity = kafka_access.principal_environment(ADMIN, servers)
        # Tests pass the address themselves; kafka.sh must still see the local broker as local.
        del identity["KAFKA_BOOTSTRAP_SERVERS"]
        os.environ.update(identity)
    if kafka_access.uses_principals():
        asyncio.run(kafka_access.apply(""))
    return servers, started


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
    admin = AIOKafkaAdminClient(**connection(servers))
    await admin.start()
    try:
        prefixes = tuple(f"{namespace}." for namespace in namespaces)
        doomed = [topic for topic in await admin.list_topics() if topic.startswith(prefixes)]
        for start in range(0, len(doomed), 200):
            await admin.delete_topics(doomed[start : start + 200])
        return len(doomed)
    finally:
        await admin.close()


def connection(servers: str, user: str = ADMIN) -> dict[str, Any]:
    """aiokafka keyword arguments for `servers`, as the admin or as another principal."""
    return kafka_access.connection_as(user, servers)


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
    user: str = ADMIN,
) -> None:
    producer = AIOKafkaProducer(**connection(servers, user), acks="all", enable_idempotence=True)
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
    user: str = ADMIN,
) -> list[Record]:
    """Reads a topic from the beginning until `done(records)` holds or the time is up."""
    consumer = AIOKafkaConsumer(
        topic,
        **connection(servers, user),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    try:
        await consumer.start()
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
