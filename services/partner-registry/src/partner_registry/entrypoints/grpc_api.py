"""PartnerRegistryService: translates wire messages to use-case calls and back."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import grpc

from greenpartners.registry.v1 import registry_pb2, registry_pb2_grpc
from partner_registry.adapters.events import (
    authorization_to_proto,
    initiative_from_proto,
    initiative_to_proto,
    kind_from_proto,
    partner_from_proto,
    partner_to_proto,
    role_from_proto,
)
from partner_registry.domain import CarrierAuthorization
from partner_registry.handlers import PartnerQuery, RegistryHandlers
from servicekit.codec import from_timestamp
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
from servicekit.validation import require_id, require_known_enum

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE = registry_pb2.DESCRIPTOR.services_by_name["PartnerRegistryService"].full_name
# The directory is for the partners and the platform, not for residents.
_DIRECTORY_READERS = (OPERATOR, FLEET_MANAGER, CARRIER, CLIMATE_OFFICER, DASHBOARD)
# Only the platform's operators change the registry. A partner does not edit even its own
# record: its kind decides how its vehicles are reported, and its authorisations which hubs
# it may open.
_EDITORS = (OPERATOR,)
ACCESS: AccessPolicy = {
    "GetPartner": allow(*_DIRECTORY_READERS, services=["locker-hubs"]),
    "ListPartners": allow(*_DIRECTORY_READERS, services=["locker-hubs"]),
    "ListInitiatives": allow(*_DIRECTORY_READERS, services=["locker-hubs"]),
    "CheckCarrierAuthorization": allow(
        OPERATOR, CARRIER, services=["locker-hubs"], scope="a carrier asks about itself only"
    ),
    "CreatePartner": allow(*_EDITORS),
    "UpdatePartner": allow(*_EDITORS, scope="the revision read must be current (else ABORTED)"),
    "DeletePartner": allow(*_EDITORS, scope="the revision read must be current (else ABORTED)"),
    "CreateInitiative": allow(*_EDITORS),
    "UpdateInitiative": allow(*_EDITORS, scope="the revision read must be current (else ABORTED)"),
    "AuthorizeCarrier": allow(*_EDITORS, scope="a hub of MoLo Hubs (else NOT_FOUND)"),
    "RevokeCarrierAuthorization": allow(*_EDITORS),
}

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
_PAGE_TOKEN_PREFIX = "after:"


def _page_token(last_id: str | None) -> str:
    if last_id is None:
        return ""
    return base64.urlsafe_b64encode((_PAGE_TOKEN_PREFIX + last_id).encode()).decode()


def _after_id(token: str) -> str | None:
    """The partner id a page token continues after (the directory is public to its readers
    and sorted by id, so the token need not be secret, only well-formed)."""
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument("page_token", "not a token this service issued") from None
    if not text.startswith(_PAGE_TOKEN_PREFIX):
        raise InvalidArgument("page_token", "not a token this service issued")
    return require_id("page_token", text.removeprefix(_PAGE_TOKEN_PREFIX))


def _expected_revision(revision: int) -> int | None:
    if revision < 0:
        raise InvalidArgument("revision", "must not be negative")
    return revision or None


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
        # UNSPECIFIED means any; any other number must be one this build knows.
        role = role_from_proto(request.role)
        if request.role and role is None:
            raise InvalidArgument("role", f"unknown partner role {request.role}")
        kind = kind_from_proto(request.kind)
        if request.kind and kind is None:
            raise InvalidArgument("kind", f"unknown organisation kind {request.kind}")
        if request.country_code and not (
            len(request.country_code) == 2
            and request.country_code.isascii()
            and request.country_code.isupper()
        ):
            raise InvalidArgument("country_code", "must be ISO 3166-1 alpha-2, e.g. DK")
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be 0 to {MAX_PAGE_SIZE}")
        query = PartnerQuery(
            initiative_id=request.initiative_id or None,
            role=role,
            kind=kind,
            country_code=request.country_code or None,
        )
        page = await self.handlers.list_partners(
            query, _after_id(request.page_token), request.page_size or DEFAULT_PAGE_SIZE
        )
        return registry_pb2.ListPartnersResponse(
            partners=[partner_to_proto(partner) for partner in page.partners],
            next_page_token=_page_token(page.last_id),
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
        decision = await self.handlers.check_carrier_authorization(
            request.carrier_partner_id, request.hub_id
        )
        return authorization_to_proto(decision)

    async def CreatePartner(
        self, request: registry_pb2.CreatePartnerRequest, context: Context
    ) -> registry_pb2.CreatePartnerResponse:
        require_id("partner.partner_id", request.partner.partner_id)
        partner = await self.handlers.create_partner(partner_from_proto(request.partner))
        return registry_pb2.CreatePartnerResponse(partner=partner_to_proto(partner))

    async def UpdatePartner(
        self, request: registry_pb2.UpdatePartnerRequest, context: Context
    ) -> registry_pb2.UpdatePartnerResponse:
        require_id("partner.partner_id", request.partner.partner_id)
        paths = list(request.update_mask.paths)
        # Fields outside the mask need not be valid (for example kind left unspecified).
        patch = partner_from_proto(_with_defaults_outside(request.partner, paths))
        partner = await self.handlers.update_partner(patch, paths)
        return registry_pb2.UpdatePartnerResponse(partner=partner_to_proto(partner))

    async def DeletePartner(
        self, request: registry_pb2.DeletePartnerRequest, context: Context
    ) -> registry_pb2.DeletePartnerResponse:
        await self.handlers.delete_partner(
            require_id("partner_id", request.partner_id), request.revision
        )
        return registry_pb2.DeletePartnerResponse()

    async def CreateInitiative(
        self, request: registry_pb2.CreateInitiativeRequest, context: Context
    ) -> registry_pb2.CreateInitiativeResponse:
        require_id("initiative.initiative_id", request.initiative.initiative_id)
        initiative = await self.handlers.create_initiative(
            initiative_from_proto(request.initiative)
        )
        return registry_pb2.CreateInitiativeResponse(initiative=initiative_to_proto(initiative))

    async def UpdateInitiative(
        self, request: registry_pb2.UpdateInitiativeRequest, context: Context
    ) -> registry_pb2.UpdateInitiativeResponse:
        require_id("initiative.initiative_id", request.initiative.initiative_id)
        initiative = await self.handlers.update_initiative(
            initiative_from_proto(request.initiative), list(request.update_mask.paths)
        )
        return registry_pb2.UpdateInitiativeResponse(initiative=initiative_to_proto(initiative))

    async def AuthorizeCarrier(
        self, request: registry_pb2.AuthorizeCarrierRequest, context: Context
    ) -> registry_pb2.AuthorizeCarrierResponse:
        require_id("carrier_partner_id", request.carrier_partner_id)
        require_id("hub_id", request.hub_id)
        authorization = CarrierAuthorization(
            hub_id=request.hub_id,
            valid_from=(
                from_timestamp(request.valid_from) if request.HasField("valid_from") else None
            ),
            valid_until=(
                from_timestamp(request.valid_until) if request.HasField("valid_until") else None
            ),
        )
        partner = await self.handlers.authorize_carrier(
            request.carrier_partner_id, authorization, _expected_revision(request.revision)
        )
        return registry_pb2.AuthorizeCarrierResponse(partner=partner_to_proto(partner))

    async def RevokeCarrierAuthorization(
        self, request: registry_pb2.RevokeCarrierAuthorizationRequest, context: Context
    ) -> registry_pb2.RevokeCarrierAuthorizationResponse:
        require_id("carrier_partner_id", request.carrier_partner_id)
        require_id("hub_id", request.hub_id)
        partner = await self.handlers.revoke_carrier_authorization(
            request.carrier_partner_id, request.hub_id, _expected_revision(request.revision)
        )
        return registry_pb2.RevokeCarrierAuthorizationResponse(partner=partner_to_proto(partner))


def _with_defaults_outside(partner: registry_pb2.Partner, paths: list[str]) -> registry_pb2.Partner:
    """The request's partner with a placeholder kind when the mask leaves kind alone, so that
    converting it does not refuse a field the update does not touch."""
    if "kind" in paths:
        require_known_enum("partner.kind", registry_pb2.OrganisationKind.DESCRIPTOR, partner.kind)
        return partner
    patched = registry_pb2.Partner()
    patched.CopyFrom(partner)
    patched.kind = registry_pb2.ORGANISATION_KIND_COMPANY
    return patched
