"""The Covenant report on the running ledger: BEI and MEI from posted fleet activity, in MWh
and t CO2 (Aalborg reports IPCC in t CO2), against Aalborg's DK2020 targets; the same report
exported as XLSX (opened with openpyxl, cells checked) and CSV. Figures worked out by hand in
the comments."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from openpyxl import load_workbook

from emissions_ledger.bootstrap import build
from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from servicekit import topics
from servicekit.identity import CLIMATE_OFFICER
from servicekit.topics import ensure_topics
from tests.kafka_tools import connection, eventually, produce, unique_namespace
from tests.ledger_events import vehicle_activity
from tests.registry_seed import publish_registry_seed
from tools import covenant_report
from tools.pki import Pki

AALBORG = "aalborg-kommune"
BASELINE, MONITORING = 2013, 2025


def activity(event_id: str, year: int, fuel_type: int, fuel_ml: int = 0, energy_wh: int = 0) -> Any:
    at = datetime(year, 3, 4, 10, 0, tzinfo=UTC)
    return vehicle_activity(event_id, fuel_type, at, fuel_used_ml=fuel_ml, energy_used_wh=energy_wh)


def years(**more: Any) -> dict[str, Any]:
    return {
        "municipality_id": AALBORG,
        "baseline_year": BASELINE,
        "monitoring_year": MONITORING,
        **more,
    }


async def test_bei_mei_targets_and_gap_and_the_exported_template(
    kafka: str,
    tmp_path: Path,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger = build(
        kafka_bootstrap_servers=kafka,
        topic_namespace=unique_namespace("covenant"),
        database_url=f"sqlite+aiosqlite:///{tmp_path}/ledger.db",
        grpc_port=0,
        outbox_poll_interval_s=0.1,
    )
    await ensure_topics(connection(kafka), ledger.names.all_specs())
    # The municipalities the ledger keeps inventories for come from the registry's changelog.
    await publish_registry_seed(kafka, ledger.names.namespace)
    topic = ledger.topic(topics.ACTIVITY)
    # 2013: 10 kWh x 0.363 = 3.63 kg; 100 l x 2.67 (IPCC default) = 267 kg.
    await produce(
        kafka, topic, "v-ev13", activity("ev13", 2013, fleet_pb2.FUEL_TYPE_ELECTRIC, 0, 10_000)
    )
    await produce(
        kafka, topic, "v-van13", activity("van13", 2013, fleet_pb2.FUEL_TYPE_DIESEL, 100_000)
    )
    # 2025: 20 kWh x 0.096 = 1.92 kg; 40 l x 2.66 = 106.4 kg (both provisional).
    await produce(
        kafka, topic, "v-ev25", activity("ev25", 2025, fleet_pb2.FUEL_TYPE_ELECTRIC, 0, 20_000)
    )
    await produce(
        kafka, topic, "v-van25", activity("van25", 2025, fleet_pb2.FUEL_TYPE_DIESEL, 40_000)
    )

    await ledger.start()
    try:
        async with pki.channel(
            f"127.0.0.1:{ledger.grpc_port}", CLIMATE_OFFICER, AALBORG
        ) as channel:
            stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)

            async def posted() -> None:
                for year in (BASELINE, MONITORING):
                    got = await stub.GetInventory(
                        ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=year)
                    )
                    assert got.entry_count == 2

            await eventually(posted, timeout_s=45)

            # Aalborg's commitment as recorded states no baseline year: one must be named.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetCovenantReport(
                    ledger_pb2.GetCovenantReportRequest(
                        municipality_id=AALBORG, monitoring_year=MONITORING
                    )
                )
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

            report = await stub.GetCovenantReport(ledger_pb2.GetCovenantReportRequest(**years()))
            bei = {row.energy_carrier: row for row in report.baseline.rows}
            assert bei[ledger_pb2.ENERGY_CARRIER_DIESEL].activity_amount == "100"
            assert bei[ledger_pb2.ENERGY_CARRIER_DIESEL].activity_mwh == "1.004"  # x 10.04 kWh/l
            assert bei[ledger_pb2.ENERGY_CARRIER_DIESEL].t_co2e == "0.267"
            assert bei[ledger_pb2.ENERGY_CARRIER_ELECTRICITY].activity_mwh == "0.01"
            assert report.baseline.total_t_co2e == "0.27063"
            assert report.monitoring.total_t_co2e == "0.10832"
            (fleet,) = report.progress
            assert fleet.subsector == ledger_pb2.SUBSECTOR_MUNICIPAL_FLEET
            assert fleet.change_t_co2e == "-0.16231"
            assert fleet.change_percent == "-60"  # -0.16231 / 0.27063 = -59.97 %
            # 2025 on the line from 2013 (1) to 2030 (0.3): 1 - 0.7 x 12/17 = 0.50588...;
            # 0.27063 t x 0.50588 = 0.137 t (to the kg).
            assert Decimal(report.monitoring_trajectory_share).quantize(
                Decimal("0.00001")
            ) == Decimal("0.50588")
            assert (report.monitoring_trajectory_t_co2e, report.gap_t_co2e) == ("0.137", "-0.02868")
            assert [(t.target_year, t.target_t_co2e) for t in report.targets] == [
                (2030, "0.081"),  # 0.27063 x 0.3 = 0.081189, to the kg
                (2050, "0"),
            ]
            assert {c.energy_carrier for c in report.energy_contents} >= {
                ledger_pb2.ENERGY_CARRIER_DIESEL,
                ledger_pb2.ENERGY_CARRIER_GASOLINE,
            }

            exported = await stub.ExportCovenantReport(
                ledger_pb2.ExportCovenantReportRequest(
                    **years(format=ledger_pb2.EXPORT_FORMAT_XLSX)
                )
            )
            assert exported.file_name == "covenant-aalborg-kommune-bei2013-mei2025.xlsx"
            workbook = load_workbook(io.BytesIO(exported.content))
            assert workbook.sheetnames == ["BEI 2013", "MEI 2025", "Targets"]
            sheet = workbook["BEI 2013"]
            cells = [[cell.value for cell in row] for row in sheet.iter_rows()]
            header = cells[3]
            assert header[:6] == [
                "Sector",
                "Electricity",
                "Heat/cold",
                "Natural gas",
                "Heating oil",
                "Diesel",
            ]
            energy_fleet = cells[3 + 7]  # the seventh template row: municipal fleet
            assert energy_fleet[0] == "Transport: municipal fleet"
            assert (energy_fleet[1], energy_fleet[5], energy_fleet[-1]) == (0.01, 1.004, 1.014)
            emissions_title = cells.index(["Emissions (t CO2)"] + [None] * (len(cells[0]) - 1))
            emissions_fleet = cells[emissions_title + 1 + 7]
            assert emissions_fleet[0] == "Transport: municipal fleet"
            assert (emissions_fleet[1], emissions_fleet[5], emissions_fleet[-1]) == (
                0.00363,
                0.267,
                0.27063,
            )
            targets = {row[0].value: row[1].value for row in workbook["Targets"].iter_rows()}
            assert targets["Gap to the trajectory (t CO2)"] == -0.02868
            # The method the figures are in: Aalborg's commitment names none, so IPCC in t CO2.
            assert cells[0][0] == "BEI 2013, aalborg-kommune, IPCC approach, t CO2"
            assert targets["Emission factor approach"] == "IPCC"
            assert targets["Emission reporting unit"] == "t CO2"

            as_csv = await stub.ExportCovenantReport(
                ledger_pb2.ExportCovenantReportRequest(**years(format=ledger_pb2.EXPORT_FORMAT_CSV))
            )
            rows = list(csv.DictReader(io.StringIO(as_csv.content.decode())))
            mei_fleet = next(
                row
                for row in rows
                if row["Inventory"] == "MEI"
                and row["Table"] == "Emissions (t CO2)"
                and row["Sector"] == "Transport: municipal fleet"
            )
            assert (mei_fleet["Electricity"], mei_fleet["Diesel"], mei_fleet["Total"]) == (
                "0.00192",
                "0.1064",
                "0.10832",
            )

        # The tools/ command: the workbook saved where asked, and the report printed.
        monkeypatch.setenv("GREENPARTNERS_TOKEN", pki.token(CLIMATE_OFFICER, AALBORG))
        target = f"127.0.0.1:{ledger.grpc_port}"
        common = ["--target", target, "--ca", str(pki.ca_file), "--baseline", str(BASELINE)]
        saved = tmp_path / "report.xlsx"
        arguments = [*common, "--monitoring", str(MONITORING), "--format", "xlsx"]
        assert await asyncio.to_thread(covenant_report.main, [*arguments, "--out", str(saved)]) == 0
        assert load_workbook(saved).sheetnames == ["BEI 2013", "MEI 2025", "Targets"]
        text = [*common, "--monitoring", str(MONITORING)]
        assert await asyncio.to_thread(covenant_report.main, text) == 0
        printed = capsys.readouterr().out
        assert "BEI 2013: 0.27063 t CO2" in printed and "gap -0.02868 t CO2 " in printed
        assert "(IPCC emission factors, t CO2)" in printed
        # A baseline year without activity is said plainly, with no gap shown.
        empty = ["--target", target, "--ca", str(pki.ca_file), "--baseline", "2014"]
        assert await asyncio.to_thread(covenant_report.main, [*empty, "--monitoring", "2025"]) == 0
        printed = capsys.readouterr().out
        assert "no activity for the baseline year 2014" in printed
        assert "Trajectory in" not in printed and "allowed in" not in printed
    finally:
        await ledger.stop()
