"""What the climate team sees: the ledger's inventory, read over gRPC as they would read it."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import grpc

from bench.kafka_io import STALLED_S
from bench.workload import MUNICIPALITY
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc


def diesel_litres(inventory: ledger_pb2.GetInventoryResponse) -> Decimal:
    """Diesel burnt according to the inventory's emission lines, in litres, exactly."""
    return sum(
        (
            Decimal(line.activity_amount)
            for line in inventory.lines
            if line.energy_carrier == ledger_pb2.ENERGY_CARRIER_DIESEL
            and line.kind == ledger_pb2.ENTRY_KIND_EMISSION
        ),
        Decimal(0),
    )


class LedgerProbe:
    def __init__(self, channel: grpc.aio.Channel, year: int) -> None:
        self.stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
        self.request = ledger_pb2.GetInventoryRequest(municipality_id=MUNICIPALITY, year=year)

    async def inventory(self) -> ledger_pb2.GetInventoryResponse:
        return await self.stub.GetInventory(self.request, timeout=10)

    async def diesel_litres(self) -> Decimal:
        return diesel_litres(await self.inventory())

    async def wait_for_litres(
        self,
        expected: Decimal,
        timeout_s: float,
        interval_s: float = 0.05,
        stalled_s: float = STALLED_S,
    ) -> float:
        """perf_counter() when the inventory first shows exactly `expected` diesel litres.
        More than expected is double counting: it fails at once. While the ledger is still
        starting, its port refuses calls; that is waited out. Fails after `timeout_s`, or
        sooner when the litres have not moved for `stalled_s`."""
        deadline = time.monotonic() + timeout_s
        litres = Decimal(0)
        last_change = time.monotonic()
        while True:
            try:
                now_litres = await self.diesel_litres()
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                now_litres = litres
            now = time.monotonic()
            if now_litres != litres:
                litres, last_change = now_litres, now
            if litres == expected:
                return time.perf_counter()
            if litres > expected:
                raise AssertionError(f"ledger shows {litres} l of diesel, expected {expected}")
            if now > deadline or now - last_change > stalled_s:
                raise TimeoutError(
                    f"ledger shows {litres} of {expected} l of diesel, unchanged for "
                    f"{now - last_change:.0f} s"
                )
            await asyncio.sleep(interval_s)
