"""emissions-ledger's use cases: post entries from events, answer inventories."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol, TypeVar

from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession

from emissions_ledger.adapters.events import entry_posted_events
from emissions_ledger.adapters.repository import (
    LedgerRepository,
    LineKey,
    PostedEntry,
    RecordedBatch,
    YearLock,
)
from emissions_ledger.domain import (
    FIRST_REPORTING_YEAR,
    MUNICIPAL_TIME_ZONE,
    ActivityBatch,
    ActivityUnits,
    AvoidedTripPolicy,
    EnergyCarrier,
    FactorCatalogue,
    FuelType,
    HourlyPricing,
    HourlyPricingPolicy,
    ImplausibleActivity,
    InvalidActivity,
    Inventory,
    LedgerEntry,
    NoFactor,
    SectorChange,
    UnaccountableActivity,
    VehicleActivity,
    WasteCollection,
    WasteDeposit,
    approach_key,
    batch_id,
    changes_per_sector,
    content_digest,
    entries_for_batch,
    entries_for_collection,
    entry_for_activity,
    hour_within,
    increments_per_line,
    line_source_id,
    restatement_entries,
)
from emissions_ledger.domain.covenant import (
    CovenantReport,
    EnergyContents,
    InvalidReportRequest,
    covenant_report,
)
from emissions_ledger.domain.entries import DEFAULT_METHOD
from emissions_ledger.domain.factors import InventoryMethod, gas_of_unit
from emissions_ledger.domain.inventory import InventoryLine, summarise
from emissions_ledger.domain.municipalities import Municipality
from emissions_ledger.domain.programmes import (
    GreenFleetsTally,
    MoloHubsTally,
    Programme,
    ProgrammeView,
    detours_within_metered,
)
from servicekit import topics
from servicekit.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
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


@dataclass(frozen=True)
class RestatementOutcome:
    """What a restatement posted: the changes per sector and the year's totals around it.
    restatement_id is empty when nothing needed restating."""

    restatement_id: str
    catalogue_version: str
    changes: list[SectorChange]
    before: Inventory
    after: Inventory

    @property
    def restated_entry_count(self) -> int:
        return sum(change.restated_entries for change in self.changes)


@dataclass(frozen=True)
class RecordedActivity:
    """What RecordActivity did: the batch's entries in line order (as posted, late when their
    year was locked), and whether they were posted by an earlier call with the same key."""

    batch: RecordedBatch
    entries: list[LedgerEntry]
    replayed: bool

    @property
    def kg_co2e(self) -> Decimal:
        return sum((entry.kg_co2e for entry in self.entries), Decimal(0))


# The most problems one refusal lists: they travel in the status's trailing metadata, which
# gRPC peers cap at a few kilobytes.
MAX_LISTED_PROBLEMS = 20


class Municipalities(Protocol):
    """Where the ledger finds a municipality's Covenant commitment: its own data file today,
    the registry's read model when that lands (both have this one method)."""

    async def municipality(self, municipality_id: str) -> Municipality | None: ...

    def caught_up(self) -> bool:
        """Whether the municipalities are known as the registry stated them at start."""
        ...


class MunicipalitiesNotKnownYet(RuntimeError):
    """The registry's changelog is still being read: an event is not priced until its
    municipality's method is known. The runtime starts the consumers once the read models caught
    up, so this happens only when the broker was away at start and they started regardless.
    Transient: the consumer retries the batch after a back-off, outside its transaction, while
    the read model catches up (waiting inside it would hold the database's writer turn the read
    model needs on SQLite)."""


class LedgerHandlers:
    def __init__(
        self,
        unit_of_work: UnitOfWork,
        names: TopicNames,
        catalogue: FactorCatalogue,
        policy: AvoidedTripPolicy,
        page_token_key: bytes,
        municipalities: Municipalities | None = None,
        energy_contents: EnergyContents | None = None,
        activity_units: ActivityUnits | None = None,
        hourly: HourlyPricingPolicy | None = None,
        hourly_status: Callable[[], str] | None = None,
    ) -> None:
        self.activity_units = activity_units or ActivityUnits((), 0)
        # Electricity priced by the hour (docs/ledger.md): which municipalities, which price
        # area; and what the fetcher last found, for the note on an entry it could not price.
        self.hourly = hourly if hourly is not None and hourly.enabled else None
        self.hourly_status = hourly_status or (lambda: "no source of hourly intensities")
        self.municipalities = municipalities
        self.energy_contents = energy_contents or EnergyContents(())
        self.unit_of_work = unit_of_work
        # Signs page tokens, so a forged one cannot make a listing jump or scan.
        self.page_token_key = page_token_key
        self.names = names
        self.catalogue = catalogue
        self.policy = policy

    async def methods_of(self, municipality_ids: Iterable[str]) -> dict[str, InventoryMethod]:
        """Each municipality's method (factor approach and unit), from its commitment; IPCC in
        t CO2 for one without (or unknown to the registry)."""
        methods: dict[str, InventoryMethod] = {}
        for municipality_id in set(municipality_ids):
            municipality = (
                None
                if self.municipalities is None
                else await self.municipalities.municipality(municipality_id)
            )
            methods[municipality_id] = (
                DEFAULT_METHOD if municipality is None else municipality.method
            )
        return methods

    async def _methods_for_posting(
        self, municipality_ids: Iterable[str]
    ) -> dict[str, InventoryMethod]:
        """The methods to price events in; refused (MunicipalitiesNotKnownYet) until the
        registry's changelog is read at start, so that no event is priced in a method its
        municipality left before the ledger started."""
        if self.municipalities is not None and not self.municipalities.caught_up():
            raise MunicipalitiesNotKnownYet("the partner registry's changelog is still being read")
        return await self.methods_of(municipality_ids)

    async def post_activities(
        self, activities: Sequence[Positioned[VehicleActivity]]
    ) -> list[Rejection]:
        """Posts the emission entry of each activity, priced in its municipality's method;
        returns the activities it cannot account."""
        methods = await self._methods_for_posting(
            activity.municipality_id for _, activity in activities
        )
        hourly = await self._hourly_pricing(activities)
        entries, rejections = _entries_for(
            activities,
            lambda activity: [
                entry_for_activity(
                    activity,
                    self.catalogue,
                    topics.ACTIVITY,
                    _this_year(),
                    methods[activity.municipality_id],
                    hourly=hourly,
                )
            ],
        )
        return [*rejections, *await self._post(entries)]

    async def _hourly_pricing(
        self, activities: Sequence[Positioned[VehicleActivity]]
    ) -> HourlyPricing | None:
        """Hourly pricing with the cached intensities of the hours the batch's electricity lies
        within (one read of the cache, in the batch's transaction); None when it is off."""
        if self.hourly is None:
            return None
        hours = self.hourly.hours_wanted(
            (activity.municipality_id, activity.period_start, activity.period_end)
            for _, activity in activities
            if activity.fuel_type is FuelType.ELECTRIC
        )
        intensities = {}
        if hours:
            async with self.unit_of_work.read() as session:
                intensities = await LedgerRepository(session).intensities_of_hours(
                    self.hourly.dataset, self.hourly.price_area, hours
                )
        return HourlyPricing(self.hourly, intensities, self.hourly_status())

    async def post_locker_events(
        self,
        deposits: Sequence[WasteDeposit],
        collections: Sequence[Positioned[WasteCollection]],
    ) -> list[Rejection]:
        """Remembers the deposits and posts the entries of each carrier collection, with the
        waste types of the deposits it took; returns the collections it cannot account."""
        if not collections:
            async with self.unit_of_work() as session:
                await LedgerRepository(session).record_deposits(deposits)
            return []
        methods = await self._methods_for_posting(
            collection.municipality_id for _, collection in collections
        )
        with tracer.start_as_current_span("ledger post entries") as span:
            return await self._post_locker_events(deposits, collections, methods, span)

    async def _post_locker_events(
        self,
        deposits: Sequence[WasteDeposit],
        collections: Sequence[Positioned[WasteCollection]],
        methods: Mapping[str, InventoryMethod],
        span: trace.Span,
    ) -> list[Rejection]:
        async with self.unit_of_work() as session:
            repository = LedgerRepository(session)
            await repository.record_deposits(deposits)
            waste_types = await repository.waste_types_of(
                {deposit_id for _, c in collections for deposit_id in c.deposit_ids}
            )
            known = [
                (
                    index,
                    replace(
                        collection,
                        waste_types=tuple(
                            waste_types[d] for d in collection.deposit_ids if d in waste_types
                        ),
                    ),
                )
                for index, collection in collections
            ]
            entries, rejections = _entries_for(
                known,
                lambda collection: entries_for_collection(
                    collection,
                    self.policy,
                    self.catalogue,
                    topics.LOCKER_EVENTS,
                    _this_year(),
                    methods[collection.municipality_id],
                ),
            )
            span.set_attribute("ledger.entry_count", len(entries))
            fresh, conflicts = await _not_posted(repository, entries)
            appended = await self._append(repository, session, fresh)
            span.set_attribute("ledger.appended_count", len(appended))
        return [*rejections, *conflicts]

    async def _post(self, entries: Sequence[Positioned[LedgerEntry]]) -> list[Rejection]:
        """Appends the entries the ledger does not hold yet, adds them to their inventory lines
        and announces them, in one transaction and a few statements however many there are.
        Returns the source events that reuse an event id the ledger holds with other content.

        No processed-event record is needed: an entry's unique source makes the append
        idempotent, and only the entries actually appended are counted and announced.
        """
        if not entries:
            return []
        with tracer.start_as_current_span(
            "ledger post entries", attributes={"ledger.entry_count": len(entries)}
        ) as span:
            async with self.unit_of_work() as session:
                repository = LedgerRepository(session)
                fresh, conflicts = await _not_posted(repository, entries)
                appended = await self._append(repository, session, fresh)
                span.set_attribute("ledger.appended_count", len(appended))
        return conflicts

    async def _append(
        self, repository: LedgerRepository, session: AsyncSession, entries: Sequence[LedgerEntry]
    ) -> list[LedgerEntry]:
        """Appends, counts and announces, within the caller's transaction; the entries appended."""
        # The producer's trace when the batch carries one, else the batch's own.
        trace_id = current_trace_id()
        appended = await repository.append(entries, trace_id)
        if not appended:
            return []
        await repository.add_to_inventory(increments_per_line(appended))
        topic = self.names(topics.LEDGER_ENTRIES)
        await add_many_to_outbox(
            session,
            (
                (topic, entry.municipality_id, event)
                for entry, event in zip(
                    appended, entry_posted_events(appended, trace_id), strict=True
                )
            ),
        )
        return appended

    async def restate(
        self, municipality_id: str, year: int, requested_by: str
    ) -> RestatementOutcome:
        """Re-prices the year's current entries with today's catalogue, posting a reversal and
        a replacement for each entry priced otherwise; nothing when none is. Prices in the
        municipality's method: a year priced in another approach is re-priced in its own.
        Electricity of a municipality priced by the hour is re-priced with the intensity of its
        hour where that arrived after the entry was posted with the yearly factor."""
        _check_inventory_request(municipality_id, year)
        method = (await self.methods_of([municipality_id]))[municipality_id]
        restatement_id = str(uuid.uuid4())
        with tracer.start_as_current_span(
            "ledger restate", attributes={"ledger.year": year}
        ) as span:
            async with self.unit_of_work() as session:
                repository = LedgerRepository(session)
                before = await repository.inventory(municipality_id, year)
                hourly = (
                    self.hourly if self.hourly and self.hourly.applies_to(municipality_id) else None
                )
                candidates = await _restatement_candidates(
                    repository, self.catalogue, municipality_id, year, hourly, method
                )
                pricing = None
                if hourly is not None:
                    pricing = await _hourly_pricing_of(repository, hourly, candidates)
                entries = restatement_entries(
                    candidates, self.catalogue, restatement_id, pricing, method
                )
                appended = await self._append(repository, session, entries)
                span.set_attribute("ledger.appended_count", len(appended))
                if not appended:
                    return RestatementOutcome("", self.catalogue.version, [], before, before)
                changes = changes_per_sector(appended)
                await repository.record_restatement(
                    restatement_id,
                    municipality_id,
                    year,
                    self.catalogue.version,
                    requested_by,
                    changes,
                )
                after = await repository.inventory(municipality_id, year)
        return RestatementOutcome(restatement_id, self.catalogue.version, changes, before, after)

    async def record_activity(
        self, batch: ActivityBatch, recorded_by: str, validate_only: bool = False
    ) -> RecordedActivity:
        """Posts one entry per reported line, all or none: a line the ledger cannot account
        refuses the batch, naming every problem. A batch whose key the municipality used before
        posts nothing: the same lines answer what the first call posted, other lines are
        refused. With validate_only, answers what would be posted and keeps nothing."""
        digest = content_digest(batch)
        method = (await self.methods_of([batch.municipality_id]))[batch.municipality_id]
        with tracer.start_as_current_span(
            "ledger record activity", attributes={"ledger.line_count": len(batch.lines)}
        ) as span:
            async with self.unit_of_work() as session:
                repository = LedgerRepository(session)
                earlier = await _replay(repository, batch, digest)
                if earlier is not None:
                    return earlier
                recorded = RecordedBatch(
                    municipality_id=batch.municipality_id,
                    idempotency_key=batch.idempotency_key,
                    batch_id=batch_id(batch.municipality_id, batch.idempotency_key),
                    content_digest=digest,
                    line_count=len(batch.lines),
                    recorded_by=recorded_by,
                    recorded_at=datetime.now(UTC),
                )
                try:
                    entries = entries_for_batch(
                        batch,
                        self.catalogue,
                        self.activity_units,
                        recorded_by,
                        recorded.recorded_at,
                        _this_year(),
                        method,
                    )
                except InvalidActivity as error:
                    listed = [(p.path, p.reason) for p in error.problems[:MAX_LISTED_PROBLEMS]]
                    unlisted = len(error.problems) - len(listed)
                    if unlisted:
                        listed.append(("lines", f"{unlisted} more problems not listed"))
                    raise InvalidArgument(*listed[0], more=listed[1:]) from error
                if validate_only:
                    return RecordedActivity(recorded, entries, replayed=False)
                if not await repository.record_activity_batch(recorded):
                    # Another call with this key committed first: answer as it did.
                    again = await _replay(repository, batch, digest)
                    assert again is not None
                    return again
                appended = {e.entry_id: e for e in await self._append(repository, session, entries)}
                span.set_attribute("ledger.appended_count", len(appended))
        return RecordedActivity(
            recorded, [appended.get(e.entry_id, e) for e in entries], replayed=False
        )

    async def lock_year(
        self, municipality_id: str, year: int, locked_by: str, reason: str
    ) -> YearLock:
        _check_inventory_request(municipality_id, year)
        async with self.unit_of_work() as session:
            return await LedgerRepository(session).lock_year(
                municipality_id, year, locked_by, reason
            )

    async def covenant_report(
        self, municipality_id: str, baseline_year: int, monitoring_year: int
    ) -> CovenantReport:
        """BEI and MEI of one municipality, with its commitment's targets and trajectory. The
        baseline year is the one asked for, else the commitment's."""
        municipality = (
            None
            if self.municipalities is None
            else await self.municipalities.municipality(municipality_id)
        )
        if municipality is None or municipality.commitment is None:
            raise NotFound(f"no Covenant commitment is known for {municipality_id!r}")
        commitment = municipality.commitment
        baseline_year = baseline_year or commitment.baseline_year or 0
        if not baseline_year:
            raise FailedPrecondition(
                f"the commitment of {municipality_id!r} states no baseline year: name one"
            )
        _check_inventory_request(municipality_id, baseline_year)
        _check_inventory_request(municipality_id, monitoring_year)
        method = commitment.method
        async with self.unit_of_work.read() as session:
            repository = LedgerRepository(session)
            for year in sorted({baseline_year, monitoring_year}):
                await _require_priced_in(repository, municipality_id, year, method)
            baseline = await repository.inventory(municipality_id, baseline_year)
            monitoring = await repository.inventory(municipality_id, monitoring_year)
            baseline_left_out = await _detours_within_metered(
                repository, municipality_id, baseline_year
            )
            monitoring_left_out = await _detours_within_metered(
                repository, municipality_id, monitoring_year
            )
        try:
            return covenant_report(
                municipality_id,
                commitment,
                baseline,
                monitoring,
                self.energy_contents,
                method,
                baseline_left_out,
                monitoring_left_out,
            )
        except InvalidReportRequest as error:
            raise InvalidArgument("monitoring_year", str(error)) from error

    async def programme_view(
        self, municipality_id: str, year: int, programme: Programme
    ) -> ProgrammeView:
        """A programme's view of the year, over the same entries as the Covenant report."""
        _check_inventory_request(municipality_id, year)
        method = (await self.methods_of([municipality_id]))[municipality_id]
        async with self.unit_of_work.read() as session:
            repository = LedgerRepository(session)
            if programme is Programme.GREEN_FLEETS:
                fleets = GreenFleetsTally()
                async for entry in repository.metered_entries_from(
                    municipality_id, year, topics.ACTIVITY
                ):
                    fleets.add(entry)
                return ProgrammeView(municipality_id, year, method, green_fleets=fleets.view())
            since = datetime(year, 1, 1, tzinfo=MUNICIPAL_TIME_ZONE)
            until = datetime(year + 1, 1, 1, tzinfo=MUNICIPAL_TIME_ZONE)
            hubs = MoloHubsTally(
                await repository.deposit_totals(municipality_id, since, until),
                await repository.metered_owners(municipality_id, year),
            )
            for entry in await repository.collection_entries(municipality_id, year):
                hubs.add(entry)
            return ProgrammeView(municipality_id, year, method, molo_hubs=hubs.view())

    async def inventory(self, municipality_id: str, year: int) -> Inventory:
        _check_inventory_request(municipality_id, year)
        async with self.unit_of_work.read() as session:
            return await LedgerRepository(session).inventory(municipality_id, year)

    async def entries(
        self,
        municipality_id: str,
        year: int,
        page_size: int,
        page_token: str,
        line: LineKey | None = None,
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
                municipality_id, year, after, limit + 1, line
            )
        if len(posted) <= limit:
            return posted, ""
        page = posted[:limit]
        return page, _page_token(municipality_id, year, page[-1].sequence, self.page_token_key)


async def _require_priced_in(
    repository: LedgerRepository, municipality_id: str, year: int, method: InventoryMethod
) -> None:
    """FAILED_PRECONDITION unless every current entry of the year is priced in `method`: a
    report never mixes approaches or units, nor puts a baseline and a monitoring inventory of
    different methods side by side. A municipality that changed its method restates the year."""
    others = sorted(
        f"{approach_key(approach)} in {gas_of_unit(unit)}"
        for approach, unit in await repository.pricing_methods(municipality_id, year)
        if (approach_key(approach), gas_of_unit(unit)) != (method.approach, method.gas)
    )
    if others:
        raise FailedPrecondition(
            f"entries of {municipality_id!r} in {year} are priced {', '.join(others)}, but the "
            f"municipality reports {method.approach} in {method.reporting_unit}: restate {year} "
            "(RestateInventory) first; a carrier without a factor in that method keeps its "
            "entries as they are"
        )


async def _detours_within_metered(
    repository: LedgerRepository, municipality_id: str, year: int
) -> tuple[InventoryLine, ...]:
    """The year's modelled detours whose carrier's fuel is metered, as inventory lines."""
    detours = detours_within_metered(
        await repository.collection_entries(municipality_id, year),
        await repository.metered_owners(municipality_id, year),
    )
    return summarise(municipality_id, year, detours).lines


# Far above any token the ledger issues; longer input is refused before it is decoded.
MAX_PAGE_TOKEN_LENGTH = 512


async def _restatement_candidates(
    repository: LedgerRepository,
    catalogue: FactorCatalogue,
    municipality_id: str,
    year: int,
    hourly: HourlyPricingPolicy | None,
    method: InventoryMethod = DEFAULT_METHOD,
) -> list[LedgerEntry]:
    """The year's current entries the catalogue may price otherwise now, in the
    municipality's `method` (all of them, when they are priced in another); with hourly pricing,
    for electricity: those priced with a yearly factor other than today's, and those priced
    with a yearly factor whose hour is cached now (hourly ones stay as they are)."""
    candidates: dict[str, LedgerEntry] = {}
    for carrier, approach in await repository.pricing_groups(municipality_id, year):
        try:
            factor = catalogue.for_method(EnergyCarrier(carrier), year, method)
        except NoFactor:
            continue
        by_the_hour = hourly is not None and carrier == EnergyCarrier.ELECTRICITY
        found = await repository.current_entries_priced_otherwise(
            municipality_id, year, carrier, approach, factor, include_hourly=not by_the_hour
        )
        if hourly is not None and by_the_hour:
            found += await repository.current_entries_of_known_hours(
                municipality_id, year, carrier, approach, hourly.dataset, hourly.price_area
            )
        candidates.update((entry.entry_id, entry) for entry in found)
    return list(candidates.values())


async def _hourly_pricing_of(
    repository: LedgerRepository, hourly: HourlyPricingPolicy, entries: Sequence[LedgerEntry]
) -> HourlyPricing:
    """Hourly pricing with the cached intensities of the hours these entries lie within."""
    hours = {hour_within(entry.activity_started_at, entry.activity_at) for entry in entries}
    intensities = await repository.intensities_of_hours(
        hourly.dataset, hourly.price_area, {hour for hour in hours if hour is not None}
    )
    return HourlyPricing(hourly, intensities, "not cached when restated")


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
    sources: Sequence[Positioned[SourceT]],
    entries_for: Callable[[SourceT], Sequence[LedgerEntry]],
) -> tuple[list[Positioned[LedgerEntry]], list[Rejection]]:
    """The entries of each source event (with the event's position in the batch), and a
    rejection for each the domain cannot account."""
    entries: list[Positioned[LedgerEntry]] = []
    rejections: list[Rejection] = []
    for index, source in sources:
        try:
            entries.extend((index, entry) for entry in entries_for(source))
        except NoFactor as error:
            rejections.append(Rejection(index, "no_emission_factor", str(error)))
        except ImplausibleActivity as error:
            rejections.append(Rejection(index, error.reason, str(error)))
        except UnaccountableActivity as error:
            rejections.append(Rejection(index, "unaccountable_activity", str(error)))
    return entries, rejections


def _this_year() -> int:
    """The current reporting year: later ones are in the future, so not plausible yet."""
    return datetime.now(MUNICIPAL_TIME_ZONE).year


def _source_content(entries: Sequence[LedgerEntry]) -> frozenset[tuple[object, ...]]:
    """What a source event's entries take from it: two events with one id and other content
    differ here (factors, the policy and the year's lock are the ledger's own)."""
    return frozenset(
        (
            entry.kind,
            entry.basis,
            entry.municipality_id,
            entry.year,
            entry.sector,
            entry.subsector,
            entry.energy_carrier,
            entry.activity_amount,
            entry.activity_unit,
            entry.subject_id,
            entry.activity_at,
        )
        for entry in entries
    )


async def _replay(
    repository: LedgerRepository, batch: ActivityBatch, digest: str
) -> RecordedActivity | None:
    """What an earlier call with the batch's key recorded (None when there was none), or
    ALREADY_EXISTS when it recorded other lines under that key."""
    earlier = await repository.activity_batch(batch.municipality_id, batch.idempotency_key)
    if earlier is None:
        return None
    if earlier.content_digest != digest:
        raise AlreadyExists(
            f"idempotency key {batch.idempotency_key!r} was used on "
            f"{earlier.recorded_at:%Y-%m-%d %H:%M} UTC by {earlier.recorded_by} for other "
            "activity: choose a new key for new activity"
        )
    sources = [line_source_id(earlier.batch_id, i) for i in range(earlier.line_count)]
    held = await repository.posted_for_sources(sources)
    entries = [entry for source in sources for entry in held.get(source, [])]
    return RecordedActivity(earlier, entries, replayed=True)


async def _not_posted(
    repository: LedgerRepository, entries: Sequence[Positioned[LedgerEntry]]
) -> tuple[list[LedgerEntry], list[Rejection]]:
    """The entries of the source events the ledger holds no entry for yet; and a
    `duplicate_event_conflict` for each source event whose id the ledger holds, or an earlier
    event of the batch had, with other content. A redelivery (same content) is neither.

    One query per batch, for the original postings of the batch's source ids (restatements
    re-price, they do not change what the event said). A source's entries are compared as a
    whole: a collection's detour decides which entries it posts."""
    by_source: dict[str, list[Positioned[LedgerEntry]]] = {}
    for index, entry in entries:
        by_source.setdefault(entry.source_event_id, []).append((index, entry))
    held = await repository.posted_for_sources(list(by_source))
    fresh: list[LedgerEntry] = []
    conflicts: list[Rejection] = []
    for source_event_id, positioned in by_source.items():
        per_event: dict[int, list[LedgerEntry]] = {}
        for index, entry in positioned:
            per_event.setdefault(index, []).append(entry)
        first = held.get(source_event_id)
        for index, event_entries in per_event.items():
            # Content is compared only when the id was seen before: rarely, so computed then.
            if first is None:
                first = event_entries
                fresh.extend(event_entries)
            elif _source_content(first) != _source_content(event_entries):
                conflicts.append(
                    Rejection(
                        index,
                        "duplicate_event_conflict",
                        f"event id {source_event_id!r} was accounted before with other content",
                    )
                )
    return fresh, conflicts
