"""WatchInventory: follows an inventory live, resumes exactly from a position (also across a
restart of the ledger), and never skips an entry that commits late, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc
from sqlalchemy import text

from emissions_ledger.adapters.data_files import load_factor_catalogue
from emissions_ledger.adapters.repository import LedgerRepository
from emissions_ledger.adapters.tables import MIGRATIONS
from emissions_ledger.bootstrap import build
from emissions_ledger.domain import (
    FuelType,
    LedgerEntry,
    Subsector,
    VehicleActivity,
    entry_for_activity,
    increments_per_line,
)
from emissions_ledger.inventory_watch import InventoryWatch
from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from servicekit import topics
from servicekit.database import Database
from servicekit.errors import Unavailable
from servicekit.grpc_server import bad_request_field
from servicekit.identity import CLIMATE_OFFICER, DASHBOARD
from servicekit.topics import ensure_topics
from tests.kafka_tools import connection, eventually, produce, unique_namespace
from tests.ledger_events import vehicle_activity
from tests.registry_seed import publish_registry_seed
from tools.pki import Pki

AALBORG = "aalborg-kommune"
AT = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def activity_event(event_id: str, fuel_ml: int) -> fleet_pb2.VehicleActivity:
    return vehicle_activity(event_id, fleet_pb2.FUEL_TYPE_DIESEL, AT, fuel_used_ml=fuel_ml)


class Watcher:
    """One WatchInventory call's messages, collected as they come."""

    def __init__(self, stub: ledger_pb2_grpc.EmissionsLedgerServiceStub, **request: Any) -> None:
        self.messages: list[ledger_pb2.WatchInventoryResponse] = []
        self.error: grpc.aio.AioRpcError | None = None
        self.call = stub.WatchInventory(ledger_pb2.WatchInventoryRequest(**request))
        self.task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        try:
            async for message in self.call:
                self.messages.append(message)
        except grpc.aio.AioRpcError as error:
            self.error = error

    @property
    def source_events(self) -> list[str]:
        return [e.source_event_id for m in self.messages for e in m.entries]

    @property
    def position(self) -> str:
        return self.messages[-1].position

    @property
    def totals(self) -> ledger_pb2.GetInventoryResponse:
        return next(m.inventory for m in reversed(self.messages) if m.HasField("inventory"))

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def watching(
    target: str, pki: Pki, role: str = CLIMATE_OFFICER, **request: Any
) -> AsyncIterator[Watcher]:
    async with pki.channel(target, role, AALBORG) as channel:
        watcher = Watcher(ledger_pb2_grpc.EmissionsLedgerServiceStub(channel), **request)
        try:
            yield watcher
        finally:
            await watcher.close()


def exact_sum(watcher: Watcher) -> Decimal:
    return sum((Decimal(e.kg_co2e) for m in watcher.messages for e in m.entries), Decimal(0))


async def test_a_watch_follows_postings_and_resumes_exactly_across_a_restart(
    kafka: str, database_url: str, pki: Pki
) -> None:
    settings: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka,
        "topic_namespace": unique_namespace("watch"),
        "database_url": database_url,
        "grpc_port": 0,
        "outbox_poll_interval_s": 0.1,
        "watch_poll_interval_s": 0.05,
    }
    ledger = build(**settings)
    await ensure_topics(connection(kafka), ledger.names.all_specs())
    # The municipalities the ledger keeps inventories for come from the registry's changelog.
    await publish_registry_seed(kafka, settings["topic_namespace"])
    activity_topic = ledger.topic(topics.ACTIVITY)

    async def post(*event_ids: str) -> None:
        for n, event_id in enumerate(event_ids):
            await produce(
                kafka, activity_topic, f"v-{event_id}", activity_event(event_id, 1_001 + n)
            )

    await post("a1", "a2", "a3")
    await ledger.start()
    try:
        target = f"127.0.0.1:{ledger.grpc_port}"
        async with watching(
            target, pki, municipality_id=AALBORG, year=2026, from_beginning=True
        ) as watcher:

            def seen(count: int) -> bool:
                return (
                    len(watcher.source_events) == count
                    and watcher.messages[-1].HasField("inventory")
                    and watcher.totals.entry_count == count
                )

            await until(lambda: seen(3))
            await post("a4", "a5")
            await until(lambda: seen(5))
            # A dashboard reads every municipality; it starts from now: totals, no entries.
            async with watching(
                target, pki, DASHBOARD, municipality_id=AALBORG, year=2026
            ) as from_now:
                await until(lambda: len(from_now.messages) == 1)
                assert list(from_now.messages[0].entries) == []
                assert from_now.totals.entry_count == 5
                assert from_now.position == watcher.position

            started_stop = time.monotonic()
            await ledger.stop()
            # An open watch does not hold the stop for the server's grace period: it ends at
            # once, UNAVAILABLE, and its caller calls again with its last position.
            assert time.monotonic() - started_stop < 4
            await asyncio.wait_for(watcher.task, 5)
            assert watcher.error is not None
            assert watcher.error.code() == grpc.StatusCode.UNAVAILABLE
            position = watcher.position
            before_restart = watcher.source_events
            received = exact_sum(watcher)
    finally:
        await ledger.stop()

    await post("b1", "b2", "b3")  # while the ledger is down
    restarted = build(**settings)
    await restarted.start()
    try:
        target = f"127.0.0.1:{restarted.grpc_port}"
        async with watching(
            target, pki, municipality_id=AALBORG, year=2026, position=position
        ) as resumed:
            await until(lambda: bool(resumed.messages) and resumed.totals.entry_count == 8)
            await post("b4")
            await until(lambda: resumed.totals.entry_count == 9)
            everything = before_restart + resumed.source_events
            assert sorted(everything) == ["a1", "a2", "a3", "a4", "a5", "b1", "b2", "b3", "b4"]
            # The totals are the sum of exactly the entries received, none twice.
            assert Decimal(resumed.totals.emissions_kg_co2e) == received + exact_sum(resumed)

        async with pki.channel(target, CLIMATE_OFFICER, "aarhus-kommune") as other:
            refused = Watcher(
                ledger_pb2_grpc.EmissionsLedgerServiceStub(other),
                municipality_id=AALBORG,
                year=2026,
            )
            await refused.task
            assert refused.error is not None
            assert refused.error.code() == grpc.StatusCode.PERMISSION_DENIED

        for bad_position in (f"{AALBORG}/2025/1", f"{AALBORG}/2026/99999", "garbage"):
            async with watching(
                target, pki, municipality_id=AALBORG, year=2026, position=bad_position
            ) as bad:
                await bad.task
                assert bad.error is not None, bad_position
                assert bad.error.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert bad_request_field(bad.error) == "position"
    finally:
        await restarted.stop()


async def until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    def check() -> None:
        assert condition()

    await eventually(check, timeout_s)


def diesel_entries(prefix: str, count: int) -> list[LedgerEntry]:
    catalogue = load_factor_catalogue()
    return [
        entry_for_activity(
            VehicleActivity(
                f"{prefix}-{n}",
                f"van-{prefix}",
                AALBORG,
                FuelType.DIESEL,
                Subsector.MUNICIPAL_FLEET,
                AT,
                1_000,
                1_001 + 37 * n,
                0,
            ),
            catalogue,
            "fleet.activity.v1",
        )
        for n in range(count)
    ]


async def post_entries(database: Database, entries: list[LedgerEntry], pause_s: float) -> None:
    """One posting transaction, as the ledger's consumers make them, held open a moment."""
    async with database.transaction() as session:
        repository = LedgerRepository(session)
        appended = await repository.append(entries, trace_id="")
        await repository.add_to_inventory(increments_per_line(appended))
        await asyncio.sleep(pause_s)


async def last_sequence_handed_out(database: Database) -> int:
    """PostgreSQL's entry sequence, which hands out numbers outside transactions."""
    if database.is_sqlite:
        return 0
    async with database.read() as session:
        return int(
            await session.scalar(text("SELECT last_value FROM ledger_entries_sequence_seq")) or 0
        )


class Collected:
    def __init__(self, watch: InventoryWatch, **request: Any) -> None:
        self.entries: list[str] = []
        self.inventories: list[Any] = []
        self.task = asyncio.create_task(self._collect(watch, request))

    async def _collect(self, watch: InventoryWatch, request: dict[str, Any]) -> None:
        with contextlib.suppress(Unavailable):
            async for change in watch.watch(**request):
                self.entries.extend(posted.entry.entry_id for posted in change.entries)
                if change.inventory is not None:
                    self.inventories.append(change.inventory)


async def test_an_entry_that_commits_after_a_later_one_began_is_not_skipped(
    database_url: str,
) -> None:
    database = Database(database_url)
    await database.migrate(MIGRATIONS)
    watch = InventoryWatch(database, poll_interval_s=0.01, max_watchers=4)
    try:
        collected = Collected(
            watch, municipality_id=AALBORG, year=2026, position="", from_beginning=True
        )
        first, second = diesel_entries("first", 3), diesel_entries("second", 2)
        first_open = asyncio.Event()
        release_first = asyncio.Event()

        async def post_first() -> None:
            async with database.transaction() as session:
                repository = LedgerRepository(session)
                await repository.add_to_inventory(
                    increments_per_line(await repository.append(first, trace_id=""))
                )
                first_open.set()
                await release_first.wait()

        first_task = asyncio.create_task(post_first())
        await first_open.wait()
        handed_out = await last_sequence_handed_out(database)
        # The second posting to the same inventory starts while the first is still open: it
        # must not get its sequence numbers (and commit) before the first commits.
        second_task = asyncio.create_task(post_entries(database, second, 0))
        if not database.is_sqlite:

            async def second_waits() -> None:
                async with database.read() as session:
                    waiting = await session.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND wait_event_type = 'Lock'"
                        )
                    )
                assert waiting == 1

            await eventually(second_waits, timeout_s=10)
            # It waits before its entries are given sequence numbers, not after.
            assert await last_sequence_handed_out(database) == handed_out
        await asyncio.sleep(0.3)
        assert collected.entries == []
        assert not second_task.done()
        release_first.set()
        await asyncio.wait_for(asyncio.gather(first_task, second_task), 30)
        expected = [e.entry_id for e in first + second]

        def all_seen() -> None:
            assert collected.entries == expected

        await eventually(all_seen, timeout_s=10)
    finally:
        watch.stop()
        await database.dispose()


async def test_concurrent_postings_reach_a_watch_each_exactly_once(database_url: str) -> None:
    database = Database(database_url)
    await database.migrate(MIGRATIONS)
    watch = InventoryWatch(database, poll_interval_s=0.005, max_watchers=4)
    rng = random.Random(9)
    try:
        collected = Collected(
            watch, municipality_id=AALBORG, year=2026, position="", from_beginning=False
        )
        batches = [diesel_entries(f"{writer}-{n}", 3) for writer in "ab" for n in range(25)]

        async def writer(mine: list[list[LedgerEntry]]) -> None:
            for batch in mine:
                await post_entries(database, batch, rng.uniform(0, 0.01))

        await asyncio.wait_for(
            asyncio.gather(writer(batches[:25]), writer(batches[25:])), timeout=120
        )
        expected = {e.entry_id for batch in batches for e in batch}

        def all_seen() -> None:
            assert len(collected.entries) == len(expected)

        await eventually(all_seen, timeout_s=20)
        assert set(collected.entries) == expected
        assert collected.inventories[-1].entry_count == 150
    finally:
        watch.stop()
        await database.dispose()
