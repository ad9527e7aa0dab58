"""The partner registry as fleet-telemetry reads it: its read model of registry.partners.v1.

Which owners and municipalities exist, and the owner's kind the Covenant sub-sector follows.
A change of an owner's kind re-classifies its vehicles in the same transaction as the change
reaches the read model, so activity published from then on carries the new sub-sector and
activity already published keeps the one it had.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_telemetry.adapters.repository import FleetRepository
from fleet_telemetry.domain import OwnerKind
from greenpartners.registry.v1 import registry_pb2
from servicekit.partners import PartnerChanged, PartnerDirectory, partner_of
from servicekit.read_model import Change, read_model_rows

log = logging.getLogger(__name__)

_OWNER_KINDS = {
    registry_pb2.ORGANISATION_KIND_MUNICIPALITY: OwnerKind.MUNICIPALITY,
    registry_pb2.ORGANISATION_KIND_MUNICIPAL_COMPANY: OwnerKind.MUNICIPAL_COMPANY,
    registry_pb2.ORGANISATION_KIND_PUBLIC_TRANSPORT_OPERATOR: OwnerKind.PUBLIC_TRANSPORT_OPERATOR,
}


def owner_kind(partner: registry_pb2.Partner) -> OwnerKind:
    return _OWNER_KINDS.get(partner.kind, OwnerKind.OTHER)


async def reclassify_on_kind_change(
    session: AsyncSession, changes: Sequence[Change[PartnerChanged]]
) -> None:
    """The read model's hook: a partner whose kind changed (or who appeared again) has its
    vehicles follow the kind it has now."""
    repository = FleetRepository(session)
    for change in changes:
        partner = partner_of(change.value)
        if partner is None:
            # A deleted partner's vehicles keep their sub-sector; new ones are refused.
            continue
        before = partner_of(change.previous)
        kind = owner_kind(partner)
        if before is not None and owner_kind(before) is kind:
            continue
        moved = await repository.reclassify_owner(partner.partner_id, kind)
        if moved:
            log.info(
                "vehicles re-classified",
                extra={"owner_partner_id": partner.partner_id, "kind": kind, "vehicles": moved},
            )


class FleetPartners:
    """Owners and municipalities as the registry last said, from the read model."""

    def __init__(self, directory: PartnerDirectory) -> None:
        self.directory = directory

    async def lock(self, session: AsyncSession, partner_ids: Sequence[str]) -> None:
        """Holds the partners' rows until the transaction ends (on PostgreSQL), so a change of
        kind applied meanwhile waits for a registration and then re-classifies its vehicle,
        or the registration waits and reads the new kind."""
        await session.execute(
            select(read_model_rows.c.key)
            .where(
                read_model_rows.c.model == self.directory.model.topic,
                read_model_rows.c.key.in_(sorted(set(partner_ids))),
            )
            .order_by(read_model_rows.c.key)
            .with_for_update()
        )

    async def owner_kind(self, session: AsyncSession, partner_id: str) -> OwnerKind | None:
        """The owner's kind; None when the registry has no such partner."""
        partner = await self.directory.partner(session, partner_id)
        return None if partner is None else owner_kind(partner)

    async def is_municipality(self, session: AsyncSession, partner_id: str) -> bool:
        partner = await self.directory.partner(session, partner_id)
        return partner is not None and partner.kind == registry_pb2.ORGANISATION_KIND_MUNICIPALITY
