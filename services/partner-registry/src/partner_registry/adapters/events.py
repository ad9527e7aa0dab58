"""Wire form of the registry: domain objects as greenpartners.registry.v1 messages."""

from __future__ import annotations

from datetime import date, datetime

from greenpartners.registry.v1 import registry_pb2
from partner_registry.domain import (
    CarrierAuthorization,
    Initiative,
    Participation,
    Partner,
    PartnerRole,
)
from servicekit.codec import to_timestamp
from servicekit.enums import from_proto, to_proto


def _iso_date(day: date | None) -> str:
    return "" if day is None else day.isoformat()


def initiative_to_proto(initiative: Initiative) -> registry_pb2.Initiative:
    return registry_pb2.Initiative(
        initiative_id=initiative.initiative_id,
        name=initiative.name,
        description=initiative.description,
        programme=initiative.programme,
        starts_on=_iso_date(initiative.starts_on),
        ends_on=_iso_date(initiative.ends_on),
    )


def participation_to_proto(participation: Participation) -> registry_pb2.Participation:
    return registry_pb2.Participation(
        initiative_id=participation.initiative_id,
        role=to_proto(registry_pb2.PartnerRole, participation.role),
        since_year=participation.since_year or 0,
        representatives=[
            registry_pb2.Representative(name=representative.name, title=representative.title)
            for representative in participation.representatives
        ],
    )


def partner_to_proto(partner: Partner) -> registry_pb2.Partner:
    return registry_pb2.Partner(
        partner_id=partner.partner_id,
        name=partner.name,
        kind=to_proto(registry_pb2.OrganisationKind, partner.kind),
        country_code=partner.country_code,
        participations=[participation_to_proto(p) for p in partner.participations],
        revision=partner.revision,
    )


def role_from_proto(number: int) -> PartnerRole | None:
    """The domain role, or None for UNSPECIFIED or a number this build does not know."""
    return from_proto(registry_pb2.PartnerRole, number, PartnerRole)


def authorization_to_proto(
    authorization: CarrierAuthorization,
) -> registry_pb2.CheckCarrierAuthorizationResponse:
    return registry_pb2.CheckCarrierAuthorizationResponse(
        authorized=authorization.authorized, reason=authorization.reason
    )


def partner_changed_event(
    partner: Partner, event_id: str, occurred_at: datetime
) -> registry_pb2.PartnerChanged:
    return registry_pb2.PartnerChanged(
        event_id=event_id,
        occurred_at=to_timestamp(occurred_at),
        partner=partner_to_proto(partner),
    )
