"""Writes the AsyncAPI documents from the code: the Kafka topics (servicekit.topics.CATALOGUE,
the protos' messages, who produces and consumes each in servicekit.access) and the stream
gateway's Server-Sent Events streams (stream_gateway.adapters.catalogue).

    python -m tools.asyncapi           writes docs/asyncapi/topics.yaml and streams.yaml
    python -m tools.asyncapi --check   fails when either file differs from what the code says
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.ledger.v1 import ledger_pb2
from greenpartners.lockers.v1 import lockers_pb2
from greenpartners.registry.v1 import registry_pb2
from servicekit import access, topics
from servicekit.codec import CONTENT_TYPE
from stream_gateway.adapters.catalogue import EVENT_STREAMS, STATE_STREAMS, EventStream
from stream_gateway.entrypoints.access import SESSION_COOKIE

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "asyncapi"
ASYNCAPI = "3.0.0"

# The one message type of each topic, and what its records are keyed by.
TOPIC_MESSAGES: dict[str, tuple[type[Message], str]] = {
    topics.PARTNERS: (registry_pb2.PartnerChanged, "partner id"),
    topics.TELEMETRY: (fleet_pb2.TelemetrySample, "vehicle id"),
    topics.ACTIVITY: (fleet_pb2.VehicleActivity, "vehicle id"),
    topics.QUALITY: (fleet_pb2.TelemetryQualityEvent, "vehicle id"),
    topics.LOCKER_EVENTS: (lockers_pb2.LockerEvent, "hub id"),
    topics.LEDGER_ENTRIES: (ledger_pb2.LedgerEntryPosted, "municipality id"),
}

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "uint32"},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "format": "uint32"},
    # 64-bit integers are strings in protobuf's JSON mapping.
    FieldDescriptor.TYPE_INT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_SINT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FieldDescriptor.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
_WELL_KNOWN = {"google.protobuf.Timestamp": {"type": "string", "format": "date-time"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


class SchemaSet:
    """JSON Schemas of protobuf messages in protobuf's JSON mapping, one per message."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def add(self, descriptor: Descriptor | Any) -> dict[str, Any]:
        name = descriptor.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: messages may refer to each other
            properties = {field.json_name: self._field(field) for field in descriptor.fields}
            schema: dict[str, Any] = {
                "type": "object",
                "description": f"protobuf {name}",
                "properties": properties,
            }
            oneofs = [o for o in descriptor.oneofs if not o.name.startswith("_")]
            if oneofs:
                schema["description"] += "; " + "; ".join(
                    f"at most one of {', '.join(f.json_name for f in o.fields)}" for o in oneofs
                )
            self.schemas[name] = schema
        return _ref(name)

    def _field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            item = self.add(field.message_type)
        elif field.type == FieldDescriptor.TYPE_ENUM:
            values = field.enum_type.values if field.enum_type is not None else []
            item = {"type": "string", "enum": [value.name for value in values]}
        else:
            item = dict(_SCALARS[field.type])
        if field.is_repeated:
            return {"type": "array", "items": item}
        return item


def _headers() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "content-type": {"type": "string", "const": CONTENT_TYPE},
            "event-type": {"type": "string", "description": "full name of the protobuf message"},
            "traceparent": {"type": "string", "description": "W3C trace context"},
            "tracestate": {"type": "string"},
        },
        "required": ["content-type", "event-type"],
    }


def _dead_letter_headers() -> dict[str, Any]:
    names = [
        "dlq-reason",
        "dlq-detail",
        "dlq-source-topic",
        "dlq-source-partition",
        "dlq-source-offset",
        "dlq-consumer-group",
        "dlq-failed-at",
    ]
    headers = _headers()
    headers["properties"].update({name: {"type": "string"} for name in names})
    headers["required"] = headers["required"] + names
    return headers


def _channel_id(topic: str) -> str:
    return topic.replace(".", "-")


def topics_document() -> dict[str, Any]:
    missing = [spec.name for spec in topics.CATALOGUE if spec.name not in TOPIC_MESSAGES]
    if missing:
        raise SystemExit(f"tools/asyncapi.py: no message type for {missing}")
    schemas = SchemaSet()
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in topics.CATALOGUE:
        message_type, key = TOPIC_MESSAGES[spec.name]
        name = message_type.DESCRIPTOR.full_name
        message_id = name.replace(".", "-")
        messages[message_id] = {
            "name": name,
            "contentType": CONTENT_TYPE,
            "headers": _headers(),
            "payload": schemas.add(message_type.DESCRIPTOR),
            "bindings": {"kafka": {"key": {"type": "string", "description": key}}},
        }
        configs: dict[str, Any] = {"partitions": spec.partitions, "replicas": 1}
        if "cleanup.policy" in spec.configs:
            configs["topicConfiguration"] = {"cleanup.policy": [spec.configs["cleanup.policy"]]}
        channels[_channel_id(spec.name)] = {
            "address": spec.name,
            "description": f"One {name} per record, keyed by {key}.",
            "messages": {"event": {"$ref": f"#/components/messages/{message_id}"}},
            "bindings": {"kafka": {"topic": spec.name, **configs}},
        }
        dead_letter = topics.dead_letter_topic(spec.name)
        messages[message_id + "-dead-letter"] = {
            "name": f"{name} (dead letter)",
            "contentType": CONTENT_TYPE,
            "headers": _dead_letter_headers(),
            "payload": {
                "type": "string",
                "contentEncoding": "binary",
                "description": ("the source record's value, byte for byte"),
            },
            "bindings": {"kafka": {"key": {"type": "string", "description": key}}},
        }
        channels[_channel_id(dead_letter)] = {
            "address": dead_letter,
            "description": f"Records of {spec.name} a consumer could not process, unchanged, "
            "with the reason in dlq-* headers.",
            "messages": {"deadLetter": {"$ref": f"#/components/messages/{message_id}-dead-letter"}},
            "bindings": {"kafka": {"topic": dead_letter, "partitions": spec.partitions}},
        }
    operations: dict[str, Any] = {}
    for principal in access.KAFKA_PRINCIPALS:
        for verb, names in (("send", principal.produces()), ("receive", principal.consumes())):
            for topic in names:
                channel = _channel_id(topic)
                operation: dict[str, Any] = {
                    "action": verb,
                    "channel": {"$ref": f"#/channels/{channel}"},
                    "summary": f"{principal.name}: {principal.description}",
                    "x-kafka-principal": principal.name,
                }
                if verb == "receive" and principal.groups:
                    operation["bindings"] = {
                        "kafka": {
                            "groupId": {
                                "type": "string",
                                "description": "starts with one of: " + ", ".join(principal.groups),
                            }
                        }
                    }
                operations[f"{principal.name}-{verb}-{channel}"] = operation
    return {
        "asyncapi": ASYNCAPI,
        "info": {
            "title": "Green Partnerships Platform: Kafka topics",
            "version": "1",
            "description": (
                "Every topic of the platform, its message, key and headers, and which Kafka "
                "principal produces and consumes it. Generated by tools/asyncapi.py from "
                "servicekit.topics.CATALOGUE, the protos and servicekit.access; do not edit. "
                "Payloads are protobuf (application/x-protobuf); the schemas show their fields "
                "in protobuf's JSON mapping. A TOPIC_NAMESPACE prefixes every address."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "the local broker of make run (deploy/local)",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas.schemas},
    }


def _filter_parameters(names: Iterable[str]) -> dict[str, Any]:
    described = {
        "municipality": "a municipality id, e.g. aalborg-kommune",
        "year": "a reporting year",
        "sector": "greenpartners.ledger.v1.Sector, by name or short form (transport)",
        "vehicle": "a vehicle id",
        "hub": "a MoLo hub id",
        "fuel": "greenpartners.fleet.v1.FuelType, by name or short form (diesel)",
    }
    return {name: {"description": described[name]} for name in names}


def streams_document() -> dict[str, Any]:
    schemas = SchemaSet()
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {
        "heartbeat": {
            "name": "heartbeat",
            "summary": "Sent when the stream is quiet; its id is the current position.",
            "payload": {"type": "object"},
        },
        "stream-error": {
            "name": "stream-error",
            "summary": "The stream ends after it (slow_client, position_ahead); reconnect with "
            "the last event id.",
            "payload": {
                "type": "object",
                "properties": {"reason": {"type": "string"}, "detail": {"type": "string"}},
            },
        },
        "gap": {
            "name": "gap",
            "summary": "Records after the client's position the broker no longer holds.",
            "payload": {
                "type": "object",
                "properties": {
                    "partition": {"type": "integer"},
                    "fromOffset": {"type": "integer"},
                    "toOffset": {"type": "integer"},
                    "reason": {"type": "string"},
                },
            },
        },
    }
    operations: dict[str, Any] = {}
    streams: list[Any] = [*EVENT_STREAMS, *STATE_STREAMS]
    for stream in streams:
        if isinstance(stream, EventStream):
            payload = schemas.add(stream.message_type.DESCRIPTOR)
        elif "$ref" in stream.schema:
            payload = schemas.add(ledger_pb2.GetInventoryResponse.DESCRIPTOR)
        else:
            payload = stream.schema
        messages[stream.event] = {
            "name": stream.event,
            "summary": stream.description,
            "contentType": "application/json",
            "payload": payload,
            "x-sse-id": "the position after this event: <topic>@<partition>:<next offset>,...",
        }
        extra = {"heartbeat": {"$ref": "#/components/messages/heartbeat"}}
        extra["stream-error"] = {"$ref": "#/components/messages/stream-error"}
        if isinstance(stream, EventStream):
            extra["gap"] = {"$ref": "#/components/messages/gap"}
        kind = "events" if isinstance(stream, EventStream) else "states"
        channels[stream.name] = {
            "address": f"/streams/{stream.name}",
            "description": (
                f"{stream.description} Kind: {kind} from Kafka topic {stream.topic}. "
                "Query parameters: the filters "
                f"({', '.join(stream.filters)}), and where to start: Last-Event-ID header or "
                "position, from (ISO 8601 time or earliest), last (records per partition)."
            ),
            "messages": {stream.event: {"$ref": f"#/components/messages/{stream.event}"}, **extra},
            "bindings": {
                "http": {
                    "method": "GET",
                    "query": {
                        "type": "object",
                        "properties": {
                            **{
                                name: {"type": "string", **spec}
                                for name, spec in _filter_parameters(stream.filters).items()
                            },
                            "position": {"type": "string"},
                            "from": {"type": "string"},
                            "last": {"type": "integer", "minimum": 0, "maximum": 10000},
                        },
                    },
                }
            },
        }
        operations[f"subscribe-{stream.name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{stream.name}"},
            "summary": f"A dashboard follows {stream.name} (text/event-stream).",
        }
    return {
        "asyncapi": ASYNCAPI,
        "info": {
            "title": "Green Partnerships Platform: stream gateway (Server-Sent Events)",
            "version": "1",
            "description": (
                "The stream gateway's SSE streams. Generated by tools/asyncapi.py from "
                "stream_gateway.adapters.catalogue and the protos; do not edit. Each SSE event "
                "has the message's name as its event name, its position as its id and JSON as "
                "its data (protobuf's JSON mapping). See docs/streams.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8090",
                "protocol": "https",
                "description": "the stream gateway of make run (TLS with the platform's CA)",
                "security": [
                    {"$ref": "#/components/securitySchemes/bearer"},
                    {"$ref": "#/components/securitySchemes/session"},
                ],
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas.schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": (
                        "A platform token (roles operator, dashboard, or climate-officer for "
                        "their own municipality); docs/security.md."
                    ),
                },
                "session": {
                    "type": "httpApiKey",
                    "in": "cookie",
                    "name": SESSION_COOKIE,
                    "description": "Set by POST /session from a bearer token, for browsers.",
                },
            },
        },
    }


def render(document: dict[str, Any]) -> str:
    header = "# Generated by `python -m tools.asyncapi` (make asyncapi); do not edit.\n"
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def documents() -> dict[Path, str]:
    return {
        OUTPUT / "topics.yaml": render(topics_document()),
        OUTPUT / "streams.yaml": render(streams_document()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    arguments = parser.parse_args(argv)
    stale = []
    for path, text in documents().items():
        if arguments.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.relative_to(ROOT))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(
            f"stale: {', '.join(map(str, stale))}: run 'make asyncapi' and commit", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
