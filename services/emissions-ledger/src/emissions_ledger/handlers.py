"""emissions-ledger's use cases: post entries from events, answer inventories."""

from __future__ import annotations

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

    async def entries(self, municipality_id: str, year: int) -> list[PostedEntry]:
        _check_inventory_request(municipality_id, year)
        async with self.unit_of_work.read() as session:
            return await LedgerRepository(session).entries(municipality_id, year)


def _check_inventory_request(municipality_id: str, year: int) -> None:
    if not municipality_id:
        raise InvalidArgument("municipality_id", "required")
    if not FIRST_REPORTING_YEAR <= year <= 2100:
        raise InvalidArgument("year", f"must be a year from {FIRST_REPORTING_YEAR} to 2100")
