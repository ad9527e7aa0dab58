"""The partner registry's changelog as other services read it: a read model of
registry.partners.v1 (servicekit.read_model) and lookups of partners in it.

What a partner means to a service (a carrier's authorisations, an owner's Covenant sub-sector,
a municipality's commitment) is that service's own domain; this module only finds the record.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from greenpartners.registry.v1 import registry_pb2
from servicekit import topics
from servicekit.read_model import ChangeHook, ReadModel
from servicekit.runtime import ServiceRuntime

PartnerChanged = registry_pb2.PartnerChanged
# Initiatives share the changelog under keys with this prefix (partner ids never hold a colon).
INITIATIVE_KEY_PREFIX = "initiative:"


def changelog_revision(event: PartnerChanged) -> int:
    """The revision of the record an event carries (a partner's or an initiative's)."""
    if event.HasField("initiative"):
        return event.initiative.revision
    return event.partner.revision


class PartnerDirectory:
    """The registry's partners as this service last read them from the changelog."""

    def __init__(self, model: ReadModel[PartnerChanged]) -> None:
        self.model = model

    @classmethod
    def follow(
        cls, runtime: ServiceRuntime, on_change: ChangeHook[PartnerChanged] | None = None
    ) -> PartnerDirectory:
        """A directory kept by `runtime` from the changelog; the service serves once it has
        caught up. `on_change` runs with each batch of changes, in their transaction."""
        return cls(
            runtime.read_model(topics.PARTNERS, PartnerChanged, changelog_revision, on_change)
        )

    async def partner(self, session: AsyncSession, partner_id: str) -> registry_pb2.Partner | None:
        """The partner, None when the registry has none by that id (or deleted it)."""
        if not partner_id or partner_id.startswith(INITIATIVE_KEY_PREFIX):
            return None
        event = await self.model.get(session, partner_id)
        return None if event is None or not event.HasField("partner") else event.partner

    async def partners(self, session: AsyncSession) -> list[registry_pb2.Partner]:
        return [
            event.partner for event in await self.model.values(session) if event.HasField("partner")
        ]


def partner_of(event: PartnerChanged | None) -> registry_pb2.Partner | None:
    """The partner a changelog value carries, None for an initiative's record or a deletion."""
    if event is None or not event.HasField("partner"):
        return None
    return event.partner
