"""End-to-end check of a platform running on a cluster (Tilt's `e2e` resource, tilt/Tiltfile).

Residents drop waste into locker boxes and carriers collect it (locker-hubs asks
partner-registry over mutual TLS whether the carrier may collect there); the collections go
through Kafka to the emissions ledger, whose inventory must grow by at least one entry per
collection. It talks to the services through port-forwards, with the development credentials
the cluster was given (var/pki, tilt/dev-credentials.sh).

    python -m tests.deploy_smoke --lockers 127.0.0.1:50052 --ledger 127.0.0.1:50054
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from servicekit.identity import CLIMATE_OFFICER
from tools import simulator
from tools.pki import DEFAULT_DIR, Pki

MUNICIPALITY = "aalborg-kommune"


async def entry_count(pki: Pki, ledger_target: str, year: int) -> int:
    async with pki.channel(ledger_target) as channel:
        inventory = await ledger_pb2_grpc.EmissionsLedgerServiceStub(channel).GetInventory(
            ledger_pb2.GetInventoryRequest(municipality_id=MUNICIPALITY, year=year),
            timeout=10,
            credentials=pki.call_as(CLIMATE_OFFICER, MUNICIPALITY),
        )
    return int(inventory.entry_count)


async def check(lockers_target: str, ledger_target: str, pki: Pki, timeout_s: float) -> int:
    year = datetime.now(UTC).astimezone(ZoneInfo("Europe/Copenhagen")).year
    before = await entry_count(pki, ledger_target, year)
    collections = await simulator.play_locker_day(lockers_target, pki)
    deadline = time.monotonic() + timeout_s
    while (after := await entry_count(pki, ledger_target, year)) < before + collections:
        if time.monotonic() > deadline:
            print(
                f"the ledger holds {after - before} new entries for {MUNICIPALITY} {year}, "
                f"expected at least {collections}",
                file=sys.stderr,
            )
            return 1
        await asyncio.sleep(1)
    print(f"{collections} collections reached the ledger ({after - before} new entries)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.deploy_smoke", description=__doc__)
    parser.add_argument("--lockers", default="127.0.0.1:50052")
    parser.add_argument("--ledger", default="127.0.0.1:50054")
    parser.add_argument("--pki", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    return asyncio.run(check(args.lockers, args.ledger, Pki(args.pki), args.timeout))


if __name__ == "__main__":
    sys.exit(main())
