"""Reported activity: what a climate officer records for the sectors the automated feeds do not
cover (buildings, public lighting, industry, public transport, waste), checked line by line,
converted explicitly to the unit of the factor that prices it, and posted as entries of basis
REPORTED."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from emissions_ledger.domain.entries import (
    DEFAULT_METHOD,
    ENTRY_ID_NAMESPACE,
    EXACT_ARITHMETIC,
    FIRST_REPORTING_YEAR,
    MUNICIPAL_TIME_ZONE,
    Basis,
    EntryKind,
    LedgerEntry,
    ReportedProvenance,
    Sector,
    Subsector,
    entry_id_for,
)
from emissions_ledger.domain.factors import (
    EmissionFactor,
    EnergyCarrier,
    FactorCatalogue,
    InventoryMethod,
    NoFactor,
)

# What the entries name as their source: the method that posted them.
REPORTED_SOURCE = "greenpartners.ledger.v1.EmissionsLedgerService/RecordActivity"
MAX_LINES = 5000
MAX_NOTE_LENGTH = 500
MAX_SOURCE_LENGTH = 200
# Plain decimal notation only: no exponent, no sign, no thousands separator, a point.
_AMOUNT = re.compile(r"[0-9]{1,15}(\.[0-9]{1,9})?")
_RATIO = re.compile(r"\s*([0-9.]+)\s*(?:/\s*([0-9.]+)\s*)?")

# Records a problem of the line being checked: its field name and the reason.
Problem = Callable[[str, str], None]

SUBSECTORS_OF: Mapping[Sector, frozenset[Subsector]] = {
    Sector.TRANSPORT: frozenset(
        {
            Subsector.MUNICIPAL_FLEET,
            Subsector.PUBLIC_TRANSPORT,
            Subsector.PRIVATE_COMMERCIAL_TRANSPORT,
        }
    ),
    Sector.INDUSTRY: frozenset({Subsector.NON_ETS, Subsector.ETS}),
}


class InvalidUnitData(ValueError):
    """The unit conversion data is malformed; the message names the entry and the field."""


@dataclass(frozen=True)
class UnitConversion:
    """`per_unit` units of `to_unit` in one `from_unit` (of one carrier, or of any carrier when
    `carrier` is None), as written in the data (`text`) and with its source."""

    from_unit: str
    to_unit: str
    carrier: EnergyCarrier | None
    per_unit: Fraction
    text: str
    source: str


@dataclass(frozen=True)
class Converted:
    amount: Decimal
    # True when the exact result has no finite decimal form and was rounded.
    rounded: bool


class ActivityUnits:
    """The units reported activity may come in, and how each converts to the unit of the
    factor that prices it. A carrier's own conversion (m3 of natural gas to kWh) comes before
    a general one (MWh to kWh)."""

    def __init__(self, conversions: Iterable[UnitConversion], rounding_places: int) -> None:
        self._conversions = tuple(conversions)
        self.rounding_places = rounding_places

    @property
    def conversions(self) -> tuple[UnitConversion, ...]:
        return self._conversions

    def conversion(
        self, carrier: EnergyCarrier, from_unit: str, to_unit: str
    ) -> UnitConversion | None:
        general = None
        for conversion in self._conversions:
            if (conversion.from_unit, conversion.to_unit) != (from_unit, to_unit):
                continue
            if conversion.carrier is carrier:
                return conversion
            if conversion.carrier is None:
                general = conversion
        return general

    def units_for(self, carrier: EnergyCarrier, to_unit: str) -> list[str]:
        """The units a carrier priced per `to_unit` may be reported in."""
        return sorted(
            {
                c.from_unit
                for c in self._conversions
                if c.to_unit == to_unit and c.carrier in (None, carrier)
            }
        )

    def convert(self, amount: Decimal, conversion: UnitConversion) -> Converted:
        """amount x per_unit: exact when the result has a finite decimal form, else rounded
        half-even to `rounding_places` decimals (1 GJ is 1000/3.6 kWh, which has none)."""
        exact = Fraction(amount) * conversion.per_unit
        denominator = exact.denominator
        for prime in (2, 5):
            while denominator % prime == 0:
                denominator //= prime
        if denominator == 1:
            return Converted(
                EXACT_ARITHMETIC.divide(Decimal(exact.numerator), Decimal(exact.denominator)),
                rounded=False,
            )
        scaled = round(exact * 10**self.rounding_places)
        return Converted(
            EXACT_ARITHMETIC.scaleb(Decimal(scaled), -self.rounding_places), rounded=True
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ActivityUnits:
        if not isinstance(data, Mapping):
            raise InvalidUnitData("units: must be a mapping")
        places = data.get("rounding_places")
        if isinstance(places, bool) or not isinstance(places, int) or not 0 <= places <= 12:
            raise InvalidUnitData("units: field 'rounding_places' must be a whole number 0-12")
        entries = data.get("conversions")
        if not isinstance(entries, list) or not entries:
            raise InvalidUnitData("units: field 'conversions' must be a non-empty list")
        conversions: list[UnitConversion] = []
        seen: set[tuple[str, str, EnergyCarrier | None]] = set()
        for index, entry in enumerate(entries):
            conversion = _conversion(index, entry)
            key = (conversion.from_unit, conversion.to_unit, conversion.carrier)
            if key in seen:
                raise InvalidUnitData(f"conversions[{index}]: the same conversion twice")
            seen.add(key)
            conversions.append(conversion)
        return cls(conversions, places)


def _conversion(index: int, entry: object) -> UnitConversion:
    where = f"conversions[{index}]"
    if not isinstance(entry, Mapping):
        raise InvalidUnitData(f"{where}: must be a mapping")
    known = {"from_unit", "to_unit", "carrier", "per_unit", "source"}
    unknown = sorted(str(key) for key in entry if key not in known)
    if unknown:
        raise InvalidUnitData(f"{where}: unknown field '{unknown[0]}'")
    texts = {}
    for field in ("from_unit", "to_unit", "per_unit", "source"):
        value = entry.get(field)
        # A YAML float has already lost exactness: per_unit must be quoted like the rest.
        if not isinstance(value, str) or not value.strip():
            raise InvalidUnitData(f"{where}: field '{field}' must be a non-empty string")
        texts[field] = value.strip()
    raw_carrier = entry.get("carrier")
    carrier = None
    if raw_carrier is not None:
        try:
            carrier = EnergyCarrier(str(raw_carrier))
        except ValueError:
            raise InvalidUnitData(f"{where}: field 'carrier' is unknown") from None
    match = _RATIO.fullmatch(texts["per_unit"])
    try:
        if match is None:
            raise ValueError
        per_unit = Fraction(Decimal(match.group(1))) / Fraction(Decimal(match.group(2) or "1"))
    except (ValueError, ArithmeticError):
        raise InvalidUnitData(
            f"{where}: field 'per_unit' must be a decimal or a ratio of two ('1000/3.6')"
        ) from None
    if per_unit <= 0:
        raise InvalidUnitData(f"{where}: field 'per_unit' must be positive")
    return UnitConversion(
        from_unit=texts["from_unit"],
        to_unit=texts["to_unit"],
        carrier=carrier,
        per_unit=per_unit,
        text=texts["per_unit"],
        source=texts["source"],
    )


@dataclass(frozen=True)
class ReportedLine:
    """One line as reported. An enum field is None when it is unspecified or unknown, which
    the checks refuse; the sub-sector is Subsector.NONE when unspecified."""

    year: int
    sector: Sector | None
    subsector: Subsector | None
    energy_carrier: EnergyCarrier | None
    amount: str
    unit: str
    note: str = ""
    source_document: str = ""
    source_file: str = ""
    source_line: int = 0


@dataclass(frozen=True)
class ActivityBatch:
    municipality_id: str
    idempotency_key: str
    lines: tuple[ReportedLine, ...]


@dataclass(frozen=True)
class LineProblem:
    """What is wrong with one field of one line; `field` is the line's field name."""

    index: int
    field: str
    reason: str

    @property
    def path(self) -> str:
        return f"lines[{self.index}].{self.field}"


class InvalidActivity(ValueError):
    """Lines the ledger cannot account; every problem found, in line order."""

    def __init__(self, problems: Sequence[LineProblem]) -> None:
        first = problems[0]
        super().__init__(f"{first.path}: {first.reason}")
        self.problems = tuple(problems)


def batch_id(municipality_id: str, idempotency_key: str) -> str:
    """The batch's id, from its municipality and key: the same batch always has the same."""
    return str(uuid.uuid5(ENTRY_ID_NAMESPACE, f"activity:{municipality_id}:{idempotency_key}"))


def line_source_id(batch: str, index: int) -> str:
    return f"activity:{batch}:{index}"


def content_digest(batch: ActivityBatch) -> str:
    """What a batch says, as a digest: a key sent again with other lines differs here. The
    file name is left out, so a file imported again under another name is the same batch."""
    lines = [
        [
            line.year,
            None if line.sector is None else line.sector.value,
            None if line.subsector is None else line.subsector.value,
            None if line.energy_carrier is None else line.energy_carrier.value,
            line.amount,
            line.unit,
            line.note,
            line.source_document,
            line.source_line,
        ]
        for line in batch.lines
    ]
    text = json.dumps([batch.municipality_id, lines], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def entries_for_batch(
    batch: ActivityBatch,
    catalogue: FactorCatalogue,
    units: ActivityUnits,
    recorded_by: str,
    recorded_at: datetime,
    this_year: int,
    method: InventoryMethod = DEFAULT_METHOD,
) -> list[LedgerEntry]:
    """One emission entry per line, in line order, priced in the municipality's method;
    InvalidActivity naming every problem of every line when any line cannot be accounted (then
    none is)."""
    problems: list[LineProblem] = []
    entries: list[LedgerEntry] = []
    batch_key = batch_id(batch.municipality_id, batch.idempotency_key)
    for index, line in enumerate(batch.lines):
        found: list[LineProblem] = []
        priced = _check_line(line, catalogue, units, this_year, method, _recorder(index, found))
        problems.extend(found)
        if found or priced is None:
            continue
        amount, factor, conversion = priced
        converted = units.convert(amount, conversion)
        assert line.sector is not None and line.energy_carrier is not None
        source = line_source_id(batch_key, index)
        entries.append(
            LedgerEntry(
                entry_id=entry_id_for(source, EntryKind.EMISSION),
                municipality_id=batch.municipality_id,
                year=line.year,
                sector=line.sector,
                subsector=line.subsector or Subsector.NONE,
                energy_carrier=line.energy_carrier,
                activity_amount=converted.amount,
                activity_unit=factor.activity_unit,
                factor=factor,
                kg_co2e=EXACT_ARITHMETIC.multiply(converted.amount, factor.value),
                kind=EntryKind.EMISSION,
                source_event_id=source,
                source_topic=REPORTED_SOURCE,
                # A line covers the whole year: it is dated at the year's first instant.
                activity_at=datetime(line.year, 1, 1, tzinfo=MUNICIPAL_TIME_ZONE),
                subject_id=batch_key,
                basis=Basis.REPORTED,
                reported=ReportedProvenance(
                    idempotency_key=batch.idempotency_key,
                    line_index=index,
                    recorded_by=recorded_by,
                    recorded_at=recorded_at,
                    reported_amount=line.amount,
                    reported_unit=line.unit,
                    conversion=conversion.text,
                    conversion_source=conversion.source,
                    conversion_rounded=converted.rounded,
                    note=line.note,
                    source_document=line.source_document,
                    source_file=line.source_file,
                    source_line=line.source_line,
                ),
            )
        )
    if problems:
        raise InvalidActivity(problems)
    return entries


def _recorder(index: int, found: list[LineProblem]) -> Problem:
    def record(field: str, reason: str) -> None:
        found.append(LineProblem(index, field, reason))

    return record


def _check_line(
    line: ReportedLine,
    catalogue: FactorCatalogue,
    units: ActivityUnits,
    this_year: int,
    method: InventoryMethod,
    problem: Problem,
) -> tuple[Decimal, EmissionFactor, UnitConversion] | None:
    """Records every problem of the line through `problem`; the amount, factor and conversion
    when the line can be priced."""
    year_ok = FIRST_REPORTING_YEAR <= line.year <= this_year
    if not year_ok:
        problem("year", f"must be from {FIRST_REPORTING_YEAR} to {this_year} (the current year)")
    _check_sector(line, problem)
    _check_texts(line, problem)
    amount = _amount(line.amount, problem)
    carrier = line.energy_carrier
    if carrier is None:
        problem("energy_carrier", "required: one of " + ", ".join(c.value for c in EnergyCarrier))
        return None
    if not line.unit:
        problem("unit", "required")
    if not year_ok:
        return None
    try:
        factor = catalogue.for_method(carrier, line.year, method)
    except NoFactor as error:
        if any(
            f.energy_carrier is carrier and f.approach == method.approach and f.gas is method.gas
            for f in catalogue.factors
        ):
            problem("year", str(error))
        else:
            problem(
                "energy_carrier",
                f"the factor catalogue has no {method.approach} factor for {carrier} (in "
                f"{method.gas}): it cannot be priced until one is published in "
                "emission_factors.yaml",
            )
        return None
    if not line.unit:
        return None
    conversion = units.conversion(carrier, line.unit, factor.activity_unit)
    if conversion is None:
        accepted = ", ".join(units.units_for(carrier, factor.activity_unit)) or "none"
        problem(
            "unit",
            f"{carrier} is priced per {factor.activity_unit}; '{_shown(line.unit)}' has no "
            f"conversion with a source (accepted: {accepted})",
        )
        return None
    if amount is None:
        return None
    return amount, factor, conversion


def _check_sector(line: ReportedLine, problem: Problem) -> None:
    sector = line.sector
    if sector is None:
        problem("sector", "required: one of " + ", ".join(s.value for s in Sector))
        return
    subsector = line.subsector
    allowed = SUBSECTORS_OF.get(sector, frozenset({Subsector.NONE}))
    if subsector is None or subsector not in allowed:
        if allowed == {Subsector.NONE}:
            problem("subsector", f"{sector} has no sub-sector: leave it empty")
        else:
            names = ", ".join(sorted(s.value for s in allowed))
            problem("subsector", f"{sector} needs one of: {names}")


def _check_texts(line: ReportedLine, problem: Problem) -> None:
    if len(line.note) > MAX_NOTE_LENGTH:
        problem("note", f"at most {MAX_NOTE_LENGTH} characters")
    if len(line.source_document) > MAX_SOURCE_LENGTH:
        problem("source_document", f"at most {MAX_SOURCE_LENGTH} characters")
    if len(line.source_file) > MAX_SOURCE_LENGTH:
        problem("source_file", f"at most {MAX_SOURCE_LENGTH} characters")
    if line.source_line < 0:
        problem("source_line", "must not be negative")
    if len(line.unit) > 16:
        problem("unit", "at most 16 characters")


def _amount(raw: str, problem: Problem) -> Decimal | None:
    if not raw:
        problem("amount", "required")
        return None
    if _AMOUNT.fullmatch(raw) is None:
        if "," in raw and _AMOUNT.fullmatch(raw.replace(",", ".")) is not None:
            problem("amount", "use a point as the decimal separator, without thousands separators")
        else:
            problem(
                "amount",
                "must be a plain decimal above 0 (digits, one point, at most 15 digits before "
                "it and 9 after)",
            )
        return None
    amount = Decimal(raw)
    if amount <= 0:
        problem("amount", "must be above 0")
        return None
    return amount


def _shown(text: str) -> str:
    return text if len(text) <= 16 else text[:16] + "..."
