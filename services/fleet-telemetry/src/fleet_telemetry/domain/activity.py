"""Turning cumulative telematics counters into per-period vehicle activity.

Counters (odometer, fuel used, traction energy used) are cumulative, as in rFMS and Traccar, so
the activity of a period is the difference between two consecutive readings. A counter that goes
backwards or jumps implausibly is a data-quality event, never negative or phantom kilometres.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from fleet_telemetry.domain.vehicles import Vehicle

MAX_PLAUSIBLE_SPEED_KMH = 200

# Fixed forever: activity ids derived from it must stay stable across releases and retries.
ACTIVITY_ID_NAMESPACE = uuid.UUID("48a547c7-617b-411c-bcb9-c3f7f392f045")

_MICROSECONDS_PER_HOUR = 3_600_000_000


@dataclass(frozen=True)
class TelemetrySample:
    event_id: str
    vehicle_id: str
    occurred_at: datetime
    odometer_m: int
    fuel_used_ml: int | None
    energy_used_wh: int | None


@dataclass(frozen=True)
class CounterReading:
    """The last accepted reading of a vehicle: the baseline the next sample is compared with."""

    occurred_at: datetime
    odometer_m: int
    fuel_used_ml: int | None
    energy_used_wh: int | None
    event_id: str


@dataclass(frozen=True)
class Activity:
    """What a vehicle did between two consecutive accepted samples."""

    event_id: str
    vehicle_id: str
    period_start: datetime
    period_end: datetime
    distance_m: int
    fuel_used_ml: int
    energy_used_wh: int
    source_sample_event_id: str


class SampleRejected(ValueError):
    """A telemetry sample that cannot be accounted; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def activity_event_id(sample_event_id: str) -> str:
    """Same sample, same activity id: a retried sample cannot produce a second activity."""
    return str(uuid.uuid5(ACTIVITY_ID_NAMESPACE, sample_event_id))


def derive_activity(
    vehicle: Vehicle, previous: CounterReading | None, sample: TelemetrySample
) -> tuple[CounterReading, Activity | None]:
    """Accept a sample against the vehicle's last reading.

    Returns the reading to keep as the new baseline and the activity since the previous one,
    or None when there is nothing to report (first sample, redelivery, nothing changed).
    Raises SampleRejected when the sample cannot be trusted.
    """
    if previous is not None and sample.event_id == previous.event_id:
        return previous, None
    _validate_sample(vehicle, sample)
    if previous is None:
        return _reading_from(sample, previous=None), None

    if sample.occurred_at <= previous.occurred_at:
        raise SampleRejected(
            "not_after_previous",
            f"sample at {sample.occurred_at.isoformat()} is not after the previous reading "
            f"at {previous.occurred_at.isoformat()}",
        )
    distance_m = sample.odometer_m - previous.odometer_m
    if distance_m < 0:
        raise SampleRejected(
            "odometer_backwards",
            f"odometer went back from {previous.odometer_m} m to {sample.odometer_m} m",
        )
    fuel_used_ml = _counter_increase(
        previous.fuel_used_ml, sample.fuel_used_ml, "fuel_counter_backwards", "fuel used", "ml"
    )
    energy_used_wh = _counter_increase(
        previous.energy_used_wh,
        sample.energy_used_wh,
        "energy_counter_backwards",
        "energy used",
        "Wh",
    )
    elapsed = sample.occurred_at - previous.occurred_at
    _check_plausible_speed(distance_m, elapsed)

    reading = _reading_from(sample, previous)
    if distance_m == 0 and fuel_used_ml == 0 and energy_used_wh == 0:
        return reading, None
    activity = Activity(
        event_id=activity_event_id(sample.event_id),
        vehicle_id=vehicle.vehicle_id,
        period_start=previous.occurred_at,
        period_end=sample.occurred_at,
        distance_m=distance_m,
        fuel_used_ml=fuel_used_ml,
        energy_used_wh=energy_used_wh,
        source_sample_event_id=sample.event_id,
    )
    return reading, activity


def _validate_sample(vehicle: Vehicle, sample: TelemetrySample) -> None:
    if not sample.event_id:
        raise SampleRejected("missing_event_id", "sample has no event_id")
    if sample.vehicle_id != vehicle.vehicle_id:
        raise SampleRejected(
            "vehicle_mismatch",
            f"sample for vehicle {sample.vehicle_id!r} applied to vehicle {vehicle.vehicle_id!r}",
        )
    if sample.occurred_at.utcoffset() is None:
        raise SampleRejected(
            "naive_timestamp",
            f"sample time {sample.occurred_at.isoformat()} has no time zone",
        )
    for name, value in (
        ("odometer_m", sample.odometer_m),
        ("fuel_used_ml", sample.fuel_used_ml),
        ("energy_used_wh", sample.energy_used_wh),
    ):
        if value is not None and value < 0:
            raise SampleRejected("negative_counter", f"{name} is negative: {value}")
    if vehicle.burns_fuel and sample.fuel_used_ml is None:
        raise SampleRejected(
            "missing_fuel_counter",
            f"{vehicle.fuel_type} vehicle {vehicle.vehicle_id!r} sent no fuel_used_ml",
        )
    if not vehicle.burns_fuel and sample.energy_used_wh is None:
        raise SampleRejected(
            "missing_energy_counter",
            f"{vehicle.fuel_type} vehicle {vehicle.vehicle_id!r} sent no energy_used_wh",
        )


def _counter_increase(
    previous_value: int | None, sample_value: int | None, reason: str, label: str, unit: str
) -> int:
    # An optional counter only counts once both readings carry it; until then it is a baseline.
    if previous_value is None or sample_value is None:
        return 0
    increase = sample_value - previous_value
    if increase < 0:
        raise SampleRejected(
            reason, f"{label} went back from {previous_value} {unit} to {sample_value} {unit}"
        )
    return increase


def _check_plausible_speed(distance_m: int, elapsed: timedelta) -> None:
    elapsed_us = elapsed // timedelta(microseconds=1)
    # Integer comparison of distance_m / elapsed against the limit, free of rounding.
    if distance_m * _MICROSECONDS_PER_HOUR > MAX_PLAUSIBLE_SPEED_KMH * 1000 * elapsed_us:
        speed_kmh = distance_m * _MICROSECONDS_PER_HOUR / (1000 * elapsed_us)
        raise SampleRejected(
            "implausible_speed",
            f"{distance_m} m in {elapsed.total_seconds():g} s is an average of "
            f"{speed_kmh:.1f} km/h, above the plausible {MAX_PLAUSIBLE_SPEED_KMH} km/h",
        )


def _reading_from(sample: TelemetrySample, previous: CounterReading | None) -> CounterReading:
    # An optional counter a sample leaves out keeps its last value, so the next sample that
    # carries it accounts the whole gap instead of losing it.
    fuel_used_ml = sample.fuel_used_ml
    energy_used_wh = sample.energy_used_wh
    if previous is not None:
        if fuel_used_ml is None:
            fuel_used_ml = previous.fuel_used_ml
        if energy_used_wh is None:
            energy_used_wh = previous.energy_used_wh
    return CounterReading(
        occurred_at=sample.occurred_at,
        odometer_m=sample.odometer_m,
        fuel_used_ml=fuel_used_ml,
        energy_used_wh=energy_used_wh,
        event_id=sample.event_id,
    )
