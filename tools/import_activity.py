"""Import a municipality's reported activity (buildings, public lighting, industry, public
transport, waste...) from a CSV file into the emissions ledger, through RecordActivity.

    python -m tools.import_activity docs/examples/reported-activity.csv \
        --municipality aalborg-kommune
    python -m tools.import_activity FILE.csv --municipality aalborg-kommune --check

The file: UTF-8, a header line, then one line per year, sector and energy carrier; commas (or
semicolons, as a spreadsheet with a comma decimal separator writes them) between columns:

    year,sector,subsector,energy_carrier,amount,unit,note,source_document
    2013,municipal_buildings,,natural_gas,1000,m3,town hall,gas bill 2013

year, sector, energy_carrier, amount and unit are required; subsector (transport, industry),
note and source_document may be left empty or out. Names are those of docs/ledger.md,
"Reported activity"; amounts use a point as the decimal separator. The whole file is recorded,
or nothing: every problem is printed as `file:line: column: reason`. The idempotency key is the
file's SHA-256, so importing the same file again records nothing twice.

Calls the ledger over TLS as the municipality's climate officer with the development PKI
(var/pki); for a deployed ledger, point --ca at its CA and pass a token in GREENPARTNERS_TOKEN.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import hashlib
import io
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from servicekit.identity import CLIMATE_OFFICER
from tools.pki import DEFAULT_DIR
from tools.pki import init as init_pki

REQUIRED = ("year", "sector", "energy_carrier", "amount", "unit")
OPTIONAL = ("subsector", "note", "source_document")
KEY_PREFIX = "csv-sha256:"
_VIOLATION = re.compile(r"lines\[(\d+)\]\.(\w+)")


@dataclass(frozen=True)
class Problem:
    line: int
    column: str
    reason: str

    def shown(self, file_name: str) -> str:
        return f"{file_name}:{self.line}: {self.column}: {self.reason}"


def idempotency_key(content: bytes) -> str:
    """The file's content decides the key: the same file imported twice is one batch."""
    return KEY_PREFIX + hashlib.sha256(content).hexdigest()


def _enum_names(enum: object, prefix: str) -> dict[str, int]:
    values = enum.DESCRIPTOR.values  # type: ignore[attr-defined]
    return {v.name.removeprefix(prefix).lower(): v.number for v in values if v.number}


SECTORS = _enum_names(ledger_pb2.Sector, "SECTOR_")
SUBSECTORS = _enum_names(ledger_pb2.Subsector, "SUBSECTOR_")
CARRIERS = _enum_names(ledger_pb2.EnergyCarrier, "ENERGY_CARRIER_")


def parse(content: bytes, file_name: str) -> tuple[list[ledger_pb2.ActivityLine], list[Problem]]:
    """The file's well-formed lines as the ledger takes them, and the problems of the others
    (a line number is the file's, 1 being the header)."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return [], [Problem(1, "-", f"not UTF-8 ({error.reason} at byte {error.start})")]
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if ";" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [name.strip().lower() for name in next(reader, [])]
    missing = [name for name in REQUIRED if name not in header]
    unknown = [name for name in header if name not in REQUIRED + OPTIONAL]
    if missing or unknown or len(set(header)) != len(header):
        reason = (
            f"the header needs {', '.join(REQUIRED)} and may have {', '.join(OPTIONAL)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else "")
        )
        return [], [Problem(1, "-", reason)]
    lines: list[ledger_pb2.ActivityLine] = []
    problems: list[Problem] = []
    for cells in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            problems.append(
                Problem(number, "-", f"{len(cells)} columns, the header has {len(header)}")
            )
            continue
        row = {name: cell.strip() for name, cell in zip(header, cells, strict=True)}
        line, found = _line(row, number, file_name)
        problems.extend(found)
        if not found:
            lines.append(line)
    if not lines and not problems:
        problems.append(Problem(1, "-", "no activity lines after the header"))
    return lines, problems


def _line(
    row: dict[str, str], number: int, file_name: str
) -> tuple[ledger_pb2.ActivityLine, list[Problem]]:
    problems: list[Problem] = []

    def named(column: str, names: dict[str, int], required: bool) -> int:
        value = row.get(column, "").lower()
        if not value:
            if required:
                problems.append(Problem(number, column, "required"))
            return 0
        if value not in names:
            problems.append(
                Problem(number, column, f"unknown '{value[:40]}': one of {', '.join(names)}")
            )
            return 0
        return names[value]

    year = 0
    if not row["year"]:
        problems.append(Problem(number, "year", "required"))
    elif not row["year"].isdigit() or len(row["year"]) != 4:
        problems.append(Problem(number, "year", "must be a year, e.g. 2024"))
    else:
        year = int(row["year"])
    line = ledger_pb2.ActivityLine(
        year=year,
        sector=named("sector", SECTORS, True),  # type: ignore[arg-type]
        subsector=named("subsector", SUBSECTORS, False),  # type: ignore[arg-type]
        energy_carrier=named("energy_carrier", CARRIERS, True),  # type: ignore[arg-type]
        amount=row["amount"],
        unit=row["unit"],
        note=row.get("note", ""),
        source_document=row.get("source_document", ""),
        source_file=file_name,
        source_line=number,
    )
    return line, problems


def ledger_problems(
    error: grpc.aio.AioRpcError, lines: list[ledger_pb2.ActivityLine]
) -> list[Problem]:
    """The ledger's INVALID_ARGUMENT details, each put on the file line it is about."""
    status = rpc_status.from_call(error)
    problems: list[Problem] = []
    for detail in status.details if status is not None else []:
        request = error_details_pb2.BadRequest()
        if not detail.Unpack(request):
            continue
        for violation in request.field_violations:
            match = _VIOLATION.fullmatch(violation.field)
            if match is None:
                problems.append(Problem(1, violation.field, violation.description))
                continue
            index, column = int(match.group(1)), match.group(2)
            problems.append(Problem(lines[index].source_line, column, violation.description))
    return problems or [Problem(1, "-", error.details() or error.code().name)]


def _credentials(arguments: argparse.Namespace) -> grpc.ChannelCredentials:
    ca = Path(arguments.ca) if arguments.ca else init_pki(DEFAULT_DIR).ca_file
    credentials = grpc.ssl_channel_credentials(ca.read_bytes())
    token = os.environ.get("GREENPARTNERS_TOKEN")
    if token:
        return grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    pki = init_pki(DEFAULT_DIR)
    return grpc.composite_channel_credentials(
        credentials, pki.call_as(CLIMATE_OFFICER, arguments.municipality, getpass.getuser())
    )


def _summary(response: ledger_pb2.RecordActivityResponse, file_name: str) -> str:
    entries = response.entries
    if response.validated_only:
        head = f"{file_name}: {len(entries)} lines can be recorded ({response.kg_co2e} kg CO2e)"
    elif response.replayed:
        head = (
            f"{file_name}: recorded before, by {response.recorded_by} at "
            f"{response.recorded_at.ToDatetime():%Y-%m-%d %H:%M} UTC; nothing recorded again "
            f"({len(entries)} lines, {response.kg_co2e} kg CO2e)"
        )
    else:
        head = f"{file_name}: recorded {len(entries)} lines, {response.kg_co2e} kg CO2e"
    lines = [head, f"  idempotency key {response.idempotency_key}"]
    for entry in entries:
        reported = entry.reported
        factor = entry.emission_factor
        provisional = ", provisional" if factor.provisional else ""
        late = ", late (year locked)" if entry.late else ""
        lines.append(
            f"  line {reported.source_line}: {entry.year} "
            f"{reported.reported_amount} {reported.reported_unit} = "
            f"{entry.activity_amount} {entry.activity_unit} x {factor.value} "
            f"({factor.factor_id}{provisional}) = {entry.kg_co2e} kg{late}"
        )
    return "\n".join(lines)


async def run(arguments: argparse.Namespace) -> int:
    path = Path(arguments.file)
    content = await asyncio.to_thread(path.read_bytes)
    shown = str(arguments.file)
    lines, problems = parse(content, path.name)
    request = ledger_pb2.RecordActivityRequest(
        municipality_id=arguments.municipality,
        idempotency_key=idempotency_key(content),
        lines=lines,
        validate_only=arguments.check or bool(problems),
    )
    async with grpc.aio.secure_channel(arguments.target, _credentials(arguments)) as channel:
        stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
        response = None
        if lines:
            try:
                response = await stub.RecordActivity(request)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    print(f"{shown}: {error.code().name}: {error.details()}", file=sys.stderr)
                    return 1
                problems.extend(ledger_problems(error, lines))
    if problems:
        for problem in sorted(problems, key=lambda p: p.line):
            print(problem.shown(shown), file=sys.stderr)
        print(f"{shown}: nothing recorded ({len(problems)} problems)", file=sys.stderr)
        return 1
    assert response is not None
    print(_summary(response, shown))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.import_activity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", help="the CSV file")
    parser.add_argument("--municipality", required=True, help="e.g. aalborg-kommune")
    parser.add_argument("--target", default="127.0.0.1:50054", help="the ledger's gRPC address")
    parser.add_argument("--ca", help="CA certificate (default: the development PKI's)")
    parser.add_argument(
        "--check", action="store_true", help="check the file with the ledger, record nothing"
    )
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
