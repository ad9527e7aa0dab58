"""The Covenant report as files in the shape of the Covenant of Mayors' reporting template:
per inventory, sectors as rows and energy carriers as columns, one table of final energy in
MWh and one of emissions in the municipality's unit, t CO2 or t CO2e (XLSX: a BEI and an MEI
sheet, and one of targets and the method; CSV: the same tables one under the other, named in
the first columns, and the method last)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal

from emissions_ledger.domain.covenant import CovenantInventory, CovenantReport, ReportRow
from emissions_ledger.domain.entries import EXACT_ARITHMETIC, Sector, Subsector
from emissions_ledger.domain.factors import EnergyCarrier

XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_CONTENT_TYPE = "text/csv"

# The template's rows: every sector and transport sub-sector, also those the ledger has no
# activity for yet, so the file always has the template's shape.
TEMPLATE_ROWS: tuple[tuple[Sector, Subsector, str], ...] = (
    (Sector.MUNICIPAL_BUILDINGS, Subsector.NONE, "Municipal buildings, equipment/facilities"),
    (Sector.TERTIARY_BUILDINGS, Subsector.NONE, "Tertiary buildings, equipment/facilities"),
    (Sector.RESIDENTIAL_BUILDINGS, Subsector.NONE, "Residential buildings"),
    (Sector.PUBLIC_LIGHTING, Subsector.NONE, "Public lighting"),
    (Sector.INDUSTRY, Subsector.NON_ETS, "Industry: non-ETS"),
    (Sector.INDUSTRY, Subsector.ETS, "Industry: ETS (not recommended)"),
    (Sector.TRANSPORT, Subsector.MUNICIPAL_FLEET, "Transport: municipal fleet"),
    (Sector.TRANSPORT, Subsector.PUBLIC_TRANSPORT, "Transport: public transport"),
    (
        Sector.TRANSPORT,
        Subsector.PRIVATE_COMMERCIAL_TRANSPORT,
        "Transport: private and commercial transport",
    ),
    (Sector.WASTE, Subsector.NONE, "Waste"),
)
CARRIER_COLUMNS: tuple[tuple[EnergyCarrier, str], ...] = (
    (EnergyCarrier.ELECTRICITY, "Electricity"),
    (EnergyCarrier.HEAT, "Heat/cold"),
    (EnergyCarrier.NATURAL_GAS, "Natural gas"),
    (EnergyCarrier.HEATING_OIL, "Heating oil"),
    (EnergyCarrier.DIESEL, "Diesel"),
    (EnergyCarrier.GASOLINE, "Gasoline"),
    (EnergyCarrier.BIOFUEL, "Biofuels"),
    (EnergyCarrier.BIOMASS, "Other biomass"),
    (EnergyCarrier.OTHER, "Other"),
)
HEADER = ["Sector", *(name for _, name in CARRIER_COLUMNS), "Total"]

Cell = Decimal | str | None


def _cell_sum(rows: list[ReportRow], field: str) -> Decimal | None:
    values = [getattr(row, field) for row in rows]
    if not values or any(value is None for value in values):
        return None
    total = Decimal(0)
    for value in values:
        total = EXACT_ARITHMETIC.add(total, value)
    return total


def _own_units(rows: list[ReportRow]) -> str:
    return "; ".join(f"{row.activity_amount.normalize():f} {row.activity_unit}" for row in rows)


def inventory_tables(
    inventory: CovenantInventory, unit: str = "t CO2e"
) -> Iterator[tuple[str, list[list[Cell]]]]:
    """The template's tables of one inventory: final energy (MWh), emissions (t CO2e), and the
    activity in its own units (litres, kWh) beside them. A MWh cell is blank where a carrier's
    energy content is not known as data."""
    emissions_title = f"Emissions ({unit})"
    tables: dict[str, list[list[Cell]]] = {"Final energy (MWh)": [], emissions_title: []}
    own_units: list[list[Cell]] = []
    for sector, subsector, label in TEMPLATE_ROWS:
        energy: list[Cell] = [label]
        emissions: list[Cell] = [label]
        activity: list[Cell] = [label]
        energy_total: Decimal | None = Decimal(0)
        emissions_total = Decimal(0)
        for carrier, _ in CARRIER_COLUMNS:
            rows = [
                row
                for row in inventory.rows
                if (row.sector, row.subsector, row.energy_carrier) == (sector, subsector, carrier)
            ]
            mwh = _cell_sum(rows, "activity_mwh")
            t_co2e = _cell_sum(rows, "t_co2e")
            energy.append(mwh)
            emissions.append(t_co2e)
            activity.append(_own_units(rows) or None)
            if rows and mwh is None:
                energy_total = None
            if energy_total is not None and mwh is not None:
                energy_total = EXACT_ARITHMETIC.add(energy_total, mwh)
            if t_co2e is not None:
                emissions_total = EXACT_ARITHMETIC.add(emissions_total, t_co2e)
        energy.append(energy_total)
        emissions.append(emissions_total)
        activity.append(None)
        tables["Final energy (MWh)"].append(energy)
        tables[emissions_title].append(emissions)
        own_units.append(activity)
    tables["Activity in own units"] = own_units
    yield from tables.items()


def _method_rows(report: CovenantReport) -> list[list[Cell]]:
    """Which method every figure of the report is in, and what it leaves out."""
    unit = report.method.reporting_unit
    return [
        ["Emission factor approach", report.method.approach.value.upper()],
        ["Emission reporting unit", unit],
        [
            f"Baseline: carrier detours inside metered fuel, left out ({unit})",
            report.baseline.detours_within_metered_t_co2e,
        ],
        [
            f"Monitoring: carrier detours inside metered fuel, left out ({unit})",
            report.monitoring.detours_within_metered_t_co2e,
        ],
    ]


def _targets_rows(report: CovenantReport) -> list[list[Cell]]:
    unit = report.method.reporting_unit
    rows: list[list[Cell]] = [
        ["Baseline year", Decimal(report.baseline.year)],
        [f"Baseline total ({unit})", report.baseline.total_t_co2e],
        ["Monitoring year", Decimal(report.monitoring.year)],
        [f"Monitoring total ({unit})", report.monitoring.total_t_co2e],
        [f"Trajectory in the monitoring year ({unit})", report.monitoring_trajectory_t_co2e],
        [f"Gap to the trajectory ({unit})", report.gap_t_co2e],
        *_method_rows(report),
        [],
        ["Target year", "Reduction (%)", "Climate neutral", f"Allowed ({unit})", "Source"],
    ]
    for target in report.targets:
        rows.append(
            [
                Decimal(target.target_year),
                Decimal(target.reduction_percent),
                "yes" if target.climate_neutral else "no",
                target.t_co2e,
                target.source,
            ]
        )
    rows += [
        [],
        ["Sector", "Baseline", "Monitoring", "Change", "Change (%)", "Trajectory", "Gap"],
    ]
    labels = {(sector, subsector): label for sector, subsector, label in TEMPLATE_ROWS}
    for item in report.progress:
        rows.append(
            [
                labels.get((item.sector, item.subsector), item.sector.value),
                item.baseline_t_co2e,
                item.monitoring_t_co2e,
                item.change_t_co2e,
                item.change_percent,
                item.trajectory_t_co2e,
                item.gap_t_co2e,
            ]
        )
    return rows


def _inventories(report: CovenantReport) -> list[tuple[str, CovenantInventory]]:
    return [("BEI", report.baseline), ("MEI", report.monitoring)]


def report_xlsx(report: CovenantReport) -> bytes:
    # Imported here, not with the module: openpyxl costs the service about 3 MB of memory for
    # as long as it runs, and only an export needs it (docs/performance.md, "Memory").
    from openpyxl import Workbook

    workbook = Workbook()
    first = True
    for name, inventory in _inventories(report):
        sheet = workbook.active if first else workbook.create_sheet()
        assert sheet is not None
        first = False
        sheet.title = f"{name} {inventory.year}"
        method = report.method
        sheet.append(
            [
                f"{name} {inventory.year}, {report.municipality_id}, "
                f"{method.approach.value.upper()} approach, {method.reporting_unit}"
            ]
        )
        for title, rows in inventory_tables(inventory, report.method.reporting_unit):
            sheet.append([])
            sheet.append([title])
            sheet.append(HEADER)
            for row in rows:
                sheet.append(row)
        sheet.column_dimensions["A"].width = 45
    targets = workbook.create_sheet("Targets")
    for row in _targets_rows(report):
        targets.append(row)
    targets.column_dimensions["A"].width = 45
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _text(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "0") else text
    return value


def report_csv(report: CovenantReport) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["Inventory", "Year", "Table", *HEADER])
    for name, inventory in _inventories(report):
        for title, rows in inventory_tables(inventory, report.method.reporting_unit):
            for row in rows:
                writer.writerow([name, inventory.year, title, *(_text(cell) for cell in row)])
    # The method, under the tables: inventory "Report", table "Method".
    for label, value in _method_rows(report):
        writer.writerow(["Report", "", "Method", label, _text(value)])
    return buffer.getvalue().encode()
