"""Protobuf on Kafka: payload bytes plus the standard headers.

The decoder is the platform's own and works on the record's raw bytes: a record's
`content-type` header is never consulted, so a producer that labels a protobuf payload
`application/json` gets it decoded (or refused) like any other, never stuck.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from servicekit.validation import ID_MAX_LENGTH

CONTENT_TYPE = "application/x-protobuf"
EVENT_TYPE_HEADER = "event-type"
_EVENT_ID = "event_id"

# Ids in events (event ids, subject ids, every `*_id` field) and record keys are at most as
# long as ids at the gRPC boundary.
MAX_ID_CHARS = ID_MAX_LENGTH

# The range a Timestamp must lie in to be a date at all (0001-01-01 to 9999-12-31, as the
# protobuf spec defines it); outside it no conversion can succeed, so it is refused up front.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799
_NANOS = 1_000_000_000

MessageT = TypeVar("MessageT", bound=Message)

# A path of field names from the event down to a field.
FieldPath = tuple[str, ...]


class UndecodableEvent(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def event_headers(message: Message) -> dict[str, str]:
    return {"content-type": CONTENT_TYPE, EVENT_TYPE_HEADER: message.DESCRIPTOR.full_name}


class Decoder(Generic[MessageT]):
    """Parses one topic's payloads and refuses what does not conform to the topic's contract:

    - `missing_header`: no `event-type` header (or a null one);
    - `wrong_event_type`: an `event-type` other than the topic's message;
    - `undecodable`: bytes that are not that message;
    - `schema_invalid`: no `event_id` or no `occurred_at`;
    - `id_too_long`: an id field (`event_id`, `*_id`, `*_ids`) or the key longer than
      MAX_ID_CHARS;
    - `invalid_timestamp`: a Timestamp that is no date (out of range, or bad nanos);
    - `unknown_kind`: an envelope whose `oneof` holds no kind this build knows;
    - `key_mismatch`: a key other than the event's subject id (`subject_of`), so that one
      subject's events share a partition and keep their order.

    Each of these is deterministic, so the record is dead-lettered at once. Built once per
    consumer: the fields to check are worked out from the message type up front, since it runs
    for every record.
    """

    def __init__(
        self,
        message_type: type[MessageT],
        subject_of: Callable[[MessageT], str] | None = None,
    ) -> None:
        self.message_type = message_type
        self.subject_of = subject_of
        descriptor: Descriptor = message_type.DESCRIPTOR  # type: ignore[assignment]
        self.full_name = descriptor.full_name
        self.event_type = self.full_name.encode()
        fields = descriptor.fields_by_name
        self.has_event_id = _EVENT_ID in fields
        self.has_occurred_at = "occurred_at" in fields
        self.id_paths = _id_paths(descriptor)
        self.timestamp_paths = _timestamp_paths(descriptor)
        # The event's own singular fields are read directly (the hot path of a consumer: a
        # sample has two ids and one time); nested and repeated ones through their paths.
        self._flat_ids = tuple(
            path[0] for path in self.id_paths if len(path) == 1 and not fields[path[0]].is_repeated
        )
        self._deep_ids = [path for path in self.id_paths if path[0] not in self._flat_ids]
        self._flat_stamps = tuple(path[0] for path in self.timestamp_paths if len(path) == 1)
        self._deep_stamps = [path for path in self.timestamp_paths if len(path) > 1]
        self.oneofs = [
            oneof.name
            for oneof in descriptor.oneofs
            # proto3 `optional` makes a one-field oneof of its own: not a kind.
            if not (len(oneof.fields) == 1 and oneof.name == f"_{oneof.fields[0].name}")
        ]
        self._parse: Callable[[bytes], MessageT] = message_type.FromString

    def decode(
        self, payload: bytes, event_type: bytes | None, key: bytes | None = None
    ) -> MessageT:
        """`event_type` is the record's `event-type` header (None when it has none or a null
        one); `key` the record's key, checked against the subject id when the decoder has
        `subject_of`."""
        if event_type != self.event_type:
            if event_type is None:
                raise UndecodableEvent("missing_header", f"no {EVENT_TYPE_HEADER} header")
            got = _shown(event_type.decode(errors="replace"))
            raise UndecodableEvent("wrong_event_type", f"expected {self.full_name}, got {got}")
        try:
            message = self._parse(payload)
        except DecodeError as error:
            raise UndecodableEvent("undecodable", f"not a {self.full_name}: {error}") from error
        if self.has_event_id and not getattr(message, _EVENT_ID):
            raise UndecodableEvent("schema_invalid", "event_id is empty")
        if self.has_occurred_at and not message.HasField("occurred_at"):
            raise UndecodableEvent("schema_invalid", "occurred_at is missing")
        for name in self._flat_ids:
            if len(getattr(message, name)) > MAX_ID_CHARS:
                raise _too_long((name,), getattr(message, name))
        for path in self._deep_ids:
            for value in _values(message, path):
                if len(value) > MAX_ID_CHARS:
                    raise _too_long(path, value)
        for name in self._flat_stamps:
            stamp = getattr(message, name)
            if not (_MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS and 0 <= stamp.nanos < _NANOS):
                raise _not_a_date((name,), stamp)
        for path in self._deep_stamps:
            for stamp in _values(message, path):
                if not (
                    _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS and 0 <= stamp.nanos < _NANOS
                ):
                    raise _not_a_date(path, stamp)
        for oneof in self.oneofs:
            if message.WhichOneof(oneof) is None:
                raise UndecodableEvent(
                    "unknown_kind", f"{oneof} holds no kind known to {self.full_name}"
                )
        if key is not None and len(key) > MAX_ID_CHARS * 4:  # 4: UTF-8's longest character
            raise UndecodableEvent("id_too_long", f"the key has {len(key)} bytes")
        if self.subject_of is not None:
            subject = self.subject_of(message)
            if key is None or key != subject.encode():
                shown = "none" if key is None else _shown(key.decode(errors="replace"))
                raise UndecodableEvent(
                    "key_mismatch", f"key {shown} is not the subject id {_shown(subject)}"
                )
        return message


def _too_long(path: FieldPath, value: str) -> UndecodableEvent:
    return UndecodableEvent(
        "id_too_long",
        f"{'.'.join(path)} has {len(value)} characters, at most {MAX_ID_CHARS} allowed",
    )


def _not_a_date(path: FieldPath, stamp: Timestamp) -> UndecodableEvent:
    return UndecodableEvent(
        "invalid_timestamp",
        f"{'.'.join(path)} ({stamp.seconds} s, {stamp.nanos} ns) is not a date from year 1 to 9999",
    )


def _shown(text: str) -> str:
    """A value quoted in a dead letter's detail, cut short: details echo no large input."""
    return repr(text if len(text) <= MAX_ID_CHARS else text[:MAX_ID_CHARS] + "...")


def _id_paths(descriptor: Descriptor, prefix: FieldPath = (), depth: int = 0) -> list[FieldPath]:
    """String fields that hold ids, in the event and in its (singular) nested messages."""
    paths: list[FieldPath] = []
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_STRING and (
            field.name.endswith("_id") or field.name.endswith("_ids")
        ):
            paths.append((*prefix, field.name))
        elif _is_nested(field) and depth < 2:
            paths += _id_paths(_message_of(field), (*prefix, field.name), depth + 1)
    return paths


def _timestamp_paths(
    descriptor: Descriptor, prefix: FieldPath = (), depth: int = 0
) -> list[FieldPath]:
    paths: list[FieldPath] = []
    for field in descriptor.fields:
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if _message_of(field).full_name == Timestamp.DESCRIPTOR.full_name:
            paths.append((*prefix, field.name))
        elif _is_nested(field) and depth < 2:
            paths += _timestamp_paths(_message_of(field), (*prefix, field.name), depth + 1)
    return paths


def _is_nested(field: FieldDescriptor) -> bool:
    return (
        field.type == FieldDescriptor.TYPE_MESSAGE
        and not field.is_repeated
        and _message_of(field).full_name != Timestamp.DESCRIPTOR.full_name
    )


def _message_of(field: FieldDescriptor) -> Descriptor:
    message_type = field.message_type
    assert message_type is not None, field.full_name
    return message_type


def _values(message: Message, path: FieldPath) -> list[Any]:
    """The values at a path, each element of a repeated field. An unset message on the way
    reads as its defaults (empty ids, time zero), which pass every check."""
    current: Any = message
    for name in path:
        current = getattr(current, name)
    if isinstance(current, (str, Timestamp)):
        return [current]
    return list(current)


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
