"""partner-registry's use cases."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from partner_registry.adapters.events import partner_changed_event
from partner_registry.adapters.repository import RegistryRepository
from partner_registry.domain import (
    CarrierAuthorization,
    Initiative,
    Partner,
    PartnerRole,
    authorize_carrier,
    filter_partners,
)
from servicekit import topics
from servicekit.errors import InvalidArgument, NotFound
from servicekit.outbox import add_to_outbox
from servicekit.runtime import UnitOfWork
from servicekit.topics import TopicNames

log = logging.getLogger(__name__)


class RegistryHandlers:
    def __init__(self, unit_of_work: UnitOfWork, names: TopicNames) -> None:
        self.unit_of_work = unit_of_work
        self.names = names

    async def seed(
        self, initiatives: Sequence[Initiative], partners: Sequence[Partner]
    ) -> list[Partner]:
        """Stores the initiatives and partners not stored yet and announces each new partner.

        Existing rows are left as they are, so a restart seeds and publishes nothing twice.
        Returns the partners it stored.
        """
        stored: list[Partner] = []
        async with self.unit_of_work() as session:
            repository = RegistryRepository(session)
            for initiative in initiatives:
                await repository.add_initiative(initiative)
            occurred_at = datetime.now(UTC)
            for partner in partners:
                if not await repository.add_partner(partner):
                    continue
                await add_to_outbox(
                    session,
                    self.names(topics.PARTNERS),
                    partner.partner_id,
                    partner_changed_event(partner, str(uuid.uuid4()), occurred_at),
                )
                stored.append(partner)
        log.info("seeded %d new partners", len(stored))
        return stored

    async def get_partner(self, partner_id: str) -> Partner:
        if not partner_id:
            raise InvalidArgument("partner_id", "required")
        async with self.unit_of_work.read() as session:
            partner = await RegistryRepository(session).get_partner(partner_id)
        if partner is None:
            raise NotFound(f"no partner {partner_id!r}")
        return partner

    async def list_partners(self, initiative_id: str, role: PartnerRole | None) -> list[Partner]:
        """Partners of one initiative ("" : all) holding one role (None: any), sorted by id."""
        async with self.unit_of_work.read() as session:
            repository = RegistryRepository(session)
            if initiative_id and not await repository.has_initiative(initiative_id):
                raise NotFound(f"no initiative {initiative_id!r}")
            partners = await repository.list_partners()
        return filter_partners(partners, initiative_id or None, role)

    async def list_initiatives(self) -> list[Initiative]:
        async with self.unit_of_work.read() as session:
            return await RegistryRepository(session).list_initiatives()

    async def check_carrier_authorization(
        self, carrier_partner_id: str, hub_id: str
    ) -> CarrierAuthorization:
        """Whether the carrier may use the hub; an unknown carrier is refused, not an error."""
        if not carrier_partner_id:
            raise InvalidArgument("carrier_partner_id", "required")
        if not hub_id:
            raise InvalidArgument("hub_id", "required")
        async with self.unit_of_work.read() as session:
            partner = await RegistryRepository(session).get_partner(carrier_partner_id)
        return authorize_carrier(partner, hub_id)
