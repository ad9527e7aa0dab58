"""WatchInventory's use case: follow one inventory as entries are posted, resumable by position.

A position is the sequence number of the last entry a watcher has received. It is safe to read
"entries after it" because postings to one inventory take turns (its version row, locked by the
posting transaction before it appends; see adapters/tables.py): an entry of that inventory that
commits later always has a higher sequence, so none is skipped, and none is sent twice. The
totals come from the same snapshot as the last sequence they correspond to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from emissions_ledger.adapters.repository import InventorySnapshot, LedgerRepository, PostedEntry
from emissions_ledger.domain import Inventory
from servicekit.database import Database
from servicekit.errors import InvalidArgument, ResourceExhausted, Unavailable

FIRST_YEAR = 1990
LAST_YEAR = 2100
# Entries per message: a change with more comes in several messages.
ENTRIES_PER_MESSAGE = 500


@dataclass(frozen=True)
class InventoryChange:
    """One message of a watch: entries since the previous position, and the totals as of this
    position when they are (the last message of a change)."""

    entries: list[PostedEntry]
    inventory: Inventory | None
    position: str


def position_text(municipality_id: str, year: int, sequence: int) -> str:
    # Ids never contain "/" (servicekit.validation), so the parts split back unambiguously.
    return f"{municipality_id}/{year}/{sequence}"


def sequence_of(position: str, municipality_id: str, year: int) -> int:
    """The sequence a position names; it must be a position of the same inventory."""
    parts = position.split("/")
    try:
        if len(parts) != 3 or (parts[0], int(parts[1])) != (municipality_id, year):
            raise ValueError("a position of another inventory")
        sequence = int(parts[2])
    except ValueError as error:
        raise InvalidArgument("position", "not a position of this inventory's watch") from error
    if sequence < 0:
        raise InvalidArgument("position", "not a position of this inventory's watch")
    return sequence


class InventoryWatch:
    def __init__(self, database: Database, poll_interval_s: float, max_watchers: int) -> None:
        self.database = database
        self.poll_interval_s = poll_interval_s
        self.max_watchers = max_watchers
        self.watchers = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ends every watch (UNAVAILABLE: call again with the last position), e.g. at shutdown,
        so that no open stream holds the server's stop for its grace period."""
        self._stopping.set()

    async def watch(
        self, municipality_id: str, year: int, position: str, from_beginning: bool
    ) -> AsyncIterator[InventoryChange]:
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise InvalidArgument("year", f"must be a year from {FIRST_YEAR} to {LAST_YEAR}")
        if position and from_beginning:
            raise InvalidArgument("from_beginning", "not with a position: resume or start over")
        after: int | None = (
            sequence_of(position, municipality_id, year)
            if position
            else (0 if from_beginning else None)
        )
        if self.watchers >= self.max_watchers:
            raise ResourceExhausted(f"{self.max_watchers} watches are open; try again later")
        self.watchers += 1
        try:
            snapshot = await self._snapshot(municipality_id, year)
            if after is None:
                after = snapshot.last_sequence
            elif after > snapshot.last_sequence:
                # Entries are never removed: a real position is never ahead of its inventory.
                raise InvalidArgument("position", "ahead of this ledger's entries")
            while True:
                async for change in self._changes(municipality_id, year, after, snapshot):
                    yield change
                after = snapshot.last_sequence
                while True:
                    await self._changed_since(municipality_id, year, snapshot.version)
                    snapshot = await self._snapshot(municipality_id, year)
                    # A posting whose entries were all there already bumps the version only.
                    if snapshot.last_sequence > after:
                        break
        finally:
            self.watchers -= 1

    async def _snapshot(self, municipality_id: str, year: int) -> InventorySnapshot:
        async with self.database.snapshot() as session:
            return await LedgerRepository(session).inventory_snapshot(municipality_id, year)

    async def _changes(
        self, municipality_id: str, year: int, after: int, snapshot: InventorySnapshot
    ) -> AsyncIterator[InventoryChange]:
        """The entries from `after` up to the snapshot's last, a message's worth at a time; the
        last message carries the snapshot's totals. Those entries are committed and never change,
        so each page may be read in a transaction of its own."""
        while True:
            async with self.database.read() as session:
                page = await LedgerRepository(session).entries_between(
                    municipality_id, year, after, snapshot.last_sequence, ENTRIES_PER_MESSAGE
                )
            if page:
                after = page[-1].sequence
            done = not page or after >= snapshot.last_sequence
            yield InventoryChange(
                page,
                snapshot.inventory if done else None,
                position_text(municipality_id, year, after),
            )
            if done:
                return

    async def _changed_since(self, municipality_id: str, year: int, version: int) -> None:
        """Returns once the inventory's version differs from `version` (polled)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.poll_interval_s)
            if self._stopping.is_set():
                raise Unavailable("the ledger is stopping: call again with the last position")
            async with self.database.read() as session:
                current = await LedgerRepository(session).inventory_version(municipality_id, year)
            if current != version:
                return
