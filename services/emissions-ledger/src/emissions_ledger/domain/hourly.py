"""Danish electricity by the hour: an electric vehicle's kWh priced with the CO2 intensity of
the hour it was charged in, where its activity lies within one hour and that hour's intensity
is known; with the yearly factor otherwise (docs/ledger.md, "Danish electricity by the hour").

The intensity is Energinet's CO2 emission of the electricity consumed in Denmark per kWh
(dataset CO2Emis on Energi Data Service), published per price area every five minutes. An
hour's intensity is the mean of its twelve five-minute values; an hour with fewer is not known.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from functools import lru_cache

from emissions_ledger.domain.entries import reporting_year
from emissions_ledger.domain.factors import (
    EmissionFactor,
    EnergyCarrier,
    FactorApproach,
    HourlyIntensity,
)

DATASET = "CO2Emis"
DATASET_DOCUMENTATION = "https://www.energidataservice.dk/tso-electricity/CO2Emis"
PRICE_AREAS = ("DK1", "DK2")
FIVE_MINUTES = timedelta(minutes=5)
HOUR = timedelta(hours=1)
FIVE_MINUTES_PER_HOUR = 12
# An hour's mean to the thousandth of a gram per kWh: as kg per kWh six decimals, so that a
# kWh amount (three decimals) times it is exact, as every ledger amount is.
INTENSITY_QUANTUM = Decimal("0.001")
# The unit of an hourly factor: the dataset counts CO2 alone, per kWh consumed.
HOURLY_FACTOR_UNIT = "kg CO2/kWh"
# Every municipality of the ledger, in the setting that lists those priced by the hour.
ALL_MUNICIPALITIES = "*"
_LAST_INSTANT = timedelta(microseconds=1)
_MEAN = Context(prec=60)


@dataclass(frozen=True)
class FiveMinuteIntensity:
    """One five-minute value as the dataset publishes it (minute_start is aware, UTC)."""

    minute_start: datetime
    price_area: str
    g_co2_per_kwh: Decimal


def hour_start_of(at: datetime) -> datetime:
    """The first instant (UTC) of the hour `at` lies in. Denmark's offsets from UTC are whole
    hours, so a UTC hour is a Danish hour too."""
    if at.utcoffset() is None:
        raise ValueError(f"timestamp {at.isoformat()} must be timezone-aware")
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# Remembered: activity windows are aligned to the clock, so a batch of thousands of entries
# asks about a few periods; equal periods (equal instants) lie within the same hour.
@lru_cache(maxsize=4096)
def hour_within(period_start: datetime | None, period_end: datetime) -> datetime | None:
    """The hour a half-open period [start, end) lies within entirely; None when it spans more
    than one hour, is empty, or its start is not known (or either end has no time zone)."""
    if period_start is None or period_start.utcoffset() is None:
        return None
    if period_end.utcoffset() is None or period_start >= period_end:
        return None
    first = hour_start_of(period_start)
    return first if first == hour_start_of(period_end - _LAST_INSTANT) else None


def hourly_intensities(
    values: Iterable[FiveMinuteIntensity], dataset: str, price_area: str, fetched_at: datetime
) -> list[HourlyIntensity]:
    """The intensity of every hour of `price_area` whose twelve five-minute values are all
    among `values`, in time order; hours with fewer are left out (not known yet)."""
    per_hour: dict[datetime, dict[datetime, Decimal]] = {}
    for value in values:
        if value.price_area != price_area:
            continue
        minute = value.minute_start.astimezone(UTC)
        if minute.second or minute.microsecond or minute.minute % 5:
            continue
        per_hour.setdefault(hour_start_of(minute), {})[minute] = value.g_co2_per_kwh
    hours = []
    for hour, by_minute in sorted(per_hour.items()):
        if len(by_minute) != FIVE_MINUTES_PER_HOUR:
            continue
        total = Decimal(0)
        for g_co2_per_kwh in by_minute.values():
            total = _MEAN.add(total, g_co2_per_kwh)
        mean = _MEAN.divide(total, FIVE_MINUTES_PER_HOUR)
        hours.append(
            HourlyIntensity(
                dataset=dataset,
                price_area=price_area,
                hour_start=hour,
                g_co2_per_kwh=mean.quantize(INTENSITY_QUANTUM, rounding=ROUND_HALF_EVEN),
                five_minute_values=len(by_minute),
                fetched_at=fetched_at,
            )
        )
    return hours


def hourly_factor_id(intensity: HourlyIntensity) -> str:
    return (
        f"energidataservice-{intensity.dataset.lower()}-{intensity.price_area.lower()}-"
        f"{intensity.hour_start:%Y-%m-%dT%H}Z"
    )


def hourly_factor(intensity: HourlyIntensity, yearly: EmissionFactor) -> EmissionFactor:
    """The factor of one hour: its own id (dataset, price area, hour) and version (when the
    ledger fetched it), valid for the hour's reporting year, with the yearly factor's approach
    and activity unit."""
    year = reporting_year(intensity.hour_start)
    kg_per_kwh = intensity.g_co2_per_kwh.scaleb(-3)
    return EmissionFactor(
        factor_id=hourly_factor_id(intensity),
        energy_carrier=EnergyCarrier.ELECTRICITY,
        value=kg_per_kwh,
        unit=HOURLY_FACTOR_UNIT,
        activity_unit=yearly.activity_unit,
        source=(
            f"Energinet, Energi Data Service dataset {intensity.dataset} "
            f"({DATASET_DOCUMENTATION}): CO2 of the electricity consumed, price area "
            f"{intensity.price_area}, hour from {intensity.hour_start:%Y-%m-%dT%H:%M}Z, "
            f"{intensity.g_co2_per_kwh} g CO2/kWh (mean of {intensity.five_minute_values} "
            f"five-minute values), fetched {intensity.fetched_at:%Y-%m-%dT%H:%M:%S}Z"
        ),
        version=f"fetched {intensity.fetched_at:%Y-%m-%dT%H:%M:%S}Z",
        approach=yearly.approach,
        valid_from_year=year,
        valid_to_year=year,
        provisional=False,
        hourly=intensity,
    )


@dataclass(frozen=True)
class HourlyPricingPolicy:
    """Which municipalities' electricity is priced by the hour, and with which price area's
    intensities. Off (no municipality) unless a deployment names them."""

    price_area: str
    municipalities: frozenset[str]
    dataset: str = DATASET

    def applies_to(self, municipality_id: str) -> bool:
        return ALL_MUNICIPALITIES in self.municipalities or municipality_id in self.municipalities

    @property
    def enabled(self) -> bool:
        return bool(self.municipalities)

    def hours_wanted(
        self, periods: Iterable[tuple[str, datetime | None, datetime]]
    ) -> set[datetime]:
        """The hours whose intensities would price these (municipality, start, end) periods."""
        hours = set()
        for municipality_id, start, end in periods:
            if self.applies_to(municipality_id):
                hour = hour_within(start, end)
                if hour is not None:
                    hours.add(hour)
        return hours


@dataclass(frozen=True)
class HourlyPricing:
    """The policy with the intensities known at the moment of pricing (hour start -> intensity),
    and why an hour may not be known just then, for the note on a fallback."""

    policy: HourlyPricingPolicy
    intensities: Mapping[datetime, HourlyIntensity]
    unknown_because: str = "not fetched yet"

    def factor_for(
        self,
        municipality_id: str,
        period_start: datetime | None,
        period_end: datetime,
        yearly: EmissionFactor,
        approach: str,
    ) -> EmissionFactor:
        """The hourly factor of the hour the period lies within, when the municipality is
        priced by the hour and that hour is known; else `yearly`, with a note why when the
        municipality is priced by the hour."""
        if yearly.energy_carrier is not EnergyCarrier.ELECTRICITY or not self.policy.applies_to(
            municipality_id
        ):
            return yearly
        if approach != FactorApproach.IPCC or yearly.unit != HOURLY_FACTOR_UNIT:
            return replace(
                yearly,
                hourly_fallback=(
                    f"hourly intensities count CO2 of the electricity consumed; the "
                    f"{approach} factor in {yearly.unit} is kept"
                ),
            )
        hour = hour_within(period_start, period_end)
        if hour is None:
            return replace(yearly, hourly_fallback="the activity does not lie within one hour")
        intensity = self.intensities.get(hour)
        if intensity is None:
            return replace(
                yearly,
                hourly_fallback=(
                    f"the {self.policy.price_area} intensity of the hour from "
                    f"{hour:%Y-%m-%dT%H:%M}Z was not known when priced ({self.unknown_because})"
                ),
            )
        return hourly_factor(intensity, yearly)
