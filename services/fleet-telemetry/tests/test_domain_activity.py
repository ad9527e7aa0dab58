import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from fleet_telemetry.domain.activity import (
    ACTIVITY_ID_NAMESPACE,
    MAX_PLAUSIBLE_SPEED_KMH,
    Activity,
    CounterReading,
    SampleRejected,
    TelemetrySample,
    activity_event_id,
    derive_activity,
)
from fleet_telemetry.domain.vehicles import (
    CovenantSubsector,
    FuelType,
    Vehicle,
    VehicleClass,
)

T0 = datetime(2025, 3, 4, 7, 0, tzinfo=UTC)


def vehicle(fuel_type: FuelType = FuelType.DIESEL) -> Vehicle:
    return Vehicle(
        vehicle_id="ak-refuse-03",
        owner_partner_id="aalborg-kommune",
        municipality_id="aalborg-kommune",
        fuel_type=fuel_type,
        vehicle_class=VehicleClass.REFUSE_TRUCK,
        covenant_subsector=CovenantSubsector.MUNICIPAL_FLEET,
    )


def reading(
    *,
    occurred_at: datetime = T0,
    odometer_m: int = 120_000,
    fuel_used_ml: int | None = 50_000,
    energy_used_wh: int | None = None,
    event_id: str = "sample-0",
) -> CounterReading:
    return CounterReading(
        occurred_at=occurred_at,
        odometer_m=odometer_m,
        fuel_used_ml=fuel_used_ml,
        energy_used_wh=energy_used_wh,
        event_id=event_id,
    )


def sample(
    *,
    event_id: str = "sample-1",
    vehicle_id: str = "ak-refuse-03",
    occurred_at: datetime = T0 + timedelta(minutes=30),
    odometer_m: int = 132_000,
    fuel_used_ml: int | None = 56_000,
    energy_used_wh: int | None = None,
) -> TelemetrySample:
    return TelemetrySample(
        event_id=event_id,
        vehicle_id=vehicle_id,
        occurred_at=occurred_at,
        odometer_m=odometer_m,
        fuel_used_ml=fuel_used_ml,
        energy_used_wh=energy_used_wh,
    )


def rejection(
    previous: CounterReading | None,
    new_sample: TelemetrySample,
    fuel_type: FuelType = FuelType.DIESEL,
) -> SampleRejected:
    with pytest.raises(SampleRejected) as raised:
        derive_activity(vehicle(fuel_type), previous, new_sample)
    return raised.value


def test_first_sample_only_sets_the_baseline() -> None:
    first = sample(event_id="first", odometer_m=120_000, fuel_used_ml=50_000)
    new_reading, activity = derive_activity(vehicle(), None, first)
    assert activity is None
    assert new_reading == CounterReading(
        occurred_at=first.occurred_at,
        odometer_m=120_000,
        fuel_used_ml=50_000,
        energy_used_wh=None,
        event_id="first",
    )


def test_activity_is_the_difference_between_consecutive_readings() -> None:
    new_sample = sample()
    new_reading, activity = derive_activity(vehicle(), reading(), new_sample)
    assert activity == Activity(
        event_id=activity_event_id("sample-1"),
        vehicle_id="ak-refuse-03",
        period_start=T0,
        period_end=T0 + timedelta(minutes=30),
        distance_m=12_000,
        fuel_used_ml=6_000,
        energy_used_wh=0,
        source_sample_event_id="sample-1",
    )
    assert new_reading == CounterReading(
        occurred_at=new_sample.occurred_at,
        odometer_m=132_000,
        fuel_used_ml=56_000,
        energy_used_wh=None,
        event_id="sample-1",
    )


def test_electric_vehicle_activity_counts_energy() -> None:
    previous = reading(fuel_used_ml=None, energy_used_wh=900_000)
    new_sample = sample(fuel_used_ml=None, energy_used_wh=902_400)
    _, activity = derive_activity(vehicle(FuelType.ELECTRIC), previous, new_sample)
    assert activity is not None
    assert (activity.distance_m, activity.fuel_used_ml, activity.energy_used_wh) == (
        12_000,
        0,
        2_400,
    )


def test_activity_id_is_uuid5_of_the_sample_event_id() -> None:
    _, first_try = derive_activity(vehicle(), reading(), sample())
    _, retry = derive_activity(vehicle(), reading(), sample())
    assert first_try is not None and retry is not None
    assert first_try.event_id == retry.event_id
    assert first_try.event_id == str(uuid.uuid5(ACTIVITY_ID_NAMESPACE, "sample-1"))
    assert uuid.UUID(first_try.event_id).version == 5


def test_different_samples_give_different_activity_ids() -> None:
    assert activity_event_id("sample-1") != activity_event_id("sample-2")


def test_redelivered_sample_returns_previous_reading_and_no_activity() -> None:
    previous = reading(event_id="sample-0")
    # A redelivery is recognised by its id even though the baseline already moved past it.
    redelivered = sample(event_id="sample-0", occurred_at=T0, odometer_m=120_000)
    assert derive_activity(vehicle(), previous, redelivered) == (previous, None)


def test_redelivery_is_recognised_before_validation() -> None:
    previous = reading(event_id="sample-0")
    redelivered = sample(event_id="sample-0", fuel_used_ml=None)
    assert derive_activity(vehicle(), previous, redelivered) == (previous, None)


def test_unchanged_counters_move_the_baseline_without_activity() -> None:
    idle = sample(odometer_m=120_000, fuel_used_ml=50_000)
    new_reading, activity = derive_activity(vehicle(), reading(), idle)
    assert activity is None
    assert new_reading.event_id == "sample-1"
    assert new_reading.occurred_at == idle.occurred_at


def test_fuel_burnt_standing_still_is_an_activity() -> None:
    idling = sample(odometer_m=120_000, fuel_used_ml=50_800)
    _, activity = derive_activity(vehicle(), reading(), idling)
    assert activity is not None
    assert (activity.distance_m, activity.fuel_used_ml) == (0, 800)


def test_energy_used_standing_still_is_an_activity() -> None:
    previous = reading(fuel_used_ml=None, energy_used_wh=10_000)
    heating = sample(odometer_m=120_000, fuel_used_ml=None, energy_used_wh=10_500)
    _, activity = derive_activity(vehicle(FuelType.ELECTRIC), previous, heating)
    assert activity is not None
    assert (activity.distance_m, activity.energy_used_wh) == (0, 500)


def test_optional_counter_left_out_keeps_its_last_value() -> None:
    # A diesel vehicle that also reports traction energy (hybrid) skips it once.
    previous = reading(energy_used_wh=7_000)
    gap = sample(energy_used_wh=None)
    gap_reading, gap_activity = derive_activity(vehicle(), previous, gap)
    assert gap_activity is not None and gap_activity.energy_used_wh == 0
    assert gap_reading.energy_used_wh == 7_000

    resumed = sample(
        event_id="sample-2",
        occurred_at=gap.occurred_at + timedelta(minutes=30),
        odometer_m=140_000,
        fuel_used_ml=60_000,
        energy_used_wh=7_900,
    )
    _, resumed_activity = derive_activity(vehicle(), gap_reading, resumed)
    assert resumed_activity is not None and resumed_activity.energy_used_wh == 900


def test_period_boundaries_keep_their_time_zone_instants() -> None:
    copenhagen_summer = timezone(timedelta(hours=2))
    later = datetime(2025, 6, 1, 10, 0, tzinfo=copenhagen_summer)
    previous = reading(occurred_at=datetime(2025, 6, 1, 7, 30, tzinfo=UTC))
    _, activity = derive_activity(vehicle(), previous, sample(occurred_at=later))
    assert activity is not None
    assert activity.period_end - activity.period_start == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("counter", "value"),
    [("odometer_m", -1), ("fuel_used_ml", -5), ("energy_used_wh", -10)],
)
def test_negative_counter_is_rejected(counter: str, value: int) -> None:
    bad = sample(**{counter: value})  # type: ignore[arg-type]
    rejected = rejection(None, bad)
    assert rejected.reason == "negative_counter"
    assert counter in rejected.message and str(value) in rejected.message


@pytest.mark.parametrize(
    "fuel_type",
    [FuelType.DIESEL, FuelType.PETROL, FuelType.HVO100, FuelType.BIOGAS, FuelType.NATURAL_GAS],
)
def test_combustion_vehicle_needs_fuel_counter(fuel_type: FuelType) -> None:
    rejected = rejection(None, sample(fuel_used_ml=None, energy_used_wh=1_000), fuel_type)
    assert rejected.reason == "missing_fuel_counter"


def test_electric_vehicle_needs_energy_counter() -> None:
    rejected = rejection(None, sample(fuel_used_ml=None, energy_used_wh=None), FuelType.ELECTRIC)
    assert rejected.reason == "missing_energy_counter"


def test_electric_vehicle_without_fuel_counter_is_fine() -> None:
    first = sample(fuel_used_ml=None, energy_used_wh=1_000)
    new_reading, _ = derive_activity(vehicle(FuelType.ELECTRIC), None, first)
    assert new_reading.energy_used_wh == 1_000


def test_sample_for_another_vehicle_is_rejected() -> None:
    rejected = rejection(reading(), sample(vehicle_id="ak-van-017"))
    assert rejected.reason == "vehicle_mismatch"


def test_sample_without_event_id_is_rejected() -> None:
    assert rejection(None, sample(event_id="")).reason == "missing_event_id"


def test_sample_without_time_zone_is_rejected() -> None:
    naive = sample(occurred_at=datetime(2025, 3, 4, 8, 0))
    assert rejection(None, naive).reason == "naive_timestamp"


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(seconds=-1)])
def test_sample_not_after_previous_is_rejected(offset: timedelta) -> None:
    rejected = rejection(reading(), sample(occurred_at=T0 + offset))
    assert rejected.reason == "not_after_previous"


def test_odometer_going_backwards_is_rejected_with_both_values() -> None:
    rejected = rejection(reading(odometer_m=120_000), sample(odometer_m=119_500))
    assert rejected.reason == "odometer_backwards"
    assert "120000" in rejected.message and "119500" in rejected.message


def test_fuel_counter_going_backwards_is_rejected() -> None:
    rejected = rejection(reading(fuel_used_ml=50_000), sample(fuel_used_ml=49_999))
    assert rejected.reason == "fuel_counter_backwards"
    assert "50000" in rejected.message and "49999" in rejected.message


def test_energy_counter_going_backwards_is_rejected() -> None:
    previous = reading(fuel_used_ml=None, energy_used_wh=5_000)
    rejected = rejection(
        previous, sample(fuel_used_ml=None, energy_used_wh=4_000), FuelType.ELECTRIC
    )
    assert rejected.reason == "energy_counter_backwards"
    assert "5000" in rejected.message and "4000" in rejected.message


def test_counter_reset_is_rejected_not_counted_negative() -> None:
    # A replaced telematics unit starts from zero again.
    reset = sample(odometer_m=0, fuel_used_ml=0)
    assert rejection(reading(), reset).reason == "odometer_backwards"


def test_speed_exactly_at_the_limit_is_plausible() -> None:
    one_hour_later = T0 + timedelta(hours=1)
    at_limit = sample(
        occurred_at=one_hour_later, odometer_m=120_000 + MAX_PLAUSIBLE_SPEED_KMH * 1000
    )
    _, activity = derive_activity(vehicle(), reading(), at_limit)
    assert activity is not None and activity.distance_m == 200_000


def test_speed_above_the_limit_is_an_implausible_jump() -> None:
    one_hour_later = T0 + timedelta(hours=1)
    jump = sample(occurred_at=one_hour_later, odometer_m=120_000 + 200_001)
    rejected = rejection(reading(), jump)
    assert rejected.reason == "implausible_speed"
    assert "200001" in rejected.message and "3600" in rejected.message


def test_odometer_jump_within_seconds_is_implausible() -> None:
    jump = sample(occurred_at=T0 + timedelta(seconds=10), odometer_m=121_000)
    assert rejection(reading(), jump).reason == "implausible_speed"


def test_rejection_is_a_value_error_with_reason() -> None:
    with pytest.raises(ValueError, match="went back"):
        derive_activity(vehicle(), reading(), sample(odometer_m=1))
