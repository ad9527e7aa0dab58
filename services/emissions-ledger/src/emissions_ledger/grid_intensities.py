"""Keeps the ledger's cache of hourly grid intensities filled, as a background task of the
service: Kafka consumers never wait for Energi Data Service, they read the cache.

Every round (at start, then every poll interval) it looks for the hours from the backfill
window's start to the last settled hour (one that ended at least `settle_hours` ago) that the
cache lacks, asks the API for them from the first one on, page by page, and caches every hour
whose twelve five-minute values came back. A cached hour is never asked for again. An hour the
API did not have is asked for again at a later round, not before `retry_unavailable_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge

from emissions_ledger.adapters.energi_data_service import (
    EnergiDataServiceClient,
    MalformedResponse,
    RequestRefused,
    SourceUnavailable,
)
from emissions_ledger.adapters.repository import LedgerRepository
from emissions_ledger.domain import FiveMinuteIntensity, HourlyIntensity, hourly_intensities
from emissions_ledger.domain.hourly import HOUR, hour_start_of
from servicekit.kafka import Throttle
from servicekit.runtime import UnitOfWork

log = logging.getLogger(__name__)


class GridIntensityMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rounds = Counter(
            "ledger_grid_intensity_rounds",
            "Rounds of fetching hourly grid intensities, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.hours_stored = Counter(
            "ledger_grid_intensity_hours_stored",
            "Hourly grid intensities fetched and cached",
            registry=registry,
        )
        self.latest_hour = Gauge(
            "ledger_grid_intensity_latest_hour_seconds",
            "Start (Unix time) of the latest hour whose grid intensity is cached",
            registry=registry,
        )


class GridIntensityFetcher:
    def __init__(
        self,
        client: EnergiDataServiceClient,
        unit_of_work: UnitOfWork,
        *,
        dataset: str,
        price_area: str,
        poll_interval_s: float,
        settle_hours: int,
        backfill_days: int,
        metrics: GridIntensityMetrics,
        retry_unavailable_s: float = 3600.0,
        log_interval_s: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.unit_of_work = unit_of_work
        self.dataset = dataset
        self.price_area = price_area
        self.poll_interval_s = poll_interval_s
        self.settle = timedelta(hours=settle_hours)
        self.backfill = timedelta(days=backfill_days)
        self.retry_unavailable = timedelta(seconds=retry_unavailable_s)
        self.metrics = metrics
        self.clock = clock
        self._throttle = Throttle(log_interval_s)
        # Hours the API did not have at the last asking, and when to ask again.
        self._unavailable_until: dict[datetime, datetime] = {}
        self._status = "Energi Data Service not asked yet"
        self._task: asyncio.Task[None] | None = None

    def status(self) -> str:
        """What the last round found, for the note on an entry priced with the yearly factor
        because its hour's intensity was not known."""
        return self._status

    async def start(self) -> None:
        """Starts the rounds in the background (a start-up hook of the service)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="grid intensities")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.client.close()

    async def _run(self) -> None:
        while True:
            await self.fetch_once()
            await asyncio.sleep(self.poll_interval_s)

    async def fetch_once(self) -> int:
        """One round; returns how many hours it cached. Never raises for the API or the
        database failing: the round is given up, noted in the status, and the next one tries."""
        started = self.clock()
        try:
            stored = await self._fetch_missing(started)
        except asyncio.CancelledError:
            raise
        except SourceUnavailable as error:
            self._fail("unreachable", started, str(error))
            return 0
        except RequestRefused as error:
            self._fail("refused", started, str(error))
            return 0
        except MalformedResponse as error:
            self._fail("malformed", started, f"malformed answer: {error}")
            return 0
        except Exception as error:  # the database, or anything unforeseen: next round
            self._fail("failed", started, f"{type(error).__name__}: {error}")
            return 0
        self._throttle.reset()
        return stored

    def _fail(self, outcome: str, at: datetime, problem: str) -> None:
        self.metrics.rounds.labels(outcome).inc()
        self._status = f"Energi Data Service {outcome} at {at:%Y-%m-%dT%H:%M}Z: {problem}"
        if self._throttle.due():
            log.warning(
                "hourly grid intensities not fetched; entries use the yearly factor meanwhile",
                extra={"error": problem, "suppressed": self._throttle.take_suppressed()},
            )

    async def _fetch_missing(self, now: datetime) -> int:
        since = hour_start_of(now - self.backfill)
        until = hour_start_of(now - self.settle)
        async with self.unit_of_work.read() as session:
            cached = await LedgerRepository(session).cached_hours(
                self.dataset, self.price_area, since, until
            )
        if cached:
            self.metrics.latest_hour.set(max(cached).timestamp())
        self._unavailable_until = {h: t for h, t in self._unavailable_until.items() if t > now}
        missing = [
            hour
            for hour in _hours(since, until)
            if hour not in cached and hour not in self._unavailable_until
        ]
        if not missing:
            self.metrics.rounds.labels("up_to_date").inc()
            self._status = self._answered(now)
            return 0
        first = missing[0]
        stored: set[datetime] = set()
        # Values are sorted by time: only the last hour of a page may continue on the next.
        carried: list[FiveMinuteIntensity] = []
        async for page in self.client.pages(self.price_area, first, until):
            values = carried + page.values
            fetched_at = self.clock()
            complete = [
                intensity
                for intensity in hourly_intensities(
                    values, self.dataset, self.price_area, fetched_at
                )
                if intensity.hour_start not in cached
            ]
            stored |= await self._store(complete)
            last_hour = hour_start_of(values[-1].minute_start) if values else None
            carried = [
                value
                for value in values
                if last_hour is not None
                and hour_start_of(value.minute_start) == last_hour
                and last_hour not in stored
            ]
        for hour in missing:
            if hour not in stored:
                self._unavailable_until[hour] = now + self.retry_unavailable
        self.metrics.rounds.labels("fetched").inc()
        self._status = self._answered(now)
        return len(stored)

    def _answered(self, now: datetime) -> str:
        return (
            f"Energi Data Service answered at {now:%Y-%m-%dT%H:%M}Z; an hour is fetched once "
            f"it ended {self.settle.total_seconds() / 3600:g} h ago"
        )

    async def _store(self, intensities: list[HourlyIntensity]) -> set[datetime]:
        if not intensities:
            return set()
        async with self.unit_of_work() as session:
            new = await LedgerRepository(session).store_intensities(intensities)
        self.metrics.hours_stored.inc(new)
        self.metrics.latest_hour.set(max(i.hour_start for i in intensities).timestamp())
        return {intensity.hour_start for intensity in intensities}


def _hours(since: datetime, until: datetime) -> list[datetime]:
    hours = []
    hour = since
    while hour < until:
        hours.append(hour)
        hour += HOUR
    return hours
