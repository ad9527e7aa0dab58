"""servicekit's protobuf helpers: timestamps and the decoder every consumer runs per record."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from greenpartners.fleet.v1 import fleet_pb2
from servicekit.codec import Decoder, UndecodableEvent, from_timestamp, to_timestamp


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 3, 1, 12, 30, 15, 123_456, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(2100, 1, 1, tzinfo=UTC),
        datetime(2026, 6, 9, 8, 0, 0, 250_000, tzinfo=ZoneInfo("Europe/Copenhagen")),
    ],
)
def test_to_timestamp_is_exact_and_round_trips(moment: datetime) -> None:
    reference = Timestamp()
    reference.FromDatetime(moment.astimezone(UTC))
    assert to_timestamp(moment) == reference
    assert from_timestamp(to_timestamp(moment)) == moment


SAMPLE = b"greenpartners.fleet.v1.TelemetrySample"


def test_the_decoder_refuses_another_type_garbage_and_missing_identity() -> None:
    decoder = Decoder(fleet_pb2.TelemetrySample)
    good = fleet_pb2.TelemetrySample(
        event_id="s1", occurred_at=to_timestamp(datetime(2026, 3, 1, tzinfo=UTC))
    )
    assert decoder.decode(good.SerializeToString(), SAMPLE) == good
    cases = [
        (good.SerializeToString(), b"greenpartners.fleet.v1.VehicleActivity", "wrong_event_type"),
        (good.SerializeToString(), None, "missing_header"),
        (b"\xff\xff\xff", SAMPLE, "undecodable"),
        (
            fleet_pb2.TelemetrySample(occurred_at=good.occurred_at).SerializeToString(),
            SAMPLE,
            "schema_invalid",
        ),
        (fleet_pb2.TelemetrySample(event_id="s2").SerializeToString(), SAMPLE, "schema_invalid"),
    ]
    for payload, event_type, reason in cases:
        with pytest.raises(UndecodableEvent) as refused:
            decoder.decode(payload, event_type)
        assert refused.value.reason == reason
