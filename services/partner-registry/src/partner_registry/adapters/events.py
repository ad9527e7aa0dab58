"""Wire form of the registry: domain objects as greenpartners.registry.v1 messages and back."""

from __future__ import annotations

from datetime import date, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from greenpartners.registry.v1 import registry_pb2
from partner_registry.domain import (
    AuthorizationDecision,
    CarrierAuthorization,
    CovenantCommitment,
    EmissionFactorApproach,
    EmissionReportingUnit,
    EmissionTarget,
    Initiative,
    OrganisationKind,
    Participation,
    Partner,
    PartnerRole,
    Representative,
)
from partner_registry.domain.partners import default_reporting_unit
from servicekit.codec import from_timestamp, to_timestamp
from servicekit.enums import from_proto, to_proto
from servicekit.errors import InvalidArgument

# Changelog keys: a partner's record under its id, an initiative's under this prefix and its id
# (partner ids are slugs, which never hold a colon).
INITIATIVE_KEY_PREFIX = "initiative:"


def initiative_key(initiative_id: str) -> str:
    return INITIATIVE_KEY_PREFIX + initiative_id


def _iso_date(day: date | None) -> str:
    return "" if day is None else day.isoformat()


def _timestamp(moment: datetime | None) -> Timestamp | None:
    return None if moment is None else to_timestamp(moment)


def initiative_to_proto(initiative: Initiative) -> registry_pb2.Initiative:
    return registry_pb2.Initiative(
        initiative_id=initiative.initiative_id,
        name=initiative.name,
        description=initiative.description,
        programme=initiative.programme,
        starts_on=_iso_date(initiative.starts_on),
        ends_on=_iso_date(initiative.ends_on),
        hub_ids=list(initiative.hub_ids),
        revision=initiative.revision,
    )


def participation_to_proto(participation: Participation) -> registry_pb2.Participation:
    return registry_pb2.Participation(
        initiative_id=participation.initiative_id,
        role=to_proto(registry_pb2.PartnerRole, participation.role),
        since_year=participation.since_year or 0,
        until_year=participation.until_year or 0,
        representatives=[
            registry_pb2.Representative(name=representative.name, title=representative.title)
            for representative in participation.representatives
        ],
    )


def _commitment_to_proto(commitment: CovenantCommitment) -> registry_pb2.CovenantCommitment:
    return registry_pb2.CovenantCommitment(
        signatory_year=commitment.signatory_year,
        baseline_year=commitment.baseline_year or 0,
        targets=[
            registry_pb2.EmissionTarget(
                target_year=target.target_year,
                reduction_percent=target.reduction_percent,
                climate_neutral=target.climate_neutral,
                source=target.source,
            )
            for target in commitment.targets
        ],
        emission_factor_approach=to_proto(
            registry_pb2.EmissionFactorApproach, commitment.emission_factor_approach
        ),
        emission_reporting_unit=to_proto(
            registry_pb2.EmissionReportingUnit, commitment.emission_reporting_unit
        ),
    )


def partner_to_proto(partner: Partner) -> registry_pb2.Partner:
    message = registry_pb2.Partner(
        partner_id=partner.partner_id,
        name=partner.name,
        kind=to_proto(registry_pb2.OrganisationKind, partner.kind),
        country_code=partner.country_code,
        participations=[participation_to_proto(p) for p in partner.participations],
        revision=partner.revision,
        carrier_authorizations=[
            registry_pb2.CarrierAuthorization(
                hub_id=authorization.hub_id,
                valid_from=_timestamp(authorization.valid_from),
                valid_until=_timestamp(authorization.valid_until),
            )
            for authorization in partner.carrier_authorizations
        ],
    )
    if partner.covenant_commitment is not None:
        message.covenant_commitment.CopyFrom(_commitment_to_proto(partner.covenant_commitment))
    return message


def role_from_proto(number: int) -> PartnerRole | None:
    """The domain role, or None for UNSPECIFIED or a number this build does not know."""
    return from_proto(registry_pb2.PartnerRole, number, PartnerRole)


def kind_from_proto(number: int) -> OrganisationKind | None:
    return from_proto(registry_pb2.OrganisationKind, number, OrganisationKind)


def _year(number: int) -> int | None:
    return number or None


def _moment(message: registry_pb2.CarrierAuthorization, field: str) -> datetime | None:
    return from_timestamp(getattr(message, field)) if message.HasField(field) else None  # type: ignore[arg-type]


def _date(field: str, text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(field, "must be a date YYYY-MM-DD") from None


def partner_from_proto(message: registry_pb2.Partner, field: str = "partner") -> Partner:
    """The domain partner of a request; INVALID_ARGUMENT names a field that cannot be one
    (the rules between fields are the domain's, `partner_problem`)."""
    kind = kind_from_proto(message.kind)
    if kind is None:
        raise InvalidArgument(f"{field}.kind", "required, one of the known kinds")
    participations = []
    for position, item in enumerate(message.participations):
        role = role_from_proto(item.role)
        if role is None:
            raise InvalidArgument(
                f"{field}.participations[{position}].role", "required, one of the known roles"
            )
        participations.append(
            Participation(
                initiative_id=item.initiative_id,
                role=role,
                since_year=_year(item.since_year),
                until_year=_year(item.until_year),
                representatives=tuple(
                    Representative(name=r.name, title=r.title) for r in item.representatives
                ),
            )
        )
    commitment = None
    if message.HasField("covenant_commitment"):
        stated = message.covenant_commitment
        approach = (
            from_proto(
                registry_pb2.EmissionFactorApproach,
                stated.emission_factor_approach,
                EmissionFactorApproach,
            )
            or EmissionFactorApproach.IPCC
        )
        commitment = CovenantCommitment(
            signatory_year=stated.signatory_year,
            baseline_year=_year(stated.baseline_year),
            targets=tuple(
                EmissionTarget(
                    target_year=t.target_year,
                    reduction_percent=t.reduction_percent,
                    climate_neutral=t.climate_neutral,
                    source=t.source,
                )
                for t in stated.targets
            ),
            emission_factor_approach=approach,
            emission_reporting_unit=from_proto(
                registry_pb2.EmissionReportingUnit,
                stated.emission_reporting_unit,
                EmissionReportingUnit,
            )
            or default_reporting_unit(approach),
        )
    return Partner(
        partner_id=message.partner_id,
        name=message.name.strip(),
        kind=kind,
        country_code=message.country_code,
        participations=tuple(participations),
        revision=message.revision,
        covenant_commitment=commitment,
        carrier_authorizations=tuple(
            CarrierAuthorization(
                hub_id=a.hub_id,
                valid_from=_moment(a, "valid_from"),
                valid_until=_moment(a, "valid_until"),
            )
            for a in message.carrier_authorizations
        ),
    )


def initiative_from_proto(
    message: registry_pb2.Initiative, field: str = "initiative"
) -> Initiative:
    return Initiative(
        initiative_id=message.initiative_id,
        name=message.name.strip(),
        description=message.description.strip(),
        programme=message.programme.strip(),
        starts_on=_date(f"{field}.starts_on", message.starts_on),
        ends_on=_date(f"{field}.ends_on", message.ends_on),
        hub_ids=tuple(message.hub_ids),
        revision=message.revision,
    )


def authorization_to_proto(
    decision: AuthorizationDecision,
) -> registry_pb2.CheckCarrierAuthorizationResponse:
    return registry_pb2.CheckCarrierAuthorizationResponse(
        authorized=decision.authorized, reason=decision.reason
    )


def partner_changed_event(
    partner: Partner, event_id: str, occurred_at: datetime
) -> registry_pb2.PartnerChanged:
    return registry_pb2.PartnerChanged(
        event_id=event_id,
        occurred_at=to_timestamp(occurred_at),
        partner=partner_to_proto(partner),
    )


def initiative_changed_event(
    initiative: Initiative, event_id: str, occurred_at: datetime
) -> registry_pb2.PartnerChanged:
    return registry_pb2.PartnerChanged(
        event_id=event_id,
        occurred_at=to_timestamp(occurred_at),
        initiative=initiative_to_proto(initiative),
    )
