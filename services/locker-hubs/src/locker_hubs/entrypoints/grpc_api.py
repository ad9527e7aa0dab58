"""LockerHubsService: translates wire messages to use-case calls and back."""

from __future__ import annotations

from typing import Any

import grpc

from greenpartners.lockers.v1 import lockers_pb2, lockers_pb2_grpc
from locker_hubs.adapters.events import hub_to_proto, waste_type_from_proto
from locker_hubs.handlers import LockerHandlers, RecordCollection, RegisterDeposit
from servicekit.codec import to_timestamp

Context = grpc.aio.ServicerContext[Any, Any]


class LockerHubsApi(lockers_pb2_grpc.LockerHubsServiceServicer):
    def __init__(self, handlers: LockerHandlers) -> None:
        self.handlers = handlers

    async def ListHubs(
        self, request: lockers_pb2.ListHubsRequest, context: Context
    ) -> lockers_pb2.ListHubsResponse:
        hubs = await self.handlers.list_hubs()
        return lockers_pb2.ListHubsResponse(hubs=[hub_to_proto(hub) for hub in hubs])

    async def GetHub(
        self, request: lockers_pb2.GetHubRequest, context: Context
    ) -> lockers_pb2.GetHubResponse:
        hub = await self.handlers.get_hub(request.hub_id)
        return lockers_pb2.GetHubResponse(hub=hub_to_proto(hub))

    async def IssueDropOffCode(
        self, request: lockers_pb2.IssueDropOffCodeRequest, context: Context
    ) -> lockers_pb2.IssueDropOffCodeResponse:
        issued = await self.handlers.issue_drop_off_code(request.hub_id, request.hazardous)
        return lockers_pb2.IssueDropOffCodeResponse(
            compartment_id=issued.compartment_id,
            code=issued.code,
            expires_at=to_timestamp(issued.expires_at),
        )

    async def RegisterWasteDeposit(
        self, request: lockers_pb2.RegisterWasteDepositRequest, context: Context
    ) -> lockers_pb2.RegisterWasteDepositResponse:
        deposit = await self.handlers.register_deposit(
            RegisterDeposit(
                hub_id=request.hub_id,
                code=request.code,
                waste_type=waste_type_from_proto(request.waste_type),
                hazardous=request.hazardous,
                mass_g=request.mass_g,
            )
        )
        return lockers_pb2.RegisterWasteDepositResponse(
            deposit_id=deposit.deposit_id, compartment_id=deposit.compartment_id
        )

    async def RecordCarrierCollection(
        self, request: lockers_pb2.RecordCarrierCollectionRequest, context: Context
    ) -> lockers_pb2.RecordCarrierCollectionResponse:
        collection = await self.handlers.record_collection(
            RecordCollection(
                hub_id=request.hub_id,
                carrier_partner_id=request.carrier_partner_id,
                extra_distance_m=request.extra_distance_m,
                collection_id=request.collection_id,
            )
        )
        return lockers_pb2.RecordCarrierCollectionResponse(
            collection_id=collection.collection_id,
            deposit_ids=list(collection.deposit_ids),
            mass_g=collection.mass_g,
        )
