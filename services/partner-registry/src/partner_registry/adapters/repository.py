"""Initiatives and partners in the service's database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from partner_registry.adapters.tables import initiatives, partners
from partner_registry.domain import (
    Initiative,
    OrganisationKind,
    Participation,
    Partner,
    PartnerRole,
    Representative,
)
from servicekit.database import insert_if_absent


class RegistryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_initiative(self, initiative: Initiative) -> bool:
        """Stores an initiative unless one with its id exists; True when it was stored."""
        return await insert_if_absent(
            self.session,
            initiatives,
            {
                "initiative_id": initiative.initiative_id,
                "name": initiative.name,
                "description": initiative.description,
                "programme": initiative.programme,
                "starts_on": initiative.starts_on,
                "ends_on": initiative.ends_on,
            },
        )

    async def has_initiative(self, initiative_id: str) -> bool:
        row = (
            await self.session.execute(
                select(initiatives.c.initiative_id).where(
                    initiatives.c.initiative_id == initiative_id
                )
            )
        ).first()
        return row is not None

    async def list_initiatives(self) -> list[Initiative]:
        rows = (
            await self.session.execute(select(initiatives).order_by(initiatives.c.initiative_id))
        ).all()
        return [
            Initiative(
                initiative_id=row.initiative_id,
                name=row.name,
                description=row.description,
                programme=row.programme,
                starts_on=row.starts_on,
                ends_on=row.ends_on,
            )
            for row in rows
        ]

    async def add_partner(self, partner: Partner) -> bool:
        """Stores a partner unless one with its id exists; True when it was stored."""
        return await insert_if_absent(
            self.session,
            partners,
            {
                "partner_id": partner.partner_id,
                "name": partner.name,
                "kind": partner.kind.value,
                "country_code": partner.country_code,
                "participations": [_participation_to_json(p) for p in partner.participations],
                "revision": partner.revision,
            },
        )

    async def get_partner(self, partner_id: str) -> Partner | None:
        row = (
            await self.session.execute(select(partners).where(partners.c.partner_id == partner_id))
        ).first()
        return None if row is None else _partner_from_row(row)

    async def list_partners(self) -> list[Partner]:
        rows = (await self.session.execute(select(partners))).all()
        return [_partner_from_row(row) for row in rows]


def _participation_to_json(participation: Participation) -> dict[str, Any]:
    return {
        "initiative_id": participation.initiative_id,
        "role": participation.role.value,
        "since_year": participation.since_year,
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
        representatives=tuple(
            Representative(name=item["name"], title=item["title"])
            for item in stored["representatives"]
        ),
    )


def _partner_from_row(row: Any) -> Partner:
    return Partner(
        partner_id=row.partner_id,
        name=row.name,
        kind=OrganisationKind(row.kind),
        country_code=row.country_code,
        participations=tuple(_participation_from_json(item) for item in row.participations),
        revision=row.revision,
    )
