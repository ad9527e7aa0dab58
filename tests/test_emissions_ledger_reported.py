"""Reported activity on the running ledger, over gRPC with TLS and tokens: a batch recorded,
repeated (nothing posted twice), refused with another content under the same key, refused line
by line when a line is bad (nothing posted), flagged late in a locked year; the entries in
GetCovenantReport, ExportCovenantReport and ListEntries. SQLite and PostgreSQL. Then the CSV
import run as a command on a file with one bad line, and on the sample file, twice.
Figures worked out by hand in the comments."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from emissions_ledger.bootstrap import build
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from servicekit.identity import CLIMATE_OFFICER
from servicekit.runtime import ServiceRuntime
from servicekit.topics import ensure_topics
from tests.kafka_tools import connection, eventually, unique_namespace
from tests.registry_seed import publish_registry_seed
from tools import import_activity as import_activity_tool
from tools.pki import Pki

AALBORG = "aalborg-kommune"
OFFICER = "officer-anna"
REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "docs" / "examples" / "reported-activity.csv"
MUNICIPAL, RESIDENTIAL, LIGHTING, TERTIARY, INDUSTRY, TRANSPORT = (
    ledger_pb2.SECTOR_MUNICIPAL_BUILDINGS,
    ledger_pb2.SECTOR_RESIDENTIAL_BUILDINGS,
    ledger_pb2.SECTOR_PUBLIC_LIGHTING,
    ledger_pb2.SECTOR_TERTIARY_BUILDINGS,
    ledger_pb2.SECTOR_INDUSTRY,
    ledger_pb2.SECTOR_TRANSPORT,
)
ELECTRICITY, GAS, OIL, BIOMASS, DIESEL, HEAT = (
    ledger_pb2.ENERGY_CARRIER_ELECTRICITY,
    ledger_pb2.ENERGY_CARRIER_NATURAL_GAS,
    ledger_pb2.ENERGY_CARRIER_HEATING_OIL,
    ledger_pb2.ENERGY_CARRIER_BIOMASS,
    ledger_pb2.ENERGY_CARRIER_DIESEL,
    ledger_pb2.ENERGY_CARRIER_HEAT,
)


def line(year: int, sector: int, carrier: int, amount: str, unit: str, **more: Any) -> Any:
    return ledger_pb2.ActivityLine(
        year=year, sector=sector, energy_carrier=carrier, amount=amount, unit=unit, **more
    )


# The sample file's lines (docs/examples/reported-activity.csv), by hand:
# 2013: natural gas 1000 m3 x 11.00 = 11000 kWh x 0.202 = 2222 kg; heating oil 2 MWh = 2000 kWh
#   x 0.267 = 534 kg; public lighting 3.6 GJ = 1000 kWh x 0.363 = 363 kg; biomass 12 t =
#   52000 kWh x 0 = 0 kg. Total 3119 kg = 3.119 t.
# 2025: electricity 1 GJ = 277.777778 kWh (rounded) x 0.096 = 26.666666688 kg; industry gas
#   500 m3 = 5500 kWh x 0.204 = 1122 kg; buses' diesel 1.5 m3 = 1500 l x 2.66 = 3990 kg.
#   Total 5138.666666688 kg.
BATCH = [
    line(2013, MUNICIPAL, GAS, "1000", "m3", note="town hall boilers"),
    line(2013, RESIDENTIAL, OIL, "2", "MWh"),
    line(2013, LIGHTING, ELECTRICITY, "3.6", "GJ", source_document="meter readings 2013"),
    line(2013, TERTIARY, BIOMASS, "12", "t"),
    line(2025, MUNICIPAL, ELECTRICITY, "1", "GJ"),
    line(2025, INDUSTRY, GAS, "500", "m3", subsector=ledger_pb2.SUBSECTOR_NON_ETS),
    line(2025, TRANSPORT, DIESEL, "1.5", "m3", subsector=ledger_pb2.SUBSECTOR_PUBLIC_TRANSPORT),
]


async def started_ledger(kafka: str, database_url: str, name: str) -> ServiceRuntime:
    ledger = build(
        kafka_bootstrap_servers=kafka,
        topic_namespace=unique_namespace(name),
        database_url=database_url,
        grpc_port=0,
        outbox_poll_interval_s=0.1,
    )
    await ensure_topics(connection(kafka), ledger.names.all_specs())
    # The municipalities the ledger keeps inventories for come from the registry's changelog.
    await publish_registry_seed(kafka, ledger.names.namespace)
    await ledger.start()
    return ledger


async def known(stub: Any) -> None:
    """Waits until the ledger's read of the registry knows Aalborg."""

    async def answered() -> None:
        try:
            await stub.GetInventory(
                ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=2013)
            )
        except grpc.aio.AioRpcError as error:
            assert error.code() != grpc.StatusCode.NOT_FOUND
            raise

    await eventually(answered, timeout_s=45)


def violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found = []
    for detail in status.details:
        request = error_details_pb2.BadRequest()
        assert detail.Unpack(request)
        found += [(v.field, v.description) for v in request.field_violations]
    return found


async def test_reported_activity_is_recorded_once_and_reported_in_its_sectors(
    kafka: str, database_url: str, pki: Pki
) -> None:
    ledger = await started_ledger(kafka, database_url, "reported")
    try:
        target = f"127.0.0.1:{ledger.grpc_port}"
        async with pki.channel(target, CLIMATE_OFFICER, AALBORG, OFFICER) as channel:
            stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
            await known(stub)
            request = ledger_pb2.RecordActivityRequest(
                municipality_id=AALBORG, idempotency_key="bills-2013-2025", lines=BATCH
            )

            # A dry run answers the figures and keeps nothing, not even the key.
            dry = await stub.RecordActivity(
                ledger_pb2.RecordActivityRequest(
                    municipality_id=AALBORG,
                    idempotency_key="bills-2013-2025",
                    lines=BATCH,
                    validate_only=True,
                )
            )
            assert dry.validated_only and dry.kg_co2e == "8257.666666688"  # 3119 + 5138.67

            first = await stub.RecordActivity(request)
            assert not first.replayed and first.recorded_by == OFFICER
            assert [e.kg_co2e for e in first.entries] == [
                "2222",
                "534",
                "363",
                "0",
                "26.666666688",
                "1122",
                "3990",
            ]
            assert first.kg_co2e == "8257.666666688"
            gas = first.entries[0]
            assert gas.basis == ledger_pb2.BASIS_REPORTED
            assert (gas.activity_amount, gas.activity_unit) == ("11000", "kWh")
            assert gas.emission_factor.factor_id == "natural-gas-ipcc-2006-default"
            assert gas.reported.recorded_by == OFFICER
            assert gas.reported.idempotency_key == "bills-2013-2025"
            assert (gas.reported.reported_amount, gas.reported.reported_unit) == ("1000", "m3")
            assert gas.reported.note == "town hall boilers"
            rounded = first.entries[4]
            assert rounded.activity_amount == "277.777778" and rounded.reported.conversion_rounded
            assert rounded.emission_factor.provisional  # 2025 priced with 2023's mix

            # The same batch again: nothing posted, the first call's answer.
            again = await stub.RecordActivity(request)
            assert again.replayed
            assert [e.entry_id for e in again.entries] == [e.entry_id for e in first.entries]
            assert again.kg_co2e == first.kg_co2e
            assert again.recorded_at == first.recorded_at
            inventory = await stub.GetInventory(
                ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=2013)
            )
            assert (inventory.entry_count, inventory.emissions_kg_co2e) == (4, "3119")

            # The key with other lines: refused, nothing posted.
            other = ledger_pb2.RecordActivityRequest(
                municipality_id=AALBORG, idempotency_key="bills-2013-2025", lines=BATCH[:1]
            )
            with pytest.raises(grpc.aio.AioRpcError) as conflict:
                await stub.RecordActivity(other)
            assert conflict.value.code() == grpc.StatusCode.ALREADY_EXISTS
            assert "bills-2013-2025" in (conflict.value.details() or "")

            # Bad lines: each named with its field, and the good line is not posted either.
            bad = ledger_pb2.RecordActivityRequest(
                municipality_id=AALBORG,
                idempotency_key="bad-batch",
                lines=[
                    line(2013, RESIDENTIAL, GAS, "10", "m3"),
                    line(2013, RESIDENTIAL, HEAT, "5", "MWh"),
                    line(2013, TRANSPORT, DIESEL, "1,5", "kWh"),
                ],
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RecordActivity(bad)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert [field for field, _ in violations(refused.value)] == [
                "lines[1].energy_carrier",
                "lines[2].subsector",
                "lines[2].amount",
                "lines[2].unit",
            ]
            inventory = await stub.GetInventory(
                ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=2013)
            )
            assert inventory.entry_count == 4
            # Many bad lines: the first 20 problems are named, then how many more there are
            # (the details travel in trailing metadata, which peers cap at a few kilobytes).
            many = ledger_pb2.RecordActivityRequest(
                municipality_id=AALBORG,
                idempotency_key="many-bad",
                lines=[line(2013, RESIDENTIAL, HEAT, "1,5", "barrels")] * 15,
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RecordActivity(many)
            listed = violations(refused.value)
            assert len(listed) == 21
            assert listed[-1] == ("lines", "10 more problems not listed")  # 2 x 15 - 20

            # ... and the key is still free: fixed, the batch goes through under it.
            fixed = ledger_pb2.RecordActivityRequest(
                municipality_id=AALBORG, idempotency_key="bad-batch", lines=bad.lines[:1]
            )
            # 10 m3 x 11.00 = 110 kWh x 0.202 = 22.22 kg.
            assert (await stub.RecordActivity(fixed)).kg_co2e == "22.22"

            # Two calls with one key at once: one posts, the other answers as a replay.
            # 2020: 100 kWh x 0.363 (2013's mix, provisional) = 36.3 kg.
            at_once = ledger_pb2.RecordActivityRequest(
                municipality_id=AALBORG,
                idempotency_key="at-once",
                lines=[line(2020, MUNICIPAL, ELECTRICITY, "100", "kWh")],
            )
            both = await asyncio.gather(stub.RecordActivity(at_once), stub.RecordActivity(at_once))
            assert sorted(answer.replayed for answer in both) == [False, True]
            assert len({answer.entries[0].entry_id for answer in both}) == 1
            year_2020 = await stub.GetInventory(
                ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=2020)
            )
            assert (year_2020.entry_count, year_2020.emissions_kg_co2e) == (1, "36.3")

            # A locked year takes reported activity as late entries.
            await stub.LockInventoryYear(
                ledger_pb2.LockInventoryYearRequest(
                    municipality_id=AALBORG, year=2025, reason="MEI 2025 submitted"
                )
            )
            late = await stub.RecordActivity(
                ledger_pb2.RecordActivityRequest(
                    municipality_id=AALBORG,
                    idempotency_key="late-2025",
                    # 2 MWh = 2000 kWh x 0.267 = 534 kg.
                    lines=[line(2025, RESIDENTIAL, OIL, "2", "MWh")],
                )
            )
            assert late.entries[0].late
            year_2025 = await stub.GetInventory(
                ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=2025)
            )
            assert year_2025.late_entry_count == 1

            # The report: BEI 2013 = 3119 + 22.22 = 3141.22 kg; MEI 2025 = 5138.666666688 +
            # 534 = 5672.666666688 kg.
            report = await stub.GetCovenantReport(
                ledger_pb2.GetCovenantReportRequest(
                    municipality_id=AALBORG, baseline_year=2013, monitoring_year=2025
                )
            )
            assert report.baseline.total_t_co2e == "3.14122"
            assert report.monitoring.total_t_co2e == "5.672666666688"
            bei = {(r.sector, r.energy_carrier): r for r in report.baseline.rows}
            assert bei[(LIGHTING, ELECTRICITY)].activity_mwh == "1"
            assert bei[(LIGHTING, ELECTRICITY)].t_co2e == "0.363"
            assert bei[(TERTIARY, BIOMASS)].activity_mwh == "52"
            assert bei[(RESIDENTIAL, GAS)].t_co2e == "0.02222"
            mei = {(r.sector, r.subsector, r.energy_carrier): r for r in report.monitoring.rows}
            buses = mei[(TRANSPORT, ledger_pb2.SUBSECTOR_PUBLIC_TRANSPORT, DIESEL)]
            assert (buses.activity_amount, buses.activity_mwh) == ("1500", "15.06")
            progress = {(p.sector, p.subsector): p for p in report.progress}
            lighting = progress[(LIGHTING, ledger_pb2.SUBSECTOR_UNSPECIFIED)]
            assert (lighting.change_t_co2e, lighting.change_percent) == ("-0.363", "-100")

            exported = await stub.ExportCovenantReport(
                ledger_pb2.ExportCovenantReportRequest(
                    municipality_id=AALBORG,
                    baseline_year=2013,
                    monitoring_year=2025,
                    format=ledger_pb2.EXPORT_FORMAT_CSV,
                )
            )
            rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
            industry = next(
                row
                for row in rows
                if (row["Inventory"], row["Table"], row["Sector"])
                == ("MEI", "Emissions (t CO2)", "Industry: non-ETS")
            )
            assert (industry["Natural gas"], industry["Total"]) == ("1.122", "1.122")

            # The entries behind one line of the inventory, with their provenance.
            behind = await stub.ListEntries(
                ledger_pb2.ListEntriesRequest(
                    municipality_id=AALBORG,
                    year=2013,
                    line=ledger_pb2.InventoryLineKey(
                        sector=LIGHTING,
                        energy_carrier=ELECTRICITY,
                        kind=ledger_pb2.ENTRY_KIND_EMISSION,
                        basis=ledger_pb2.BASIS_REPORTED,
                        activity_unit="kWh",
                    ),
                )
            )
            (lamps,) = behind.entries
            assert lamps.kg_co2e == "363"
            assert lamps.reported.source_document == "meter readings 2013"
            assert lamps.reported.conversion == "1000/3.6"

        # Another municipality's climate officer may not record Aalborg's activity.
        async with pki.channel(target, CLIMATE_OFFICER, "hjorring-kommune") as channel:
            stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.RecordActivity(request)
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await ledger.stop()


def import_activity(pki: Pki, target: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "GREENPARTNERS_TOKEN": pki.token(CLIMATE_OFFICER, AALBORG, "officer-bo"),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.import_activity",
            *arguments,
            *("--municipality", AALBORG, "--target", target, "--ca", str(pki.ca_file)),
        ],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_csv_import_names_bad_lines_and_imports_a_file_once(
    kafka: str, tmp_path: Path, pki: Pki
) -> None:
    ledger = await started_ledger(kafka, f"sqlite+aiosqlite:///{tmp_path}/ledger.db", "import")
    try:
        target = f"127.0.0.1:{ledger.grpc_port}"
        async with pki.channel(target, CLIMATE_OFFICER, AALBORG) as channel:
            stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
            await known(stub)

            # The sample with one bad line (its 4th): a comma as the decimal separator.
            lines = SAMPLE.read_text().splitlines()
            lines[3] = lines[3].replace(",3.6,", ',"3,6",')
            bad = tmp_path / "with-a-bad-line.csv"
            bad.write_text("\n".join(lines) + "\n")
            refused = await asyncio.to_thread(import_activity, pki, target, str(bad))
            assert refused.returncode == 1, refused.stderr
            assert (
                f"{bad}:4: amount: use a point as the decimal separator, without thousands "
                "separators" in refused.stderr
            )
            assert "nothing recorded (1 problems)" in refused.stderr
            inventory = await stub.GetInventory(
                ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=2013)
            )
            assert inventory.entry_count == 0

            done = await asyncio.to_thread(import_activity, pki, target, str(SAMPLE))
            assert done.returncode == 0, done.stderr
            assert "recorded 7 lines, 8257.666666688 kg CO2e" in done.stdout
            assert "line 2: 2013 1000 m3 = 11000 kWh x 0.202" in done.stdout

            twice = await asyncio.to_thread(import_activity, pki, target, str(SAMPLE))
            assert twice.returncode == 0, twice.stderr
            assert "recorded before, by officer-bo" in twice.stdout
            inventory = await stub.GetInventory(
                ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=2013)
            )
            assert (inventory.entry_count, Decimal(inventory.emissions_kg_co2e)) == (4, 3119)
            behind = await stub.ListEntries(
                ledger_pb2.ListEntriesRequest(municipality_id=AALBORG, year=2013)
            )
            provenance = [(e.reported.source_file, e.reported.source_line) for e in behind.entries]
            assert provenance == [("reported-activity.csv", n) for n in (2, 3, 4, 5)]
            assert {e.reported.recorded_by for e in behind.entries} == {"officer-bo"}
    finally:
        await ledger.stop()


def test_the_import_reads_its_layout_and_names_the_lines_it_cannot() -> None:
    # A spreadsheet's export: byte order mark, semicolons, columns in its own order.
    content = (
        "\ufeffSector;Year;energy_carrier;amount;unit;subsector\n"
        "residential_buildings;2013;heating_oil;2;MWh;\n"
        "\n"
        "Transport;2025;diesel;1.5;m3;public_transport\n"
        "shipping;20x3;diesel;1;l;\n"
        "waste;2013;electricity;1\n"
    ).encode()
    lines, problems = import_activity_tool.parse(content, "a.csv")
    assert [(line.source_line, line.sector, line.subsector, line.amount) for line in lines] == [
        (2, RESIDENTIAL, 0, "2"),
        (4, TRANSPORT, ledger_pb2.SUBSECTOR_PUBLIC_TRANSPORT, "1.5"),
    ]
    assert {line.source_file for line in lines} == {"a.csv"}
    assert [problem.shown("a.csv") for problem in problems] == [
        "a.csv:5: year: must be a year, e.g. 2024",
        "a.csv:5: sector: unknown 'shipping': one of municipal_buildings, tertiary_buildings, "
        "residential_buildings, transport, waste, public_lighting, industry",
        "a.csv:6: -: 4 columns, the header has 6",
    ]
    _, header = import_activity_tool.parse(b"year,sector,carrier,amount,unit\n", "b.csv")
    assert [p.shown("b.csv") for p in header] == [
        "b.csv:1: -: the header needs year, sector, energy_carrier, amount, unit and may have "
        "subsector, note, source_document; missing energy_carrier; unknown carrier"
    ]
    key = import_activity_tool.idempotency_key(content)
    assert key.startswith("csv-sha256:") and len(key) == 75
