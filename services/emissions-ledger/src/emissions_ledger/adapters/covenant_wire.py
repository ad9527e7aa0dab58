"""Wire form of the Covenant report and the programme views."""

from __future__ import annotations

from decimal import Decimal

from emissions_ledger.domain.covenant import CovenantInventory, CovenantReport, EnergyContents
from emissions_ledger.domain.programmes import FleetFigures, ProgrammeView
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
                distance_km=_text(row.distance_km),
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
        emission_factor_approach=report.method.approach.value,
        emission_unit=report.method.reporting_unit,
        baseline_detours_within_metered_t_co2e=decimal_text(
            report.baseline.detours_within_metered_t_co2e
        ),
        monitoring_detours_within_metered_t_co2e=decimal_text(
            report.monitoring.detours_within_metered_t_co2e
        ),
    )


def _fleet_to_proto(fleet: FleetFigures) -> ledger_pb2.GreenFleetsFleet:
    return ledger_pb2.GreenFleetsFleet(
        ownership=to_proto(ledger_pb2.FleetOwnership, fleet.ownership),
        carriers=[
            ledger_pb2.GreenFleetsCarrier(
                energy_carrier=to_proto(ledger_pb2.EnergyCarrier, carrier.energy_carrier),
                distance_km=decimal_text(carrier.distance_km),
                litres=decimal_text(carrier.litres),
                kwh=decimal_text(carrier.kwh),
                kg_co2e=decimal_text(carrier.kg_co2e),
                entry_count=carrier.entry_count,
                entries_without_distance=carrier.entries_without_distance,
            )
            for carrier in fleet.carriers
        ],
        distance_km=decimal_text(fleet.distance_km),
        fossil_free_distance_km=decimal_text(fleet.fossil_free_distance_km),
        fossil_free_share_percent=_text(fleet.fossil_free_share_percent),
        kg_co2e=decimal_text(fleet.kg_co2e),
        g_co2e_per_km=_text(fleet.g_co2e_per_km),
    )


def programme_view_to_proto(view: ProgrammeView) -> ledger_pb2.GetProgrammeViewResponse:
    wire = ledger_pb2.GetProgrammeViewResponse(
        municipality_id=view.municipality_id,
        year=view.year,
        emission_factor_approach=view.method.approach.value,
        emission_unit=view.method.reporting_unit,
    )
    if view.green_fleets is not None:
        wire.programme = ledger_pb2.PROGRAMME_GREEN_FLEETS
        wire.green_fleets.CopyFrom(
            ledger_pb2.GreenFleetsView(
                fleets=[_fleet_to_proto(fleet) for fleet in view.green_fleets.fleets],
                total=_fleet_to_proto(view.green_fleets.total),
            )
        )
    if view.molo_hubs is not None:
        hubs = view.molo_hubs
        wire.programme = ledger_pb2.PROGRAMME_MOLO_HUBS
        wire.molo_hubs.CopyFrom(
            ledger_pb2.MoloHubsView(
                deposit_count=hubs.deposit_count,
                deposited_kg=decimal_text(hubs.deposited_kg),
                hazardous_deposited_kg=decimal_text(hubs.hazardous_deposited_kg),
                collection_count=hubs.collection_count,
                collected_kg=decimal_text(hubs.collected_kg),
                avoided_trip_km=decimal_text(hubs.avoided_trip_km),
                avoided_kg_co2e=decimal_text(hubs.avoided_kg_co2e),
                detour_km=decimal_text(hubs.detour_km),
                detour_kg_co2e=decimal_text(hubs.detour_kg_co2e),
                net_avoided_kg_co2e=decimal_text(hubs.net_avoided_kg_co2e),
                detour_kg_co2e_within_metered=decimal_text(hubs.detour_kg_co2e_within_metered),
            )
        )
    return wire
