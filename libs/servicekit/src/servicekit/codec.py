"""Protobuf on Kafka: payload bytes plus the standard headers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Generic, TypeVar

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


class Decoder(Generic[MessageT]):
    """Parses one topic's payloads, refusing what is not its message type or lacks its identity.

    Built once per consumer: the checks it needs are worked out from the message type up front,
    since it runs for every record.
    """

    def __init__(self, message_type: type[MessageT]) -> None:
        self.message_type = message_type
        self.full_name = message_type.DESCRIPTOR.full_name
        self.event_type = self.full_name.encode()
        fields = message_type.DESCRIPTOR.fields_by_name
        self.has_event_id = _EVENT_ID in fields
        self.has_occurred_at = "occurred_at" in fields

    def decode(self, payload: bytes, event_type: bytes | None) -> MessageT:
        """`event_type` is the record's `event-type` header, None when it has none."""
        if event_type is not None and event_type != self.event_type:
            got = event_type.decode(errors="replace")
            raise UndecodableEvent("wrong_event_type", f"expected {self.full_name}, got {got}")
        message = self.message_type()
        try:
            message.ParseFromString(payload)
        except DecodeError as error:
            raise UndecodableEvent("undecodable", f"not a {self.full_name}: {error}") from error
        if self.has_event_id and not getattr(message, _EVENT_ID):
            raise UndecodableEvent("schema_invalid", "event_id is empty")
        if self.has_occurred_at and not message.HasField("occurred_at"):
            raise UndecodableEvent("schema_invalid", "occurred_at is missing")
        return message


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_timestamp(moment: datetime) -> Timestamp:
    """An aware datetime as a protobuf Timestamp, in integer arithmetic (exact, and several times
    faster than Timestamp.FromDatetime, which matters once per event)."""
    since_epoch = moment - _EPOCH
    return Timestamp(
        seconds=since_epoch.days * 86_400 + since_epoch.seconds,
        nanos=since_epoch.microseconds * 1_000,
    )


def from_timestamp(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)
