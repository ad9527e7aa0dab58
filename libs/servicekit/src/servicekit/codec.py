"""Protobuf on Kafka: payload bytes plus the standard headers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

CONTENT_TYPE = "application/x-protobuf"
_EVENT_ID = "event_id"

MessageT = TypeVar("MessageT", bound=Message)


class UndecodableEvent(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def event_headers(message: Message) -> dict[str, str]:
    return {"content-type": CONTENT_TYPE, "event-type": message.DESCRIPTOR.full_name}


def decode(message_type: type[MessageT], payload: bytes, headers: dict[str, str]) -> MessageT:
    """Parses a payload, refusing what is not the topic's message type or lacks its identity."""
    expected = message_type.DESCRIPTOR.full_name
    event_type = headers.get("event-type", expected)
    if event_type != expected:
        raise UndecodableEvent("wrong_event_type", f"expected {expected}, got {event_type}")
    message = message_type()
    try:
        message.ParseFromString(payload)
    except DecodeError as error:
        raise UndecodableEvent("undecodable", f"not a {expected}: {error}") from error
    fields = message.DESCRIPTOR.fields_by_name
    if _EVENT_ID in fields and not str(getattr(message, _EVENT_ID)):
        raise UndecodableEvent("schema_invalid", "event_id is empty")
    if "occurred_at" in fields and not message.HasField("occurred_at"):
        raise UndecodableEvent("schema_invalid", "occurred_at is missing")
    return message


def to_timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def from_timestamp(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)
