"""Emission factors: the kg CO2 that one unit of an energy carrier stands for, by year."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any


class EnergyCarrier(StrEnum):
    """Energy carriers of the Covenant of Mayors reporting template that the platform uses."""

    ELECTRICITY = "electricity"
    NATURAL_GAS = "natural_gas"
    DIESEL = "diesel"
    GASOLINE = "gasoline"
    BIOFUEL = "biofuel"
    OTHER = "other"


class InvalidFactorData(ValueError):
    """The factor catalogue data is malformed; the message names the entry and the field."""


class NoFactor(LookupError):
    """No factor in the catalogue covers the carrier in the requested year."""


@dataclass(frozen=True)
class EmissionFactor:
    """One factor with its provenance, e.g. diesel 2.66 "kg CO2/l" per activity unit "l"."""

    factor_id: str
    energy_carrier: EnergyCarrier
    value: Decimal
    unit: str
    activity_unit: str
    source: str
    version: str
    approach: str


@dataclass(frozen=True)
class _DatedFactor:
    """A factor and the inclusive range of years it applies to; None leaves that end open."""

    factor: EmissionFactor
    valid_from_year: int | None
    valid_to_year: int | None

    def covers(self, year: int) -> bool:
        after_start = self.valid_from_year is None or year >= self.valid_from_year
        before_end = self.valid_to_year is None or year <= self.valid_to_year
        return after_start and before_end

    def overlaps(self, other: _DatedFactor) -> bool:
        starts = [y for y in (self.valid_from_year, other.valid_from_year) if y is not None]
        ends = [y for y in (self.valid_to_year, other.valid_to_year) if y is not None]
        if not starts or not ends:
            return True
        return max(starts) <= min(ends)


_CATALOGUE_FIELDS = frozenset({"version", "approach", "factors"})
_REQUIRED_ENTRY_FIELDS = (
    "id",
    "carrier",
    "value",
    "unit",
    "activity_unit",
    "source",
    "version",
)
_ENTRY_FIELDS = frozenset({*_REQUIRED_ENTRY_FIELDS, "valid_from_year", "valid_to_year"})


class FactorCatalogue:
    """The validated set of factors; at most one factor per carrier applies in any year."""

    def __init__(self, version: str, approach: str, dated_factors: Sequence[_DatedFactor]) -> None:
        self._version = version
        self._approach = approach
        self._dated_factors = tuple(dated_factors)

    @property
    def version(self) -> str:
        return self._version

    @property
    def approach(self) -> str:
        return self._approach

    @property
    def factors(self) -> tuple[EmissionFactor, ...]:
        return tuple(dated.factor for dated in self._dated_factors)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FactorCatalogue:
        """Build the catalogue from parsed data, raising InvalidFactorData on any flaw."""
        if not isinstance(data, Mapping):
            raise InvalidFactorData("catalogue: must be a mapping")
        _reject_unknown_fields("catalogue", data, _CATALOGUE_FIELDS)
        version = _text("catalogue", data, "version")
        approach = _text("catalogue", data, "approach")
        entries = data.get("factors")
        if not isinstance(entries, list) or not entries:
            raise InvalidFactorData("catalogue: field 'factors' must be a non-empty list")

        dated_factors: list[_DatedFactor] = []
        seen_ids: set[str] = set()
        for index, entry in enumerate(entries):
            dated = _parse_entry(index, entry, approach)
            factor_id = dated.factor.factor_id
            if factor_id in seen_ids:
                raise InvalidFactorData(f"factor '{factor_id}': field 'id' is used twice")
            seen_ids.add(factor_id)
            for earlier in dated_factors:
                same_carrier = earlier.factor.energy_carrier is dated.factor.energy_carrier
                if same_carrier and earlier.overlaps(dated):
                    raise InvalidFactorData(
                        f"factor '{factor_id}': valid years overlap those of "
                        f"'{earlier.factor.factor_id}' for carrier {dated.factor.energy_carrier}"
                    )
            dated_factors.append(dated)
        return cls(version, approach, dated_factors)

    def for_carrier(self, carrier: EnergyCarrier, year: int) -> EmissionFactor:
        """The factor of `carrier` valid in `year`."""
        for dated in self._dated_factors:
            if dated.factor.energy_carrier is carrier and dated.covers(year):
                return dated.factor
        raise NoFactor(f"no emission factor for {carrier} valid in {year}")


def _parse_entry(index: int, entry: object, approach: str) -> _DatedFactor:
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

    value = _exact_decimal(where, entry, "value")
    unit = _text(where, entry, "unit")
    activity_unit = _text(where, entry, "activity_unit")
    # Ledger amounts are kg, computed as activity amount times value: the unit has to say so.
    if not (unit.startswith("kg ") and unit.endswith(f"/{activity_unit}")):
        raise InvalidFactorData(
            f"{where}: field 'unit' is '{unit}', expected 'kg <gas>/{activity_unit}'"
        )

    valid_from_year = _optional_year(where, entry, "valid_from_year")
    valid_to_year = _optional_year(where, entry, "valid_to_year")
    if (
        valid_from_year is not None
        and valid_to_year is not None
        and valid_to_year < valid_from_year
    ):
        raise InvalidFactorData(f"{where}: field 'valid_to_year' is before 'valid_from_year'")

    factor = EmissionFactor(
        factor_id=factor_id,
        energy_carrier=carrier,
        value=value,
        unit=unit,
        activity_unit=activity_unit,
        source=_text(where, entry, "source"),
        version=_text(where, entry, "version"),
        approach=approach,
    )
    return _DatedFactor(factor, valid_from_year, valid_to_year)


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


def _optional_year(where: str, data: Mapping[Any, Any], field: str) -> int | None:
    raw = data.get(field)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidFactorData(f"{where}: field '{field}' must be a whole year, got {raw!r}")
    return raw
