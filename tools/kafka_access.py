"""Kafka users, topics and ACLs from servicekit.access, applied to the broker as platform-admin.

    python -m tools.kafka_access apply  [--namespace NS]   users, the namespace's topics, its ACLs
    python -m tools.kafka_access check  [--namespace NS]   exit 1 unless the broker's ACLs match
    python -m tools.kafka_access show   [--namespace NS]   the ACLs the list makes
    python -m tools.kafka_access revoke --namespace NS     remove a namespace's ACLs (tests, demos)
    python -m tools.kafka_access table                     the principals as in docs/security.md

`apply` is idempotent: every principal's SCRAM credential is set from its password file
(generated once into KAFKA_CREDENTIALS_DIR, default var/kafka-credentials, mode 600), the
namespace's catalogue topics are created if missing, missing ACLs are created, and ACLs on the
namespace's topics and group prefixes that the list does not make are deleted.

The admin logs in as KAFKA_USERNAME with KAFKA_PASSWORD(_FILE) when KAFKA_SECURITY_PROTOCOL is
set, otherwise as platform-admin with its development password to the local broker.
aiokafka's admin client has no ACL or SCRAM calls, so this module sends those Kafka requests
itself through aiokafka's connection (a few milliseconds; Kafka's AclCommand and ConfigCommand
take seconds of JVM start per call).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import secrets
import string
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)
from pydantic import ValidationError

from servicekit import access
from servicekit.access import AclBinding, acl_bindings, managed_resources
from servicekit.kafka import client_options
from servicekit.settings import ConfigurationError, KafkaSettings, describe_validation_error
from servicekit.topics import TopicNames, ensure_topics

ROOT = Path(__file__).resolve().parents[1]

# Kafka's numbering of resource types, pattern types, operations and permissions.
RESOURCE_TYPES = {"ANY": 1, "TOPIC": 2, "GROUP": 3}
PATTERN_TYPES = {"ANY": 1, "MATCH": 2, "LITERAL": 3, "PREFIXED": 4}
OPERATIONS = {"ANY": 1, "READ": 3, "WRITE": 4}
PERMISSIONS = {"ANY": 1, "ALLOW": 3}
SCRAM_MECHANISMS = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
# Kafka accepts 4096 to 16384 iterations for SCRAM-SHA-512.
SCRAM_ITERATIONS = 4096


def _name(numbers: dict[str, int], number: int) -> str:
    return next((name for name, value in numbers.items() if value == number), str(number))


# ----------------------------------------------------------------------------- identities


def credentials_dir() -> Path:
    return Path(os.environ.get("KAFKA_CREDENTIALS_DIR") or ROOT / "var" / "kafka-credentials")


def password_file(user: str) -> Path:
    return credentials_dir() / user


def ensure_password(user: str) -> Path:
    """The user's development password file, generated once (letters and digits, mode 600)."""
    path = password_file(user)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        alphabet = string.ascii_letters + string.digits
        password = "".join(secrets.choice(alphabet) for _ in range(40))
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(password + "\n")
    return path


KAFKA_SCRIPT = ROOT / "deploy/local/kafka.sh"
# `kafka.sh status` when a broker answers but not to this checkout's admin: without SASL (an
# older checkout's configuration), or refusing the admin's password.
STATUS_PLAINTEXT, STATUS_REFUSED = 10, 11


def start_local_broker() -> bool:
    """Brings the local broker up (`kafka.sh up`) unless KAFKA_BOOTSTRAP_SERVERS names another.
    True when no broker was running before, so that the caller stops it again."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return False
    status = subprocess.run(["bash", str(KAFKA_SCRIPT), "status"], capture_output=True)
    if status.returncode == 0:
        return False
    subprocess.run(["bash", str(KAFKA_SCRIPT), "up"], check=True)
    return status.returncode not in (STATUS_PLAINTEXT, STATUS_REFUSED)


def local_bootstrap() -> str:
    """The broker deploy/local/kafka.sh runs (KAFKA_PORT), unless KAFKA_BOOTSTRAP_SERVERS."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or (
        f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
    )


class KafkaToolSettings(KafkaSettings):
    """The Kafka variables of ServiceSettings, for tools that are not services."""


def principal_environment(user: str, bootstrap: str | None = None) -> dict[str, str]:
    """Environment variables that log in as `user` with its password file from
    KAFKA_CREDENTIALS_DIR, over the environment's SASL protocol (SASL_PLAINTEXT by default), to
    `bootstrap` (default: the local broker)."""
    protocol = os.environ.get("KAFKA_SECURITY_PROTOCOL", "")
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap or local_bootstrap(),
        "KAFKA_SECURITY_PROTOCOL": protocol if protocol.startswith("SASL") else "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_USERNAME": user,
        "KAFKA_PASSWORD": "",  # the file's, not one the environment may hold for another user
        "KAFKA_PASSWORD_FILE": str(ensure_password(user)),
    }


def uses_principals() -> bool:
    """False only when the environment says PLAINTEXT: a broker without users or ACLs."""
    return os.environ.get("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT") != "PLAINTEXT"


def _settings(overrides: dict[str, str]) -> KafkaToolSettings:
    try:
        return KafkaToolSettings.model_validate(
            {name.lower(): value for name, value in overrides.items()}
        )
    except ValidationError as error:
        print(describe_validation_error(error), file=sys.stderr)
        raise ConfigurationError(2) from error


def principal_settings(user: str, bootstrap: str | None = None) -> KafkaToolSettings:
    """Kafka settings of `user` with its development password (see principal_environment)."""
    return _settings(principal_environment(user, bootstrap))


def tool_settings(default_user: str, bootstrap: str | None = None) -> KafkaToolSettings:
    """A tool's Kafka settings: the environment's when it names a user (or says PLAINTEXT),
    otherwise `default_user` with its development password on the local broker."""
    if os.environ.get("KAFKA_USERNAME") or not uses_principals():
        return _settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap or local_bootstrap()})
    return principal_settings(default_user, bootstrap)


def tool_connection(default_user: str, bootstrap: str | None = None) -> dict[str, Any]:
    return client_options(tool_settings(default_user, bootstrap))


def connection_as(user: str, bootstrap: str | None = None) -> dict[str, Any]:
    """aiokafka keyword arguments that log in as `user` with its development password; the
    admin as the environment says when it names a user; plain ones when it says PLAINTEXT."""
    if user == access.ADMIN or not uses_principals():
        return tool_connection(user, bootstrap)
    return client_options(principal_settings(user, bootstrap))


# ----------------------------------------------------------------------------- wire requests
# aiokafka ships the request layouts of CreateAcls, DescribeAcls and DeleteAcls (version 1,
# which Kafka 4 still serves) but no admin calls for them; AlterUserScramCredentials it lacks.


def _wire_binding(binding: AclBinding) -> tuple[int, str, int, str, str, int, int]:
    """A binding as CreateAcls and DeleteAcls (version 1) both lay it out."""
    return (
        RESOURCE_TYPES[binding.resource_type],
        binding.resource_name,
        PATTERN_TYPES[binding.pattern_type],
        binding.principal,
        binding.host,
        OPERATIONS[binding.operation],
        PERMISSIONS[binding.permission],
    )


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 30

    def __init__(self, bindings: Sequence[AclBinding]) -> None:
        self.bindings = bindings

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class([_wire_binding(b) for b in self.bindings])


class _DescribeAllAcls(Request[DescribeAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 29

    def build(self, request_struct_class: type[DescribeAclsRequest_v1]) -> DescribeAclsRequest_v1:
        any_ = 1
        return request_struct_class(any_, None, any_, None, None, any_, any_)


class _DeleteAcls(Request[DeleteAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 31

    def __init__(self, bindings: Sequence[AclBinding]) -> None:
        self.bindings = bindings

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class([_wire_binding(b) for b in self.bindings])


class _AlterUserScramCredentialsResponse(Response):  # type: ignore[misc]
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterUserScramCredentialsRequest(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterUserScramCredentialsResponse
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("tags", TaggedFields),
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _UpsertScramCredentials(Request[_AlterUserScramCredentialsRequest]):  # type: ignore[misc]
    API_KEY = 51

    def __init__(self, passwords: dict[str, str], mechanism: str) -> None:
        self.passwords = passwords
        self.mechanism = mechanism

    def build(
        self, request_struct_class: type[_AlterUserScramCredentialsRequest]
    ) -> _AlterUserScramCredentialsRequest:
        digest = self.mechanism.removeprefix("SCRAM-").replace("-", "").lower()  # sha512
        upsertions: list[tuple[str, int, int, bytes, bytes, dict[int, bytes]]] = []
        for user, password in self.passwords.items():
            salt = secrets.token_bytes(32)
            salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, SCRAM_ITERATIONS)
            upsertions.append(
                (user, SCRAM_MECHANISMS[self.mechanism], SCRAM_ITERATIONS, salt, salted, {})
            )
        return request_struct_class([], upsertions, {})


# ----------------------------------------------------------------------------- admin


class KafkaAccessAdmin:
    """Users and ACLs on the broker, through an aiokafka admin client's connection."""

    def __init__(self, connection: dict[str, Any]) -> None:
        self.connection = connection
        self.admin = AIOKafkaAdminClient(**connection)

    async def __aenter__(self) -> KafkaAccessAdmin:
        await self.admin.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.admin.close()

    async def _send(self, request: Request[Any]) -> Any:
        return await self.admin._send_request(request)

    async def set_passwords(self, passwords: dict[str, str], mechanism: str) -> None:
        response = await self._send(_UpsertScramCredentials(passwords, mechanism))
        failed = [(user, error, message) for user, error, message, _ in response.results if error]
        if failed:
            raise RuntimeError(f"setting SCRAM credentials failed: {failed}")

    async def acls(self) -> set[AclBinding]:
        response = await self._send(_DescribeAllAcls())
        if response.error_code:
            raise RuntimeError(f"DescribeAcls failed: {response.error_message}")
        return {
            AclBinding(
                principal=principal,
                resource_type=_name(RESOURCE_TYPES, resource_type),
                resource_name=resource_name,
                pattern_type=_name(PATTERN_TYPES, pattern_type),
                operation=_name(OPERATIONS, operation),
                host=host,
                permission=_name(PERMISSIONS, permission),
            )
            for resource_type, resource_name, pattern_type, entries in response.resources
            for principal, host, operation, permission in entries
        }

    async def wait_for(
        self, namespace: str, wanted: set[AclBinding], timeout_s: float = 120.0
    ) -> None:
        """Until the broker enforces exactly `wanted` on the namespace's resources: the
        controller commits ACL changes, the broker applies them a moment later."""
        deadline = time.monotonic() + timeout_s
        while in_scope(await self.acls(), namespace) != wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker's ACLs of namespace {namespace!r} did not settle")
            await asyncio.sleep(0.05)

    async def create_acls(self, bindings: Iterable[AclBinding]) -> None:
        bindings = list(bindings)
        if not bindings:
            return
        response = await self._send(_CreateAcls(bindings))
        failed = [
            (binding, message)
            for binding, (error, message) in zip(bindings, response.creation_responses, strict=True)
            if error
        ]
        if failed:
            raise RuntimeError(f"CreateAcls failed: {failed}")

    async def delete_acls(self, bindings: Iterable[AclBinding]) -> None:
        bindings = list(bindings)
        if not bindings:
            return
        response = await self._send(_DeleteAcls(bindings))
        failed = [message for error, message, _ in response.filter_responses if error]
        if failed:
            raise RuntimeError(f"DeleteAcls failed: {failed}")


def in_scope(bindings: Iterable[AclBinding], namespace: str) -> set[AclBinding]:
    """The ACLs on the resources the namespace's generated bindings decide."""
    resources = managed_resources(namespace)
    return {b for b in bindings if (b.resource_type, b.resource_name, b.pattern_type) in resources}


async def apply(namespace: str = "", connection: dict[str, Any] | None = None) -> dict[str, int]:
    """Users, the namespace's topics and ACLs, as KAFKA_PRINCIPALS says; idempotent."""
    connection = connection or tool_connection(access.ADMIN)
    passwords = {
        principal.name: ensure_password(principal.name).read_text().rstrip("\n")
        for principal in access.KAFKA_PRINCIPALS
    }
    wanted = set(acl_bindings(namespace))
    async with KafkaAccessAdmin(connection) as admin:
        await admin.set_passwords(passwords, "SCRAM-SHA-512")
        present = in_scope(await admin.acls(), namespace)
        await admin.create_acls(sorted(wanted - present))
        await admin.delete_acls(sorted(present - wanted))
        await admin.wait_for(namespace, wanted)
    await ensure_topics(connection, TopicNames(namespace).all_specs())
    return {
        "users": len(passwords),
        "acls": len(wanted),
        "created": len(wanted - present),
        "deleted": len(present - wanted),
    }


async def broker_acls(
    namespace: str = "", connection: dict[str, Any] | None = None
) -> set[AclBinding]:
    """The broker's ACLs on the namespace's resources."""
    async with KafkaAccessAdmin(connection or tool_connection(access.ADMIN)) as admin:
        return in_scope(await admin.acls(), namespace)


async def revoke(namespace: str, connection: dict[str, Any] | None = None) -> int:
    async with KafkaAccessAdmin(connection or tool_connection(access.ADMIN)) as admin:
        present = in_scope(await admin.acls(), namespace)
        await admin.delete_acls(sorted(present))
        await admin.wait_for(namespace, set())
    return len(present)


def principal_table() -> str:
    """The principals and their rights as a Markdown table (docs/security.md holds it)."""

    def topics_list(names: Iterable[str]) -> str:
        return ", ".join(f"`{name}`" for name in names)

    rows = [
        "| Principal | Who | Writes | Reads | Consumer groups (prefix) |",
        "|---|---|---|---|---|",
        f"| `{access.ADMIN}` | tooling and tests (super user) | everything | everything | any |",
    ]
    for principal in access.KAFKA_PRINCIPALS:
        writes = topics_list(principal.writes)
        if principal.writes_dead_letters:
            writes += ", and the `.dlq` of each topic it reads"
        reads = topics_list(principal.reads)
        if principal.replays_dead_letters:
            reads = ", ".join(filter(None, [reads, "every `<topic>.dlq`"]))
        rows.append(
            f"| `{principal.name}` | {principal.description} | {writes or '-'} | "
            f"{reads or '-'} | {topics_list(principal.groups) or '-'} |"
        )
    return "\n".join(rows)


def format_binding(binding: AclBinding) -> str:
    return (
        f"{binding.permission} {binding.principal:<22} {binding.operation:<5} "
        f"{binding.resource_type} {binding.pattern_type.lower()} {binding.resource_name}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("command", choices=["apply", "check", "show", "revoke", "table"])
    parser.add_argument("--namespace", default=os.environ.get("TOPIC_NAMESPACE", ""))
    arguments = parser.parse_args(argv)
    namespace = arguments.namespace
    if arguments.command == "table":
        print(principal_table())
        return 0
    if arguments.command == "show":
        for binding in acl_bindings(namespace):
            print(format_binding(binding))
        return 0
    if arguments.command == "apply":
        started = time.perf_counter()
        summary = asyncio.run(apply(namespace))
        print(
            f"{summary['users']} users, {summary['acls']} ACLs for namespace {namespace!r} "
            f"({summary['created']} created, {summary['deleted']} deleted) and its topics, "
            f"in {time.perf_counter() - started:.2f} s"
        )
        return 0
    if arguments.command == "revoke":
        if not namespace:
            parser.error("revoke needs --namespace (the catalogue's own ACLs stay)")
        print(f"deleted {asyncio.run(revoke(namespace))} ACLs of namespace {namespace!r}")
        return 0
    present = asyncio.run(broker_acls(namespace))
    wanted = set(acl_bindings(namespace))
    for binding in sorted(wanted - present):
        print("missing  " + format_binding(binding))
    for binding in sorted(present - wanted):
        print("extra    " + format_binding(binding))
    if present != wanted:
        return 1
    print(f"the broker's ACLs for namespace {namespace!r} match servicekit.access ({len(wanted)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
