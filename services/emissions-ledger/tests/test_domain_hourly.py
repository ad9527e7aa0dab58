"""Hourly pricing of electricity, with hand-computed figures. Every intensity here is made up."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from emissions_ledger.adapters.data_files import load_factor_catalogue
from emissions_ledger.domain import (
    EnergyCarrier,
    FiveMinuteIntensity,
    FuelType,
    HourlyIntensity,
    HourlyPricing,
    HourlyPricingPolicy,
    Posting,
    Subsector,
    UnaccountableActivity,
    VehicleActivity,
    current_factor,
    entry_for_activity,
    hour_within,
    hourly_intensities,
    restated_pair,
    restatement_entries,
)

CATALOGUE = load_factor_catalogue()
AALBORG = "aalborg-kommune"
HOUR = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
FETCHED = datetime(2025, 3, 4, 14, 5, 30, tzinfo=UTC)
MADE_UP_VALUES = [100, 102, 104, 106, 108, 110, 112, 114, 116, 118, 120, 121]
POLICY = HourlyPricingPolicy("DK1", frozenset({AALBORG}))


def five_minute(hour: datetime, values: list[int], area: str = "DK1") -> list[FiveMinuteIntensity]:
    return [
        FiveMinuteIntensity(hour + timedelta(minutes=5 * i), area, Decimal(v))
        for i, v in enumerate(values)
    ]


def intensity(hour: datetime = HOUR, g: str = "110.917") -> HourlyIntensity:
    return HourlyIntensity("CO2Emis", "DK1", hour, Decimal(g), 12, FETCHED)


def ev(
    start: datetime | None = HOUR,
    end: datetime = HOUR + timedelta(minutes=15),
    municipality: str = AALBORG,
    fuel: FuelType = FuelType.ELECTRIC,
) -> VehicleActivity:
    return VehicleActivity(
        event_id="ev-1",
        vehicle_id="aal-ev-01",
        municipality_id=municipality,
        fuel_type=fuel,
        subsector=Subsector.MUNICIPAL_FLEET,
        period_end=end,
        distance_m=20_000,
        fuel_used_ml=2_000 if fuel is FuelType.DIESEL else 0,
        energy_used_wh=12_500 if fuel is FuelType.ELECTRIC else 0,
        period_start=start,
    )


def pricing(*known: HourlyIntensity, because: str = "not fetched yet") -> HourlyPricing:
    return HourlyPricing(POLICY, {i.hour_start: i for i in known}, because)


def test_the_hour_a_period_lies_within() -> None:
    quarter = timedelta(minutes=15)
    assert hour_within(HOUR, HOUR + quarter) == HOUR
    # Half-open: a window ending on the hour lies within the hour before.
    assert hour_within(HOUR + 3 * quarter, HOUR + 4 * quarter) == HOUR
    assert hour_within(HOUR + 3 * quarter, HOUR + 5 * quarter) is None
    assert hour_within(None, HOUR + quarter) is None
    assert hour_within(HOUR, HOUR) is None
    # Danish time has whole-hour offsets: 11:15 in Copenhagen (CET) is within 10:00Z's hour.
    copenhagen = datetime(2025, 3, 4, 11, 15, tzinfo=ZoneInfo("Europe/Copenhagen"))
    assert hour_within(copenhagen, copenhagen + quarter) == HOUR


def test_an_hours_intensity_is_the_mean_of_its_twelve_values_to_the_thousandth() -> None:
    values = [
        *five_minute(HOUR, MADE_UP_VALUES),
        *five_minute(HOUR + timedelta(hours=1), MADE_UP_VALUES[:11]),  # incomplete
        *five_minute(HOUR, [900] * 12, area="DK2"),
    ]
    (hour,) = hourly_intensities(values, "CO2Emis", "DK1", FETCHED)
    # 1331 / 12 = 110.91666... g/kWh
    assert hour == intensity()
    # A value given twice counts once, and the hour stays incomplete without its twelfth.
    assert hourly_intensities(values[:11] + values[:1], "CO2Emis", "DK1", FETCHED) == []


def test_an_electric_vehicles_kwh_within_a_known_hour_is_priced_with_that_hour() -> None:
    entry = entry_for_activity(
        ev(), CATALOGUE, "fleet.activity.v1", 2025, hourly=pricing(intensity())
    )

    factor = entry.factor
    assert factor.hourly == intensity()
    assert factor.factor_id == "energidataservice-co2emis-dk1-2025-03-04T10Z"
    assert factor.version == "fetched 2025-03-04T14:05:30Z"
    assert (factor.value, factor.unit, factor.provisional) == (
        Decimal("0.110917"),
        "kg CO2/kWh",
        False,
    )
    assert (factor.valid_from_year, factor.valid_to_year, factor.approach) == (2025, 2025, "ipcc")
    assert "CO2Emis" in factor.source and "DK1" in factor.source
    # 12.5 kWh x 0.110917 kg/kWh
    assert entry.kg_co2e == Decimal("1.3864625")
    assert entry.activity_started_at == HOUR


def test_otherwise_the_yearly_factor_prices_it_and_the_entry_says_why() -> None:
    yearly = CATALOGUE.for_carrier(EnergyCarrier.ELECTRICITY, 2025)
    assert yearly.provisional and yearly.value == Decimal("0.096")

    unknown = entry_for_activity(
        ev(), CATALOGUE, "t", 2025, hourly=pricing(because="Energi Data Service unreachable")
    )
    assert unknown.factor.prices_like(yearly) and unknown.factor.hourly is None
    assert unknown.kg_co2e == Decimal("1.2")  # 12.5 x 0.096
    assert "2025-03-04T10:00Z was not known" in unknown.factor.hourly_fallback
    assert "Energi Data Service unreachable" in unknown.factor.hourly_fallback

    spanning = entry_for_activity(
        ev(HOUR + timedelta(minutes=50), HOUR + timedelta(minutes=70)),
        CATALOGUE,
        "t",
        2025,
        hourly=pricing(intensity(), intensity(HOUR + timedelta(hours=1))),
    )
    assert spanning.factor.prices_like(yearly)
    assert spanning.factor.hourly_fallback == "the activity does not lie within one hour"

    # A municipality not priced by the hour, and diesel, are as before: no note.
    elsewhere = entry_for_activity(
        ev(municipality="aarhus-kommune"), CATALOGUE, "t", 2025, hourly=pricing(intensity())
    )
    assert elsewhere.factor == yearly
    diesel = entry_for_activity(
        ev(fuel=FuelType.DIESEL), CATALOGUE, "t", 2025, hourly=pricing(intensity())
    )
    assert diesel.factor == CATALOGUE.for_carrier(EnergyCarrier.DIESEL, 2025)


def test_an_hour_that_begins_a_danish_year_is_that_years() -> None:
    new_year = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)  # 00:00 on 1 January 2026 in Aalborg
    entry = entry_for_activity(
        ev(new_year, new_year + timedelta(minutes=15)),
        CATALOGUE,
        "t",
        2026,
        hourly=pricing(intensity(new_year)),
    )
    assert entry.year == 2026
    assert (entry.factor.valid_from_year, entry.factor.valid_to_year) == (2026, 2026)


def test_a_period_that_starts_after_it_ends_is_unaccountable() -> None:
    with pytest.raises(UnaccountableActivity, match="period_start"):
        entry_for_activity(
            ev(HOUR + timedelta(minutes=20), HOUR + timedelta(minutes=15)), CATALOGUE, "t"
        )


def test_restatement_prices_an_hour_that_arrived_after_posting_and_then_nothing() -> None:
    posted = entry_for_activity(ev(), CATALOGUE, "t", 2025, hourly=pricing())
    assert posted.factor.hourly is None

    # Still unknown: the yearly factor stands; the note is no price.
    assert current_factor(posted, CATALOGUE, pricing(because="not cached when restated")) is None

    now = current_factor(posted, CATALOGUE, pricing(intensity()))
    assert now is not None and now.hourly == intensity()
    reversal, replacement = restated_pair(posted, now, "restatement-1")
    assert (reversal.kg_co2e, replacement.kg_co2e) == (Decimal("-1.2"), Decimal("1.3864625"))
    assert replacement.posting is Posting.RESTATEMENT
    assert replacement.activity_started_at == HOUR

    # Idempotent: priced as the known hour says.
    assert (
        restatement_entries([replacement], CATALOGUE, "restatement-2", pricing(intensity())) == []
    )


def test_hourly_entries_return_to_the_yearly_factor_when_hourly_pricing_is_off() -> None:
    hourly = entry_for_activity(ev(), CATALOGUE, "t", 2025, hourly=pricing(intensity()))
    # Without hourly pricing for the municipality, the catalogue's factor is the current one.
    yearly = current_factor(hourly, CATALOGUE, None)
    assert yearly is not None and yearly.hourly is None and yearly.value == Decimal("0.096")
    off = HourlyPricing(replace(POLICY, municipalities=frozenset()), {HOUR: intensity()})
    assert current_factor(hourly, CATALOGUE, off) == yearly
