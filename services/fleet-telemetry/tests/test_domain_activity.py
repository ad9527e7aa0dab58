import uuid
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from fleet_telemetry.domain.activity import (
    ACTIVITY_ID_NAMESPACE,
    Activity,
    ActivityWindows,
    activity_event_id,
    apportion,
    microseconds,
    to_datetime,
    window_length_us,
)

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
QUARTER_HOUR = window_length_us(15)


def us(moment: datetime) -> int:
    at = microseconds(moment)
    assert at is not None
    return at


def at(hour: int, minute: int, second: int = 0) -> int:
    return us(datetime(2026, 3, 2, hour, minute, second, tzinfo=UTC))


def test_microseconds_round_trip_and_refuse_naive_times() -> None:
    moment = datetime(2026, 3, 2, 6, 7, 8, 123_456, tzinfo=UTC)
    assert to_datetime(us(moment)) == moment
    assert us(moment.astimezone(timezone(timedelta(hours=1)))) == us(moment)
    assert microseconds(datetime(2026, 3, 2, 6, 7)) is None


@pytest.mark.parametrize("minutes", [1, 5, 10, 15, 20, 30, 60])
def test_window_lengths_that_divide_an_hour(minutes: int) -> None:
    assert window_length_us(minutes) == minutes * 60_000_000


@pytest.mark.parametrize("minutes", [0, 7, 45, 90, -15])
def test_window_lengths_that_do_not_divide_an_hour_are_refused(minutes: int) -> None:
    with pytest.raises(ValueError, match="does not divide an hour"):
        window_length_us(minutes)


def test_increments_in_one_window_are_summed_into_one_activity() -> None:
    windows = ActivityWindows("van-7", QUARTER_HOUR)
    windows.add(at(6, 0, 10), at(6, 0, 20), 100, 10, 0, "s1")
    windows.add(at(6, 0, 20), at(6, 0, 30), 150, 12, 0, "s2")
    windows.add(at(6, 0, 30), at(6, 14, 59), 250, 20, 0, "s3")
    assert windows.activities() == [
        Activity(
            event_id=activity_event_id("van-7", at(6, 0), "s1", "s3"),
            vehicle_id="van-7",
            period_start_us=at(6, 0, 10),
            period_end_us=at(6, 14, 59),
            distance_m=500,
            fuel_used_ml=42,
            energy_used_wh=0,
            sample_count=3,
            first_sample_event_id="s1",
            last_sample_event_id="s3",
        )
    ]


def test_an_increment_ending_on_a_boundary_stays_in_the_window_before() -> None:
    windows = ActivityWindows("van-7", QUARTER_HOUR)
    windows.add(at(6, 10), at(6, 15), 300, 30, 0, "s1")
    [activity] = windows.activities()
    assert (activity.period_start_us, activity.period_end_us) == (at(6, 10), at(6, 15))
    assert activity.event_id == activity_event_id("van-7", at(6, 0), "s1", "s1")


def test_an_increment_across_windows_is_apportioned_by_time() -> None:
    windows = ActivityWindows("van-7", QUARTER_HOUR)
    # 06:10 to 06:40: 5 minutes, then 15, then 10 of 30.
    windows.add(at(6, 10), at(6, 40), 3_000, 301, 0, "s1")
    activities = windows.activities()
    assert [(a.period_start_us, a.period_end_us) for a in activities] == [
        (at(6, 10), at(6, 15)),
        (at(6, 15), at(6, 30)),
        (at(6, 30), at(6, 40)),
    ]
    assert [a.distance_m for a in activities] == [500, 1_500, 1_000]
    # 301 ml: 50.17, 150.5, 100.33 -> 50, 151, 100 (the largest remainder gets the unit left).
    assert [a.fuel_used_ml for a in activities] == [50, 151, 100]
    assert all(a.sample_count == 1 for a in activities)
    assert all(a.first_sample_event_id == a.last_sample_event_id == "s1" for a in activities)
    assert len({a.event_id for a in activities}) == 3


def test_parts_with_nothing_in_them_are_dropped() -> None:
    windows = ActivityWindows("van-7", QUARTER_HOUR)
    # 2 m over 45 minutes: the middle window's share rounds to nothing.
    windows.add(at(6, 0), at(6, 45), 2, 0, 0, "s1")
    activities = windows.activities()
    assert [(a.period_start_us, a.distance_m) for a in activities] == [
        (at(6, 0), 1),
        (at(6, 15), 1),
    ]


def test_an_increment_with_nothing_in_it_makes_no_activity() -> None:
    windows = ActivityWindows("van-7", QUARTER_HOUR)
    windows.add(at(6, 0), at(6, 5), 0, 0, 0, "idle")
    assert windows.activities() == []


def test_sample_count_counts_each_sample_once_per_window_it_contributes_to() -> None:
    windows = ActivityWindows("van-7", QUARTER_HOUR)
    windows.add(at(6, 5), at(6, 10), 100, 0, 0, "s1")
    windows.add(at(6, 10), at(6, 20), 200, 0, 0, "s2")
    windows.add(at(6, 20), at(6, 25), 100, 0, 0, "s3")
    first, second = windows.activities()
    assert (first.sample_count, first.first_sample_event_id, first.last_sample_event_id) == (
        2,
        "s1",
        "s2",
    )
    assert (second.sample_count, second.first_sample_event_id, second.last_sample_event_id) == (
        2,
        "s2",
        "s3",
    )
    assert (first.distance_m, second.distance_m) == (200, 200)
    assert second.source_sample_event_id == "s3"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        # Midnight and New Year in UTC.
        (datetime(2025, 12, 31, 23, 50, tzinfo=UTC), datetime(2026, 1, 1, 0, 20, tzinfo=UTC)),
        # Midnight and New Year in Copenhagen (23:00 UTC in winter).
        (
            datetime(2025, 12, 31, 23, 50, tzinfo=COPENHAGEN),
            datetime(2026, 1, 1, 0, 20, tzinfo=COPENHAGEN),
        ),
        # Midnight in Copenhagen summer time (22:00 UTC).
        (
            datetime(2026, 6, 30, 23, 40, tzinfo=COPENHAGEN),
            datetime(2026, 7, 1, 0, 10, tzinfo=COPENHAGEN),
        ),
    ],
)
def test_no_activity_crosses_midnight_or_a_year_boundary(start: datetime, end: datetime) -> None:
    windows = ActivityWindows("van-7", QUARTER_HOUR)
    windows.add(us(start), us(end), 30_000, 3_000, 0, "s1")
    activities = windows.activities()
    assert sum(a.distance_m for a in activities) == 30_000
    assert sum(a.fuel_used_ml for a in activities) == 3_000
    for activity in activities:
        first = to_datetime(activity.period_start_us)
        # The last instant inside the period (its end is the next window's start).
        last = to_datetime(activity.period_end_us - 1)
        for zone in (UTC, COPENHAGEN):
            assert first.astimezone(zone).date() == last.astimezone(zone).date()
    # The split falls exactly on the local midnight.
    midnight = us(datetime.combine(end.date(), datetime.min.time(), tzinfo=end.tzinfo))
    assert midnight in {a.period_end_us for a in activities}
    assert midnight in {a.period_start_us for a in activities}


def test_activity_id_is_uuid5_of_vehicle_window_and_samples() -> None:
    event_id = activity_event_id("van-7", at(6, 0), "s1", "s3")
    assert event_id == str(uuid.uuid5(ACTIVITY_ID_NAMESPACE, f"van-7/{at(6, 0)}/s1/s3"))
    assert uuid.UUID(event_id).version == 5
    assert event_id == activity_event_id("van-7", at(6, 0), "s1", "s3")
    assert event_id != activity_event_id("van-7", at(6, 15), "s1", "s3")
    assert event_id != activity_event_id("van-8", at(6, 0), "s1", "s3")
    assert event_id != activity_event_id("van-7", at(6, 0), "s2", "s3")
    assert event_id != activity_event_id("van-7", at(6, 0), "s1", "s4")
    # After the vehicle's revision changed (an operator set its baseline), the same samples
    # make a new activity.
    assert event_id != activity_event_id("van-7", at(6, 0), "s1", "s3", revision=4)


@pytest.mark.parametrize(
    ("amount", "weights", "parts"),
    [
        (10, [1, 1, 1], [4, 3, 3]),
        (2, [1, 1, 1], [1, 1, 0]),
        (301, [5, 15, 10], [50, 151, 100]),
        (0, [3, 7], [0, 0]),
        (7, [1], [7]),
        (1, [1, 2], [0, 1]),
    ],
)
def test_apportion_gives_whole_parts_that_add_up(
    amount: int, weights: list[int], parts: list[int]
) -> None:
    assert apportion(amount, weights) == parts
    assert sum(parts) == amount
