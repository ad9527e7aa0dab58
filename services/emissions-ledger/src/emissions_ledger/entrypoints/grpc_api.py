"""EmissionsLedgerService: translates wire messages to use-case calls and back."""

from __future__ import annotations

from typing import Any

import grpc

from emissions_ledger.adapters.events import entry_to_proto, inventory_to_proto
from emissions_ledger.handlers import LedgerHandlers
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class EmissionsLedgerApi(ledger_pb2_grpc.EmissionsLedgerServiceServicer):
    def __init__(self, handlers: LedgerHandlers) -> None:
        self.handlers = handlers

    async def GetInventory(
        self, request: ledger_pb2.GetInventoryRequest, context: Context
    ) -> ledger_pb2.GetInventoryResponse:
        inventory = await self.handlers.inventory(request.municipality_id, request.year)
        return inventory_to_proto(inventory)

    async def ListEntries(
        self, request: ledger_pb2.ListEntriesRequest, context: Context
    ) -> ledger_pb2.ListEntriesResponse:
        entries, next_page_token = await self.handlers.entries(
            request.municipality_id, request.year, request.page_size, request.page_token
        )
        return ledger_pb2.ListEntriesResponse(
            entries=[entry_to_proto(p.entry, p.trace_id) for p in entries],
            next_page_token=next_page_token,
        )
