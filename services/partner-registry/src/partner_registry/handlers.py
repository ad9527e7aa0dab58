"""partner-registry's use cases.

Every change is one transaction that stores the new revision of a record and puts it on the
outbox for the compacted changelog (a deletion: a tombstone), so the changelog never misses a
change nor announces one that did not commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from partner_registry.adapters.events import (
    initiative_changed_event,
    initiative_key,
    partner_changed_event,
)
from partner_registry.adapters.repository import (
    RegistryRepository,
    SeedRecord,
    initiative_content,
    partner_content,
)
from partner_registry.domain import (
    INITIATIVE_FIELDS,
    MOLO_HUBS,
    PARTNER_FIELDS,
    AuthorizationDecision,
    CarrierAuthorization,
    Initiative,
    InvalidMask,
    OrganisationKind,
    Page,
    Partner,
    PartnerRole,
    StaleRevision,
    apply_mask,
    authorize_carrier,
    check_revision,
    filter_partners,
    initiative_problem,
    mask_paths,
    page_after,
    partner_problem,
    with_authorization,
    with_revocation,
)
from servicekit import topics
from servicekit.database import outbox
from servicekit.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from servicekit.outbox import add_to_outbox, add_tombstone_to_outbox
from servicekit.runtime import UnitOfWork
from servicekit.topics import TopicNames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartnerQuery:
    initiative_id: str | None = None
    role: PartnerRole | None = None
    kind: OrganisationKind | None = None
    country_code: str | None = None


def _content_hash(content: object) -> str:
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class RegistryHandlers:
    def __init__(
        self,
        unit_of_work: UnitOfWork,
        names: TopicNames,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.unit_of_work = unit_of_work
        self.names = names
        self.clock = clock

    def _now(self) -> datetime:
        return self.clock()

    # Publication

    async def _announce_partner(self, session: AsyncSession, partner: Partner) -> None:
        await add_to_outbox(
            session,
            self.names(topics.PARTNERS),
            partner.partner_id,
            partner_changed_event(partner, str(uuid.uuid4()), self._now()),
        )

    async def _announce_initiative(self, session: AsyncSession, initiative: Initiative) -> None:
        await add_to_outbox(
            session,
            self.names(topics.PARTNERS),
            initiative_key(initiative.initiative_id),
            initiative_changed_event(initiative, str(uuid.uuid4()), self._now()),
        )

    # The seed

    async def seed(
        self, initiatives: Sequence[Initiative], partners: Sequence[Partner]
    ) -> list[str]:
        """Applies the seed: stores and announces each record that is new, or whose seed entry
        changed while nobody changed the record since the seed wrote it. A record changed or
        deleted through the API is left as it is. Returns the keys it wrote; a restart over
        the same seed writes and announces nothing.
        """
        written: list[str] = []
        async with self.unit_of_work() as session:
            repository = RegistryRepository(session)
            for initiative in initiatives:
                key = initiative_key(initiative.initiative_id)
                content_hash = _content_hash(initiative_content(initiative))
                current = await repository.get_initiative(initiative.initiative_id, True)
                revision = await self._seed_revision(repository, key, content_hash, current)
                if revision is None:
                    continue
                stored = dataclasses.replace(initiative, revision=revision)
                await repository.save_initiative(stored)
                await repository.save_seed_record(key, SeedRecord(content_hash, revision))
                await self._announce_initiative(session, stored)
                written.append(key)
            for partner in partners:
                content_hash = _content_hash(partner_content(partner))
                row = await repository.stored_partner(partner.partner_id, for_update=True)
                current_partner = None if row is None else row.partner
                revision = await self._seed_revision(
                    repository, partner.partner_id, content_hash, current_partner
                )
                if revision is None:
                    continue
                stored_partner = dataclasses.replace(partner, revision=revision)
                await repository.save_partner(stored_partner)
                await repository.save_seed_record(
                    partner.partner_id, SeedRecord(content_hash, revision)
                )
                await self._announce_partner(session, stored_partner)
                written.append(partner.partner_id)
        log.info("seed applied", extra={"written": len(written)})
        return written

    @staticmethod
    async def _seed_revision(
        repository: RegistryRepository,
        key: str,
        content_hash: str,
        current: Partner | Initiative | None,
    ) -> int | None:
        """The revision to store a seed entry at, None to leave the record alone."""
        if current is None:
            return 1
        applied = await repository.seed_record(key)
        if applied is None:
            # Stored before the seed was recorded (or created through the API): the seed
            # never overwrites it.
            return None
        if applied.content_hash == content_hash or applied.revision != current.revision:
            return None
        return current.revision + 1

    async def wait_until_published(self, timeout_s: float = 30.0) -> None:
        """Waits for the outbox to empty, so the changelog holds the seed before the service
        reports itself ready (other services build their read models from it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            async with self.unit_of_work.read() as session:
                pending = (
                    await session.execute(select(func.count()).select_from(outbox))
                ).scalar_one()
            if not pending:
                return
            if time.monotonic() > deadline:
                log.warning("%d changelog records not yet published; serving anyway", pending)
                return
            await asyncio.sleep(0.05)

    # Reads

    async def get_partner(self, partner_id: str) -> Partner:
        if not partner_id:
            raise InvalidArgument("partner_id", "required")
        async with self.unit_of_work.read() as session:
            partner = await RegistryRepository(session).get_partner(partner_id)
        if partner is None:
            raise NotFound(f"no partner {partner_id!r}")
        return partner

    async def list_partners(self, query: PartnerQuery, after_id: str | None, size: int) -> Page:
        """One page of the partners matching the query, sorted by id."""
        async with self.unit_of_work.read() as session:
            repository = RegistryRepository(session)
            if query.initiative_id and not await repository.has_initiative(query.initiative_id):
                raise NotFound(f"no initiative {query.initiative_id!r}")
            partners = await repository.list_partners()
        selected = filter_partners(
            partners, query.initiative_id, query.role, query.kind, query.country_code
        )
        return page_after(selected, after_id, size)

    async def list_initiatives(self) -> list[Initiative]:
        async with self.unit_of_work.read() as session:
            return await RegistryRepository(session).list_initiatives()

    async def check_carrier_authorization(
        self, carrier_partner_id: str, hub_id: str
    ) -> AuthorizationDecision:
        """Whether the carrier may use the hub now; an unknown carrier is refused, not an
        error."""
        if not carrier_partner_id:
            raise InvalidArgument("carrier_partner_id", "required")
        if not hub_id:
            raise InvalidArgument("hub_id", "required")
        async with self.unit_of_work.read() as session:
            partner = await RegistryRepository(session).get_partner(carrier_partner_id)
        return authorize_carrier(partner, hub_id, self._now())

    # Partner writes

    @staticmethod
    def _check(partner: Partner, initiatives: dict[str, Initiative]) -> None:
        problem = partner_problem(partner, initiatives)
        if problem is not None:
            raise InvalidArgument(f"partner.{problem.field}", problem.problem)

    async def create_partner(self, partner: Partner) -> Partner:
        async with self.unit_of_work() as session:
            repository = RegistryRepository(session)
            self._check(partner, await repository.initiatives_by_id())
            stored = await repository.stored_partner(partner.partner_id, for_update=True)
            if stored is not None and not stored.deleted:
                raise AlreadyExists(f"partner {partner.partner_id!r} exists")
            # A partner created again continues its deleted predecessor's revisions.
            revision = 1 if stored is None else stored.partner.revision + 1
            created = dataclasses.replace(partner, revision=revision)
            await repository.save_partner(created)
            await self._announce_partner(session, created)
        return created

    async def _current_partner(
        self, repository: RegistryRepository, partner_id: str, expected_revision: int | None
    ) -> Partner:
        stored = await repository.stored_partner(partner_id, for_update=True)
        if stored is None or stored.deleted:
            raise NotFound(f"no partner {partner_id!r}")
        if expected_revision is not None:
            try:
                check_revision(
                    f"partner {partner_id!r}", stored.partner.revision, expected_revision
                )
            except StaleRevision as stale:
                raise Aborted(str(stale)) from stale
        return stored.partner

    async def update_partner(self, patch: Partner, paths: Collection[str]) -> Partner:
        """The masked fields of the partner replaced, if `patch.revision` is still current."""
        try:
            masked = mask_paths(paths, PARTNER_FIELDS)
        except InvalidMask as error:
            raise InvalidArgument("update_mask", error.problem) from error
        if patch.revision < 1:
            raise InvalidArgument("partner.revision", "required: the revision you read")
        async with self.unit_of_work() as session:
            repository = RegistryRepository(session)
            current = await self._current_partner(repository, patch.partner_id, patch.revision)
            changed = apply_mask(current, patch, masked)
            self._check(changed, await repository.initiatives_by_id())
            await repository.save_partner(changed)
            await self._announce_partner(session, changed)
        return changed

    async def delete_partner(self, partner_id: str, revision: int) -> None:
        """Deletes the partner: its row stays at the next revision as a tombstone, and the
        changelog gets a tombstone for its key."""
        if revision < 1:
            raise InvalidArgument("revision", "required: the revision you read")
        async with self.unit_of_work() as session:
            repository = RegistryRepository(session)
            current = await self._current_partner(repository, partner_id, revision)
            await repository.mark_deleted(partner_id, current.revision + 1, self._now())
            await add_tombstone_to_outbox(session, self.names(topics.PARTNERS), partner_id)

    async def authorize_carrier(
        self,
        carrier_partner_id: str,
        authorization: CarrierAuthorization,
        expected_revision: int | None,
    ) -> Partner:
        async with self.unit_of_work() as session:
            repository = RegistryRepository(session)
            carrier = await self._current_partner(repository, carrier_partner_id, expected_revision)
            initiatives = await repository.initiatives_by_id()
            molo_hubs = initiatives.get(MOLO_HUBS)
            if molo_hubs is None or authorization.hub_id not in molo_hubs.hub_ids:
                raise NotFound(f"MoLo Hubs has no hub {authorization.hub_id!r}")
            if not carrier.is_carrier:
                raise FailedPrecondition(
                    f"{carrier_partner_id} is not registered as a MoLo Hubs carrier"
                )
            if authorization.valid_from is None:
                authorization = CarrierAuthorization(
                    authorization.hub_id, self._now(), authorization.valid_until
                )
            changed = with_authorization(carrier, authorization)
            problem = partner_problem(changed, initiatives)
            if problem is not None:
                # Only the new authorisation can be at fault: the stored record was valid.
                raise InvalidArgument("valid_until", problem.problem)
            await repository.save_partner(changed)
            await self._announce_partner(session, changed)
        return changed

    async def revoke_carrier_authorization(
        self, carrier_partner_id: str, hub_id: str, expected_revision: int | None
    ) -> Partner:
        """Ends the carrier's authorisation at the hub now; revoking what is not in force
        changes nothing (and publishes nothing)."""
        async with self.unit_of_work() as session:
            repository = RegistryRepository(session)
            carrier = await self._current_partner(repository, carrier_partner_id, expected_revision)
            changed = with_revocation(carrier, hub_id, self._now())
            if changed is None:
                return carrier
            await repository.save_partner(changed)
            await self._announce_partner(session, changed)
        return changed

    # Initiative writes

    @staticmethod
    def _check_initiative(initiative: Initiative) -> None:
        problem = initiative_problem(initiative)
        if problem is not None:
            raise InvalidArgument(f"initiative.{problem.field}", problem.problem)

    async def create_initiative(self, initiative: Initiative) -> Initiative:
        self._check_initiative(initiative)
        async with self.unit_of_work() as session:
            repository = RegistryRepository(session)
            if await repository.get_initiative(initiative.initiative_id, True) is not None:
                raise AlreadyExists(f"initiative {initiative.initiative_id!r} exists")
            created = dataclasses.replace(initiative, revision=1)
            await repository.save_initiative(created)
            await self._announce_initiative(session, created)
        return created

    async def update_initiative(self, patch: Initiative, paths: Collection[str]) -> Initiative:
        try:
            masked = mask_paths(paths, INITIATIVE_FIELDS)
        except InvalidMask as error:
            raise InvalidArgument("update_mask", error.problem) from error
        if patch.revision < 1:
            raise InvalidArgument("initiative.revision", "required: the revision you read")
        async with self.unit_of_work() as session:
            repository = RegistryRepository(session)
            current = await repository.get_initiative(patch.initiative_id, for_update=True)
            if current is None:
                raise NotFound(f"no initiative {patch.initiative_id!r}")
            try:
                check_revision(
                    f"initiative {patch.initiative_id!r}", current.revision, patch.revision
                )
            except StaleRevision as stale:
                raise Aborted(str(stale)) from stale
            changed = apply_mask(current, patch, masked)
            self._check_initiative(changed)
            await self._refuse_dropping_authorised_hubs(repository, current, changed)
            await repository.save_initiative(changed)
            await self._announce_initiative(session, changed)
        return changed

    async def _refuse_dropping_authorised_hubs(
        self, repository: RegistryRepository, current: Initiative, changed: Initiative
    ) -> None:
        dropped = set(current.hub_ids) - set(changed.hub_ids)
        if not dropped:
            return
        now = self._now()
        for partner in await repository.list_partners():
            for authorization in partner.carrier_authorizations:
                in_force_later = (
                    authorization.valid_until is None or authorization.valid_until > now
                )
                if authorization.hub_id in dropped and in_force_later:
                    raise FailedPrecondition(
                        f"{partner.partner_id} is authorised at hub {authorization.hub_id}: "
                        "revoke that first"
                    )
