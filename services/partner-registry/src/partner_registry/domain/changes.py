"""How records change: revisions, field masks, authorisations and revocations.

Every change makes a new revision (the previous one plus one); a writer names the revision it
read, and a change made against any other revision is stale and refused, so two operators
editing the same partner cannot silently overwrite each other (optimistic concurrency).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from datetime import datetime
from typing import TypeVar

from partner_registry.domain.partners import CarrierAuthorization, Initiative, Partner

PARTNER_FIELDS = frozenset(
    {
        "name",
        "kind",
        "country_code",
        "participations",
        "covenant_commitment",
        "carrier_authorizations",
    }
)
INITIATIVE_FIELDS = frozenset(
    {"name", "description", "programme", "starts_on", "ends_on", "hub_ids"}
)

RecordT = TypeVar("RecordT", Partner, Initiative)


class StaleRevision(Exception):
    """The writer read another revision than the current one."""

    def __init__(self, record: str, expected: int, current: int) -> None:
        super().__init__(
            f"{record} is at revision {current}, not {expected}: read it again and retry"
        )
        self.expected = expected
        self.current = current


class InvalidMask(ValueError):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def check_revision(record: str, current: int, expected: int) -> None:
    """Raises StaleRevision unless `expected` (what the writer read) is the current revision."""
    if expected != current:
        raise StaleRevision(record, expected, current)


def mask_paths(paths: Collection[str], allowed: frozenset[str]) -> frozenset[str]:
    """The top-level fields a mask names; InvalidMask for an empty mask, a nested path or an
    unknown or read-only field (ids and revision are never changed through a mask)."""
    if not paths:
        raise InvalidMask(f"name the fields to change, from {sorted(allowed)}")
    unknown = sorted(path for path in paths if path not in allowed)
    if unknown:
        raise InvalidMask(f"{unknown} cannot be changed; allowed: {sorted(allowed)}")
    return frozenset(paths)


def apply_mask(current: RecordT, patch: RecordT, paths: frozenset[str]) -> RecordT:
    """The current record with the masked fields taken from `patch`, at the next revision."""
    changes: dict[str, object] = {path: getattr(patch, path) for path in paths}
    return dataclasses.replace(current, **changes, revision=current.revision + 1)  # type: ignore[arg-type]


def next_revision(record: RecordT) -> RecordT:
    return dataclasses.replace(record, revision=record.revision + 1)


def with_authorization(partner: Partner, authorization: CarrierAuthorization) -> Partner:
    """The carrier with `authorization` replacing any it had at that hub, at the next revision."""
    others = tuple(a for a in partner.carrier_authorizations if a.hub_id != authorization.hub_id)
    return dataclasses.replace(
        partner,
        carrier_authorizations=(*others, authorization),
        revision=partner.revision + 1,
    )


def with_revocation(partner: Partner, hub_id: str, now: datetime) -> Partner | None:
    """The carrier with its authorisation at the hub ended now (kept as history; one that had
    not started is dropped), at the next revision; None when nothing there is valid now or
    later, so nothing changes."""
    changed = False
    authorizations = []
    for authorization in partner.carrier_authorizations:
        open_after_now = authorization.valid_until is None or authorization.valid_until > now
        if authorization.hub_id != hub_id or not open_after_now:
            authorizations.append(authorization)
            continue
        changed = True
        if authorization.valid_from is None or authorization.valid_from < now:
            authorizations.append(dataclasses.replace(authorization, valid_until=now))
    if not changed:
        return None
    return dataclasses.replace(
        partner, carrier_authorizations=tuple(authorizations), revision=partner.revision + 1
    )
