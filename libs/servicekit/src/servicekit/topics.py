"""The topic catalogue, and creating topics on the broker."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

log = logging.getLogger(__name__)

PARTNERS = "registry.partners.v1"
TELEMETRY = "fleet.telemetry.v1"
ACTIVITY = "fleet.activity.v1"
QUALITY = "fleet.quality.v1"
LOCKER_EVENTS = "lockers.events.v1"
LEDGER_ENTRIES = "ledger.entries.v1"

DLQ_SUFFIX = ".dlq"

# The broker's default max.message.bytes, which the catalogue's topics keep: no record on them
# is larger. A dead letter is such a record plus the dlq-* headers (a few KiB at most), so the
# dead-letter topics take 64 KiB more, and the producer may send that much
# (servicekit.kafka.MAX_RECORD_BYTES): any record that was consumed can be dead-lettered.
SOURCE_MAX_MESSAGE_BYTES = 1_048_588
DEAD_LETTER_MAX_MESSAGE_BYTES = SOURCE_MAX_MESSAGE_BYTES + 64 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 3
    configs: dict[str, str] = field(default_factory=dict)


CATALOGUE: tuple[TopicSpec, ...] = (
    TopicSpec(PARTNERS, partitions=1, configs={"cleanup.policy": "compact"}),
    TopicSpec(TELEMETRY, partitions=6),
    TopicSpec(ACTIVITY),
    TopicSpec(QUALITY),
    TopicSpec(LOCKER_EVENTS),
    TopicSpec(LEDGER_ENTRIES),
)


def dead_letter_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


class TopicNames:
    """Maps catalogue names to the names used on the broker, under an optional namespace."""

    def __init__(self, namespace: str = "") -> None:
        self.namespace = namespace

    def __call__(self, topic: str) -> str:
        return f"{self.namespace}.{topic}" if self.namespace else topic

    def group(self, group_id: str) -> str:
        return f"{self.namespace}.{group_id}" if self.namespace else group_id

    def all_specs(self) -> list[TopicSpec]:
        specs = []
        for spec in CATALOGUE:
            specs.append(TopicSpec(self(spec.name), spec.partitions, dict(spec.configs)))
            specs.append(
                TopicSpec(
                    self(dead_letter_topic(spec.name)),
                    spec.partitions,
                    {"max.message.bytes": str(DEAD_LETTER_MAX_MESSAGE_BYTES)},
                )
            )
        return specs


async def ensure_topics(connection: dict[str, Any], specs: Iterable[TopicSpec]) -> None:
    """Creates the topics that do not exist yet; existing ones are left as they are.

    `connection` is servicekit.kafka.client_options(...). Under ACLs a principal sees only the
    topics it may use and may create none: those it cannot see are not its business, and one it
    can see but is missing stops the start, since only provisioning
    (`python -m tools.kafka_access apply`) creates topics then.
    """
    wanted = {spec.name: spec for spec in specs}
    admin = AIOKafkaAdminClient(**connection)
    await admin.start()
    try:
        described = await admin.describe_topics(list(wanted))
        missing = [
            wanted[topic["topic"]]
            for topic in described
            if topic["error_code"] == UnknownTopicOrPartitionError.errno
        ]
        if not missing:
            return
        response = await admin.create_topics(
            [
                NewTopic(spec.name, spec.partitions, 1, topic_configs=spec.configs)
                for spec in missing
            ]
        )
        refused = [
            name
            for name, error_code, *_ in response.topic_errors
            # Another service may create them at the same moment.
            if error_code not in (0, TopicAlreadyExistsError.errno)
        ]
        if refused:
            raise RuntimeError(
                f"topics {refused} do not exist and may not be created by this principal: "
                "provision them (python -m tools.kafka_access apply)"
            )
        log.info("created topics %s", [spec.name for spec in missing])
    finally:
        await admin.close()
