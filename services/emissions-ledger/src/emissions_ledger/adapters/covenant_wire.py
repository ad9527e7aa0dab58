"""Wire form of the Covenant report."""

from __future__ import annotations

from decimal import Decimal

from emissions_ledger.domain.covenant import CovenantInventory, CovenantReport, EnergyContents
from greenpartners.ledger.v1 import ledger_pb2
from servicekit.database import decimal_text
from servicekit.enums import to_proto


def _text(value: Decimal | None) -> str:
    return "" if value is None else decimal_text(value)


def covenant_inventory_to_proto(inventory: CovenantInventory) -> ledger_pb2.CovenantInventory:
    return ledger_pb2.CovenantInventory(
        year=inventory.year,
        rows=[
            ledger_pb2.CovenantInventoryRow(
                sector=to_proto(ledger_pb2.Sector, row.sector),
                subsector=to_proto(ledger_pb2.Subsector, row.subsector),
                energy_carrier=to_proto(ledger_pb2.EnergyCarrier, row.energy_carrier),
                activity_amount=decimal_text(row.activity_amount),
                activity_unit=row.activity_unit,
                activity_mwh=_text(row.activity_mwh),
                t_co2e=decimal_text(row.t_co2e),
            )
            for row in inventory.rows
        ],
        total_t_co2e=decimal_text(inventory.total_t_co2e),
    )


def covenant_report_to_proto(
    report: CovenantReport, contents: EnergyContents
) -> ledger_pb2.GetCovenantReportResponse:
    return ledger_pb2.GetCovenantReportResponse(
        municipality_id=report.municipality_id,
        baseline=covenant_inventory_to_proto(report.baseline),
        monitoring=covenant_inventory_to_proto(report.monitoring),
        progress=[
            ledger_pb2.CovenantSectorProgress(
                sector=to_proto(ledger_pb2.Sector, item.sector),
                subsector=to_proto(ledger_pb2.Subsector, item.subsector),
                baseline_t_co2e=decimal_text(item.baseline_t_co2e),
                monitoring_t_co2e=decimal_text(item.monitoring_t_co2e),
                change_t_co2e=decimal_text(item.change_t_co2e),
                change_percent=_text(item.change_percent),
                trajectory_t_co2e=decimal_text(item.trajectory_t_co2e),
                gap_t_co2e=decimal_text(item.gap_t_co2e),
            )
            for item in report.progress
        ],
        targets=[
            ledger_pb2.CovenantTarget(
                target_year=target.target_year,
                reduction_percent=target.reduction_percent,
                climate_neutral=target.climate_neutral,
                source=target.source,
                target_t_co2e=decimal_text(target.t_co2e),
            )
            for target in report.targets
        ],
        monitoring_trajectory_share=decimal_text(report.monitoring_trajectory_share),
        monitoring_trajectory_t_co2e=decimal_text(report.monitoring_trajectory_t_co2e),
        gap_t_co2e=decimal_text(report.gap_t_co2e),
        energy_contents=[
            ledger_pb2.EnergyContent(
                energy_carrier=to_proto(ledger_pb2.EnergyCarrier, content.energy_carrier),
                activity_unit=content.activity_unit,
                kwh_per_unit=decimal_text(content.kwh_per_unit),
                source=content.source,
            )
            for content in contents.contents
        ],
    )
