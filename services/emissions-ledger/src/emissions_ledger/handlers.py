"""emissions-ledger's use cases: post entries from events, answer inventories."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from opentelemetry import trace

from emissions_ledger.adapters.events import entry_posted_event
from emissions_ledger.adapters.repository import LedgerRepository, PostedEntry
from emissions_ledger.domain import (
    FIRST_REPORTING_YEAR,
    MUNICIPAL_TIME_ZONE,
    AvoidedTripPolicy,
    FactorCatalogue,
    ImplausibleActivity,
    Inventory,
    LedgerEntry,
    NoFactor,
    UnaccountableActivity,
    VehicleActivity,
    WasteCollection,
    entry_for_activity,
    entry_for_collection,
    increments_per_line,
)
from servicekit import topics
from servicekit.errors import InvalidArgument
from servicekit.kafka import Rejection
from servicekit.outbox import add_many_to_outbox
from servicekit.runtime import UnitOfWork
from servicekit.telemetry import current_trace_id
from servicekit.topics import TopicNames

DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
tracer = trace.get_tracer(__name__)

SourceT = TypeVar("SourceT")

# A source event with its position in the consumed batch, which a rejection names.
Positioned = tuple[int, SourceT]


class LedgerHandlers:
    def __init__(
        self,
        unit_of_work: UnitOfWork,
        names: TopicNames,
        catalogue: FactorCatalogue,
        policy: AvoidedTripPolicy,
        page_token_key: bytes,
    ) -> None:
        self.unit_of_work = unit_of_work
        # Signs page tokens, so a forged one cannot make a listing jump or scan.
        self.page_token_key = page_token_key
        self.names = names
        self.catalogue = catalogue
        self.policy = policy

    async def post_activities(
        self, activities: Sequence[Positioned[VehicleActivity]]
    ) -> list[Rejection]:
        """Posts the emission entry of each activity; returns the activities it cannot account."""
        entries, rejections = _entries_for(
            activities,
            lambda activity: entry_for_activity(
                activity, self.catalogue, topics.ACTIVITY, _this_year()
            ),
        )
        return [*rejections, *await self._post(entries)]

    async def post_collections(
        self, collections: Sequence[Positioned[WasteCollection]]
    ) -> list[Rejection]:
        """Posts the entry of each carrier collection; returns those it cannot account."""
        entries, rejections = _entries_for(
            collections,
            lambda collection: entry_for_collection(
                collection, self.policy, self.catalogue, topics.LOCKER_EVENTS, _this_year()
            ),
        )
        return [*rejections, *await self._post(entries)]

    async def _post(self, positioned: Sequence[Positioned[LedgerEntry]]) -> list[Rejection]:
        """Appends the entries the ledger does not hold yet, adds them to their inventory lines
        and announces them, in one transaction and a few statements however many there are.
        Returns the source events that reuse an event id the ledger holds with other content.

        No processed-event record is needed: an entry's unique source makes the append
        idempotent, and only the entries actually appended are counted and announced.
        """
        if not positioned:
            return []
        entries, conflicts = _first_of_each_source(positioned)
        with tracer.start_as_current_span(
            "ledger post entries", attributes={"ledger.entry_count": len(entries)}
        ) as span:
            async with self.unit_of_work() as session:
                # The producer's trace when the batch carries one, else the batch's own.
                trace_id = current_trace_id()
                repository = LedgerRepository(session)
                fresh, held_conflicts = await _not_posted(repository, entries)
                conflicts += held_conflicts
                appended = await repository.append(fresh, trace_id)
                span.set_attribute("ledger.appended_count", len(appended))
                if not appended:
                    return conflicts
                await repository.add_to_inventory(increments_per_line(appended))
                topic = self.names(topics.LEDGER_ENTRIES)
                await add_many_to_outbox(
                    session,
                    (
                        (topic, entry.municipality_id, entry_posted_event(entry, trace_id))
                        for entry in appended
                    ),
                )
        return conflicts

    async def inventory(self, municipality_id: str, year: int) -> Inventory:
        _check_inventory_request(municipality_id, year)
        async with self.unit_of_work.read() as session:
            return await LedgerRepository(session).inventory(municipality_id, year)

    async def entries(
        self, municipality_id: str, year: int, page_size: int, page_token: str
    ) -> tuple[list[PostedEntry], str]:
        """One page of entries in posting order, and the token of the next page ("" at the end)."""
        _check_inventory_request(municipality_id, year)
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = _sequence_from_token(page_token, municipality_id, year, self.page_token_key)
        async with self.unit_of_work.read() as session:
            # One more than asked tells whether another page follows.
            posted = await LedgerRepository(session).entries(
                municipality_id, year, after, limit + 1
            )
        if len(posted) <= limit:
            return posted, ""
        page = posted[:limit]
        return page, _page_token(municipality_id, year, page[-1].sequence, self.page_token_key)


# Far above any token the ledger issues; longer input is refused before it is decoded.
MAX_PAGE_TOKEN_LENGTH = 512


def _check_inventory_request(municipality_id: str, year: int) -> None:
    if not municipality_id:
        raise InvalidArgument("municipality_id", "required")
    if not FIRST_REPORTING_YEAR <= year <= 2100:
        raise InvalidArgument("year", f"must be a year from {FIRST_REPORTING_YEAR} to 2100")


def _page_token(municipality_id: str, year: int, last_sequence: int, key: bytes) -> str:
    text = f"{municipality_id}|{year}|{last_sequence}"
    signature = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]
    return base64.urlsafe_b64encode(f"{text}|{signature}".encode()).decode()


def _sequence_from_token(page_token: str, municipality_id: str, year: int, key: bytes) -> int:
    """The last sequence of the previous page; the token must be one this ledger issued for
    the same query."""
    if not page_token:
        return 0
    try:
        if len(page_token) > MAX_PAGE_TOKEN_LENGTH:
            raise ValueError("too long")
        text, _, signature = base64.urlsafe_b64decode(page_token.encode()).decode().rpartition("|")
        expected = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(signature, expected):
            raise ValueError("not signed by this ledger")
        token_municipality, token_year, sequence = text.split("|")
        if (token_municipality, int(token_year)) != (municipality_id, year):
            raise ValueError("token of another query")
        return int(sequence)
    except ValueError as error:
        raise InvalidArgument("page_token", "not a token of this query") from error


def _entries_for(
    sources: Sequence[Positioned[SourceT]], entry_for: Callable[[SourceT], LedgerEntry]
) -> tuple[list[Positioned[LedgerEntry]], list[Rejection]]:
    """The entry of each source event, and a rejection for each the domain cannot account."""
    entries: list[Positioned[LedgerEntry]] = []
    rejections: list[Rejection] = []
    for index, source in sources:
        try:
            entries.append((index, entry_for(source)))
        except NoFactor as error:
            rejections.append(Rejection(index, "no_emission_factor", str(error)))
        except ImplausibleActivity as error:
            rejections.append(Rejection(index, error.reason, str(error)))
        except UnaccountableActivity as error:
            rejections.append(Rejection(index, "unaccountable_activity", str(error)))
    return entries, rejections


def _source_content(entry: LedgerEntry) -> tuple[object, ...]:
    """What an entry takes from its source event: two events with one id and different
    content differ here (factors and the policy are the ledger's own, not the event's)."""
    trip = entry.avoided_trip
    return (
        entry.kind,
        entry.municipality_id,
        entry.year,
        entry.sector,
        entry.subsector,
        entry.energy_carrier,
        entry.activity_amount,
        entry.activity_unit,
        entry.subject_id,
        entry.activity_at,
        None if trip is None else trip.carrier_extra_distance_m,
    )


def _conflict(index: int, entry: LedgerEntry) -> Rejection:
    return Rejection(
        index,
        "duplicate_event_conflict",
        f"event id {entry.source_event_id!r} was posted before with other content",
    )


def _first_of_each_source(
    positioned: Sequence[Positioned[LedgerEntry]],
) -> tuple[list[Positioned[LedgerEntry]], list[Rejection]]:
    """The first entry of each source event within a batch; a later one with the same content
    is a redelivery and dropped, one with other content is a conflict."""
    first: dict[str, LedgerEntry] = {}
    kept: list[Positioned[LedgerEntry]] = []
    conflicts: list[Rejection] = []
    for index, entry in positioned:
        earlier = first.get(entry.source_event_id)
        if earlier is None:
            first[entry.source_event_id] = entry
            kept.append((index, entry))
        elif _source_content(earlier) != _source_content(entry):
            conflicts.append(_conflict(index, entry))
    return kept, conflicts


async def _not_posted(
    repository: LedgerRepository, entries: Sequence[Positioned[LedgerEntry]]
) -> tuple[list[LedgerEntry], list[Rejection]]:
    """The entries whose source event the ledger holds no entry for yet; and a conflict for
    each whose source it holds with other content (a redelivery, same content, is neither).

    One query per batch; the entry's kind is part of the content, since a collection's kind
    follows its detour, and another kind would not meet the unique source key."""
    held = await repository.posted_for_sources([entry for _, entry in entries])
    fresh: list[LedgerEntry] = []
    conflicts: list[Rejection] = []
    for index, entry in entries:
        posted = held.get(entry.source_event_id)
        if not posted:
            fresh.append(entry)
        elif any(_source_content(other) != _source_content(entry) for other in posted):
            conflicts.append(_conflict(index, entry))
    return fresh, conflicts


def _this_year() -> int:
    """The current reporting year: later ones are in the future, so not plausible yet."""
    return datetime.now(MUNICIPAL_TIME_ZONE).year
