"""Energi Data Service's public API (Energinet's open energy data), read with httpx: the
five-minute CO2 intensity of the electricity consumed in a price area (dataset CO2Emis).

What the API is asked and how (its guide: https://www.energidataservice.dk/guides/api-guides):
GET {base}/dataset/CO2Emis with `start` and `end` (Danish local time, `yyyy-MM-ddTHH:mm`; start
included, end excluded), `filter={"PriceArea":["DK1"]}`, `columns`, `sort`, `offset` and
`limit`. It answers `{"total": n, "limit": ..., "dataset": "CO2Emis", "records": [...]}`, each
record `{"Minutes5UTC": "2025-03-04T10:05:00", "Minutes5DK": "...", "PriceArea": "DK1",
"CO2Emission": 108}` (g/kWh; the times without a zone, Minutes5UTC in UTC).

The service limits requests per dataset and IP address (one a minute per dataset since
August 2025) and answers 429 with Retry-After beyond that, so requests are spaced by at least
`min_interval_s`, a 429 waits as long as Retry-After says, and 5xx, 429 and failed connections
are retried with exponential backoff and jitter, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from emissions_ledger.domain import MUNICIPAL_TIME_ZONE, FiveMinuteIntensity
from emissions_ledger.domain.hourly import DATASET, HOUR

# Far above any intensity a grid has had (coal alone is about 1,000 g/kWh): a value beyond it
# is a malformed answer, not a figure to price with.
MAX_PLAUSIBLE_G_PER_KWH = Decimal(5000)
# A Retry-After longer than this is capped: the fetcher tries again at its next round anyway.
MAX_RETRY_AFTER_S = 3600.0


class SourceUnavailable(Exception):
    """The API could not be reached or kept failing (connection errors, timeouts, 429, 5xx)
    after every attempt."""


class RequestRefused(Exception):
    """The API refused the request itself (a 4xx other than 429): retrying would not help."""


class MalformedResponse(Exception):
    """The answer is not the JSON shape of the dataset; nothing of it is used."""


@dataclass(frozen=True)
class Page:
    """One page of five-minute values, and how many records the query has in all."""

    values: list[FiveMinuteIntensity]
    record_count: int
    total: int


Sleep = Callable[[float], Awaitable[None]]


class RequestSpacing:
    """At least `interval_s` between the starts of two requests, however many tasks ask."""

    def __init__(self, interval_s: float, sleep: Sleep = asyncio.sleep) -> None:
        self.interval_s = interval_s
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._last: float | None = None

    async def wait_turn(self) -> None:
        async with self._lock:
            if self._last is not None:
                wait_s = self._last + self.interval_s - time.monotonic()
                if wait_s > 0:
                    await self._sleep(wait_s)
            self._last = time.monotonic()


class EnergiDataServiceClient:
    """Reads the five-minute CO2 intensities of one price area, page by page."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        max_attempts: int,
        backoff_s: float,
        backoff_max_s: float,
        min_interval_s: float,
        page_size: int,
        dataset: str = DATASET,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.dataset = dataset
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.page_size = page_size
        self._sleep = sleep
        self._spacing = RequestSpacing(min_interval_s, sleep)
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s),
            headers={"Accept": "application/json", "User-Agent": "emissions-ledger"},
            transport=transport,
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def pages(self, price_area: str, start: datetime, end: datetime) -> AsyncIterator[Page]:
        """The five-minute values of `price_area` from `start` (inclusive) to `end` (exclusive,
        both aware), page after page in time order. The query asks an hour more on both sides
        (its times are Danish local time, ambiguous once a year), and only values in the range
        are given."""
        local_start = (start - HOUR).astimezone(MUNICIPAL_TIME_ZONE)
        local_end = (end + HOUR).astimezone(MUNICIPAL_TIME_ZONE)
        offset = 0
        while True:
            params = {
                "start": f"{local_start:%Y-%m-%dT%H:%M}",
                "end": f"{local_end:%Y-%m-%dT%H:%M}",
                "filter": json.dumps({"PriceArea": [price_area]}, separators=(",", ":")),
                "columns": "Minutes5UTC,PriceArea,CO2Emission",
                "sort": "Minutes5UTC ASC",
                "offset": str(offset),
                "limit": str(self.page_size),
            }
            page = _page_of(await self._get(f"/dataset/{self.dataset}", params))
            yield Page(
                [
                    value
                    for value in page.values
                    if value.price_area == price_area and start <= value.minute_start < end
                ],
                page.record_count,
                page.total,
            )
            offset += page.record_count
            if page.record_count == 0 or offset >= page.total:
                return

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        """The parsed JSON of one GET, retried on connection errors, timeouts, 429 and 5xx."""
        last_problem = ""
        for attempt in range(self.max_attempts):
            await self._spacing.wait_turn()
            retry_after: float | None = None
            try:
                response = await self._http.get(path, params=params)
            except httpx.TransportError as error:
                last_problem = f"{type(error).__name__}: {error}".rstrip(": ")
            else:
                status = response.status_code
                if status == 200:
                    return _json_of(response)
                if status == 429 or status >= 500:
                    last_problem = f"HTTP {status}"
                    retry_after = _retry_after_s(response.headers.get("Retry-After"))
                else:
                    raise RequestRefused(f"HTTP {status} for {response.request.url}")
            if attempt + 1 < self.max_attempts:
                await self._sleep(self._delay_s(attempt, retry_after))
        raise SourceUnavailable(
            f"Energi Data Service not answering after {self.max_attempts} attempts ({last_problem})"
        )

    def _delay_s(self, attempt: int, retry_after: float | None) -> float:
        """What the server asked for, else exponential backoff with jitter: half the doubled
        delay fixed, half random, so that clients that failed together do not retry together."""
        if retry_after is not None:
            return retry_after
        ceiling: float = min(self.backoff_max_s, self.backoff_s * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def _retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or an HTTP date); None when absent or
    unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _json_of(response: httpx.Response) -> Any:
    try:
        # Decimals, not floats: an intensity is priced exactly as the API states it.
        return json.loads(response.content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedResponse(f"not JSON: {error}") from None


def _page_of(document: Any) -> Page:
    if not isinstance(document, dict):
        raise MalformedResponse("the answer is not a JSON object")
    records = document.get("records")
    total = document.get("total")
    if not isinstance(records, list):
        raise MalformedResponse("'records' is not a list")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise MalformedResponse("'total' is not a count")
    values = []
    for index, record in enumerate(records):
        value = _value_of(index, record)
        if value is not None:
            values.append(value)
    return Page(values, len(records), total)


def _value_of(index: int, record: Any) -> FiveMinuteIntensity | None:
    """One record's value; None for a record without one (a gap the API leaves open)."""
    where = f"records[{index}]"
    if not isinstance(record, dict):
        raise MalformedResponse(f"{where} is not an object")
    raw_minute = record.get("Minutes5UTC")
    area = record.get("PriceArea")
    raw_value = record.get("CO2Emission")
    if not isinstance(raw_minute, str) or not isinstance(area, str):
        raise MalformedResponse(f"{where}: Minutes5UTC and PriceArea must be text")
    try:
        minute = datetime.fromisoformat(raw_minute.removesuffix("Z"))
    except ValueError:
        raise MalformedResponse(f"{where}: Minutes5UTC {raw_minute!r} is not a time") from None
    if minute.tzinfo is not None:
        minute = minute.astimezone(UTC).replace(tzinfo=None)
    if raw_value is None:
        return None
    if isinstance(raw_value, bool) or not isinstance(raw_value, int | Decimal):
        raise MalformedResponse(f"{where}: CO2Emission {raw_value!r} is not a number")
    value = Decimal(raw_value)
    if not value.is_finite() or not 0 <= value <= MAX_PLAUSIBLE_G_PER_KWH:
        raise MalformedResponse(f"{where}: CO2Emission {raw_value!r} is not a g/kWh figure")
    return FiveMinuteIntensity(minute.replace(tzinfo=UTC), area, value)
