"""Who may do what on Kafka: the one list of principals and their rights.

The local broker's users and ACLs (deploy/local), the Kubernetes KafkaUsers (deploy/k8s) and
docs/security.md are made from, or checked against, this list. A principal may write (produce
to) its `writes` topics, read its `reads` topics, and join only consumer groups whose names
start with one of its `groups`; consumers also write the dead-letter topics of what they read,
since that is where their poison goes. Topic and group names are the catalogue's; a platform
under a TOPIC_NAMESPACE prefixes both.
"""

from __future__ import annotations

from dataclasses import dataclass

from servicekit import topics


@dataclass(frozen=True)
class KafkaPrincipal:
    name: str
    description: str
    writes: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    # Compacted topics read whole, without a group, into read models (servicekit.read_model).
    read_models: tuple[str, ...] = ()
    # Consumers dead-letter what they cannot process into `<topic>.dlq` of what they read.
    writes_dead_letters: bool = False
    # Operators replay dead letters: they read every `.dlq` and write back to its source.
    replays_dead_letters: bool = False

    def produces(self) -> tuple[str, ...]:
        dead_letters = tuple(topics.dead_letter_topic(t) for t in self.reads)
        return self.writes + (dead_letters if self.writes_dead_letters else ())

    def consumes(self) -> tuple[str, ...]:
        if not self.replays_dead_letters:
            return self.reads + self.read_models
        return (
            self.reads
            + self.read_models
            + tuple(topics.dead_letter_topic(spec.name) for spec in topics.CATALOGUE)
        )


ADMIN = "platform-admin"

KAFKA_PRINCIPALS: tuple[KafkaPrincipal, ...] = (
    KafkaPrincipal(
        "partner-registry",
        "the partner registry service: publishes the partner changelog",
        writes=(topics.PARTNERS,),
    ),
    KafkaPrincipal(
        "locker-hubs",
        "the locker hubs service: publishes deposits and collections",
        writes=(topics.LOCKER_EVENTS,),
        read_models=(topics.PARTNERS,),
    ),
    KafkaPrincipal(
        "fleet-telemetry",
        "the fleet telemetry service: reads samples, publishes activity and data quality",
        writes=(topics.ACTIVITY, topics.QUALITY),
        reads=(topics.TELEMETRY,),
        groups=("fleet-telemetry",),
        read_models=(topics.PARTNERS,),
        writes_dead_letters=True,
    ),
    KafkaPrincipal(
        "emissions-ledger",
        "the emissions ledger: reads activity and locker events, publishes ledger entries",
        writes=(topics.LEDGER_ENTRIES,),
        reads=(topics.ACTIVITY, topics.LOCKER_EVENTS),
        groups=("emissions-ledger.activity", "emissions-ledger.lockers"),
        read_models=(topics.PARTNERS,),
        writes_dead_letters=True,
    ),
    KafkaPrincipal(
        "telematics-unit",
        "vehicle telematics units (and their gateways): only write telemetry samples",
        writes=(topics.TELEMETRY,),
    ),
    KafkaPrincipal(
        "box-telematics",
        "the locker boxes' own telematics: only write locker events",
        writes=(topics.LOCKER_EVENTS,),
    ),
    KafkaPrincipal(
        "dashboard",
        "dashboards and the stream gateway: read the public streams, write nothing",
        reads=(
            topics.PARTNERS,
            topics.ACTIVITY,
            topics.QUALITY,
            topics.LOCKER_EVENTS,
            topics.LEDGER_ENTRIES,
        ),
        groups=("dashboard",),
    ),
    KafkaPrincipal(
        "operator",
        "platform operators: read dead letters and replay them to their source topic",
        writes=tuple(spec.name for spec in topics.CATALOGUE),
        groups=("operator",),
        replays_dead_letters=True,
    ),
)


def kafka_principal(name: str) -> KafkaPrincipal:
    for principal in KAFKA_PRINCIPALS:
        if principal.name == name:
            return principal
    raise KeyError(f"no Kafka principal named {name!r}")
