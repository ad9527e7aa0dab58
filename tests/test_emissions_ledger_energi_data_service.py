"""The ledger's Energi Data Service adapter and its background fetcher, against a local HTTP
server speaking the API's shape (tests/fake_energi_data_service.py; every figure it serves is
made up): paging, a bounded request rate, 429 with Retry-After, 5xx retried, timeouts,
malformed answers refused without crashing, and the cache that makes a fetched hour never
requested again."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from emissions_ledger.adapters.energi_data_service import (
    EnergiDataServiceClient,
    MalformedResponse,
    RequestRefused,
    SourceUnavailable,
)
from emissions_ledger.adapters.tables import MIGRATIONS, grid_intensity_hours
from emissions_ledger.domain import FiveMinuteIntensity
from emissions_ledger.grid_intensities import GridIntensityFetcher, GridIntensityMetrics
from servicekit.database import Database
from servicekit.runtime import UnitOfWork
from tests.fake_energi_data_service import (
    FakeEnergiDataService,
    Scripted,
    free_port,
    made_up_hour,
)

# Made up: a winter morning in DK1 (not Energinet's figures).
HOUR = datetime(2025, 3, 4, 8, 0, tzinfo=UTC)
MADE_UP_VALUES = [100, 102, 104, 106, 108, 110, 112, 114, 116, 118, 120, 121]


def client(url: str, **overrides: Any) -> EnergiDataServiceClient:
    options: dict[str, Any] = {
        "timeout_s": 2.0,
        "max_attempts": 3,
        "backoff_s": 0.05,
        "backoff_max_s": 1.0,
        "min_interval_s": 0.0,
        "page_size": 1000,
    }
    options.update(overrides)
    return EnergiDataServiceClient(url, **options)


async def read_all(
    source: EnergiDataServiceClient, start: datetime, end: datetime, area: str = "DK1"
) -> list[FiveMinuteIntensity]:
    values: list[FiveMinuteIntensity] = []
    try:
        async for page in source.pages(area, start, end):
            values.extend(page.values)
    finally:
        await source.close()
    return values


class RecordedSleep:
    """asyncio.sleep that remembers every delay it was asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays.append(delay_s)
        await asyncio.sleep(delay_s)


async def test_pages_follow_each_other_in_time_order_at_a_bounded_rate() -> None:
    with FakeEnergiDataService(min_interval_s=0.2) as server:
        for offset in range(3):
            server.add_hour("DK1", HOUR + timedelta(hours=offset), MADE_UP_VALUES)
        server.add_hour("DK2", HOUR, [500] * 12)
        values = await read_all(
            client(server.url, page_size=12, min_interval_s=0.25), HOUR, HOUR + timedelta(hours=3)
        )
        requests = list(server.requests)

    assert [value.minute_start for value in values] == [
        HOUR + timedelta(minutes=5 * index) for index in range(36)
    ]
    assert {value.price_area for value in values} == {"DK1"}
    assert values[0].g_co2_per_kwh == Decimal(100)
    # Three pages, none refused by the server's own limit: the client kept its distance.
    assert [request.params["offset"] for request in requests] == ["0", "12", "24"]
    gaps = [later.at - earlier.at for earlier, later in pairwise(requests)]
    assert min(gaps) >= 0.2
    first = requests[0].params
    assert first["filter"] == '{"PriceArea":["DK1"]}'
    assert first["sort"] == "Minutes5UTC ASC"
    # An hour more on both sides, in Danish time (UTC+1 in March): 08:00Z-11:00Z.
    assert (first["start"], first["end"]) == ("2025-03-04T08:00", "2025-03-04T13:00")


async def test_a_429_waits_as_long_as_retry_after_says() -> None:
    sleep = RecordedSleep()
    with FakeEnergiDataService() as server:
        server.add_hour("DK1", HOUR, MADE_UP_VALUES)
        server.script.append(Scripted(429, b"Too many requests", {"Retry-After": "1"}))
        started = time.monotonic()
        values = await read_all(client(server.url, sleep=sleep), HOUR, HOUR + timedelta(hours=1))
        elapsed = time.monotonic() - started
        requests = len(server.requests)

    assert len(values) == 12 and requests == 2
    assert sleep.delays == [1.0]
    assert elapsed >= 1.0


async def test_5xx_answers_are_retried_with_growing_backoff_and_jitter() -> None:
    sleep = RecordedSleep()
    with FakeEnergiDataService() as server:
        server.add_hour("DK1", HOUR, MADE_UP_VALUES)
        server.script.extend([Scripted(503, b"busy"), Scripted(502, b"bad gateway")])
        values = await read_all(
            client(server.url, sleep=sleep, backoff_s=0.1), HOUR, HOUR + timedelta(hours=1)
        )
        requests = len(server.requests)

    assert len(values) == 12 and requests == 3
    first, second = sleep.delays
    # Half of the doubled delay is fixed, half random.
    assert 0.05 <= first <= 0.1
    assert 0.1 <= second <= 0.2


async def test_a_server_that_does_not_answer_in_time_is_given_up_after_every_attempt() -> None:
    with FakeEnergiDataService() as server:
        server.script.extend([Scripted(200, b"{}", delay_s=1.5), Scripted(200, b"{}", delay_s=1.5)])
        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match="ReadTimeout"):
            await read_all(
                client(server.url, timeout_s=0.2, max_attempts=2),
                HOUR,
                HOUR + timedelta(hours=1),
            )
        elapsed = time.monotonic() - started
        requests = len(server.requests)

    assert requests == 2
    assert elapsed < 1.2


async def test_a_server_that_is_down_is_unavailable() -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SourceUnavailable, match="ConnectError"):
        await read_all(client(nobody, max_attempts=2), HOUR, HOUR + timedelta(hours=1))


async def test_a_request_the_api_refuses_is_not_retried() -> None:
    with FakeEnergiDataService() as server:
        server.script.append(Scripted(400, b'{"error": "bad filter"}'))
        with pytest.raises(RequestRefused, match="HTTP 400"):
            await read_all(client(server.url), HOUR, HOUR + timedelta(hours=1))
        assert len(server.requests) == 1


def record(**fields: Any) -> dict[str, Any]:
    made_up = {"Minutes5UTC": "2025-03-04T08:00:00", "PriceArea": "DK1", "CO2Emission": 100}
    return {**made_up, **fields}


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        json.dumps({"records": []}).encode(),
        json.dumps({"total": 1, "records": "none"}).encode(),
        json.dumps({"total": 1, "records": [record(Minutes5UTC="yesterday")]}).encode(),
        json.dumps({"total": 1, "records": [record(CO2Emission="lots")]}).encode(),
        json.dumps({"total": 1, "records": [record(CO2Emission=-3)]}).encode(),
        json.dumps({"total": 1, "records": [record(CO2Emission=10**9)]}).encode(),
        json.dumps({"total": 1, "records": [record(PriceArea=1)]}).encode(),
    ],
)
async def test_a_malformed_answer_is_refused(body: bytes) -> None:
    with FakeEnergiDataService() as server:
        server.script.append(Scripted(200, body, {"Content-Type": "application/json"}))
        with pytest.raises(MalformedResponse):
            await read_all(client(server.url), HOUR, HOUR + timedelta(hours=1))


async def test_a_record_without_a_value_leaves_its_hour_incomplete() -> None:
    with FakeEnergiDataService() as server:
        server.add_hour("DK1", HOUR, MADE_UP_VALUES)
        server.records[3]["CO2Emission"] = None
        values = await read_all(client(server.url), HOUR, HOUR + timedelta(hours=1))
    assert len(values) == 11


# The fetcher, with the ledger's own cache table on SQLite.

NOW = datetime(2025, 3, 4, 14, 20, tzinfo=UTC)
# With 3 settling hours and a day of backfill, the round wants 2025-03-03T14:00 to 10:00.
WINDOW = [datetime(2025, 3, 3, 14, 0, tzinfo=UTC) + timedelta(hours=h) for h in range(21)]


class NoRelay:
    def notify(self) -> None:
        pass


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[UnitOfWork]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/ledger.db")
    await database.migrate(MIGRATIONS)
    yield UnitOfWork(database, NoRelay())  # type: ignore[arg-type]
    await database.dispose()


def fetcher(
    url: str, cache: UnitOfWork, clock: list[datetime], **client_overrides: Any
) -> GridIntensityFetcher:
    return GridIntensityFetcher(
        client(url, **client_overrides),
        cache,
        dataset="CO2Emis",
        price_area="DK1",
        poll_interval_s=60,
        settle_hours=3,
        backfill_days=1,
        metrics=GridIntensityMetrics(CollectorRegistry()),
        clock=lambda: clock[0],
    )


async def cached_rows(cache: UnitOfWork) -> list[Any]:
    async with cache.read() as session:
        return list(
            (
                await session.execute(
                    select(grid_intensity_hours).order_by(grid_intensity_hours.c.hour_start)
                )
            ).all()
        )


async def test_fetched_hours_are_cached_and_never_requested_again(cache: UnitOfWork) -> None:
    clock = [NOW]
    with FakeEnergiDataService() as server:
        for hour in WINDOW:
            server.add_hour("DK1", hour, MADE_UP_VALUES)
        # Pages of an hour and a half: every other page ends inside an hour.
        source = fetcher(server.url, cache, clock, page_size=18)
        assert await source.fetch_once() == 21
        first_round = len(server.requests)
        assert first_round == 14  # 252 records, 18 a page

        assert await source.fetch_once() == 0
        clock[0] = NOW + timedelta(minutes=30)
        assert await source.fetch_once() == 0
        assert len(server.requests) == first_round
        assert source.status() == (
            "Energi Data Service answered at 2025-03-04T14:50Z; an hour is fetched once it "
            "ended 3 h ago"
        )
        await source.stop()

    rows = await cached_rows(cache)
    assert [row.hour_start for row in rows] == WINDOW
    # (100 + 102 + ... + 120 + 121) / 12 = 1331 / 12 = 110.91666..., to the thousandth.
    assert {row.g_co2_per_kwh for row in rows} == {"110.917"}
    assert {row.five_minute_values for row in rows} == {12}


async def test_an_hour_the_api_lacks_is_asked_for_again_an_hour_later(cache: UnitOfWork) -> None:
    clock = [NOW]
    with FakeEnergiDataService() as server:
        for hour in WINDOW:
            server.add_hour(
                "DK1", hour, MADE_UP_VALUES[:11] if hour == WINDOW[5] else MADE_UP_VALUES
            )
        source = fetcher(server.url, cache, clock)
        assert await source.fetch_once() == 20
        assert await source.fetch_once() == 0
        assert len(server.requests) == 1

        # Published meanwhile; asked for again once an hour has passed, from that hour on.
        server.records.extend(made_up_hour("DK1", WINDOW[5], MADE_UP_VALUES)[11:])
        clock[0] = NOW + timedelta(minutes=61)
        assert await source.fetch_once() == 1
        assert len(server.requests) == 2
        assert server.requests[1].params["start"] == "2025-03-03T19:00"  # 19:00Z - 1 h, in CET
        await source.stop()
    assert len(await cached_rows(cache)) == 21


async def test_a_malformed_answer_fails_the_round_not_the_fetcher(cache: UnitOfWork) -> None:
    clock = [NOW]
    with FakeEnergiDataService() as server:
        for hour in WINDOW:
            server.add_hour("DK1", hour, MADE_UP_VALUES)
        server.script.append(Scripted(200, b"<html>maintenance</html>"))
        source = fetcher(server.url, cache, clock)
        assert await source.fetch_once() == 0
        assert "malformed" in source.status()
        assert await cached_rows(cache) == []

        assert await source.fetch_once() == 21
        await source.stop()


async def test_an_unreachable_api_fails_the_round_and_says_so(cache: UnitOfWork) -> None:
    clock = [NOW]
    source = fetcher(f"http://127.0.0.1:{free_port()}", cache, clock, max_attempts=2)
    assert await source.fetch_once() == 0
    assert source.status().startswith("Energi Data Service unreachable at 2025-03-04T14:20Z")
    await source.stop()
