"""Aggregated vehicle activity: accepted counter increments summed per activity window.

An activity window is a fixed slice of time aligned to the Unix epoch (15 minutes by default).
Its length divides an hour, so windows line up with the hours of every whole-hour time zone:
no window crosses midnight or a year boundary, in UTC or in Copenhagen, and the year an
activity is reported in is exact.

Within one batch, a vehicle's increments that fall in the same window become one activity. An
increment whose interval crosses window boundaries is apportioned to the windows it covers in
proportion to time; each counter is split with the largest-remainder method, so the parts are
whole units and add up to the increment exactly (ties go to the earlier window). A part in
which every counter is zero is dropped, and so is a window with nothing in it.

Times are integer microseconds since the epoch (UTC) throughout: a fold handles many thousand
samples per batch and a datetime per sample would cost more than the rules themselves.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from servicekit.ids import name_based_id

# Fixed forever: activity ids derived from it must stay stable across releases and retries.
ACTIVITY_ID_NAMESPACE = uuid.UUID("48a547c7-617b-411c-bcb9-c3f7f392f045")

DEFAULT_ACTIVITY_WINDOW_MINUTES = 15
MICROSECONDS_PER_MINUTE = 60_000_000

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def microseconds(moment: datetime) -> int | None:
    """Microseconds since the epoch of an aware time; None for a time without a zone."""
    if moment.utcoffset() is None:
        return None
    return (moment - EPOCH) // timedelta(microseconds=1)


def to_datetime(at_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=at_us)


def window_length_us(window_minutes: int) -> int:
    """The window length in microseconds; the minutes must divide an hour."""
    if window_minutes < 1 or 60 % window_minutes:
        raise ValueError(f"an activity window of {window_minutes} minutes does not divide an hour")
    return window_minutes * MICROSECONDS_PER_MINUTE


@dataclass(frozen=True, slots=True)
class Activity:
    """What a vehicle did within one activity window, summed over consecutive samples."""

    event_id: str
    vehicle_id: str
    period_start_us: int
    period_end_us: int
    distance_m: int
    fuel_used_ml: int
    energy_used_wh: int
    sample_count: int
    first_sample_event_id: str
    last_sample_event_id: str

    @property
    def source_sample_event_id(self) -> str:
        return self.last_sample_event_id


def activity_event_id(
    vehicle_id: str,
    window_start_us: int,
    first_sample_event_id: str,
    last_sample_event_id: str,
    revision: int = 0,
) -> str:
    """Same vehicle, window and samples, same id: a batch handled again cannot post twice.

    The vehicle's revision is part of it: after an operator moved the baseline back, samples
    accounted again form new activities instead of repeating an id the ledger already holds.
    """
    name = f"{vehicle_id}/{window_start_us}/{first_sample_event_id}/{last_sample_event_id}"
    if revision:
        name += f"/r{revision}"
    return name_based_id(ACTIVITY_ID_NAMESPACE, name)


class _WindowSums:
    """The running sums of one window while a batch is folded."""

    __slots__ = (
        "distance_m",
        "end_us",
        "energy_used_wh",
        "first_sample_event_id",
        "fuel_used_ml",
        "last_sample_event_id",
        "sample_count",
        "start_us",
    )

    def __init__(self, start_us: int, first_sample_event_id: str) -> None:
        self.start_us = start_us
        self.end_us = start_us
        self.distance_m = 0
        self.fuel_used_ml = 0
        self.energy_used_wh = 0
        self.sample_count = 0
        self.first_sample_event_id = first_sample_event_id
        self.last_sample_event_id = first_sample_event_id


class ActivityWindows:
    """Collects one vehicle's increments of one batch, window by window."""

    __slots__ = ("_sums", "revision", "vehicle_id", "window_us")

    def __init__(self, vehicle_id: str, window_us: int, revision: int = 0) -> None:
        self.vehicle_id = vehicle_id
        self.window_us = window_us
        self.revision = revision
        self._sums: dict[int, _WindowSums] = {}

    def add(
        self,
        start_us: int,
        end_us: int,
        distance_m: int,
        fuel_used_ml: int,
        energy_used_wh: int,
        sample_event_id: str,
    ) -> None:
        """Adds the increment of one sample over the interval [start_us, end_us]."""
        if not (distance_m or fuel_used_ml or energy_used_wh):
            return
        window_us = self.window_us
        first_window = start_us // window_us
        # The interval's end belongs to the window before when it falls on a boundary.
        last_window = (end_us - 1) // window_us
        if first_window == last_window:
            self._add_part(
                first_window,
                start_us,
                end_us,
                distance_m,
                fuel_used_ml,
                energy_used_wh,
                sample_event_id,
            )
            return
        bounds = [
            (
                max(start_us, window * window_us),
                min(end_us, (window + 1) * window_us),
            )
            for window in range(first_window, last_window + 1)
        ]
        weights = [part_end - part_start for part_start, part_end in bounds]
        distances = apportion(distance_m, weights)
        fuels = apportion(fuel_used_ml, weights)
        energies = apportion(energy_used_wh, weights)
        for offset, (part_start, part_end) in enumerate(bounds):
            if distances[offset] or fuels[offset] or energies[offset]:
                self._add_part(
                    first_window + offset,
                    part_start,
                    part_end,
                    distances[offset],
                    fuels[offset],
                    energies[offset],
                    sample_event_id,
                )

    def _add_part(
        self,
        window: int,
        start_us: int,
        end_us: int,
        distance_m: int,
        fuel_used_ml: int,
        energy_used_wh: int,
        sample_event_id: str,
    ) -> None:
        sums = self._sums.get(window)
        if sums is None:
            sums = self._sums[window] = _WindowSums(start_us, sample_event_id)
        sums.end_us = end_us
        sums.distance_m += distance_m
        sums.fuel_used_ml += fuel_used_ml
        sums.energy_used_wh += energy_used_wh
        sums.sample_count += 1
        sums.last_sample_event_id = sample_event_id

    def activities(self) -> list[Activity]:
        """One activity per window that received anything, in time order."""
        vehicle_id = self.vehicle_id
        return [
            Activity(
                event_id=activity_event_id(
                    vehicle_id,
                    window * self.window_us,
                    sums.first_sample_event_id,
                    sums.last_sample_event_id,
                    self.revision,
                ),
                vehicle_id=vehicle_id,
                period_start_us=sums.start_us,
                period_end_us=sums.end_us,
                distance_m=sums.distance_m,
                fuel_used_ml=sums.fuel_used_ml,
                energy_used_wh=sums.energy_used_wh,
                sample_count=sums.sample_count,
                first_sample_event_id=sums.first_sample_event_id,
                last_sample_event_id=sums.last_sample_event_id,
            )
            for window, sums in sorted(self._sums.items())
        ]


def apportion(amount: int, weights: list[int]) -> list[int]:
    """Splits a whole amount in proportion to positive weights, in whole units that add up to
    the amount: each part is rounded down, and the units left over go to the parts with the
    largest remainders (the earlier part on a tie)."""
    total = sum(weights)
    parts = [amount * weight // total for weight in weights]
    left_over = amount - sum(parts)
    if left_over:
        by_remainder = sorted(
            range(len(weights)), key=lambda index: (-(amount * weights[index] % total), index)
        )
        for index in by_remainder[:left_over]:
            parts[index] += 1
    return parts
