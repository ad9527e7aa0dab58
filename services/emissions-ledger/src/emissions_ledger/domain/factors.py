"""Emission factors: the kg CO2 that one unit of an energy carrier stands for, by year."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any


class EnergyCarrier(StrEnum):
    """Energy carriers of the Covenant of Mayors reporting template that the platform uses,
    in the template's column order."""

    ELECTRICITY = "electricity"
    # District heating and cooling: the template's "heat/cold".
    HEAT = "heat"
    NATURAL_GAS = "natural_gas"
    HEATING_OIL = "heating_oil"
    DIESEL = "diesel"
    GASOLINE = "gasoline"
    BIOFUEL = "biofuel"
    # Wood and other solid biomass: the template's "other biomass".
    BIOMASS = "biomass"
    OTHER = "other"


class FactorApproach(StrEnum):
    """The Covenant's emission factor approaches: IPCC counts combustion on the territory,
    LCA the whole life cycle including upstream. A municipality reports in one of them."""

    IPCC = "ipcc"
    LCA = "lca"


class Gas(StrEnum):
    """What a factor's kilograms count, and so the unit an inventory reports in: CO2 alone, or
    CO2 equivalents (CO2 with CH4 and N2O, by their warming potential)."""

    CO2 = "CO2"
    CO2E = "CO2e"


def gas_of_unit(unit: str) -> Gas:
    """The gas a factor unit's kilograms count ("kg CO2e/l": CO2e; "kg CO2/l": CO2)."""
    return Gas.CO2E if unit.startswith(f"kg {Gas.CO2E.value}/") else Gas.CO2


@dataclass(frozen=True)
class InventoryMethod:
    """How a municipality's inventories are priced, the same in every year (the Covenant asks
    the baseline and the monitoring inventories to share one method): the factor approach and
    the gas its figures count. IPCC counts CO2 or CO2e; LCA factors count CO2e only."""

    approach: FactorApproach = FactorApproach.IPCC
    gas: Gas = Gas.CO2

    def __post_init__(self) -> None:
        if self.approach is FactorApproach.LCA and self.gas is not Gas.CO2E:
            raise ValueError("the LCA approach counts CO2 equivalents: its unit is t CO2e")

    @property
    def reporting_unit(self) -> str:
        return f"t {self.gas.value}"


class InvalidFactorData(ValueError):
    """The factor catalogue data is malformed; the message names the entry and the field."""


# Bounds what for_carrier remembers, whatever years callers ask about.
_MAX_REMEMBERED_ANSWERS = 4096


class NoFactor(LookupError):
    """No factor in the catalogue prices the carrier in the requested year, not even
    provisionally."""


@dataclass(frozen=True)
class HourlyIntensity:
    """One hour's CO2 intensity of the electricity consumed in a price area, as a grid
    operator's open data publishes it (docs/ledger.md, "Danish electricity by the hour").

    hour_start is the hour's first instant (UTC); g_co2_per_kwh the mean of the hour's
    five-minute values, rounded to the gram's thousandth; fetched_at when the ledger read it.
    """

    dataset: str
    price_area: str
    hour_start: datetime
    g_co2_per_kwh: Decimal
    five_minute_values: int
    fetched_at: datetime


@dataclass(frozen=True)
class EmissionFactor:
    """One factor with its provenance, e.g. diesel 2.66 "kg CO2/l" per activity unit "l".

    valid_from_year and valid_to_year are the inclusive years its source publishes it for
    (None on entries posted before factors had validity periods). A provisional factor is a
    published one standing in for a later year whose figure is not published yet.

    An hourly factor prices one hour's electricity with that hour's grid intensity, which
    `hourly` names; a yearly factor that priced an activity hourly pricing applied to says
    in `hourly_fallback` why the hour's own intensity was not used.
    """

    factor_id: str
    energy_carrier: EnergyCarrier
    value: Decimal
    unit: str
    activity_unit: str
    source: str
    version: str
    approach: str
    valid_from_year: int | None = None
    valid_to_year: int | None = None
    provisional: bool = False
    hourly: HourlyIntensity | None = None
    hourly_fallback: str = ""

    def prices_like(self, other: EmissionFactor) -> bool:
        """Whether an entry priced with `other` would be priced the same with this factor:
        same factor, version and value, both published or both provisional, both hourly or
        both yearly. (A fallback's reason is a note on how it was chosen, not a price.)"""
        return (
            self.factor_id == other.factor_id
            and self.version == other.version
            and self.value == other.value
            and self.provisional == other.provisional
            and (self.hourly is None) == (other.hourly is None)
        )

    @property
    def gas(self) -> Gas:
        return gas_of_unit(self.unit)

    def covers(self, year: int) -> bool:
        return (self.valid_from_year or 0) <= year <= (self.valid_to_year or 9999)


_CATALOGUE_FIELDS = frozenset({"version", "approaches", "factors"})
_ENTRY_FIELDS = frozenset(
    {
        "id",
        "carrier",
        "approach",
        "value",
        "unit",
        "activity_unit",
        "source",
        "version",
        "valid_from_year",
        "valid_to_year",
    }
)


class FactorCatalogue:
    """The validated set of factors. Per carrier, approach and gas (a series), at most one
    published factor covers any year; a later year without one is priced provisionally with
    the latest published factor before it, and a year before the first published factor not
    at all."""

    def __init__(
        self,
        version: str,
        approaches: Mapping[FactorApproach, str],
        factors: Sequence[EmissionFactor],
    ) -> None:
        self._version = version
        self._approaches = dict(approaches)
        self._factors = tuple(factors)
        # The catalogue never changes once built, and every entry asks it: each answer is
        # worked out once (a few carriers, approaches and years).
        self._answers: dict[tuple[EnergyCarrier, int, str, Gas], EmissionFactor | NoFactor] = {}

    @property
    def version(self) -> str:
        return self._version

    @property
    def approaches(self) -> Mapping[FactorApproach, str]:
        """Each approach the catalogue has factors for, with what it counts."""
        return dict(self._approaches)

    @property
    def factors(self) -> tuple[EmissionFactor, ...]:
        return self._factors

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FactorCatalogue:
        """Build the catalogue from parsed data, raising InvalidFactorData on any flaw."""
        if not isinstance(data, Mapping):
            raise InvalidFactorData("catalogue: must be a mapping")
        _reject_unknown_fields("catalogue", data, _CATALOGUE_FIELDS)
        version = _text("catalogue", data, "version")
        approaches = _approaches(data.get("approaches"))
        entries = data.get("factors")
        if not isinstance(entries, list) or not entries:
            raise InvalidFactorData("catalogue: field 'factors' must be a non-empty list")

        factors: list[EmissionFactor] = []
        seen_ids: set[str] = set()
        for index, entry in enumerate(entries):
            factor = _parse_entry(index, entry, approaches)
            if factor.factor_id in seen_ids:
                raise InvalidFactorData(f"factor '{factor.factor_id}': field 'id' is used twice")
            seen_ids.add(factor.factor_id)
            for earlier in factors:
                if _same_series(earlier, factor) and _overlap(earlier, factor):
                    raise InvalidFactorData(
                        f"factor '{factor.factor_id}': valid years overlap those of "
                        f"'{earlier.factor_id}' for carrier {factor.energy_carrier}, "
                        f"approach {factor.approach}, gas {factor.gas}"
                    )
            factors.append(factor)
        return cls(version, approaches, factors)

    def for_carrier(
        self,
        carrier: EnergyCarrier,
        year: int,
        approach: str = FactorApproach.IPCC,
        gas: Gas = Gas.CO2,
    ) -> EmissionFactor:
        """The factor that prices `carrier` in `year` under `approach`, counting `gas`: the
        published one valid that year, else (marked provisional) the latest published before
        it. Never one of another approach or gas: an inventory does not mix methods."""
        key = (carrier, year, approach, gas)
        answer = self._answers.get(key)
        if answer is None:
            try:
                answer = self._look_up(carrier, year, approach, gas)
            except NoFactor as refusal:
                answer = refusal
            if len(self._answers) >= _MAX_REMEMBERED_ANSWERS:
                self._answers.clear()
            self._answers[key] = answer
        if isinstance(answer, NoFactor):
            raise NoFactor(*answer.args)
        return answer

    def _look_up(
        self, carrier: EnergyCarrier, year: int, approach: str, gas: Gas
    ) -> EmissionFactor:
        series = [
            factor
            for factor in self._factors
            if factor.energy_carrier is carrier
            and factor.approach == approach
            and factor.gas is gas
        ]
        for factor in series:
            if factor.covers(year):
                return factor
        earlier = [f for f in series if (f.valid_to_year or 0) < year]
        if earlier:
            latest = max(earlier, key=lambda f: f.valid_to_year or 0)
            return replace(latest, provisional=True)
        raise NoFactor(
            f"no emission factor for {carrier} ({approach}, {gas}) published for {year} or earlier"
        )

    def for_method(
        self, carrier: EnergyCarrier, year: int, method: InventoryMethod
    ) -> EmissionFactor:
        return self.for_carrier(carrier, year, method.approach, method.gas)


def _same_series(one: EmissionFactor, other: EmissionFactor) -> bool:
    return (
        one.energy_carrier is other.energy_carrier
        and one.approach == other.approach
        and one.gas is other.gas
    )


def _overlap(one: EmissionFactor, other: EmissionFactor) -> bool:
    return max(one.valid_from_year or 0, other.valid_from_year or 0) <= min(
        one.valid_to_year or 9999, other.valid_to_year or 9999
    )


def _approaches(raw: object) -> dict[FactorApproach, str]:
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidFactorData("catalogue: field 'approaches' must be a non-empty mapping")
    approaches: dict[FactorApproach, str] = {}
    for key, description in raw.items():
        try:
            approach = FactorApproach(key)
        except ValueError:
            known = ", ".join(a.value for a in FactorApproach)
            raise InvalidFactorData(f"catalogue: approach '{key}' is not one of: {known}") from None
        if not isinstance(description, str) or not description.strip():
            raise InvalidFactorData(f"catalogue: approach '{key}' needs a description")
        approaches[approach] = description
    return approaches


def _parse_entry(
    index: int, entry: object, approaches: Mapping[FactorApproach, str]
) -> EmissionFactor:
    where = f"factors[{index}]"
    if not isinstance(entry, Mapping):
        raise InvalidFactorData(f"{where}: must be a mapping")
    factor_id = _text(where, entry, "id")
    where = f"factor '{factor_id}'"
    _reject_unknown_fields(where, entry, _ENTRY_FIELDS)

    raw_carrier = _text(where, entry, "carrier")
    try:
        carrier = EnergyCarrier(raw_carrier)
    except ValueError:
        known = ", ".join(carrier.value for carrier in EnergyCarrier)
        raise InvalidFactorData(
            f"{where}: field 'carrier' is '{raw_carrier}', expected one of: {known}"
        ) from None

    raw_approach = _text(where, entry, "approach")
    if raw_approach not in {approach.value for approach in approaches}:
        known = ", ".join(approach.value for approach in approaches)
        raise InvalidFactorData(
            f"{where}: field 'approach' is '{raw_approach}', expected one of: {known}"
        )

    value = _exact_decimal(where, entry, "value")
    unit = _text(where, entry, "unit")
    activity_unit = _text(where, entry, "activity_unit")
    # Ledger amounts are kg, computed as activity amount times value, of the gas the unit
    # names: the unit has to say both.
    if unit not in {f"kg {gas.value}/{activity_unit}" for gas in Gas}:
        gases = " or ".join(gas.value for gas in Gas)
        raise InvalidFactorData(
            f"{where}: field 'unit' is '{unit}', expected 'kg <gas>/{activity_unit}' "
            f"with gas {gases}"
        )

    # Both ends are required: a factor published for some years must not silently price
    # others (those get a provisional factor, marked as such).
    valid_from_year = _year(where, entry, "valid_from_year")
    valid_to_year = _year(where, entry, "valid_to_year")
    if valid_to_year < valid_from_year:
        raise InvalidFactorData(f"{where}: field 'valid_to_year' is before 'valid_from_year'")

    return EmissionFactor(
        factor_id=factor_id,
        energy_carrier=carrier,
        value=value,
        unit=unit,
        activity_unit=activity_unit,
        source=_text(where, entry, "source"),
        version=_text(where, entry, "version"),
        approach=raw_approach,
        valid_from_year=valid_from_year,
        valid_to_year=valid_to_year,
    )


def _reject_unknown_fields(where: str, data: Mapping[Any, Any], known: frozenset[str]) -> None:
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise InvalidFactorData(f"{where}: unknown field '{unknown[0]}'")


def _text(where: str, data: Mapping[Any, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidFactorData(f"{where}: field '{field}' must be a non-empty string")
    return value


def _exact_decimal(where: str, data: Mapping[Any, Any], field: str) -> Decimal:
    raw = data.get(field)
    # A YAML float has already lost exactness, so only strings and integers are accepted.
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise InvalidFactorData(
            f"{where}: field '{field}' must be a quoted decimal string, got {raw!r}"
        )
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise InvalidFactorData(f"{where}: field '{field}' is not a decimal: {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise InvalidFactorData(f"{where}: field '{field}' must be a finite number >= 0")
    return value


def _year(where: str, data: Mapping[Any, Any], field: str) -> int:
    raw = data.get(field)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1900 <= raw <= 2100:
        raise InvalidFactorData(f"{where}: field '{field}' must be a whole year, got {raw!r}")
    return raw
