"""A vehicle's counter state, and folding its telemetry samples into it.

Counters (odometer, fuel used, traction energy used) are cumulative, as in rFMS and Traccar,
so activity is the difference between consecutive accepted readings. The last accepted reading
is the vehicle's *baseline*. A vehicle's samples are folded in stream order, one batch at a
time, and every rule below holds for any split of the stream into batches:

1. Redelivery. The state keeps the stream position (partition, offset) of the last record it
   took in. A record of the same partition at or below that offset was already applied, and
   is skipped without being counted: the position is the exactly-once high-water mark. A
   sample whose event id is the baseline's or the pending candidate's (below) is a duplicate:
   skipped and counted as late.
2. Invalid samples (no event id, a time without a zone, a time before EARLIEST_SAMPLE or more
   than MAX_CLOCK_SKEW ahead of now, a negative counter or one above its MAX_* bound, missing the
   counter the vehicle's fuel type needs) are rejected (dead letter) and counted as
   quarantined; the baseline stays, and such a sample never becomes one.
3. The first sample becomes the baseline (accepted; nothing to count yet).
4. A sample at or before the baseline's time is late: already covered, it changes nothing, is
   counted, and is not a dead letter.
5. When no counter is below the baseline, the increments are the differences. An optional
   counter counts once both readings carry it; a counter a sample leaves out keeps its last
   value. An average speed above MAX_PLAUSIBLE_SPEED_KMH (`implausible_speed`), or fuel or
   energy used faster than the vehicle class's engine or motor can use it
   (`implausible_fuel_rate`, `implausible_energy_rate`; PLAUSIBLE_POWER_KW), rejects the sample
   (quarantined, baseline kept). Otherwise the sample is accepted and
   becomes the baseline; a reset candidate still pending was a glitch: it is quarantined and
   reported (COUNTER_GLITCH).
6. When some counter is below the baseline, the sample may be a counter reset (unit replaced,
   rollover, counter cleared) or a glitch. The next sample decides, so the sample becomes the
   pending reset candidate, with nothing counted yet. With a candidate pending:
   - a sample at or before the candidate's time is late;
   - a sample consistent with the candidate (no counter below it, plausible speed from it)
     confirms the reset: counter_resets + 1, a COUNTER_RESET event, the candidate becomes the
     baseline (its own values count nothing, like a first sample) and the sample's increments
     over it count;
   - otherwise the older candidate was a glitch (quarantined, COUNTER_GLITCH) and the sample
     becomes the candidate.
   The candidate is part of the state, so the deciding sample may come in a later batch.

Every sample taken in is eventually accepted, late or quarantined; a candidate is counted when
it is decided.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

from fleet_telemetry.domain.activity import Activity, ActivityWindows
from fleet_telemetry.domain.vehicles import Vehicle, VehicleClass
from servicekit.ids import name_based_id

MAX_PLAUSIBLE_SPEED_KMH = 200
# Telematics units of the fleets the platform serves did not exist before 1990, the Covenant's
# earliest baseline year; a sample dated earlier is a unit with its clock unset.
EARLIEST_SAMPLE_US = int(datetime(1990, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
# How far ahead of the service's clock a unit's clock may run.
MAX_CLOCK_SKEW_US = 10 * 60 * 1_000_000
# Cumulative counters above these (10 million km, 10 million litres, 10 GWh) are corrupt, and
# would overflow the sums.
MAX_ODOMETER_M = 10**10
MAX_FUEL_USED_ML = 10**10
MAX_ENERGY_USED_WH = 10**10
# Highest power of a vehicle of each class, in kW: generous bounds for buses, trucks and refuse
# trucks with the largest engines on the market (about 500 kW) and for the most powerful vans
# and cars. Over any interval a vehicle cannot use more traction energy than this power for that
# long, nor more fuel than an engine needs to deliver it.
PLAUSIBLE_POWER_KW = {
    VehicleClass.PASSENGER_CAR: 400,
    VehicleClass.VAN: 300,
    VehicleClass.TRUCK: 600,
    VehicleClass.REFUSE_TRUCK: 600,
    VehicleClass.BUS: 600,
}
# Fuel per unit of engine work at best efficiency is about 0.21 kg/kWh for diesel and 0.25 for
# petrol (brake-specific fuel consumption); 0.5 litre per kWh bounds both with room to spare.
FUEL_ML_PER_KWH_BOUND = 500

_MICROSECONDS_PER_HOUR = 3_600_000_000
_SPEED_LIMIT_M_PER_HOUR = MAX_PLAUSIBLE_SPEED_KMH * 1000

# Fixed forever, like the activity namespace: quality event ids must stay stable on retry.
QUALITY_EVENT_ID_NAMESPACE = uuid.UUID("5d0c8a7e-2f43-4d6b-9a51-6f0e3c9b7a12")

# Where a record was read: (partition, offset) of the telemetry topic.
StreamPosition = tuple[int, int]


# Samples and readings are named tuples, not frozen dataclasses: as immutable, and a fold
# builds one of each per sample, where a frozen dataclass's __init__ costs several times more.
class TelemetrySample(NamedTuple):
    event_id: str
    vehicle_id: str
    # Microseconds since the epoch (UTC); None when the sample's time carried no zone.
    occurred_at_us: int | None
    odometer_m: int
    fuel_used_ml: int | None
    energy_used_wh: int | None


class Reading(NamedTuple):
    """Cumulative counters at one moment: a baseline or a pending reset candidate."""

    at_us: int
    odometer_m: int
    fuel_used_ml: int | None
    energy_used_wh: int | None
    # The sample it came from; empty when an operator set it.
    event_id: str


@dataclass(frozen=True, slots=True)
class VehicleTotals:
    distance_m: int = 0
    fuel_used_ml: int = 0
    energy_used_wh: int = 0
    activity_records: int = 0
    samples_accepted: int = 0
    samples_late: int = 0
    samples_quarantined: int = 0
    counter_resets: int = 0


@dataclass(frozen=True, slots=True)
class VehicleState:
    vehicle: Vehicle
    # Bumped by every registration and baseline correction, so a cached copy knows it is stale.
    revision: int
    baseline: Reading | None = None
    pending_reset: Reading | None = None
    position: StreamPosition | None = None
    totals: VehicleTotals = VehicleTotals()


class QualityKind(StrEnum):
    COUNTER_RESET = "counter_reset"
    COUNTER_GLITCH = "counter_glitch"
    BASELINE_SET = "baseline_set"


@dataclass(frozen=True, slots=True)
class QualityEvent:
    """Something that happened to a vehicle's counters that is not activity."""

    event_id: str
    vehicle_id: str
    kind: QualityKind
    at_us: int
    # The sample it is about (the reset or glitch candidate); empty for an operator's baseline.
    sample_event_id: str
    previous_baseline: Reading | None
    new_baseline: Reading | None
    detail: str


@dataclass(frozen=True, slots=True)
class SampleRejection:
    """A sample that can never be accounted: `index` is its position in the folded sequence."""

    index: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class FoldResult:
    state: VehicleState
    activities: list[Activity]
    quality_events: list[QualityEvent]
    rejections: list[SampleRejection]
    # False when every record had been applied before: the state is the one folded into.
    changed: bool


def quality_event_id(vehicle_id: str, kind: QualityKind, *about: str) -> str:
    return name_based_id(QUALITY_EVENT_ID_NAMESPACE, "/".join((vehicle_id, kind.value, *about)))


def fold_samples(
    state: VehicleState,
    records: Sequence[tuple[StreamPosition, TelemetrySample]],
    window_us: int,
    now_us: int | None = None,
) -> FoldResult:
    """Applies one vehicle's records, in stream order, to its state (the rules above).

    `now_us` is the service's clock; samples from further ahead than the allowed skew are
    refused (None: no upper bound, for replays of old data in tests)."""
    latest_us = None if now_us is None else now_us + MAX_CLOCK_SKEW_US
    power_kw = PLAUSIBLE_POWER_KW[state.vehicle.vehicle_class]
    vehicle = state.vehicle
    vehicle_id = vehicle.vehicle_id
    needs_fuel = vehicle.burns_fuel
    baseline = state.baseline
    pending = state.pending_reset
    position = state.position
    accepted = late = quarantined = resets = 0
    distance_total = fuel_total = energy_total = 0
    windows = ActivityWindows(vehicle_id, window_us, state.revision)
    quality_events: list[QualityEvent] = []
    rejections: list[SampleRejection] = []

    for index, (where, sample) in enumerate(records):
        if position is not None and where[0] == position[0] and where[1] <= position[1]:
            continue
        position = where
        event_id = sample.event_id
        if event_id and (
            (baseline is not None and event_id == baseline.event_id)
            or (pending is not None and event_id == pending.event_id)
        ):
            late += 1
            continue
        problem = _problem(sample, needs_fuel, vehicle, latest_us)
        if problem is not None:
            rejections.append(SampleRejection(index, *problem))
            quarantined += 1
            continue
        at_us: int = sample.occurred_at_us  # type: ignore[assignment]  # checked by _problem
        if baseline is None:
            baseline = _reading(sample, None)
            accepted += 1
            continue
        if at_us <= baseline.at_us:
            late += 1
            continue

        increments = _increments(baseline, sample)
        if increments is not None:
            distance_m, fuel_used_ml, energy_used_wh = increments
            implausible = _implausible(
                distance_m, fuel_used_ml, energy_used_wh, at_us - baseline.at_us, power_kw
            )
            if implausible is not None:
                rejections.append(SampleRejection(index, *implausible))
                quarantined += 1
                continue
            if pending is not None:
                quarantined += 1
                quality_events.append(_glitch(vehicle_id, baseline, pending, sample))
                pending = None
            windows.add(baseline.at_us, at_us, distance_m, fuel_used_ml, energy_used_wh, event_id)
            distance_total += distance_m
            fuel_total += fuel_used_ml
            energy_total += energy_used_wh
            baseline = _reading(sample, baseline)
            accepted += 1
            continue

        if pending is None:
            # A candidate starts afresh: a counter it lacks is not carried over from the old
            # unit's readings.
            pending = _reading(sample, None)
            continue
        if at_us <= pending.at_us:
            late += 1
            continue
        increments = _increments(pending, sample)
        if increments is not None:
            distance_m, fuel_used_ml, energy_used_wh = increments
            elapsed_us = at_us - pending.at_us
            if _implausible(distance_m, fuel_used_ml, energy_used_wh, elapsed_us, power_kw) is None:
                resets += 1
                # The candidate is accepted as the new baseline, then the sample over it.
                accepted += 2
                quality_events.append(_reset(vehicle_id, baseline, pending, sample))
                windows.add(
                    pending.at_us, at_us, distance_m, fuel_used_ml, energy_used_wh, event_id
                )
                distance_total += distance_m
                fuel_total += fuel_used_ml
                energy_total += energy_used_wh
                baseline = _reading(sample, pending)
                pending = None
                continue
        quarantined += 1
        quality_events.append(_glitch(vehicle_id, baseline, pending, sample))
        pending = _reading(sample, None)

    if position == state.position:
        return FoldResult(state, [], [], [], changed=False)
    activities = windows.activities()
    totals = state.totals
    new_state = replace(
        state,
        baseline=baseline,
        pending_reset=pending,
        position=position,
        totals=VehicleTotals(
            distance_m=totals.distance_m + distance_total,
            fuel_used_ml=totals.fuel_used_ml + fuel_total,
            energy_used_wh=totals.energy_used_wh + energy_total,
            activity_records=totals.activity_records + len(activities),
            samples_accepted=totals.samples_accepted + accepted,
            samples_late=totals.samples_late + late,
            samples_quarantined=totals.samples_quarantined + quarantined,
            counter_resets=totals.counter_resets + resets,
        ),
    )
    return FoldResult(new_state, activities, quality_events, rejections, changed=True)


class InvalidBaseline(ValueError):
    """An operator's baseline that breaks a rule; `field` names the offending reading field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def operator_baseline(
    vehicle: Vehicle,
    at_us: int | None,
    odometer_m: int,
    fuel_used_ml: int | None,
    energy_used_wh: int | None,
) -> Reading:
    """A baseline set by an operator: a time, no negative counter, and the counter the
    vehicle's fuel type needs (as for samples)."""
    if at_us is None:
        raise InvalidBaseline("occurred_at", "occurred_at is required")
    for field, value in (
        ("odometer_m", odometer_m),
        ("fuel_used_ml", fuel_used_ml),
        ("energy_used_wh", energy_used_wh),
    ):
        if value is not None and value < 0:
            raise InvalidBaseline(field, f"{field} is negative: {value}")
    if vehicle.burns_fuel and fuel_used_ml is None:
        raise InvalidBaseline(
            "fuel_used_ml", f"{vehicle.fuel_type} vehicle {vehicle.vehicle_id!r} needs fuel_used_ml"
        )
    if not vehicle.burns_fuel and energy_used_wh is None:
        raise InvalidBaseline(
            "energy_used_wh",
            f"{vehicle.fuel_type} vehicle {vehicle.vehicle_id!r} needs energy_used_wh",
        )
    return Reading(at_us, odometer_m, fuel_used_ml, energy_used_wh, "")


def set_baseline(state: VehicleState, baseline: Reading, new_revision: int) -> VehicleState:
    """An operator's baseline: replaces the baseline, drops a pending candidate, keeps the
    stream position (records already taken in stay taken in)."""
    return replace(state, baseline=baseline, pending_reset=None, revision=new_revision)


def baseline_set_event(
    vehicle_id: str,
    previous: Reading | None,
    new: Reading,
    new_revision: int,
    detail: str,
) -> QualityEvent:
    return QualityEvent(
        event_id=quality_event_id(vehicle_id, QualityKind.BASELINE_SET, str(new_revision)),
        vehicle_id=vehicle_id,
        kind=QualityKind.BASELINE_SET,
        at_us=new.at_us,
        sample_event_id="",
        previous_baseline=previous,
        new_baseline=new,
        detail=detail,
    )


def _problem(
    sample: TelemetrySample, needs_fuel: bool, vehicle: Vehicle, latest_us: int | None
) -> tuple[str, str] | None:
    if not sample.event_id:
        return "missing_event_id", "sample has no event_id"
    at_us = sample.occurred_at_us
    if at_us is None:
        return "naive_timestamp", "sample time has no time zone"
    if at_us < EARLIEST_SAMPLE_US:
        return "implausible_time", "sample is dated before 1990: the unit's clock is not set"
    if latest_us is not None and at_us > latest_us:
        return "implausible_time", "sample is dated more than 10 minutes in the future"
    odometer_m = sample.odometer_m
    fuel_used_ml = sample.fuel_used_ml
    energy_used_wh = sample.energy_used_wh
    if odometer_m > MAX_ODOMETER_M:
        return "implausible_counter", f"odometer_m is above {MAX_ODOMETER_M}"
    if fuel_used_ml is not None and fuel_used_ml > MAX_FUEL_USED_ML:
        return "implausible_counter", f"fuel_used_ml is above {MAX_FUEL_USED_ML}"
    if energy_used_wh is not None and energy_used_wh > MAX_ENERGY_USED_WH:
        return "implausible_counter", f"energy_used_wh is above {MAX_ENERGY_USED_WH}"
    if odometer_m < 0:
        return "negative_counter", f"odometer_m is negative: {odometer_m}"
    if fuel_used_ml is not None and fuel_used_ml < 0:
        return "negative_counter", f"fuel_used_ml is negative: {fuel_used_ml}"
    if energy_used_wh is not None and energy_used_wh < 0:
        return "negative_counter", f"energy_used_wh is negative: {energy_used_wh}"
    if needs_fuel:
        if fuel_used_ml is None:
            return (
                "missing_fuel_counter",
                f"{vehicle.fuel_type} vehicle {vehicle.vehicle_id!r} sent no fuel_used_ml",
            )
    elif energy_used_wh is None:
        return (
            "missing_energy_counter",
            f"{vehicle.fuel_type} vehicle {vehicle.vehicle_id!r} sent no energy_used_wh",
        )
    return None


def _increments(reading: Reading, sample: TelemetrySample) -> tuple[int, int, int] | None:
    """The sample's increments over the reading (distance, fuel, energy), or None when some
    counter of the sample is below the reading's. A counter one of them lacks counts zero."""
    distance_m = sample.odometer_m - reading.odometer_m
    if distance_m < 0:
        return None
    fuel_used_ml = sample.fuel_used_ml
    previous_fuel_ml = reading.fuel_used_ml
    if fuel_used_ml is None or previous_fuel_ml is None:
        fuel_used_ml = 0
    else:
        fuel_used_ml -= previous_fuel_ml
        if fuel_used_ml < 0:
            return None
    energy_used_wh = sample.energy_used_wh
    previous_energy_wh = reading.energy_used_wh
    if energy_used_wh is None or previous_energy_wh is None:
        energy_used_wh = 0
    else:
        energy_used_wh -= previous_energy_wh
        if energy_used_wh < 0:
            return None
    return distance_m, fuel_used_ml, energy_used_wh


def _implausible(
    distance_m: int, fuel_used_ml: int, energy_used_wh: int, elapsed_us: int, power_kw: int
) -> tuple[str, str] | None:
    """The reason and detail when the increments are faster than a vehicle can go or use
    fuel or energy, None when they are plausible. Compared in integers, free of rounding."""
    seconds = elapsed_us / 1_000_000
    if distance_m * _MICROSECONDS_PER_HOUR > _SPEED_LIMIT_M_PER_HOUR * elapsed_us:
        speed_kmh = distance_m * _MICROSECONDS_PER_HOUR / (1000 * elapsed_us)
        return "implausible_speed", (
            f"{distance_m} m in {seconds:g} s is an average of {speed_kmh:.1f} km/h, "
            f"above the plausible {MAX_PLAUSIBLE_SPEED_KMH} km/h"
        )
    # Wh over the interval against kW x hours: energy_wh * 3.6e9 us/h <= kW * 1000 * us.
    if energy_used_wh * _MICROSECONDS_PER_HOUR > power_kw * 1000 * elapsed_us:
        return "implausible_energy_rate", (
            f"{energy_used_wh} Wh in {seconds:g} s is more than {power_kw} kW can use"
        )
    if fuel_used_ml * _MICROSECONDS_PER_HOUR > power_kw * FUEL_ML_PER_KWH_BOUND * elapsed_us:
        return "implausible_fuel_rate", (
            f"{fuel_used_ml} ml in {seconds:g} s is more than a {power_kw} kW engine can burn"
        )
    return None


def _reading(sample: TelemetrySample, previous: Reading | None) -> Reading:
    # An optional counter a sample leaves out keeps its last value, so the next sample that
    # carries it accounts the whole gap instead of losing it.
    fuel_used_ml = sample.fuel_used_ml
    energy_used_wh = sample.energy_used_wh
    if previous is not None:
        if fuel_used_ml is None:
            fuel_used_ml = previous.fuel_used_ml
        if energy_used_wh is None:
            energy_used_wh = previous.energy_used_wh
    return Reading(
        sample.occurred_at_us,  # type: ignore[arg-type]  # only accepted samples get here
        sample.odometer_m,
        fuel_used_ml,
        energy_used_wh,
        sample.event_id,
    )


def _describe(reading: Reading) -> str:
    counters = [f"odometer {reading.odometer_m} m"]
    if reading.fuel_used_ml is not None:
        counters.append(f"fuel {reading.fuel_used_ml} ml")
    if reading.energy_used_wh is not None:
        counters.append(f"energy {reading.energy_used_wh} Wh")
    return ", ".join(counters)


def _reset(
    vehicle_id: str, baseline: Reading, candidate: Reading, decided_by: TelemetrySample
) -> QualityEvent:
    return QualityEvent(
        event_id=quality_event_id(
            vehicle_id, QualityKind.COUNTER_RESET, candidate.event_id, decided_by.event_id
        ),
        vehicle_id=vehicle_id,
        kind=QualityKind.COUNTER_RESET,
        at_us=candidate.at_us,
        sample_event_id=candidate.event_id,
        previous_baseline=baseline,
        new_baseline=candidate,
        detail=(
            f"counters dropped from {_describe(baseline)} to {_describe(candidate)}; "
            f"sample {decided_by.event_id!r} went on from there: new baseline"
        ),
    )


def _glitch(
    vehicle_id: str, baseline: Reading, candidate: Reading, decided_by: TelemetrySample
) -> QualityEvent:
    return QualityEvent(
        event_id=quality_event_id(
            vehicle_id, QualityKind.COUNTER_GLITCH, candidate.event_id, decided_by.event_id
        ),
        vehicle_id=vehicle_id,
        kind=QualityKind.COUNTER_GLITCH,
        at_us=candidate.at_us,
        sample_event_id=candidate.event_id,
        previous_baseline=baseline,
        new_baseline=None,
        detail=(
            f"backwards reading {_describe(candidate)} (below the baseline "
            f"{_describe(baseline)}) was not confirmed by sample {decided_by.event_id!r}: "
            "quarantined, baseline kept"
        ),
    )
