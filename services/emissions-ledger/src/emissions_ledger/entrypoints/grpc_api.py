"""EmissionsLedgerService: translates wire messages to use-case calls and back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from emissions_ledger.adapters.events import entry_to_proto, inventory_to_proto
from emissions_ledger.handlers import LedgerHandlers
from emissions_ledger.inventory_watch import InventoryWatch
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from servicekit.identity import (
    CLIMATE_OFFICER,
    DASHBOARD,
    OPERATOR,
    AccessPolicy,
    allow,
    current_principal,
    require_partner,
)
from servicekit.validation import require_id

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE = ledger_pb2.DESCRIPTOR.services_by_name["EmissionsLedgerService"].full_name
_MUNICIPALITY_SCOPE = "a climate officer reads their own municipality; dashboards read all"
ACCESS: AccessPolicy = {
    "GetInventory": allow(OPERATOR, CLIMATE_OFFICER, DASHBOARD, scope=_MUNICIPALITY_SCOPE),
    "ListEntries": allow(OPERATOR, CLIMATE_OFFICER, DASHBOARD, scope=_MUNICIPALITY_SCOPE),
    "WatchInventory": allow(OPERATOR, CLIMATE_OFFICER, DASHBOARD, scope=_MUNICIPALITY_SCOPE),
}


def _require_municipality(municipality_id: str) -> None:
    require_id("municipality_id", municipality_id)
    caller = current_principal()
    if not caller.has_role(DASHBOARD):
        require_partner(caller, municipality_id, "municipality_id")


class EmissionsLedgerApi(ledger_pb2_grpc.EmissionsLedgerServiceServicer):
    def __init__(self, handlers: LedgerHandlers, watch: InventoryWatch) -> None:
        self.handlers = handlers
        self.watch = watch

    async def GetInventory(
        self, request: ledger_pb2.GetInventoryRequest, context: Context
    ) -> ledger_pb2.GetInventoryResponse:
        _require_municipality(request.municipality_id)
        inventory = await self.handlers.inventory(request.municipality_id, request.year)
        return inventory_to_proto(inventory)

    async def ListEntries(
        self, request: ledger_pb2.ListEntriesRequest, context: Context
    ) -> ledger_pb2.ListEntriesResponse:
        _require_municipality(request.municipality_id)
        entries, next_page_token = await self.handlers.entries(
            request.municipality_id, request.year, request.page_size, request.page_token
        )
        return ledger_pb2.ListEntriesResponse(
            entries=[entry_to_proto(p.entry, p.trace_id) for p in entries],
            next_page_token=next_page_token,
        )

    async def WatchInventory(
        self, request: ledger_pb2.WatchInventoryRequest, context: Context
    ) -> AsyncIterator[ledger_pb2.WatchInventoryResponse]:
        _require_municipality(request.municipality_id)
        changes = self.watch.watch(
            request.municipality_id, request.year, request.position, request.from_beginning
        )
        async for change in changes:
            response = ledger_pb2.WatchInventoryResponse(
                entries=[entry_to_proto(p.entry, p.trace_id) for p in change.entries],
                position=change.position,
            )
            if change.inventory is not None:
                response.inventory.CopyFrom(inventory_to_proto(change.inventory))
            yield response
