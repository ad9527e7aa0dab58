"""Initiatives and partners in the service's database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from partner_registry.adapters.tables import initiatives, partners, seed_applied
from partner_registry.domain import (
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
from servicekit.database import upsert


@dataclass(frozen=True)
class StoredPartner:
    partner: Partner
    # A deleted partner's row stays, at the revision of its deletion.
    deleted: bool


@dataclass(frozen=True)
class SeedRecord:
    content_hash: str
    revision: int


class RegistryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # Initiatives

    async def save_initiative(self, initiative: Initiative) -> None:
        await upsert(
            self.session,
            initiatives,
            {
                "initiative_id": initiative.initiative_id,
                "name": initiative.name,
                "description": initiative.description,
                "programme": initiative.programme,
                "starts_on": initiative.starts_on,
                "ends_on": initiative.ends_on,
                "hub_ids": list(initiative.hub_ids),
                "revision": initiative.revision,
            },
            key=["initiative_id"],
        )

    async def get_initiative(
        self, initiative_id: str, for_update: bool = False
    ) -> Initiative | None:
        statement = select(initiatives).where(initiatives.c.initiative_id == initiative_id)
        if for_update:
            statement = statement.with_for_update()
        row = (await self.session.execute(statement)).first()
        return None if row is None else _initiative_from_row(row)

    async def has_initiative(self, initiative_id: str) -> bool:
        return await self.get_initiative(initiative_id) is not None

    async def list_initiatives(self) -> list[Initiative]:
        rows = (
            await self.session.execute(select(initiatives).order_by(initiatives.c.initiative_id))
        ).all()
        return [_initiative_from_row(row) for row in rows]

    async def initiatives_by_id(self) -> dict[str, Initiative]:
        return {i.initiative_id: i for i in await self.list_initiatives()}

    # Partners

    async def save_partner(self, partner: Partner) -> None:
        """Stores the partner as it is now (a deleted one under its id comes back)."""
        await upsert(
            self.session,
            partners,
            {**_partner_values(partner), "deleted_at": None},
            key=["partner_id"],
        )

    async def mark_deleted(self, partner_id: str, revision: int, at: datetime) -> None:
        await self.session.execute(
            update(partners)
            .where(partners.c.partner_id == partner_id)
            .values(revision=revision, deleted_at=at)
        )

    async def stored_partner(
        self, partner_id: str, for_update: bool = False
    ) -> StoredPartner | None:
        """The partner's row, deleted or not; locked for the transaction when `for_update`."""
        statement = select(partners).where(partners.c.partner_id == partner_id)
        if for_update:
            statement = statement.with_for_update()
        row = (await self.session.execute(statement)).first()
        if row is None:
            return None
        return StoredPartner(_partner_from_row(row), deleted=row.deleted_at is not None)

    async def get_partner(self, partner_id: str) -> Partner | None:
        """The partner, None when there is none or it was deleted."""
        stored = await self.stored_partner(partner_id)
        return None if stored is None or stored.deleted else stored.partner

    async def list_partners(self) -> list[Partner]:
        rows = (
            await self.session.execute(select(partners).where(partners.c.deleted_at.is_(None)))
        ).all()
        return [_partner_from_row(row) for row in rows]

    # What the seed wrote

    async def seed_record(self, record_key: str) -> SeedRecord | None:
        row = (
            await self.session.execute(
                select(seed_applied).where(seed_applied.c.record_key == record_key)
            )
        ).first()
        return None if row is None else SeedRecord(row.content_hash, row.revision)

    async def save_seed_record(self, record_key: str, record: SeedRecord) -> None:
        await upsert(
            self.session,
            seed_applied,
            {
                "record_key": record_key,
                "content_hash": record.content_hash,
                "revision": record.revision,
            },
            key=["record_key"],
        )


def _initiative_from_row(row: Any) -> Initiative:
    return Initiative(
        initiative_id=row.initiative_id,
        name=row.name,
        description=row.description,
        programme=row.programme,
        starts_on=row.starts_on,
        ends_on=row.ends_on,
        hub_ids=tuple(row.hub_ids or ()),
        revision=row.revision,
    )


def _partner_values(partner: Partner) -> dict[str, Any]:
    return {
        "partner_id": partner.partner_id,
        "name": partner.name,
        "kind": partner.kind.value,
        "country_code": partner.country_code,
        "participations": [_participation_to_json(p) for p in partner.participations],
        "revision": partner.revision,
        "covenant_commitment": _commitment_to_json(partner.covenant_commitment),
        "carrier_authorizations": [
            _authorization_to_json(a) for a in partner.carrier_authorizations
        ],
    }


def partner_content(partner: Partner) -> dict[str, Any]:
    """The partner as plain JSON data, without its revision (what the seed compares)."""
    values = _partner_values(partner)
    del values["revision"]
    return values


def initiative_content(initiative: Initiative) -> dict[str, Any]:
    return {
        "initiative_id": initiative.initiative_id,
        "name": initiative.name,
        "description": initiative.description,
        "programme": initiative.programme,
        "starts_on": _iso(initiative.starts_on),
        "ends_on": _iso(initiative.ends_on),
        "hub_ids": list(initiative.hub_ids),
    }


def _iso(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


def _participation_to_json(participation: Participation) -> dict[str, Any]:
    return {
        "initiative_id": participation.initiative_id,
        "role": participation.role.value,
        "since_year": participation.since_year,
        "until_year": participation.until_year,
        "representatives": [
            {"name": representative.name, "title": representative.title}
            for representative in participation.representatives
        ],
    }


def _participation_from_json(stored: dict[str, Any]) -> Participation:
    return Participation(
        initiative_id=stored["initiative_id"],
        role=PartnerRole(stored["role"]),
        since_year=stored["since_year"],
        until_year=stored.get("until_year"),
        representatives=tuple(
            Representative(name=item["name"], title=item["title"])
            for item in stored["representatives"]
        ),
    )


def _commitment_to_json(commitment: CovenantCommitment | None) -> dict[str, Any] | None:
    if commitment is None:
        return None
    return {
        "signatory_year": commitment.signatory_year,
        "baseline_year": commitment.baseline_year,
        "targets": [
            {
                "target_year": target.target_year,
                "reduction_percent": target.reduction_percent,
                "climate_neutral": target.climate_neutral,
                "source": target.source,
            }
            for target in commitment.targets
        ],
        "emission_factor_approach": commitment.emission_factor_approach.value,
        "emission_reporting_unit": commitment.emission_reporting_unit.value,
    }


def _commitment_from_json(stored: dict[str, Any] | None) -> CovenantCommitment | None:
    if stored is None:
        return None
    return CovenantCommitment(
        signatory_year=stored["signatory_year"],
        baseline_year=stored["baseline_year"],
        targets=tuple(EmissionTarget(**target) for target in stored["targets"]),
        # Commitments stored before approaches were recorded are IPCC in t CO2.
        emission_factor_approach=EmissionFactorApproach(
            stored.get("emission_factor_approach", EmissionFactorApproach.IPCC.value)
        ),
        emission_reporting_unit=EmissionReportingUnit(
            stored.get("emission_reporting_unit", EmissionReportingUnit.T_CO2.value)
        ),
    )


def _authorization_to_json(authorization: CarrierAuthorization) -> dict[str, Any]:
    return {
        "hub_id": authorization.hub_id,
        "valid_from": _iso(authorization.valid_from),
        "valid_until": _iso(authorization.valid_until),
    }


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _partner_from_row(row: Any) -> Partner:
    return Partner(
        partner_id=row.partner_id,
        name=row.name,
        kind=OrganisationKind(row.kind),
        country_code=row.country_code,
        participations=tuple(_participation_from_json(item) for item in row.participations),
        revision=row.revision,
        covenant_commitment=_commitment_from_json(row.covenant_commitment),
        carrier_authorizations=tuple(
            CarrierAuthorization(
                item["hub_id"], _moment(item["valid_from"]), _moment(item["valid_until"])
            )
            for item in row.carrier_authorizations or ()
        ),
    )
