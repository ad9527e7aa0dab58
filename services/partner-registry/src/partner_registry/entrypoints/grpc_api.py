"""PartnerRegistryService: translates wire messages to use-case calls and back."""

from __future__ import annotations

from typing import Any

import grpc

from greenpartners.registry.v1 import registry_pb2, registry_pb2_grpc
from partner_registry.adapters.events import (
    authorization_to_proto,
    initiative_to_proto,
    partner_to_proto,
    role_from_proto,
)
from partner_registry.handlers import RegistryHandlers
from servicekit.errors import InvalidArgument
from servicekit.identity import (
    CARRIER,
    CLIMATE_OFFICER,
    DASHBOARD,
    FLEET_MANAGER,
    OPERATOR,
    AccessPolicy,
    allow,
    current_principal,
    require_partner,
)
from servicekit.validation import require_id

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE = registry_pb2.DESCRIPTOR.services_by_name["PartnerRegistryService"].full_name
# The directory is for the partners and the platform, not for residents.
_DIRECTORY_READERS = (OPERATOR, FLEET_MANAGER, CARRIER, CLIMATE_OFFICER, DASHBOARD)
ACCESS: AccessPolicy = {
    "GetPartner": allow(*_DIRECTORY_READERS, services=["locker-hubs"]),
    "ListPartners": allow(*_DIRECTORY_READERS, services=["locker-hubs"]),
    "ListInitiatives": allow(*_DIRECTORY_READERS, services=["locker-hubs"]),
    "CheckCarrierAuthorization": allow(
        OPERATOR, CARRIER, services=["locker-hubs"], scope="a carrier asks about itself only"
    ),
}


class PartnerRegistryApi(registry_pb2_grpc.PartnerRegistryServiceServicer):
    def __init__(self, handlers: RegistryHandlers) -> None:
        self.handlers = handlers

    async def GetPartner(
        self, request: registry_pb2.GetPartnerRequest, context: Context
    ) -> registry_pb2.GetPartnerResponse:
        partner = await self.handlers.get_partner(require_id("partner_id", request.partner_id))
        return registry_pb2.GetPartnerResponse(partner=partner_to_proto(partner))

    async def ListPartners(
        self, request: registry_pb2.ListPartnersRequest, context: Context
    ) -> registry_pb2.ListPartnersResponse:
        require_id("initiative_id", request.initiative_id, optional=True)
        role = role_from_proto(request.role)
        # UNSPECIFIED means any role; any other number must be one this build knows.
        if request.role and role is None:
            raise InvalidArgument("role", f"unknown partner role {request.role}")
        partners = await self.handlers.list_partners(request.initiative_id, role)
        return registry_pb2.ListPartnersResponse(
            partners=[partner_to_proto(partner) for partner in partners]
        )

    async def ListInitiatives(
        self, request: registry_pb2.ListInitiativesRequest, context: Context
    ) -> registry_pb2.ListInitiativesResponse:
        initiatives = await self.handlers.list_initiatives()
        return registry_pb2.ListInitiativesResponse(
            initiatives=[initiative_to_proto(initiative) for initiative in initiatives]
        )

    async def CheckCarrierAuthorization(
        self, request: registry_pb2.CheckCarrierAuthorizationRequest, context: Context
    ) -> registry_pb2.CheckCarrierAuthorizationResponse:
        require_id("carrier_partner_id", request.carrier_partner_id)
        require_id("hub_id", request.hub_id)
        caller = current_principal()
        if not caller.service:
            require_partner(caller, request.carrier_partner_id, "carrier_partner_id")
        authorization = await self.handlers.check_carrier_authorization(
            request.carrier_partner_id, request.hub_id
        )
        return authorization_to_proto(authorization)
