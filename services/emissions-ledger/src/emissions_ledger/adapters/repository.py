"""The ledger's entries in its database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from itertools import groupby
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    inspect,
    not_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from emissions_ledger.adapters.tables import (
    activity_batches,
    grid_intensity_hours,
    hub_deposits,
    inventory_lines,
    inventory_locks,
    inventory_versions,
    ledger_entries,
    restatements,
)
from emissions_ledger.domain import (
    AvoidedTrip,
    Basis,
    CollectionProvenance,
    EmissionFactor,
    EnergyCarrier,
    EntryKind,
    HourlyIntensity,
    Inventory,
    InventoryLine,
    LedgerEntry,
    LineIncrement,
    Posting,
    ReportedProvenance,
    SampleProvenance,
    Sector,
    SectorChange,
    Subsector,
    WasteDeposit,
    add_lines,
    hour_within,
    inventory_from_lines,
)
from emissions_ledger.domain.inventory import distance_km
from emissions_ledger.domain.programmes import DepositTotals
from servicekit.database import (
    add_exact,
    decimal_text,
    dialect_name,
    insert_rows,
    insert_statement,
    one_of,
    row_chunks,
)

# Entries read per round trip when a view streams a year's entries.
_STREAMED_ROWS = 1000


@dataclass(frozen=True)
class PostedEntry:
    """An entry as the ledger holds it, with the trace of the processing that posted it."""

    entry: LedgerEntry
    trace_id: str
    # Posting order within the ledger.
    sequence: int


@dataclass(frozen=True)
class LineKey:
    """One inventory line's key, to list the entries behind it."""

    sector: Sector
    subsector: Subsector
    energy_carrier: EnergyCarrier
    kind: EntryKind
    basis: Basis
    activity_unit: str

    def columns(self) -> dict[str, str]:
        return {
            "sector": self.sector.value,
            "subsector": self.subsector.value,
            "energy_carrier": self.energy_carrier.value,
            "kind": self.kind.value,
            "basis": self.basis.value,
            "activity_unit": self.activity_unit,
        }


@dataclass(frozen=True)
class YearLock:
    municipality_id: str
    year: int
    locked_at: datetime
    locked_by: str
    reason: str


@dataclass(frozen=True)
class RecordedBatch:
    """A batch of reported activity as the ledger remembers it."""

    municipality_id: str
    idempotency_key: str
    batch_id: str
    content_digest: str
    line_count: int
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True)
class InventorySnapshot:
    """One inventory's totals, its version and its last entry's sequence, read together."""

    inventory: Inventory
    version: int
    last_sequence: int


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def append(self, entries: Sequence[LedgerEntry], trace_id: str) -> list[LedgerEntry]:
        """Appends the entries the ledger does not hold yet; returns those, in the given order.

        The unique source of an entry (its event, kind, revision and posting) makes the append
        idempotent: an entry already posted, by this batch or an earlier delivery of it, is not
        posted again and not returned. Entries of a locked year are posted flagged late.

        The inventories' turns are taken first; then one query finds the entries held already,
        and the rest are inserted. Under the turns nothing else posts them meanwhile: on SQLite
        the one writer holds the database, so the rest are inserted with one executemany of
        the driver (`insert_rows`), which costs a fraction of SQLAlchemy's per-row parameter
        processing of this wide table. PostgreSQL still asks the database which rows it
        inserted (multi-row INSERT ... RETURNING, in `row_chunks`): another instance could post
        an event id reused with other content to another inventory at the same moment.
        """
        unique: dict[str, LedgerEntry] = {}
        for entry in entries:
            unique.setdefault(entry.entry_id, entry)
        if not unique:
            return []
        inventories = {(e.municipality_id, e.year) for e in unique.values()}
        await self._bump_versions(inventories)
        held, accounted = await self._held_sources({e.source_event_id for e in unique.values()})
        # An event is accounted once, all its entries together: one the ledger accounted
        # before (perhaps into other entries, as collections were before migration 7) adds none.
        unique = {
            entry_id: entry
            for entry_id, entry in unique.items()
            if _unique_source(entry) not in held
            and (entry.posting is not Posting.ORIGINAL or entry.source_event_id not in accounted)
        }
        if not unique:
            return []
        # After taking the inventories' turns: a lock committed before is seen here.
        locked = await self._locked_among(inventories)
        if locked:
            unique = {
                entry_id: replace(entry, late=True)
                if (entry.municipality_id, entry.year) in locked
                else entry
                for entry_id, entry in unique.items()
            }
        posted_at = datetime.now(UTC)
        factor_columns: dict[int, dict[str, Any]] = {}
        rows = []
        for entry in unique.values():
            # Entries priced with one factor share its columns (one dictionary per batch).
            factor = factor_columns.get(id(entry.factor))
            if factor is None:
                factor = factor_columns[id(entry.factor)] = _factor_columns(entry.factor)
            rows.append(_entry_row(entry, trace_id, posted_at, factor))
        if dialect_name(self.session) == "sqlite":
            inserted = await insert_rows(
                self.session, ledger_entries, rows, skip_conflicts_on=_UNIQUE_SOURCE
            )
            if inserted != len(rows):
                # Cannot happen: the writer's lock is held since the query above.
                raise RuntimeError(
                    f"{len(rows) - inserted} of {len(rows)} entries were posted meanwhile"
                )
            return list(unique.values())
        statement = (
            insert_statement(self.session, ledger_entries)
            .on_conflict_do_nothing(index_elements=_UNIQUE_SOURCE)
            .returning(ledger_entries.c.entry_id)
        )
        returned: set[str] = set()
        # Entries of one kind of source share their columns (`_entry_row`), sent together.
        for _, same_columns in groupby(rows, key=tuple):
            for chunk in row_chunks(list(same_columns)):
                returned.update((await self.session.execute(statement, chunk)).scalars())
        return [entry for entry in unique.values() if entry.entry_id in returned]

    async def posted_for_sources(
        self, source_event_ids: Sequence[str]
    ) -> dict[str, list[LedgerEntry]]:
        """The original postings the ledger holds for these source events, by source event id."""
        if not source_event_ids:
            return {}
        rows = (
            await self.session.execute(
                select(ledger_entries).where(
                    one_of(self.session, ledger_entries.c.source_event_id, set(source_event_ids)),
                    ledger_entries.c.posting == Posting.ORIGINAL.value,
                )
            )
        ).all()
        held: dict[str, list[LedgerEntry]] = {}
        for row in rows:
            held.setdefault(row.source_event_id, []).append(_entry_from_row(row))
        return held

    async def _bump_versions(self, inventories: set[tuple[str, int]]) -> None:
        """Takes each inventory's turn (its version row, locked until commit) before any of its
        entries is given a sequence number, so that one inventory's entries commit in sequence
        order. Rows are locked in key order: two postings never wait for each other in a circle.
        """
        statement = insert_statement(self.session, inventory_versions).values(
            [
                {"municipality_id": municipality_id, "year": year, "version": 1}
                for municipality_id, year in sorted(inventories)
            ]
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["municipality_id", "year"],
                set_={"version": inventory_versions.c.version + 1},
            )
        )

    async def add_to_inventory(self, increments: Sequence[LineIncrement]) -> None:
        """Adds each increment to its line's running total, creating lines that are new.

        The addition happens in the database (INSERT ... ON CONFLICT DO UPDATE SET total =
        total + excluded), never read, added and written back: on PostgreSQL, a transaction
        that meets a line another one is creating waits for it and then adds to it, so
        concurrent first postings to a line both count.
        """
        for chunk in row_chunks(increments):
            statement = insert_statement(self.session, inventory_lines).values(
                [
                    {
                        "municipality_id": increment.municipality_id,
                        "year": increment.year,
                        **_line_key_of(increment.line),
                        **_line_totals(increment.line),
                    }
                    for increment in chunk
                ]
            )
            added = statement.excluded
            await self.session.execute(
                statement.on_conflict_do_update(
                    index_elements=[column.name for column in inventory_lines.primary_key],
                    set_={
                        "activity_amount": add_exact(
                            self.session,
                            inventory_lines.c.activity_amount,
                            added.activity_amount,
                        ),
                        "kg_co2e": add_exact(
                            self.session, inventory_lines.c.kg_co2e, added.kg_co2e
                        ),
                        "entry_count": inventory_lines.c.entry_count + added.entry_count,
                        "distance_km": add_exact(
                            self.session, inventory_lines.c.distance_km, added.distance_km
                        ),
                        "entries_without_distance": inventory_lines.c.entries_without_distance
                        + added.entries_without_distance,
                    },
                )
            )

    async def inventory(self, municipality_id: str, year: int) -> Inventory:
        rows = (
            await self.session.execute(
                select(inventory_lines).filter_by(municipality_id=municipality_id, year=year)
            )
        ).all()
        inventory = inventory_from_lines(
            municipality_id, year, [_line_from_row(row) for row in rows]
        )
        lock = await self.lock_of(municipality_id, year)
        if lock is None:
            return inventory
        late = await self.session.scalar(
            select(func.count())
            .select_from(ledger_entries)
            .where(ledger_entries.c.municipality_id == municipality_id)
            .where(ledger_entries.c.year == year)
            .where(ledger_entries.c.late.is_(True))
        )
        return replace(inventory, locked_at=lock.locked_at, late_entry_count=int(late or 0))

    async def _held_sources(
        self, source_event_ids: set[str]
    ) -> tuple[set[tuple[str, str, int, str]], set[str]]:
        """The unique sources (`_unique_source`) the ledger holds among these events' entries,
        and the events it holds an original posting of."""
        rows = (
            await self.session.execute(
                select(
                    ledger_entries.c.source_event_id,
                    ledger_entries.c.kind,
                    ledger_entries.c.revision,
                    ledger_entries.c.posting,
                ).where(one_of(self.session, ledger_entries.c.source_event_id, source_event_ids))
            )
        ).all()
        held = {(row.source_event_id, row.kind, row.revision, row.posting) for row in rows}
        accounted = {row.source_event_id for row in rows if row.posting == Posting.ORIGINAL.value}
        return held, accounted

    async def activity_batch(
        self, municipality_id: str, idempotency_key: str
    ) -> RecordedBatch | None:
        row = (
            await self.session.execute(
                select(activity_batches).filter_by(
                    municipality_id=municipality_id, idempotency_key=idempotency_key
                )
            )
        ).first()
        if row is None:
            return None
        return RecordedBatch(
            row.municipality_id,
            row.idempotency_key,
            row.batch_id,
            row.content_digest,
            row.line_count,
            row.recorded_by,
            row.recorded_at,
        )

    async def record_activity_batch(self, batch: RecordedBatch) -> bool:
        """Remembers the batch unless its key is taken (a concurrent call with the same key
        waits here for the other to commit); whether this call took it."""
        statement = (
            insert_statement(self.session, activity_batches)
            .values(
                municipality_id=batch.municipality_id,
                idempotency_key=batch.idempotency_key,
                batch_id=batch.batch_id,
                content_digest=batch.content_digest,
                line_count=batch.line_count,
                recorded_by=batch.recorded_by,
                recorded_at=batch.recorded_at,
            )
            .on_conflict_do_nothing(index_elements=["municipality_id", "idempotency_key"])
            .returning(activity_batches.c.batch_id)
        )
        return (await self.session.execute(statement)).first() is not None

    async def record_deposits(self, deposits: Sequence[WasteDeposit]) -> None:
        """Remembers deposits (once each), for the waste types of the collections to come."""
        if not deposits:
            return
        statement = insert_statement(self.session, hub_deposits).on_conflict_do_nothing(
            index_elements=["deposit_id"]
        )
        unique = {deposit.deposit_id: deposit for deposit in deposits}
        await self.session.execute(
            statement,
            [
                {
                    "deposit_id": deposit.deposit_id,
                    "hub_id": deposit.hub_id,
                    "municipality_id": deposit.municipality_id,
                    "waste_type": deposit.waste_type,
                    "hazardous": deposit.hazardous,
                    "mass_g": deposit.mass_g,
                    "deposited_at": deposit.deposited_at,
                    "source_event_id": deposit.event_id,
                }
                for deposit in unique.values()
            ],
        )

    async def waste_types_of(self, deposit_ids: set[str]) -> dict[str, str]:
        """The waste type of each deposit the ledger saw, by deposit id."""
        if not deposit_ids:
            return {}
        rows = await self.session.execute(
            select(hub_deposits.c.deposit_id, hub_deposits.c.waste_type).where(
                one_of(self.session, hub_deposits.c.deposit_id, deposit_ids)
            )
        )
        return {row.deposit_id: row.waste_type for row in rows}

    async def _locked_among(self, inventories: set[tuple[str, int]]) -> set[tuple[str, int]]:
        municipalities = {municipality_id for municipality_id, _ in inventories}
        rows = (
            await self.session.execute(
                select(inventory_locks.c.municipality_id, inventory_locks.c.year).where(
                    inventory_locks.c.municipality_id.in_(municipalities)
                )
            )
        ).all()
        return {(row.municipality_id, row.year) for row in rows} & inventories

    async def lock_of(self, municipality_id: str, year: int) -> YearLock | None:
        row = (
            await self.session.execute(
                select(inventory_locks).filter_by(municipality_id=municipality_id, year=year)
            )
        ).first()
        if row is None:
            return None
        return YearLock(row.municipality_id, row.year, row.locked_at, row.locked_by, row.reason)

    async def lock_year(
        self, municipality_id: str, year: int, locked_by: str, reason: str
    ) -> YearLock:
        """Locks the year unless it is locked already; the lock in force. Takes the
        inventory's turn first, so that every posting commits either before the lock or
        after it, flagged late."""
        await self._bump_versions({(municipality_id, year)})
        existing = await self.lock_of(municipality_id, year)
        if existing is not None:
            return existing
        lock = YearLock(municipality_id, year, datetime.now(UTC), locked_by, reason)
        await self.session.execute(
            insert(inventory_locks).values(
                municipality_id=municipality_id,
                year=year,
                locked_at=lock.locked_at,
                locked_by=locked_by,
                reason=reason,
            )
        )
        return lock

    async def pricing_groups(self, municipality_id: str, year: int) -> list[tuple[str, str]]:
        """The (energy carrier, factor approach) pairs the year's entries are priced in."""
        rows = (
            await self.session.execute(
                select(ledger_entries.c.energy_carrier, ledger_entries.c.factor_approach)
                .where(ledger_entries.c.municipality_id == municipality_id)
                .where(ledger_entries.c.year == year)
                .distinct()
            )
        ).all()
        return sorted((row.energy_carrier, row.factor_approach) for row in rows)

    async def current_entries_priced_otherwise(
        self,
        municipality_id: str,
        year: int,
        carrier: str,
        approach: str,
        factor: EmissionFactor,
        include_hourly: bool = True,
    ) -> list[LedgerEntry]:
        """The year's current entries (neither reversals nor reversed) of one carrier and
        approach whose factor differs from `factor` by id, version, value or provisional mark,
        in posting order; without the hourly-priced ones unless `include_hourly`. The value is
        compared as text here; the caller compares exactly."""
        entries = ledger_entries.c
        query = (
            self._current_entries(municipality_id, year, carrier, approach)
            .where(
                not_(
                    and_(
                        entries.factor_id == factor.factor_id,
                        entries.factor_version == factor.version,
                        entries.factor_value == decimal_text(factor.value),
                        entries.factor_provisional.is_(factor.provisional),
                    )
                )
            )
            .order_by(entries.sequence)
        )
        if not include_hourly:
            query = query.where(entries.factor_hourly.is_(False))
        rows = (await self.session.execute(query)).all()
        return [_entry_from_row(row) for row in rows]

    async def current_entries_of_known_hours(
        self,
        municipality_id: str,
        year: int,
        carrier: str,
        approach: str,
        dataset: str,
        price_area: str,
    ) -> list[LedgerEntry]:
        """The year's current entries of one carrier and approach priced with a yearly factor
        although the hour their activity lies within has a cached intensity, in posting order:
        those that hourly pricing would price otherwise now."""
        entries = ledger_entries.c
        hours = grid_intensity_hours.c
        rows = (
            await self.session.execute(
                self._current_entries(municipality_id, year, carrier, approach)
                .join(
                    grid_intensity_hours,
                    and_(
                        hours.hour_start == entries.activity_hour,
                        hours.dataset == dataset,
                        hours.price_area == price_area,
                    ),
                )
                .where(entries.factor_hourly.is_(False))
                .order_by(entries.sequence)
            )
        ).all()
        return [_entry_from_row(row) for row in rows]

    def _current_entries(self, municipality_id: str, year: int, carrier: str, approach: str) -> Any:
        """Select the year's current entries (neither reversals nor reversed) of one carrier
        and approach."""
        entries = ledger_entries.c
        reversed_already = _reversal_of(ledger_entries)
        return (
            select(ledger_entries)
            .where(entries.municipality_id == municipality_id)
            .where(entries.year == year)
            .where(entries.energy_carrier == carrier)
            .where(entries.factor_approach == approach)
            .where(entries.posting != Posting.REVERSAL.value)
            .where(~exists(reversed_already))
        )

    async def intensities_of_hours(
        self, dataset: str, price_area: str, hours: set[datetime]
    ) -> dict[datetime, HourlyIntensity]:
        """The cached intensities of these hours (hour start -> intensity); unknown ones absent."""
        if not hours:
            return {}
        rows = (
            await self.session.execute(
                select(grid_intensity_hours).where(
                    grid_intensity_hours.c.dataset == dataset,
                    grid_intensity_hours.c.price_area == price_area,
                    grid_intensity_hours.c.hour_start.in_(hours),
                )
            )
        ).all()
        return {row.hour_start: _intensity_from_row(row) for row in rows}

    async def cached_hours(
        self, dataset: str, price_area: str, since: datetime, until: datetime
    ) -> set[datetime]:
        """The hours from `since` (inclusive) to `until` (exclusive) whose intensity is cached."""
        rows = await self.session.execute(
            select(grid_intensity_hours.c.hour_start).where(
                grid_intensity_hours.c.dataset == dataset,
                grid_intensity_hours.c.price_area == price_area,
                grid_intensity_hours.c.hour_start >= since,
                grid_intensity_hours.c.hour_start < until,
            )
        )
        return set(rows.scalars())

    async def store_intensities(self, intensities: Sequence[HourlyIntensity]) -> int:
        """Caches hours not cached yet; an hour cached before keeps its value (never replaced).
        Returns how many were new."""
        if not intensities:
            return 0
        statement = (
            insert_statement(self.session, grid_intensity_hours)
            .on_conflict_do_nothing(index_elements=["dataset", "price_area", "hour_start"])
            .returning(grid_intensity_hours.c.hour_start)
        )
        rows = [
            {
                "dataset": intensity.dataset,
                "price_area": intensity.price_area,
                "hour_start": intensity.hour_start,
                "g_co2_per_kwh": decimal_text(intensity.g_co2_per_kwh),
                "five_minute_values": intensity.five_minute_values,
                "fetched_at": intensity.fetched_at,
            }
            for intensity in intensities
        ]
        stored = 0
        for chunk in row_chunks(rows):
            stored += len((await self.session.execute(statement, chunk)).scalars().all())
        return stored

    async def pricing_methods(self, municipality_id: str, year: int) -> set[tuple[str, str]]:
        """The (factor approach, factor unit) pairs the year's current entries are priced in:
        neither reversals nor entries a restatement reversed. One read of the year's entries."""
        entries = ledger_entries.c
        reversed_already = _reversal_of(ledger_entries)
        rows = await self.session.execute(
            select(entries.factor_approach, entries.factor_unit)
            .where(entries.municipality_id == municipality_id)
            .where(entries.year == year)
            .where(entries.posting != Posting.REVERSAL.value)
            .where(~exists(reversed_already))
            .distinct()
        )
        return {(row.factor_approach, row.factor_unit) for row in rows}

    async def metered_owners(self, municipality_id: str, year: int) -> frozenset[str]:
        """The partners whose vehicles' activity the ledger holds, metered, for the year."""
        entries = ledger_entries.c
        rows = await self.session.execute(
            select(entries.owner_partner_id)
            .where(entries.municipality_id == municipality_id)
            .where(entries.year == year)
            .where(entries.basis == Basis.METERED.value)
            .where(entries.owner_partner_id.is_not(None))
            .distinct()
        )
        return frozenset(rows.scalars())

    async def collection_entries(self, municipality_id: str, year: int) -> list[LedgerEntry]:
        """The year's entries of carrier collections (avoided trips and detours), every
        posting, in posting order."""
        rows = (
            await self.session.execute(
                select(ledger_entries)
                .where(ledger_entries.c.municipality_id == municipality_id)
                .where(ledger_entries.c.year == year)
                .where(ledger_entries.c.basis == Basis.MODELLED.value)
                .order_by(ledger_entries.c.sequence)
            )
        ).all()
        return [entry for entry in map(_entry_from_row, rows) if entry.collection is not None]

    async def metered_entries_from(
        self, municipality_id: str, year: int, source_topic: str
    ) -> AsyncIterator[LedgerEntry]:
        """The year's metered entries from one topic, every posting, streamed: a year of fleet
        activity can hold far more entries than one read should hold in memory."""
        entries = ledger_entries.c
        result = await self.session.stream(
            select(ledger_entries)
            .where(entries.municipality_id == municipality_id)
            .where(entries.year == year)
            .where(entries.source_topic == source_topic)
            .where(entries.basis == Basis.METERED.value)
            .execution_options(yield_per=_STREAMED_ROWS)
        )
        async for row in result:
            yield _entry_from_row(row)

    async def deposit_totals(
        self, municipality_id: str, since: datetime, until: datetime
    ) -> DepositTotals:
        """How many deposits the ledger saw at the municipality's hubs in [since, until), their
        mass and the mass of the hazardous ones."""
        deposits = hub_deposits.c
        row = (
            await self.session.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(deposits.mass_g), 0),
                    func.coalesce(
                        func.sum(case((deposits.hazardous.is_(True), deposits.mass_g), else_=0)),
                        0,
                    ),
                )
                .where(deposits.municipality_id == municipality_id)
                .where(deposits.deposited_at >= since)
                .where(deposits.deposited_at < until)
            )
        ).one()
        return DepositTotals(int(row[0]), int(row[1]), int(row[2]))

    async def record_restatement(
        self,
        restatement_id: str,
        municipality_id: str,
        year: int,
        catalogue_version: str,
        requested_by: str,
        changes: Sequence[SectorChange],
    ) -> None:
        await self.session.execute(
            insert(restatements).values(
                restatement_id=restatement_id,
                municipality_id=municipality_id,
                year=year,
                catalogue_version=catalogue_version,
                requested_by=requested_by,
                requested_at=datetime.now(UTC),
                restated_entry_count=sum(change.restated_entries for change in changes),
                changes=[
                    {
                        "sector": change.sector.value,
                        "subsector": change.subsector.value,
                        "kind": change.kind.value,
                        "kg_before": decimal_text(change.kg_before),
                        "kg_after": decimal_text(change.kg_after),
                        "restated_entries": change.restated_entries,
                    }
                    for change in changes
                ],
            )
        )

    async def entries(
        self,
        municipality_id: str,
        year: int,
        after_sequence: int,
        limit: int,
        line: LineKey | None = None,
    ) -> list[PostedEntry]:
        """Entries in posting order, from just after `after_sequence` (0: from the start);
        with `line`, only those behind that inventory line."""
        query = (
            select(ledger_entries)
            .where(ledger_entries.c.municipality_id == municipality_id)
            .where(ledger_entries.c.year == year)
            .where(ledger_entries.c.sequence > after_sequence)
        )
        if line is not None:
            for name, value in line.columns().items():
                query = query.where(ledger_entries.c[name] == value)
        rows = (
            await self.session.execute(query.order_by(ledger_entries.c.sequence).limit(limit))
        ).all()
        return [PostedEntry(_entry_from_row(row), row.trace_id, row.sequence) for row in rows]

    async def inventory_version(self, municipality_id: str, year: int) -> int:
        """How many postings the inventory has had (0: none yet); changes with each posting."""
        version = await self.session.scalar(
            select(inventory_versions.c.version).filter_by(
                municipality_id=municipality_id, year=year
            )
        )
        return int(version or 0)

    async def inventory_snapshot(self, municipality_id: str, year: int) -> InventorySnapshot:
        """The totals with the version and last sequence they correspond to; the session must
        be a snapshot (all its statements see the same commits)."""
        version = await self.inventory_version(municipality_id, year)
        last_sequence = await self.session.scalar(
            select(func.max(ledger_entries.c.sequence))
            .where(ledger_entries.c.municipality_id == municipality_id)
            .where(ledger_entries.c.year == year)
        )
        return InventorySnapshot(
            await self.inventory(municipality_id, year), version, int(last_sequence or 0)
        )

    async def entries_between(
        self, municipality_id: str, year: int, after_sequence: int, up_to: int, limit: int
    ) -> list[PostedEntry]:
        """Entries with after_sequence < sequence <= up_to, in posting order, at most limit."""
        rows = (
            await self.session.execute(
                select(ledger_entries)
                .where(ledger_entries.c.municipality_id == municipality_id)
                .where(ledger_entries.c.year == year)
                .where(ledger_entries.c.sequence > after_sequence)
                .where(ledger_entries.c.sequence <= up_to)
                .order_by(ledger_entries.c.sequence)
                .limit(limit)
            )
        ).all()
        return [PostedEntry(_entry_from_row(row), row.trace_id, row.sequence) for row in rows]


def _reversal_of(entries: Any) -> Any:
    """A subquery for EXISTS: the reversal of the outer query's entry. The reversals are read
    through an alias, so that the condition relates two rows, not a row to itself."""
    reversals = ledger_entries.alias("reversals")
    return (
        select(reversals.c.entry_id)
        .where(reversals.c.restates_entry_id == entries.c.entry_id)
        .where(reversals.c.posting == Posting.REVERSAL.value)
    )


def rebuild_inventory_lines(connection: Connection) -> None:
    """Recomputes every running line total from the entries (a migration step, synchronous).

    Reads the columns the ledger's schema has at that step, so it runs on a ledger of any
    version: entries from before revisions are originals, and from before the basis column
    modelled when they carry an avoided trip.
    """
    entries = ledger_entries.c
    existing = {c["name"] for c in inspect(connection).get_columns("ledger_entries")}
    wanted = [
        entries.municipality_id,
        entries.year,
        entries.sector,
        entries.subsector,
        entries.energy_carrier,
        entries.kind,
        entries.activity_unit,
        entries.activity_amount,
        entries.kg_co2e,
        entries.avoided_trip,
        *(entries[name] for name in ("posting", "basis", "distance_m") if name in existing),
    ]
    lines: dict[tuple[Any, ...], InventoryLine] = {}
    for row in connection.execute(select(*wanted)):
        mapping = row._mapping
        posting = mapping.get("posting", Posting.ORIGINAL.value)
        basis = mapping.get(
            "basis", Basis.MODELLED.value if row.avoided_trip is not None else Basis.METERED.value
        )
        line = InventoryLine(
            sector=Sector(row.sector),
            subsector=Subsector(row.subsector),
            energy_carrier=EnergyCarrier(row.energy_carrier),
            kind=EntryKind(row.kind),
            activity_unit=row.activity_unit,
            activity_amount=Decimal(row.activity_amount),
            kg_co2e=Decimal(row.kg_co2e),
            entry_count=-1 if posting == Posting.REVERSAL.value else 1,
            basis=Basis(basis),
        )
        distance_m = mapping.get("distance_m")
        line = replace(
            line,
            distance_km=distance_km(distance_m),
            entries_without_distance=line.entry_count if distance_m is None else 0,
        )
        key = (row.municipality_id, row.year, *_line_key_of(line).values())
        lines[key] = add_lines(lines.get(key), line)
    line_columns = {c["name"] for c in inspect(connection).get_columns("inventory_lines")}
    connection.execute(delete(inventory_lines))
    if lines:
        connection.execute(
            insert(inventory_lines),
            [
                {
                    "municipality_id": municipality_id,
                    "year": year,
                    **{
                        name: value
                        for name, value in (_line_key_of(line) | _line_totals(line)).items()
                        if name in line_columns
                    },
                }
                for (municipality_id, year, *_), line in lines.items()
            ],
        )


# The columns of an entry's unique source: an event's entry of one kind, revision and posting.
_UNIQUE_SOURCE = ["source_event_id", "kind", "revision", "posting"]


def _unique_source(entry: LedgerEntry) -> tuple[str, str, int, str]:
    return (entry.source_event_id, entry.kind.value, entry.revision, entry.posting.value)


def _factor_columns(factor: EmissionFactor) -> dict[str, Any]:
    columns: dict[str, Any] = {
        "factor_id": factor.factor_id,
        "factor_value": decimal_text(factor.value),
        "factor_unit": factor.unit,
        "factor_activity_unit": factor.activity_unit,
        "factor_source": factor.source,
        "factor_version": factor.version,
        "factor_approach": factor.approach,
        "factor_valid_from_year": factor.valid_from_year,
        "factor_valid_to_year": factor.valid_to_year,
        "factor_provisional": factor.provisional,
        "factor_hourly": factor.hourly is not None,
    }
    # Left out when absent (NULL), as in `_entry_row`.
    if factor.hourly is not None:
        columns["factor_hourly_intensity"] = _intensity_document(factor.hourly)
    if factor.hourly_fallback:
        columns["factor_hourly_fallback"] = factor.hourly_fallback
    return columns


def _entry_row(
    entry: LedgerEntry,
    trace_id: str,
    posted_at: datetime,
    factor_columns: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An entry's row; `factor_columns` are its factor's (`_factor_columns`), when the caller
    worked them out already.

    The provenance a kind of source does not have (a trip, a collection, a report, a
    restatement) is left out of the row, so NULL: every parameter bound costs, and entries of
    one kind of source keep one shape, which `insert_rows` sends together."""
    row = {
        **(_factor_columns(entry.factor) if factor_columns is None else factor_columns),
        "entry_id": entry.entry_id,
        "municipality_id": entry.municipality_id,
        "year": entry.year,
        "sector": entry.sector.value,
        "subsector": entry.subsector.value,
        "energy_carrier": entry.energy_carrier.value,
        "activity_amount": decimal_text(entry.activity_amount),
        "activity_unit": entry.activity_unit,
        "kg_co2e": decimal_text(entry.kg_co2e),
        "kind": entry.kind.value,
        "source_event_id": entry.source_event_id,
        "source_topic": entry.source_topic,
        "activity_at": entry.activity_at,
        "subject_id": entry.subject_id,
        "trace_id": trace_id,
        "posted_at": posted_at,
        "posting": entry.posting.value,
        "revision": entry.revision,
        "late": entry.late,
        "basis": entry.basis.value,
        "activity_started_at": entry.activity_started_at,
        "activity_hour": hour_within(entry.activity_started_at, entry.activity_at),
        "distance_m": entry.distance_m,
        "owner_partner_id": entry.owner_partner_id,
    }
    samples = entry.samples
    if samples is not None:
        row["activity_samples"] = {
            "sample_count": samples.sample_count,
            "first_sample_event_id": samples.first_sample_event_id,
            "last_sample_event_id": samples.last_sample_event_id,
        }
    trip = entry.avoided_trip
    if trip is not None:
        row["avoided_trip"] = {
            "avoided_trip_distance_m": trip.avoided_trip_distance_m,
            "avoided_vehicle": trip.avoided_vehicle,
            "avoided_kg_co2e": decimal_text(trip.avoided_kg_co2e),
            "carrier_extra_distance_m": trip.carrier_extra_distance_m,
            "carrier_vehicle": trip.carrier_vehicle,
            "carrier_extra_kg_co2e": decimal_text(trip.carrier_extra_kg_co2e),
        }
    collection = entry.collection
    if collection is not None:
        row["collection"] = {
            "collection_id": collection.collection_id,
            "carrier_partner_id": collection.carrier_partner_id,
            "hub_id": collection.hub_id,
            "mass_g": collection.mass_g,
            "includes_hazardous": collection.includes_hazardous,
            "waste_types": list(collection.waste_types),
            "deposit_count": collection.deposit_count,
        }
    if entry.reported is not None:
        row["reported"] = _reported_row(entry.reported)
    if entry.restates_entry_id is not None:
        row["restates_entry_id"] = entry.restates_entry_id
    if entry.restatement_id is not None:
        row["restatement_id"] = entry.restatement_id
    return row


def _reported_row(reported: ReportedProvenance) -> dict[str, Any]:
    return {
        "idempotency_key": reported.idempotency_key,
        "line_index": reported.line_index,
        "recorded_by": reported.recorded_by,
        "recorded_at": reported.recorded_at.astimezone(UTC).isoformat(),
        "reported_amount": reported.reported_amount,
        "reported_unit": reported.reported_unit,
        "conversion": reported.conversion,
        "conversion_source": reported.conversion_source,
        "conversion_rounded": reported.conversion_rounded,
        "note": reported.note,
        "source_document": reported.source_document,
        "source_file": reported.source_file,
        "source_line": reported.source_line,
    }


def _reported_of(raw: Any) -> ReportedProvenance | None:
    if raw is None:
        return None
    return ReportedProvenance(
        idempotency_key=str(raw["idempotency_key"]),
        line_index=int(raw["line_index"]),
        recorded_by=str(raw["recorded_by"]),
        recorded_at=datetime.fromisoformat(str(raw["recorded_at"])),
        reported_amount=str(raw["reported_amount"]),
        reported_unit=str(raw["reported_unit"]),
        conversion=str(raw["conversion"]),
        conversion_source=str(raw["conversion_source"]),
        conversion_rounded=bool(raw["conversion_rounded"]),
        note=str(raw["note"]),
        source_document=str(raw["source_document"]),
        source_file=str(raw["source_file"]),
        source_line=int(raw["source_line"]),
    )


def _line_key_of(line: InventoryLine) -> dict[str, Any]:
    return {
        "sector": line.sector.value,
        "subsector": line.subsector.value,
        "energy_carrier": line.energy_carrier.value,
        "kind": line.kind.value,
        "activity_unit": line.activity_unit,
        "basis": line.basis.value,
    }


def _line_totals(line: InventoryLine) -> dict[str, Any]:
    return {
        "activity_amount": line.activity_amount,
        "kg_co2e": line.kg_co2e,
        "entry_count": line.entry_count,
        "distance_km": line.distance_km,
        "entries_without_distance": line.entries_without_distance,
    }


def _line_from_row(row: Any, entry_count: int | None = None) -> InventoryLine:
    """An inventory line from a line row, or from an entry row when entry_count is given."""
    return InventoryLine(
        sector=Sector(row.sector),
        subsector=Subsector(row.subsector),
        energy_carrier=EnergyCarrier(row.energy_carrier),
        kind=EntryKind(row.kind),
        activity_unit=row.activity_unit,
        activity_amount=Decimal(row.activity_amount),
        kg_co2e=Decimal(row.kg_co2e),
        entry_count=row.entry_count if entry_count is None else entry_count,
        basis=Basis(row.basis),
        distance_km=Decimal(row.distance_km),
        entries_without_distance=row.entries_without_distance,
    )


def _entry_from_row(row: Any) -> LedgerEntry:
    trip = row.avoided_trip
    samples = row.activity_samples
    return LedgerEntry(
        entry_id=row.entry_id,
        municipality_id=row.municipality_id,
        year=row.year,
        sector=Sector(row.sector),
        subsector=Subsector(row.subsector),
        energy_carrier=EnergyCarrier(row.energy_carrier),
        activity_amount=Decimal(row.activity_amount),
        activity_unit=row.activity_unit,
        factor=EmissionFactor(
            factor_id=row.factor_id,
            energy_carrier=EnergyCarrier(row.energy_carrier),
            value=Decimal(row.factor_value),
            unit=row.factor_unit,
            activity_unit=row.factor_activity_unit,
            source=row.factor_source,
            version=row.factor_version,
            approach=row.factor_approach,
            valid_from_year=row.factor_valid_from_year,
            valid_to_year=row.factor_valid_to_year,
            provisional=bool(row.factor_provisional),
            hourly=_intensity_from_document(row.factor_hourly_intensity),
            hourly_fallback=row.factor_hourly_fallback or "",
        ),
        kg_co2e=Decimal(row.kg_co2e),
        kind=EntryKind(row.kind),
        source_event_id=row.source_event_id,
        source_topic=row.source_topic,
        activity_at=row.activity_at,
        subject_id=row.subject_id,
        avoided_trip=None
        if trip is None
        else AvoidedTrip(
            avoided_trip_distance_m=int(trip["avoided_trip_distance_m"]),
            avoided_vehicle=str(trip["avoided_vehicle"]),
            avoided_kg_co2e=Decimal(trip["avoided_kg_co2e"]),
            carrier_extra_distance_m=int(trip["carrier_extra_distance_m"]),
            carrier_vehicle=str(trip["carrier_vehicle"]),
            carrier_extra_kg_co2e=Decimal(trip["carrier_extra_kg_co2e"]),
        ),
        samples=None
        if samples is None
        else SampleProvenance(
            sample_count=int(samples["sample_count"]),
            first_sample_event_id=str(samples["first_sample_event_id"]),
            last_sample_event_id=str(samples["last_sample_event_id"]),
        ),
        posting=Posting(row.posting),
        revision=row.revision,
        restates_entry_id=row.restates_entry_id,
        restatement_id=row.restatement_id,
        late=bool(row.late),
        basis=Basis(row.basis),
        collection=_collection_of(row.collection),
        distance_m=row.distance_m,
        owner_partner_id=row.owner_partner_id,
        reported=_reported_of(row.reported),
        activity_started_at=row.activity_started_at,
    )


def _intensity_from_row(row: Any) -> HourlyIntensity:
    return HourlyIntensity(
        dataset=row.dataset,
        price_area=row.price_area,
        hour_start=row.hour_start,
        g_co2_per_kwh=Decimal(row.g_co2_per_kwh),
        five_minute_values=row.five_minute_values,
        fetched_at=row.fetched_at,
    )


def _intensity_document(intensity: HourlyIntensity) -> dict[str, Any]:
    return {
        "dataset": intensity.dataset,
        "price_area": intensity.price_area,
        "hour_start": intensity.hour_start.astimezone(UTC).isoformat(),
        "g_co2_per_kwh": decimal_text(intensity.g_co2_per_kwh),
        "five_minute_values": intensity.five_minute_values,
        "fetched_at": intensity.fetched_at.astimezone(UTC).isoformat(),
    }


def _intensity_from_document(raw: Any) -> HourlyIntensity | None:
    if raw is None:
        return None
    return HourlyIntensity(
        dataset=str(raw["dataset"]),
        price_area=str(raw["price_area"]),
        hour_start=datetime.fromisoformat(raw["hour_start"]),
        g_co2_per_kwh=Decimal(raw["g_co2_per_kwh"]),
        five_minute_values=int(raw["five_minute_values"]),
        fetched_at=datetime.fromisoformat(raw["fetched_at"]),
    )


def _collection_of(raw: Any) -> CollectionProvenance | None:
    if raw is None:
        return None
    return CollectionProvenance(
        collection_id=str(raw["collection_id"]),
        carrier_partner_id=str(raw["carrier_partner_id"]),
        hub_id=str(raw["hub_id"]),
        mass_g=int(raw["mass_g"]),
        includes_hazardous=bool(raw["includes_hazardous"]),
        waste_types=tuple(str(t) for t in raw["waste_types"]),
        deposit_count=int(raw["deposit_count"]),
    )
