"""Who may do what on Kafka: the one list of principals and their rights.

The local broker's users and ACLs (deploy/local), the Kubernetes KafkaUsers (deploy/k8s) and
docs/security.md are made from, or checked against, this list. A principal may write (produce
to) its `writes` topics, read its `reads` topics, and join only consumer groups whose names
start with one of its `groups`; consumers also write the dead-letter topics of what they read,
since that is where their poison goes. Topic and group names are the catalogue's; a platform
under a TOPIC_NAMESPACE prefixes both.

`acl_bindings(namespace)` turns the list into the broker's ACLs: ALLOW WRITE or READ on each
topic by its literal name, ALLOW READ on each consumer group prefix, and nothing else (no
CREATE, ALTER, DELETE or cluster rights: topics are provisioned by the admin). An idempotent
producer needs no IDEMPOTENT_WRITE on the cluster since its WRITE on a topic suffices (KIP-679).
"""

from __future__ import annotations

from dataclasses import dataclass

from servicekit import topics
from servicekit.topics import TopicNames


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
        # tools.dlq replays in the groups operators.dlq-replay.<topic>
        groups=("operators.",),
        replays_dead_letters=True,
    ),
)


# Services that log in as a principal not named after them; the others use their own name.
SERVICE_PRINCIPALS = {"stream-gateway": "dashboard"}


def service_principal(service: str) -> str:
    """The Kafka principal a service of the platform runs as."""
    return SERVICE_PRINCIPALS.get(service, service)


def kafka_principal(name: str) -> KafkaPrincipal:
    for principal in KAFKA_PRINCIPALS:
        if principal.name == name:
            return principal
    raise KeyError(f"no Kafka principal named {name!r}")


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ALLOW rule as the broker stores it (Kafka's ResourcePattern + AccessControlEntry)."""

    principal: str  # "User:<name>"
    resource_type: str  # "TOPIC" | "GROUP"
    resource_name: str
    pattern_type: str  # "LITERAL" | "PREFIXED"
    operation: str  # "READ" | "WRITE"
    host: str = "*"
    permission: str = "ALLOW"


def acl_bindings(namespace: str = "") -> list[AclBinding]:
    """Every ACL the principals need on the platform under `namespace` ("" for the catalogue's
    own names), sorted; nothing for the admin, a super user."""
    names = TopicNames(namespace)
    bindings = set()
    for principal in KAFKA_PRINCIPALS:
        user = f"User:{principal.name}"
        for topic in principal.produces():
            bindings.add(AclBinding(user, "TOPIC", names(topic), "LITERAL", "WRITE"))
        for topic in principal.consumes():
            bindings.add(AclBinding(user, "TOPIC", names(topic), "LITERAL", "READ"))
        for group in principal.groups:
            bindings.add(AclBinding(user, "GROUP", names.group(group), "PREFIXED", "READ"))
    return sorted(bindings)


def managed_resources(namespace: str = "") -> set[tuple[str, str, str]]:
    """The (type, name, pattern type) resources whose ACLs `acl_bindings(namespace)` decides: any
    other ACL on them is drift, and ACLs elsewhere are none of this list's business."""
    names = TopicNames(namespace)
    resources = {("TOPIC", spec.name, "LITERAL") for spec in names.all_specs()}
    for principal in KAFKA_PRINCIPALS:
        resources.update(("GROUP", names.group(group), "PREFIXED") for group in principal.groups)
    return resources
