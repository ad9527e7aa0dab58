"""The Covenant of Mayors report: a baseline (BEI) and a monitoring inventory (MEI) in MWh and
t CO2e per sector, sub-sector and energy carrier, the change per sector, the targets of the
municipality's commitment and the linear trajectory towards them, and the gap to it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from itertools import pairwise
from typing import Any

from emissions_ledger.domain.entries import (
    DEFAULT_METHOD,
    EXACT_ARITHMETIC,
    EntryKind,
    Sector,
    Subsector,
)
from emissions_ledger.domain.factors import EnergyCarrier, InventoryMethod
from emissions_ledger.domain.inventory import Inventory, InventoryLine
from emissions_ledger.domain.municipalities import CovenantCommitment

KG_PER_TONNE = Decimal(1000)
KWH_PER_MWH = Decimal(1000)
# Trajectory figures come from a division and are rounded to the kilogram.
_TRAJECTORY_ARITHMETIC = Context(prec=40, rounding=ROUND_HALF_EVEN)
_KILOGRAM_IN_TONNES = Decimal("0.001")


class InvalidEnergyContentData(ValueError):
    """The energy content data is malformed; the message names the entry and the field."""


class InvalidReportRequest(ValueError):
    """The years asked for cannot make a report; the message says why."""


@dataclass(frozen=True)
class EnergyContent:
    energy_carrier: EnergyCarrier
    activity_unit: str
    kwh_per_unit: Decimal
    source: str


class EnergyContents:
    """kWh per unit of activity, per carrier and unit, each with its source."""

    def __init__(self, contents: Iterable[EnergyContent]) -> None:
        self._contents = {(c.energy_carrier, c.activity_unit): c for c in contents}

    @property
    def contents(self) -> tuple[EnergyContent, ...]:
        return tuple(self._contents.values())

    def of(self, carrier: EnergyCarrier, activity_unit: str) -> EnergyContent | None:
        return self._contents.get((carrier, activity_unit))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EnergyContents:
        entries = data.get("contents") if isinstance(data, Mapping) else None
        if not isinstance(entries, list) or not entries:
            raise InvalidEnergyContentData("field 'contents' must be a non-empty list")
        contents: list[EnergyContent] = []
        for index, entry in enumerate(entries):
            where = f"energy content {index}"
            if not isinstance(entry, Mapping):
                raise InvalidEnergyContentData(f"{where}: must be a mapping")
            try:
                carrier = EnergyCarrier(str(entry.get("carrier")))
            except ValueError as error:
                raise InvalidEnergyContentData(f"{where}: field 'carrier' is unknown") from error
            unit, raw, source = (
                entry.get("activity_unit"),
                entry.get("kwh_per_unit"),
                entry.get("source"),
            )
            if not isinstance(unit, str) or not unit:
                raise InvalidEnergyContentData(f"{where}: field 'activity_unit' is required")
            if not isinstance(raw, str) or not raw:
                raise InvalidEnergyContentData(f"{where}: field 'kwh_per_unit' must be quoted")
            if not isinstance(source, str) or not source.strip():
                raise InvalidEnergyContentData(f"{where}: field 'source' is required")
            value = Decimal(raw)
            if not value.is_finite() or value <= 0:
                raise InvalidEnergyContentData(f"{where}: field 'kwh_per_unit' must be positive")
            contents.append(EnergyContent(carrier, unit, value, source.strip()))
        return cls(contents)


@dataclass(frozen=True)
class ReportRow:
    """One sector / sub-sector / carrier of an inventory. activity_mwh is None when the
    carrier's energy content per unit is not known as data: the activity stays in its unit."""

    sector: Sector
    subsector: Subsector
    energy_carrier: EnergyCarrier
    activity_amount: Decimal
    activity_unit: str
    activity_mwh: Decimal | None
    t_co2e: Decimal
    # The km behind the activity; None when some of its entries do not know theirs.
    distance_km: Decimal | None = None


@dataclass(frozen=True)
class CovenantInventory:
    year: int
    rows: tuple[ReportRow, ...]
    total_t_co2e: Decimal
    # Modelled carrier detours left out: their carrier's metered fuel holds them.
    detours_within_metered_t_co2e: Decimal = Decimal(0)

    def sector_t_co2e(self, sector: Sector, subsector: Subsector) -> Decimal:
        total = Decimal(0)
        for row in self.rows:
            if (row.sector, row.subsector) == (sector, subsector):
                total = EXACT_ARITHMETIC.add(total, row.t_co2e)
        return total


@dataclass(frozen=True)
class TargetFigure:
    target_year: int
    reduction_percent: int
    climate_neutral: bool
    source: str
    # What the target allows: the baseline total less the reduction (0 when climate neutral).
    t_co2e: Decimal


@dataclass(frozen=True)
class SectorProgress:
    """A sector against its baseline and against the trajectory in the monitoring year.
    change_percent is None when the baseline is 0; a positive gap is above the trajectory."""

    sector: Sector
    subsector: Subsector
    baseline_t_co2e: Decimal
    monitoring_t_co2e: Decimal
    change_t_co2e: Decimal
    change_percent: Decimal | None
    trajectory_t_co2e: Decimal
    gap_t_co2e: Decimal


@dataclass(frozen=True)
class CovenantReport:
    municipality_id: str
    baseline: CovenantInventory
    monitoring: CovenantInventory
    progress: tuple[SectorProgress, ...]
    targets: tuple[TargetFigure, ...]
    # The share of the baseline the trajectory allows in the monitoring year (1 = baseline).
    monitoring_trajectory_share: Decimal
    monitoring_trajectory_t_co2e: Decimal
    gap_t_co2e: Decimal
    # The method every entry of both inventories is priced in.
    method: InventoryMethod = DEFAULT_METHOD


_RowKey = tuple[Sector, Subsector, EnergyCarrier, str]


def covenant_inventory(
    inventory: Inventory,
    contents: EnergyContents,
    left_out: Iterable[InventoryLine] = (),
) -> CovenantInventory:
    """The inventory's emissions (avoided emissions are not part of a BEI or MEI) per sector,
    sub-sector, carrier and activity unit, metered and modelled together, in tonnes; less the
    `left_out` lines (modelled detours that metered fuel already holds), counted apart."""
    amounts: dict[_RowKey, tuple[Decimal, Decimal, Decimal, int]] = {}

    def add(line: InventoryLine, sign: int) -> None:
        key = (line.sector, line.subsector, line.energy_carrier, line.activity_unit)
        activity, kg, km, unknown_km = amounts.get(key, (Decimal(0), Decimal(0), Decimal(0), 0))
        amounts[key] = (
            EXACT_ARITHMETIC.add(activity, _signed(line.activity_amount, sign)),
            EXACT_ARITHMETIC.add(kg, _signed(line.kg_co2e, sign)),
            EXACT_ARITHMETIC.add(km, _signed(line.distance_km, sign)),
            unknown_km + sign * line.entries_without_distance,
        )

    for line in inventory.lines:
        if line.kind is EntryKind.EMISSION:
            add(line, 1)
    left_out_kg = Decimal(0)
    for line in left_out:
        if line.kind is EntryKind.EMISSION:
            add(line, -1)
            left_out_kg = EXACT_ARITHMETIC.add(left_out_kg, line.kg_co2e)
    rows = []
    for (sector, subsector, carrier, unit), (activity, kg, km, unknown_km) in amounts.items():
        content = contents.of(carrier, unit)
        mwh = (
            None
            if content is None
            else EXACT_ARITHMETIC.divide(
                EXACT_ARITHMETIC.multiply(activity, content.kwh_per_unit), KWH_PER_MWH
            )
        )
        rows.append(
            ReportRow(
                sector,
                subsector,
                carrier,
                activity,
                unit,
                mwh,
                EXACT_ARITHMETIC.divide(kg, KG_PER_TONNE),
                None if unknown_km else km,
            )
        )
    total = Decimal(0)
    for row in rows:
        total = EXACT_ARITHMETIC.add(total, row.t_co2e)
    # Inventory lines already come in the template's order; rows keep it.
    return CovenantInventory(
        inventory.year,
        tuple(rows),
        total,
        EXACT_ARITHMETIC.divide(left_out_kg, KG_PER_TONNE),
    )


def _signed(amount: Decimal, sign: int) -> Decimal:
    return amount if sign > 0 else EXACT_ARITHMETIC.minus(amount)


def trajectory_share(commitment: CovenantCommitment, baseline_year: int, year: int) -> Decimal:
    """The share of baseline emissions the linear trajectory allows in `year`: 1 in the
    baseline year, 1 - reduction at each target year (0 when climate neutral), straight lines
    between them, and the last target's share after it."""
    points = [(baseline_year, Decimal(1))] + [
        (target.target_year, _target_share(target.reduction_percent, target.climate_neutral))
        for target in sorted(commitment.targets, key=lambda target: target.target_year)
        if target.target_year > baseline_year
    ]
    if year <= baseline_year:
        return Decimal(1)
    for (start_year, start_share), (end_year, end_share) in pairwise(points):
        if year <= end_year:
            fraction = _TRAJECTORY_ARITHMETIC.divide(
                Decimal(year - start_year), Decimal(end_year - start_year)
            )
            return start_share + _TRAJECTORY_ARITHMETIC.multiply(end_share - start_share, fraction)
    return points[-1][1]


def covenant_report(
    municipality_id: str,
    commitment: CovenantCommitment,
    baseline: Inventory,
    monitoring: Inventory,
    contents: EnergyContents,
    method: InventoryMethod = DEFAULT_METHOD,
    baseline_left_out: Iterable[InventoryLine] = (),
    monitoring_left_out: Iterable[InventoryLine] = (),
) -> CovenantReport:
    """The report; the `left_out` lines of each year are modelled detours that its metered
    fuel already holds (domain.programmes.detours_within_metered)."""
    if monitoring.year < baseline.year:
        raise InvalidReportRequest(
            f"the monitoring year {monitoring.year} is before the baseline year {baseline.year}"
        )
    bei = covenant_inventory(baseline, contents, baseline_left_out)
    mei = covenant_inventory(monitoring, contents, monitoring_left_out)
    share = trajectory_share(commitment, baseline.year, monitoring.year)
    sectors: list[tuple[Sector, Subsector]] = []
    for row in bei.rows + mei.rows:
        if (row.sector, row.subsector) not in sectors:
            sectors.append((row.sector, row.subsector))
    order = {sector: index for index, sector in enumerate(Sector)}
    sub_order = {subsector: index for index, subsector in enumerate(Subsector)}
    sectors.sort(key=lambda pair: (order[pair[0]], sub_order[pair[1]]))
    progress = tuple(_progress(sector, subsector, bei, mei, share) for sector, subsector in sectors)
    trajectory_total = _tonnes(bei.total_t_co2e * share)
    targets = tuple(
        TargetFigure(
            target.target_year,
            target.reduction_percent,
            target.climate_neutral,
            target.source,
            _tonnes(
                bei.total_t_co2e * _target_share(target.reduction_percent, target.climate_neutral)
            ),
        )
        for target in sorted(commitment.targets, key=lambda target: target.target_year)
    )
    return CovenantReport(
        municipality_id=municipality_id,
        baseline=bei,
        monitoring=mei,
        progress=progress,
        targets=targets,
        monitoring_trajectory_share=share,
        monitoring_trajectory_t_co2e=trajectory_total,
        gap_t_co2e=mei.total_t_co2e - trajectory_total,
        method=method,
    )


def _progress(
    sector: Sector,
    subsector: Subsector,
    bei: CovenantInventory,
    mei: CovenantInventory,
    share: Decimal,
) -> SectorProgress:
    baseline = bei.sector_t_co2e(sector, subsector)
    monitoring = mei.sector_t_co2e(sector, subsector)
    change = EXACT_ARITHMETIC.subtract(monitoring, baseline)
    percent = (
        None
        if baseline == 0
        else _TRAJECTORY_ARITHMETIC.divide(change * 100, baseline).quantize(Decimal("0.1"))
    )
    trajectory = _tonnes(baseline * share)
    return SectorProgress(
        sector=sector,
        subsector=subsector,
        baseline_t_co2e=baseline,
        monitoring_t_co2e=monitoring,
        change_t_co2e=change,
        change_percent=percent,
        trajectory_t_co2e=trajectory,
        gap_t_co2e=monitoring - trajectory,
    )


def _target_share(reduction_percent: int, climate_neutral: bool) -> Decimal:
    if climate_neutral:
        return Decimal(0)
    return 1 - Decimal(reduction_percent) / 100


def _tonnes(value: Decimal) -> Decimal:
    return value.quantize(
        _KILOGRAM_IN_TONNES, rounding=ROUND_HALF_EVEN, context=_TRAJECTORY_ARITHMETIC
    )
