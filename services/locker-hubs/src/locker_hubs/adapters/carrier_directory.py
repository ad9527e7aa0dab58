"""Carrier authorisation from locker-hubs' read model of the partner registry's changelog."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from greenpartners.registry.v1 import registry_pb2
from locker_hubs.domain.carriers import Carrier, HubAuthorization, may_collect
from servicekit.codec import from_timestamp
from servicekit.partners import PartnerDirectory
from servicekit.runtime import UnitOfWork

MOLO_HUBS = "molo-hubs"


def carrier_from_partner(partner: registry_pb2.Partner | None) -> Carrier | None:
    if partner is None:
        return None
    return Carrier(
        partner_id=partner.partner_id,
        registered_carrier=any(
            p.initiative_id == MOLO_HUBS and p.role == registry_pb2.PARTNER_ROLE_CARRIER
            for p in partner.participations
        ),
        authorizations=tuple(
            HubAuthorization(
                hub_id=a.hub_id,
                valid_from=from_timestamp(a.valid_from) if a.HasField("valid_from") else None,
                valid_until=from_timestamp(a.valid_until) if a.HasField("valid_until") else None,
            )
            for a in partner.carrier_authorizations
        ),
    )


class CarrierDirectory:
    """Answers `is_authorized` from the read model: no call to the registry per collection."""

    def __init__(
        self,
        partners: PartnerDirectory,
        unit_of_work: UnitOfWork,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.partners = partners
        self.unit_of_work = unit_of_work
        self.clock = clock

    async def is_authorized(self, carrier_partner_id: str, hub_id: str) -> tuple[bool, str]:
        async with self.unit_of_work.read() as session:
            partner = await self.partners.partner(session, carrier_partner_id)
        decision = may_collect(carrier_from_partner(partner), hub_id, self.clock())
        return decision.authorized, decision.reason
