"""Property tests of the fold: whatever the interleaving of duplicates, late copies, counter
resets, batch splits and redeliveries, a vehicle's totals are those of its monotonic segments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_telemetry.domain.activity import microseconds, window_length_us
from fleet_telemetry.domain.telemetry import (
    QualityKind,
    StreamPosition,
    TelemetrySample,
    VehicleState,
    fold_samples,
)
from fleet_telemetry.domain.vehicles import CovenantSubsector, FuelType, Vehicle, VehicleClass

VEHICLE = Vehicle(
    vehicle_id="ak-refuse-03",
    owner_partner_id="aalborg-kommune",
    municipality_id="aalborg-kommune",
    fuel_type=FuelType.DIESEL,
    vehicle_class=VehicleClass.REFUSE_TRUCK,
    covenant_subsector=CovenantSubsector.MUNICIPAL_FLEET,
)
# Shortly before a New Year in Copenhagen, so streams cross midnight and the year too.
START_US = microseconds(datetime(2025, 12, 31, 22, 30, tzinfo=UTC)) or 0
SECOND_US = 1_000_000
# 50 m/s is 180 km/h: below the plausible limit.
MAX_METRES_PER_SECOND = 50


@dataclass(frozen=True)
class Segment:
    """Readings of one counter installation: monotonic and plausible throughout."""

    readings: list[TelemetrySample]

    @property
    def distance_m(self) -> int:
        return self.readings[-1].odometer_m - self.readings[0].odometer_m

    @property
    def fuel_used_ml(self) -> int:
        last, first = self.readings[-1].fuel_used_ml, self.readings[0].fuel_used_ml
        assert last is not None and first is not None
        return last - first


@st.composite
def segments(draw: st.DrawFn) -> list[Segment]:
    count = draw(st.integers(min_value=1, max_value=4))
    # Each segment starts far above the next one's counters: a swap is always a clear drop.
    starts = sorted(
        (draw(st.integers(min_value=0, max_value=1_000)) for _ in range(count)), reverse=True
    )
    at_us = START_US
    result = []
    serial = 0
    for index in range(count):
        odometer_m = (count - index) * 10_000_000 + starts[index]
        fuel_used_ml = (count - index) * 1_000_000 + starts[index]
        readings = []
        for step in range(draw(st.integers(min_value=2, max_value=8))):
            if step:
                elapsed_s = draw(st.integers(min_value=1, max_value=1_800))
                at_us += elapsed_s * SECOND_US
                odometer_m += draw(st.integers(0, elapsed_s * MAX_METRES_PER_SECOND))
                # At most what the refuse truck's engine can burn (about 83 ml/s).
                fuel_used_ml += draw(st.integers(0, min(500, elapsed_s * 80)))
            else:
                at_us += draw(st.integers(min_value=1, max_value=600)) * SECOND_US
            serial += 1
            readings.append(
                TelemetrySample(
                    event_id=f"s{serial}",
                    vehicle_id=VEHICLE.vehicle_id,
                    occurred_at_us=at_us,
                    odometer_m=odometer_m,
                    fuel_used_ml=fuel_used_ml,
                    energy_used_wh=None,
                )
            )
        result.append(Segment(readings))
    return result


@st.composite
def deliveries(draw: st.DrawFn, stream_segments: list[Segment]) -> list[TelemetrySample]:
    """The samples in order, with duplicates (same event id) and late copies (an already
    delivered sample re-sent with a new event id) mixed in after their originals."""
    delivered: list[TelemetrySample] = []
    copies = 0
    for segment in stream_segments:
        for reading in segment.readings:
            delivered.append(reading)
            for _ in range(draw(st.integers(min_value=0, max_value=2))):
                earlier = draw(st.sampled_from(delivered))
                if draw(st.booleans()):
                    delivered.append(earlier)
                else:
                    copies += 1
                    delivered.append(
                        TelemetrySample(
                            event_id=f"copy{copies}",
                            vehicle_id=earlier.vehicle_id,
                            occurred_at_us=earlier.occurred_at_us,
                            odometer_m=earlier.odometer_m,
                            fuel_used_ml=earlier.fuel_used_ml,
                            energy_used_wh=earlier.energy_used_wh,
                        )
                    )
    return delivered


@st.composite
def batches_with_redeliveries(
    draw: st.DrawFn, records: list[tuple[StreamPosition, TelemetrySample]]
) -> list[list[tuple[StreamPosition, TelemetrySample]]]:
    """Splits the records into consecutive batches; after any batch, the consumer may be sent
    back to an earlier offset (a crash before the offset commit), replaying from there."""
    batches = []
    done = 0
    redeliveries = 0
    while done < len(records):
        size = draw(st.integers(min_value=1, max_value=len(records) - done))
        batches.append(records[done : done + size])
        done += size
        if redeliveries < 3 and draw(st.booleans()):
            redeliveries += 1
            done = draw(st.integers(min_value=0, max_value=done))
    return batches


@settings(max_examples=300, deadline=None)
@given(data=st.data(), window_minutes=st.sampled_from([1, 15, 60]))
def test_totals_are_those_of_the_monotonic_segments(
    data: st.DataObject, window_minutes: int
) -> None:
    stream_segments = data.draw(segments())
    delivered = data.draw(deliveries(stream_segments))
    records: list[tuple[StreamPosition, TelemetrySample]] = [
        ((3, offset), one) for offset, one in enumerate(delivered, start=100)
    ]
    state = VehicleState(vehicle=VEHICLE, revision=1)
    activities = []
    resets = 0
    for batch in data.draw(batches_with_redeliveries(records)):
        result = fold_samples(state, batch, window_length_us(window_minutes))
        state = result.state
        activities.extend(result.activities)
        resets += sum(1 for q in result.quality_events if q.kind == QualityKind.COUNTER_RESET)
        assert result.rejections == []

    totals = state.totals
    assert totals.distance_m == sum(segment.distance_m for segment in stream_segments)
    assert totals.fuel_used_ml == sum(segment.fuel_used_ml for segment in stream_segments)
    assert totals.counter_resets == resets == len(stream_segments) - 1
    assert totals.samples_quarantined == 0
    readings = sum(len(segment.readings) for segment in stream_segments)
    assert totals.samples_accepted == readings
    assert totals.samples_late == len(delivered) - readings
    assert state.pending_reset is None
    assert state.position == records[-1][0]

    assert sum(a.distance_m for a in activities) == totals.distance_m
    assert sum(a.fuel_used_ml for a in activities) == totals.fuel_used_ml
    assert totals.activity_records == len(activities)
    assert len({a.event_id for a in activities}) == len(activities)
    window_us = window_length_us(window_minutes)
    for activity in activities:
        assert activity.period_start_us < activity.period_end_us
        assert activity.period_start_us // window_us == (activity.period_end_us - 1) // window_us
        assert activity.distance_m or activity.fuel_used_ml
        assert activity.sample_count >= 1
