"""The partner registry's changelog without the registry: its seed, as the registry publishes it
at its first start, put into a namespace's registry.partners.v1.

Services that keep a read model of the changelog (fleet-telemetry, the ledger, locker-hubs)
know no partner until it holds records. A test or benchmark that runs them without a registry
publishes the seed with this instead: one producer, no service, no database.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from greenpartners.registry.v1 import registry_pb2
from partner_registry.adapters.data_files import load_seed
from partner_registry.adapters.events import (
    initiative_changed_event,
    initiative_key,
    partner_changed_event,
)
from servicekit import topics
from servicekit.codec import event_headers
from servicekit.topics import TopicNames, ensure_topics


def seed_changelog() -> list[tuple[str, registry_pb2.PartnerChanged]]:
    """(key, record) of every initiative and partner of the seed, at revision 1."""
    initiatives, partners = load_seed()
    now = datetime.now(UTC)
    return [
        (initiative_key(i.initiative_id), initiative_changed_event(i, str(uuid.uuid4()), now))
        for i in initiatives
    ] + [(p.partner_id, partner_changed_event(p, str(uuid.uuid4()), now)) for p in partners]


async def publish_partner_changes(
    servers: str,
    namespace: str,
    changes: Sequence[tuple[str, registry_pb2.PartnerChanged | None]],
) -> None:
    """Publishes records (None: a tombstone) to the namespace's partner changelog, creating
    the namespace's topics first."""
    names = TopicNames(namespace)
    await ensure_topics(servers, names.all_specs())
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, event in changes:
            await producer.send(
                names(topics.PARTNERS),
                None if event is None else event.SerializeToString(),
                key=key.encode(),
                headers=[]
                if event is None
                else [(name, value.encode()) for name, value in event_headers(event).items()],
            )
        await producer.flush()
    finally:
        await producer.stop()


async def publish_registry_seed(servers: str, namespace: str) -> None:
    """The registry's seed on the namespace's registry.partners.v1, as a registry would have
    published it."""
    await publish_partner_changes(servers, namespace, seed_changelog())
