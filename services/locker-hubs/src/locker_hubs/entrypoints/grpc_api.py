"""LockerHubsService: translates wire messages to use-case calls and back."""

from __future__ import annotations

from typing import Any

import grpc

from greenpartners.lockers.v1 import lockers_pb2, lockers_pb2_grpc
from locker_hubs.adapters.events import hub_to_proto, waste_type_from_proto
from locker_hubs.handlers import LockerHandlers, RecordCollection, RegisterDeposit
from servicekit.codec import to_timestamp
from servicekit.errors import InvalidArgument, PermissionDenied
from servicekit.identity import (
    CARRIER,
    CLIMATE_OFFICER,
    DASHBOARD,
    FLEET_MANAGER,
    OPERATOR,
    RESIDENT,
    AccessPolicy,
    allow,
    current_principal,
)
from servicekit.validation import require_id, require_known_enum

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE = lockers_pb2.DESCRIPTOR.services_by_name["LockerHubsService"].full_name
_HUB_READERS = (OPERATOR, RESIDENT, CARRIER, CLIMATE_OFFICER, FLEET_MANAGER, DASHBOARD)
ACCESS: AccessPolicy = {
    "ListHubs": allow(*_HUB_READERS),
    "GetHub": allow(*_HUB_READERS),
    "IssueDropOffCode": allow(RESIDENT, scope="a few open codes per resident at a time"),
    "RegisterWasteDeposit": allow(RESIDENT),
    "RecordCarrierCollection": allow(
        CARRIER, OPERATOR, scope="a carrier collects as its own partner; operators name one"
    ),
}


def _carrier_of(request: lockers_pb2.RecordCarrierCollectionRequest) -> str:
    """The carrier is the caller's partner; only an operator names one in the request."""
    caller = current_principal()
    named = require_id("carrier_partner_id", request.carrier_partner_id, optional=True)
    if caller.has_role(CARRIER) and caller.partner_id:
        if named and named != caller.partner_id:
            raise PermissionDenied("carrier_partner_id names another partner than the caller's")
        return caller.partner_id
    if caller.is_operator:
        if not named:
            raise InvalidArgument("carrier_partner_id", "an operator must name the carrier")
        return named
    raise PermissionDenied("only a carrier (or an operator for one) records a collection")


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
        hub = await self.handlers.get_hub(require_id("hub_id", request.hub_id))
        return lockers_pb2.GetHubResponse(hub=hub_to_proto(hub))

    async def IssueDropOffCode(
        self, request: lockers_pb2.IssueDropOffCodeRequest, context: Context
    ) -> lockers_pb2.IssueDropOffCodeResponse:
        issued = await self.handlers.issue_drop_off_code(
            require_id("hub_id", request.hub_id),
            request.hazardous,
            current_principal().subject,
            require_id("request_id", request.request_id, optional=True),
        )
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
                hub_id=require_id("hub_id", request.hub_id),
                code=request.code,
                waste_type=waste_type_from_proto(
                    require_known_enum(
                        "waste_type", lockers_pb2.WasteType.DESCRIPTOR, request.waste_type
                    )
                ),
                hazardous=request.hazardous,
                mass_g=request.mass_g,
            ),
            current_principal().subject,
            require_id("request_id", request.request_id, optional=True),
        )
        return lockers_pb2.RegisterWasteDepositResponse(
            deposit_id=deposit.deposit_id, compartment_id=deposit.compartment_id
        )

    async def RecordCarrierCollection(
        self, request: lockers_pb2.RecordCarrierCollectionRequest, context: Context
    ) -> lockers_pb2.RecordCarrierCollectionResponse:
        collection = await self.handlers.record_collection(
            RecordCollection(
                hub_id=require_id("hub_id", request.hub_id),
                carrier_partner_id=_carrier_of(request),
                extra_distance_m=request.extra_distance_m,
                collection_id=require_id("collection_id", request.collection_id, optional=True),
            )
        )
        return lockers_pb2.RecordCarrierCollectionResponse(
            collection_id=collection.collection_id,
            deposit_ids=list(collection.deposit_ids),
            mass_g=collection.mass_g,
        )
