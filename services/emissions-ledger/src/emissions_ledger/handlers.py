"""emissions-ledger's use cases: post entries from events, answer inventories."""

from __future__ import annotations

import base64

from opentelemetry import trace

from emissions_ledger.adapters.events import entry_posted_event
from emissions_ledger.adapters.repository import LedgerRepository, PostedEntry
from emissions_ledger.domain import (
    AvoidedTripPolicy,
    FactorCatalogue,
    Inventory,
    LedgerEntry,
    NoFactor,
    UnaccountableActivity,
    VehicleActivity,
    WasteCollection,
    entry_for_activity,
    entry_for_collection,
)
from servicekit import topics
from servicekit.database import claim_event
from servicekit.errors import InvalidArgument, PermanentEventError
from servicekit.outbox import add_to_outbox
from servicekit.runtime import UnitOfWork
from servicekit.telemetry import current_trace_id
from servicekit.topics import TopicNames

ACTIVITY_CONSUMER = "emissions-ledger.activity"
LOCKER_CONSUMER = "emissions-ledger.lockers"
FIRST_REPORTING_YEAR = 1990  # the Covenant's recommended base year
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
tracer = trace.get_tracer(__name__)


class LedgerHandlers:
    def __init__(
        self,
        unit_of_work: UnitOfWork,
        names: TopicNames,
        catalogue: FactorCatalogue,
        policy: AvoidedTripPolicy,
    ) -> None:
        self.unit_of_work = unit_of_work
        self.names = names
        self.catalogue = catalogue
        self.policy = policy

    async def post_activity(self, activity: VehicleActivity) -> None:
        try:
            entry = entry_for_activity(activity, self.catalogue, topics.ACTIVITY)
        except NoFactor as error:
            raise PermanentEventError("no_emission_factor", str(error)) from error
        except UnaccountableActivity as error:
            raise PermanentEventError("unaccountable_activity", str(error)) from error
        await self._post(ACTIVITY_CONSUMER, activity.event_id, entry)

    async def post_collection(self, collection: WasteCollection) -> None:
        try:
            entry = entry_for_collection(
                collection, self.policy, self.catalogue, topics.LOCKER_EVENTS
            )
        except NoFactor as error:
            raise PermanentEventError("no_emission_factor", str(error)) from error
        except UnaccountableActivity as error:
            raise PermanentEventError("unaccountable_activity", str(error)) from error
        await self._post(LOCKER_CONSUMER, collection.event_id, entry)

    async def _post(self, consumer: str, event_id: str, entry: LedgerEntry) -> None:
        """Appends the entry and announces it, once per source event."""
        with tracer.start_as_current_span(
            "ledger post entry",
            attributes={"ledger.entry_id": entry.entry_id, "ledger.source_event_id": event_id},
        ):
            async with self.unit_of_work() as session:
                if not await claim_event(session, consumer, event_id):
                    return
                trace_id = current_trace_id()
                repository = LedgerRepository(session)
                if not await repository.append(entry, trace_id):
                    return
                await repository.add_to_inventory(entry)
                await add_to_outbox(
                    session,
                    self.names(topics.LEDGER_ENTRIES),
                    entry.municipality_id,
                    entry_posted_event(entry, trace_id),
                )

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
        after = _sequence_from_token(page_token, municipality_id, year)
        async with self.unit_of_work.read() as session:
            # One more than asked tells whether another page follows.
            posted = await LedgerRepository(session).entries(
                municipality_id, year, after, limit + 1
            )
        if len(posted) <= limit:
            return posted, ""
        page = posted[:limit]
        return page, _page_token(municipality_id, year, page[-1].sequence)


def _check_inventory_request(municipality_id: str, year: int) -> None:
    if not municipality_id:
        raise InvalidArgument("municipality_id", "required")
    if not FIRST_REPORTING_YEAR <= year <= 2100:
        raise InvalidArgument("year", f"must be a year from {FIRST_REPORTING_YEAR} to 2100")


def _page_token(municipality_id: str, year: int, last_sequence: int) -> str:
    text = f"{municipality_id}|{year}|{last_sequence}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def _sequence_from_token(page_token: str, municipality_id: str, year: int) -> int:
    """The last sequence of the previous page; the token must come from the same query."""
    if not page_token:
        return 0
    try:
        token_municipality, token_year, sequence = (
            base64.urlsafe_b64decode(page_token.encode()).decode().split("|")
        )
        if (token_municipality, int(token_year)) != (municipality_id, year):
            raise ValueError("token of another query")
        return int(sequence)
    except ValueError as error:
        raise InvalidArgument("page_token", "not a token of this query") from error
