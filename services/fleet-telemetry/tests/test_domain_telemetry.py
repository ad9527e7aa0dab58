from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from fleet_telemetry.domain.activity import microseconds, window_length_us
from fleet_telemetry.domain.telemetry import (
    MAX_PLAUSIBLE_SPEED_KMH,
    FoldResult,
    QualityKind,
    Reading,
    SampleRejection,
    StreamPosition,
    TelemetrySample,
    VehicleState,
    VehicleTotals,
    baseline_set_event,
    fold_samples,
    quality_event_id,
    set_baseline,
)
from fleet_telemetry.domain.vehicles import CovenantSubsector, FuelType, Vehicle, VehicleClass

QUARTER_HOUR = window_length_us(15)
MINUTE_US = 60_000_000
T0 = microseconds(datetime(2026, 3, 2, 6, 0, tzinfo=UTC)) or 0


def vehicle(fuel_type: FuelType = FuelType.DIESEL) -> Vehicle:
    return Vehicle(
        vehicle_id="ak-refuse-03",
        owner_partner_id="aalborg-kommune",
        municipality_id="aalborg-kommune",
        fuel_type=fuel_type,
        vehicle_class=VehicleClass.REFUSE_TRUCK,
        covenant_subsector=CovenantSubsector.MUNICIPAL_FLEET,
    )


def fresh(fuel_type: FuelType = FuelType.DIESEL) -> VehicleState:
    return VehicleState(vehicle=vehicle(fuel_type), revision=1)


def sample(
    event_id: str,
    minute: float,
    odometer_m: int,
    fuel_used_ml: int | None = None,
    energy_used_wh: int | None = None,
    *,
    at_us: int | None = -1,
) -> TelemetrySample:
    return TelemetrySample(
        event_id=event_id,
        vehicle_id="ak-refuse-03",
        occurred_at_us=T0 + int(minute * MINUTE_US) if at_us == -1 else at_us,
        odometer_m=odometer_m,
        fuel_used_ml=fuel_used_ml,
        energy_used_wh=energy_used_wh,
    )


class Stream:
    """Hands out consecutive offsets of one partition, as the broker would."""

    def __init__(self, partition: int = 0) -> None:
        self.partition = partition
        self.next_offset = 0

    def records(self, *samples: TelemetrySample) -> list[tuple[StreamPosition, TelemetrySample]]:
        records = []
        for one in samples:
            records.append(((self.partition, self.next_offset), one))
            self.next_offset += 1
        return records


def fold(
    state: VehicleState, records: Sequence[tuple[StreamPosition, TelemetrySample]]
) -> FoldResult:
    return fold_samples(state, records, QUARTER_HOUR)


def fold_all(state: VehicleState, *samples: TelemetrySample) -> FoldResult:
    return fold(state, Stream().records(*samples))


def reading(event: TelemetrySample) -> Reading:
    assert event.occurred_at_us is not None
    return Reading(
        event.occurred_at_us,
        event.odometer_m,
        event.fuel_used_ml,
        event.energy_used_wh,
        event.event_id,
    )


def counts(totals: VehicleTotals) -> tuple[int, int, int, int]:
    return (
        totals.samples_accepted,
        totals.samples_late,
        totals.samples_quarantined,
        totals.counter_resets,
    )


def amounts(totals: VehicleTotals) -> tuple[int, int, int]:
    return (totals.distance_m, totals.fuel_used_ml, totals.energy_used_wh)


def test_first_sample_becomes_the_baseline() -> None:
    first = sample("s1", 0, 120_000, 50_000)
    result = fold_all(fresh(), first)
    assert result.state.baseline == reading(first)
    assert result.state.position == (0, 0)
    assert counts(result.state.totals) == (1, 0, 0, 0)
    assert amounts(result.state.totals) == (0, 0, 0)
    assert (result.activities, result.quality_events, result.rejections) == ([], [], [])


def test_increments_are_the_differences_and_become_one_activity_per_window() -> None:
    result = fold_all(
        fresh(),
        sample("s1", 1, 120_000, 50_000),
        sample("s2", 5, 124_000, 50_400),
        sample("s3", 9, 127_000, 50_700),
    )
    assert amounts(result.state.totals) == (7_000, 700, 0)
    assert counts(result.state.totals) == (3, 0, 0, 0)
    [activity] = result.activities
    assert (activity.distance_m, activity.fuel_used_ml, activity.sample_count) == (7_000, 700, 2)
    assert (activity.first_sample_event_id, activity.last_sample_event_id) == ("s2", "s3")
    assert (activity.period_start_us, activity.period_end_us) == (
        T0 + MINUTE_US,
        T0 + 9 * MINUTE_US,
    )
    assert result.state.totals.activity_records == 1
    assert result.state.baseline == reading(sample("s3", 9, 127_000, 50_700))


def test_electric_vehicle_counts_energy() -> None:
    result = fold_all(
        fresh(FuelType.ELECTRIC),
        sample("s1", 0, 120_000, energy_used_wh=900_000),
        sample("s2", 10, 132_000, energy_used_wh=902_400),
    )
    assert amounts(result.state.totals) == (12_000, 0, 2_400)


def test_an_optional_counter_counts_once_both_readings_carry_it_and_keeps_its_last_value() -> None:
    result = fold_all(
        fresh(),
        sample("s1", 0, 100_000, 1_000),
        # Energy appears: a baseline for it, nothing counted.
        sample("s2", 5, 101_000, 1_100, 5_000),
        # Energy left out: it keeps 5 000 Wh.
        sample("s3", 10, 102_000, 1_200),
        sample("s4", 14, 103_000, 1_300, 5_300),
    )
    assert amounts(result.state.totals) == (3_000, 300, 300)
    assert result.state.baseline == Reading(T0 + 14 * MINUTE_US, 103_000, 1_300, 5_300, "s4")


def test_a_record_at_or_below_the_stored_position_is_skipped_uncounted() -> None:
    stream = Stream(partition=2)
    records = stream.records(sample("s1", 0, 100_000, 1_000), sample("s2", 5, 101_000, 1_100))
    first = fold(fresh(), records)
    again = fold(first.state, records)
    assert again.changed is False
    assert again.state is first.state
    assert (again.activities, again.quality_events, again.rejections) == ([], [], [])
    # A batch replayed from a position inside it applies only the records after it.
    more = stream.records(sample("s3", 10, 102_000, 1_200))
    replayed = fold(first.state, records[1:] + more)
    assert replayed.state.position == (2, 2)
    assert amounts(replayed.state.totals) == (2_000, 200, 0)
    assert counts(replayed.state.totals) == (3, 0, 0, 0)


def test_a_record_of_another_partition_is_not_a_redelivery() -> None:
    first = fold(fresh(), [((0, 50), sample("s1", 0, 100_000, 1_000))])
    moved = fold(first.state, [((1, 3), sample("s2", 5, 101_000, 1_100))])
    assert moved.state.position == (1, 3)
    assert amounts(moved.state.totals) == (1_000, 100, 0)


def test_a_sample_with_the_baselines_event_id_is_a_late_duplicate() -> None:
    first = sample("s1", 0, 100_000, 1_000)
    # Even with other values (a unit that re-sends with corrected time): same id, same sample.
    result = fold_all(fresh(), first, sample("s1", 7, 109_000, 1_500))
    assert result.state.baseline == reading(first)
    assert counts(result.state.totals) == (1, 1, 0, 0)


def test_a_sample_with_the_candidates_event_id_is_a_late_duplicate() -> None:
    candidate = sample("s2", 5, 10, 5)
    result = fold_all(fresh(), sample("s1", 0, 100_000, 1_000), candidate, candidate)
    assert result.state.pending_reset == reading(candidate)
    assert counts(result.state.totals) == (1, 1, 0, 0)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (sample("", 5, 101_000, 1_100), "missing_event_id"),
        (sample("s2", 5, 101_000, 1_100, at_us=None), "naive_timestamp"),
        (sample("s2", 5, -1, 1_100), "negative_counter"),
        (sample("s2", 5, 101_000, -3), "negative_counter"),
        (sample("s2", 5, 101_000, 1_100, -9), "negative_counter"),
        (sample("s2", 5, 101_000, None, 400), "missing_fuel_counter"),
    ],
)
def test_invalid_samples_are_rejected_and_quarantined_and_leave_the_baseline(
    bad: TelemetrySample, reason: str
) -> None:
    first = sample("s1", 0, 100_000, 1_000)
    result = fold_all(fresh(), first, bad, sample("s3", 10, 102_000, 1_200))
    assert [(r.index, r.reason) for r in result.rejections] == [(1, reason)]
    assert counts(result.state.totals) == (2, 0, 1, 0)
    assert amounts(result.state.totals) == (2_000, 200, 0)


def test_an_electric_vehicle_without_an_energy_counter_is_rejected() -> None:
    result = fold_all(fresh(FuelType.ELECTRIC), sample("s1", 0, 100_000, 1_000))
    assert [r.reason for r in result.rejections] == ["missing_energy_counter"]
    assert result.state.baseline is None


def test_an_invalid_first_sample_does_not_become_the_baseline() -> None:
    result = fold_all(fresh(), sample("s1", 0, -5, 1_000), sample("s2", 5, 100_000, 1_000))
    assert result.state.baseline is not None and result.state.baseline.event_id == "s2"


@pytest.mark.parametrize("minute", [10, 9])
def test_a_sample_at_or_before_the_baseline_time_is_late(minute: int) -> None:
    result = fold_all(
        fresh(),
        sample("s1", 0, 100_000, 1_000),
        sample("s2", 10, 102_000, 1_200),
        # Resent late with a new id, or an old reading that arrives out of order.
        sample("s2-again", minute, 101_500, 1_150),
    )
    assert counts(result.state.totals) == (2, 1, 0, 0)
    assert amounts(result.state.totals) == (2_000, 200, 0)
    assert result.rejections == []


def test_implausible_speed_is_rejected_and_the_baseline_stays() -> None:
    # 200 km/h for 6 minutes is 20 km; one metre more is too fast.
    limit_m = MAX_PLAUSIBLE_SPEED_KMH * 1000 // 10
    result = fold_all(
        fresh(),
        sample("s1", 0, 100_000, 1_000),
        sample("too-fast", 6, 100_000 + limit_m + 1, 1_100),
        sample("at-limit", 6, 100_000 + limit_m, 1_100),
    )
    [rejection] = result.rejections
    assert (rejection.index, rejection.reason) == (1, "implausible_speed")
    assert "above the plausible 200 km/h" in rejection.detail
    assert counts(result.state.totals) == (2, 0, 1, 0)
    assert result.state.totals.distance_m == limit_m


def test_counters_below_the_baseline_make_a_pending_candidate_and_count_nothing() -> None:
    drop = sample("swap", 10, 50, 3)
    result = fold_all(fresh(), sample("s1", 0, 100_000, 1_000), drop)
    assert result.state.pending_reset == reading(drop)
    assert result.state.baseline is not None and result.state.baseline.event_id == "s1"
    assert counts(result.state.totals) == (1, 0, 0, 0)
    assert (result.activities, result.quality_events, result.rejections) == ([], [], [])


def test_a_sample_consistent_with_the_candidate_confirms_a_reset() -> None:
    before = sample("s1", 0, 100_000, 1_000)
    swap = sample("swap", 10, 50, 3)
    result = fold_all(
        fresh(),
        before,
        sample("s2", 5, 101_000, 1_100),
        swap,
        sample("s3", 14, 2_050, 203),
    )
    state = result.state
    assert counts(state.totals) == (4, 0, 0, 1)
    # 1 km before the swap, 2 km after it; the swap's own counters count nothing.
    assert amounts(state.totals) == (3_000, 300, 0)
    assert state.baseline == Reading(T0 + 14 * MINUTE_US, 2_050, 203, None, "s3")
    assert state.pending_reset is None
    [reset] = result.quality_events
    assert reset.kind == QualityKind.COUNTER_RESET
    assert reset.sample_event_id == "swap"
    assert reset.previous_baseline == reading(sample("s2", 5, 101_000, 1_100))
    assert reset.new_baseline == reading(swap)
    assert reset.at_us == T0 + 10 * MINUTE_US
    assert reset.event_id == quality_event_id(
        "ak-refuse-03", QualityKind.COUNTER_RESET, "swap", "s3"
    )
    [activity] = result.activities
    assert (activity.distance_m, activity.sample_count) == (3_000, 2)
    assert (activity.first_sample_event_id, activity.last_sample_event_id) == ("s2", "s3")


def test_the_candidate_may_be_decided_in_a_later_batch() -> None:
    stream = Stream()
    first = fold(
        fresh(), stream.records(sample("s1", 0, 100_000, 1_000), sample("swap", 10, 50, 3))
    )
    assert first.state.pending_reset is not None
    second = fold(first.state, stream.records(sample("s2", 14, 2_050, 203)))
    assert second.state.totals.counter_resets == 1
    assert amounts(second.state.totals) == (2_000, 200, 0)


def test_a_sample_consistent_with_the_baseline_shows_the_candidate_was_a_glitch() -> None:
    result = fold_all(
        fresh(),
        sample("s1", 0, 100_000, 1_000),
        sample("glitch", 5, 50, 3),
        sample("s2", 10, 102_000, 1_200),
    )
    state = result.state
    assert counts(state.totals) == (2, 0, 1, 0)
    assert amounts(state.totals) == (2_000, 200, 0)
    assert state.pending_reset is None
    assert result.rejections == []
    [glitch] = result.quality_events
    assert glitch.kind == QualityKind.COUNTER_GLITCH
    assert glitch.sample_event_id == "glitch"
    assert glitch.previous_baseline is not None and glitch.previous_baseline.event_id == "s1"
    assert glitch.new_baseline is None
    assert "quarantined" in glitch.detail


def test_a_sample_at_or_before_the_candidates_time_is_late() -> None:
    result = fold_all(
        fresh(),
        sample("s1", 0, 100_000, 1_000),
        sample("swap", 10, 500, 30),
        sample("old", 10, 400, 20),
    )
    assert counts(result.state.totals) == (1, 1, 0, 0)
    assert result.state.pending_reset is not None
    assert result.state.pending_reset.event_id == "swap"


@pytest.mark.parametrize(
    "next_sample",
    [
        # Below the candidate too.
        sample("s2", 14, 40, 2),
        # Above the candidate, but too far from it for the time elapsed.
        sample("s2", 11, 90_000, 30),
    ],
)
def test_a_sample_inconsistent_with_the_candidate_replaces_it(next_sample: TelemetrySample) -> None:
    result = fold_all(
        fresh(), sample("s1", 0, 100_000, 1_000), sample("swap", 10, 50, 3), next_sample
    )
    assert counts(result.state.totals) == (1, 0, 1, 0)
    assert result.state.pending_reset == reading(next_sample)
    assert [q.kind for q in result.quality_events] == [QualityKind.COUNTER_GLITCH]
    assert amounts(result.state.totals) == (0, 0, 0)


def test_an_implausible_sample_leaves_a_pending_candidate_pending() -> None:
    result = fold_all(
        fresh(),
        sample("s1", 0, 100_000, 1_000),
        sample("swap", 10, 50, 3),
        sample("jump", 12, 900_000, 1_100),
    )
    assert [r.reason for r in result.rejections] == ["implausible_speed"]
    assert result.state.pending_reset is not None
    assert result.state.pending_reset.event_id == "swap"


def test_rejection_indexes_are_positions_in_the_folded_sequence() -> None:
    result = fold_all(
        fresh(),
        sample("s1", 0, 100_000, 1_000),
        sample("s2", 5, -1, 1_000),
        sample("s3", 10, 101_000, 1_100),
        sample("s4", 11, 500_000, 1_200),
    )
    assert result.rejections == [
        SampleRejection(1, "negative_counter", "odometer_m is negative: -1"),
        SampleRejection(3, "implausible_speed", result.rejections[1].detail),
    ]


def test_every_sample_taken_in_is_accepted_late_or_quarantined_once_decided() -> None:
    result = fold_all(
        fresh(),
        sample("s1", 0, 100_000, 1_000),
        sample("s1", 0, 100_000, 1_000),
        sample("g1", 2, 10, 1),
        sample("s2", 4, 101_000, 1_100),
        sample("bad", 5, -1, 1_100),
        sample("swap", 6, 20, 2),
        sample("s3", 8, 1_020, 102),
        sample("late", 7, 1_000, 100),
    )
    totals = result.state.totals
    assert totals.samples_accepted + totals.samples_late + totals.samples_quarantined == 8


def test_operator_baseline_replaces_the_baseline_and_drops_the_candidate() -> None:
    stream = Stream()
    state = fold(
        fresh(), stream.records(sample("s1", 0, 100_000, 1_000), sample("swap", 10, 50, 3))
    ).state
    corrected = Reading(T0 + 20 * MINUTE_US, 7_000, 700, None, "")
    updated = set_baseline(state, corrected, new_revision=5)
    assert (updated.baseline, updated.pending_reset) == (corrected, None)
    assert (updated.position, updated.revision, updated.totals) == (
        state.position,
        5,
        state.totals,
    )
    # Samples up to the operator's time are covered; later ones count from the new baseline.
    after = fold(
        updated,
        stream.records(sample("s2", 15, 6_000, 600), sample("s3", 25, 9_000, 900)),
    )
    assert counts(after.state.totals) == (2, 1, 0, 0)
    assert amounts(after.state.totals) == (2_000, 200, 0)


def test_samples_accounted_again_after_a_baseline_moved_back_make_new_activities() -> None:
    stream = Stream()
    records = stream.records(
        sample("s1", 1, 10_000, 1_000),
        sample("s2", 2, 10_500, 1_050),
        sample("s3", 3, 11_000, 1_100),
    )
    first = fold(fresh(), records)
    # The operator moves the baseline back to s1 and the samples after it are replayed.
    moved = set_baseline(first.state, reading(records[0][1]), new_revision=2)
    replayed = fold(moved, stream.records(records[1][1], records[2][1]))
    [before], [again] = first.activities, replayed.activities
    assert (again.distance_m, again.sample_count) == (before.distance_m, before.sample_count)
    # Same window and samples, yet a new id: the ledger posts it instead of dropping it.
    assert again.event_id != before.event_id


def test_baseline_set_event_id_follows_the_revision() -> None:
    new = Reading(T0, 7_000, 700, None, "")
    first = baseline_set_event("van-7", None, new, 3, "unit replaced")
    assert first.kind == QualityKind.BASELINE_SET
    assert first.event_id == quality_event_id("van-7", QualityKind.BASELINE_SET, "3")
    assert first.event_id != baseline_set_event("van-7", None, new, 4, "again").event_id


def test_a_fold_leaves_the_state_it_started_from_unchanged() -> None:
    state = replace(fresh(), baseline=Reading(T0, 100_000, 1_000, None, "s0"), position=(0, 9))
    before = repr(state)
    fold(state, [((0, 10), sample("s1", 5, 101_000, 1_100))])
    assert repr(state) == before


def test_a_sample_dated_before_1990_never_becomes_the_baseline() -> None:
    result = fold_all(
        fresh(),
        sample("unset-clock", 0, 100_000, 1_000, at_us=0),  # 1970: a unit with no clock set
        sample("s1", 0, 100_000, 1_000),
        sample("s2", 10, 105_000, 2_000),
    )
    [rejection] = result.rejections
    assert (rejection.index, rejection.reason) == (0, "implausible_time")
    assert amounts(result.state.totals) == (5_000, 1_000, 0)


def test_a_sample_from_the_future_is_quarantined_and_the_vehicle_goes_on() -> None:
    now_us = T0 + 60 * MINUTE_US
    stream = Stream()
    result = fold_samples(
        fresh(),
        stream.records(
            sample("s1", 0, 100_000, 1_000),
            # Dated 2100: had it become the baseline, every later genuine sample would be late.
            sample("year-2100", 0, 106_000, 2_000, at_us=T0 + 74 * 365 * 24 * 60 * MINUTE_US),
            sample("skewed-15-min", 75, 106_000, 2_000),
            sample("skewed-5-min", 65, 106_000, 2_000),
        ),
        QUARTER_HOUR,
        now_us,
    )
    assert [(r.index, r.reason) for r in result.rejections] == [
        (1, "implausible_time"),
        (2, "implausible_time"),
    ]
    assert amounts(result.state.totals) == (6_000, 1_000, 0)
    assert counts(result.state.totals) == (2, 0, 2, 0)


@pytest.mark.parametrize(
    ("fuel_type", "fuel_ml", "energy_wh", "reason"),
    [
        # 600 kW for 10 minutes is 100 kWh, and at most 50 litres of fuel.
        (FuelType.DIESEL, 50_001, None, "implausible_fuel_rate"),
        (FuelType.ELECTRIC, None, 100_001, "implausible_energy_rate"),
    ],
)
def test_more_fuel_or_energy_than_the_class_can_use_is_quarantined(
    fuel_type: FuelType, fuel_ml: int | None, energy_wh: int | None, reason: str
) -> None:
    start_fuel = None if fuel_ml is None else 0
    start_energy = None if energy_wh is None else 0
    at_limit_fuel = None if fuel_ml is None else fuel_ml - 1
    at_limit_energy = None if energy_wh is None else energy_wh - 1
    result = fold_all(
        fresh(fuel_type),
        sample("s1", 0, 100_000, start_fuel, start_energy),
        sample("too-much", 10, 105_000, fuel_ml, energy_wh),
        sample("at-limit", 10, 105_000, at_limit_fuel, at_limit_energy),
    )
    [rejection] = result.rejections
    assert (rejection.index, rejection.reason) == (1, reason)
    assert counts(result.state.totals) == (2, 0, 1, 0)


def test_a_counter_beyond_any_vehicle_is_quarantined() -> None:
    result = fold_all(fresh(), sample("s1", 0, 10**10 + 1, 1_000))
    [rejection] = result.rejections
    assert rejection.reason == "implausible_counter"
    assert result.state.baseline is None
