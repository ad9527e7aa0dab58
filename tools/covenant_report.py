"""A municipality's Covenant of Mayors report from the ledger: printed, or saved as the
reporting template (XLSX with BEI, MEI and targets sheets, or CSV).

    python -m tools.covenant_report --baseline 2013 --monitoring 2025
    python -m tools.covenant_report --baseline 2013 --monitoring 2025 --format xlsx --out r.xlsx

Calls the ledger as the municipality's climate officer, with the development PKI (var/pki):
for a deployed ledger, point --ca at its CA and pass a token in GREENPARTNERS_TOKEN.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import grpc

from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from servicekit.identity import CLIMATE_OFFICER
from tools.pki import DEFAULT_DIR
from tools.pki import init as init_pki

FORMATS = {"xlsx": ledger_pb2.EXPORT_FORMAT_XLSX, "csv": ledger_pb2.EXPORT_FORMAT_CSV}


def _name(enum: object, number: int, prefix: str) -> str:
    return str(enum.Name(number)).removeprefix(prefix).lower().replace("_", " ")  # type: ignore[attr-defined]


def _where(sector: int, subsector: int) -> str:
    where = _name(ledger_pb2.Sector, sector, "SECTOR_")
    if subsector:
        where += ": " + _name(ledger_pb2.Subsector, subsector, "SUBSECTOR_")
    return where


def format_covenant_report(report: ledger_pb2.GetCovenantReportResponse) -> str:
    """BEI against MEI per sector and carrier, the targets and the gap to the trajectory; says
    plainly when the baseline year holds no activity, rather than showing a gap of nothing."""
    bei, mei = report.baseline, report.monitoring
    unit = report.emission_unit or "t CO2e"
    approach = (report.emission_factor_approach or "ipcc").upper()
    lines = [
        f"Covenant of Mayors report: {report.municipality_id}, BEI {bei.year} vs MEI {mei.year}"
        f" ({approach} emission factors, {unit})"
    ]
    for title, inventory in (("BEI", bei), ("MEI", mei)):
        lines.append(f"{title} {inventory.year}: {inventory.total_t_co2e} {unit}")
        for row in inventory.rows:
            mwh = f"{row.activity_mwh} MWh" if row.activity_mwh else "MWh unknown"
            lines.append(
                f"  {_where(row.sector, row.subsector):<42} "
                f"{_name(ledger_pb2.EnergyCarrier, row.energy_carrier, 'ENERGY_CARRIER_'):<12} "
                f"{row.activity_amount + ' ' + row.activity_unit:>16} {mwh:>18} "
                f"{row.t_co2e:>12} {unit}"
            )
    for target in report.targets:
        cut = "climate neutral" if target.climate_neutral else f"-{target.reduction_percent} %"
        lines.append(f"Target {target.target_year}: {cut} ({target.source})")
    if not bei.rows:
        lines.append(
            f"The ledger holds no activity for the baseline year {bei.year}: there is no BEI to"
            " compare with, so no change, trajectory or gap to the targets is shown. The"
            " automated feeds (fleet telemetry, locker hubs) hold only what they have seen since"
            " they started; a baseline year's activity comes in as reported activity:"
            ' python -m tools.import_activity FILE.csv (docs/ledger.md, "Reported activity").'
        )
        return "\n".join(lines)
    for target in report.targets:
        lines.append(f"  allowed in {target.target_year}: {target.target_t_co2e} {unit}")
    for item in report.progress:
        change = f" ({item.change_percent} %)" if item.change_percent else ""
        lines.append(
            f"  {_where(item.sector, item.subsector):<42} BEI {item.baseline_t_co2e} t, "
            f"MEI {item.monitoring_t_co2e} t, change {item.change_t_co2e} t{change}, "
            f"trajectory {item.trajectory_t_co2e} t, gap {item.gap_t_co2e} t"
        )
    lines.append(
        f"Trajectory in {mei.year}: {report.monitoring_trajectory_t_co2e} {unit}; "
        f"gap {report.gap_t_co2e} {unit} (positive: above the path to the targets)"
    )
    return "\n".join(lines)


async def run(arguments: argparse.Namespace) -> int:
    ca = Path(arguments.ca) if arguments.ca else init_pki(DEFAULT_DIR).ca_file
    credentials = grpc.ssl_channel_credentials(ca.read_bytes())
    token = os.environ.get("GREENPARTNERS_TOKEN")
    if token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    else:
        pki = init_pki(DEFAULT_DIR)
        credentials = grpc.composite_channel_credentials(
            credentials, pki.call_as(CLIMATE_OFFICER, arguments.municipality, "tools.covenant")
        )
    years = {
        "municipality_id": arguments.municipality,
        "baseline_year": arguments.baseline,
        "monitoring_year": arguments.monitoring,
    }
    async with grpc.aio.secure_channel(arguments.target, credentials) as channel:
        stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
        try:
            if arguments.format == "text":
                report = await stub.GetCovenantReport(ledger_pb2.GetCovenantReportRequest(**years))
                print(format_covenant_report(report))
                return 0
            exported = await stub.ExportCovenantReport(
                ledger_pb2.ExportCovenantReportRequest(**years, format=FORMATS[arguments.format])
            )
        except grpc.aio.AioRpcError as error:
            print(f"{error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    out = Path(arguments.out or exported.file_name)
    await asyncio.to_thread(out.write_bytes, exported.content)
    print(f"{out} ({len(exported.content)} bytes, {exported.content_type})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.covenant_report", description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:50054", help="the ledger's gRPC address")
    parser.add_argument("--municipality", default="aalborg-kommune")
    parser.add_argument(
        "--baseline", type=int, default=0, help="baseline year; default: the commitment's"
    )
    parser.add_argument("--monitoring", type=int, required=True, help="monitoring year")
    parser.add_argument("--format", choices=["text", *FORMATS], default="text")
    parser.add_argument("--out", help="file to write (default: the name the ledger suggests)")
    parser.add_argument("--ca", help="CA certificate (default: the development PKI's)")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
