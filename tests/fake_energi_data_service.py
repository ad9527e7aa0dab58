"""A stand-in for Energi Data Service's dataset API on loopback, for tests: it answers
GET /dataset/CO2Emis in the API's JSON shape, with the query parameters the ledger sends
(start and end in Danish local time, filter on PriceArea, sort, offset, limit).

EVERY FIGURE IT SERVES IS MADE UP for the tests: the values are not Energinet's, and no test
says anything about Denmark's real grid. Only the shape (field names, units, time fields,
paging) follows the API's documentation.

Tests can script answers ahead of the data (a 429 with Retry-After, a 5xx, a slow or a
malformed answer), make it refuse requests that come faster than a minimum interval, as the
real service does, and read the log of requests it received.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

DANISH_TIME = ZoneInfo("Europe/Copenhagen")
DATASET = "CO2Emis"


@dataclass
class Scripted:
    """One answer given instead of the data, in the order scripted."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Received:
    at: float
    path: str
    params: dict[str, str]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def made_up_hour(price_area: str, hour_start: datetime, values: list[int]) -> list[dict[str, Any]]:
    """Twelve made-up five-minute records of one hour (or fewer, for an incomplete hour)."""
    records = []
    for index, value in enumerate(values):
        minute = hour_start.astimezone(UTC) + timedelta(minutes=5 * index)
        records.append(
            {
                "Minutes5UTC": f"{minute:%Y-%m-%dT%H:%M:%S}",
                "Minutes5DK": f"{minute.astimezone(DANISH_TIME):%Y-%m-%dT%H:%M:%S}",
                "PriceArea": price_area,
                "CO2Emission": value,
            }
        )
    return records


class FakeEnergiDataService:
    def __init__(self, port: int = 0, min_interval_s: float = 0.0) -> None:
        self.port = port or free_port()
        self.min_interval_s = min_interval_s
        self.records: list[dict[str, Any]] = []
        self.script: deque[Scripted] = deque()
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_hour(self, price_area: str, hour_start: datetime, values: list[int]) -> None:
        with self._lock:
            self.records.extend(made_up_hour(price_area, hour_start, values))

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.02), daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeEnergiDataService:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        params = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        now = time.monotonic()
        with self._lock:
            previous = self.requests[-1].at if self.requests else None
            self.requests.append(Received(now, parts.path, params))
            scripted = self.script.popleft() if self.script else None
            too_soon = previous is not None and now - previous < self.min_interval_s
        if scripted is not None:
            time.sleep(scripted.delay_s)
            self._send(request, scripted.status, scripted.body, scripted.headers)
        elif too_soon:
            self._send(request, 429, b"Too many requests", {"Retry-After": "1"})
        elif parts.path != f"/dataset/{DATASET}":
            self._send(request, 404, b'{"error": "no such dataset"}', {})
        else:
            body = json.dumps(self._query(params)).encode()
            self._send(request, 200, body, {"Content-Type": "application/json"})

    def _query(self, params: dict[str, str]) -> dict[str, Any]:
        start = _danish(params["start"])
        end = _danish(params["end"])
        areas = json.loads(params.get("filter", "{}")).get("PriceArea")
        if params.get("sort", "Minutes5UTC ASC").split()[0] != "Minutes5UTC":
            raise ValueError("the fake sorts by Minutes5UTC only")
        offset = int(params.get("offset", "0"))
        limit = int(params.get("limit", "100"))
        with self._lock:
            selected = [
                record
                for record in self.records
                if start <= _utc(record["Minutes5UTC"]) < end
                and (areas is None or record["PriceArea"] in areas)
            ]
        selected.sort(key=lambda record: (record["Minutes5UTC"], record["PriceArea"]))
        return {
            "total": len(selected),
            "filters": params.get("filter", ""),
            "limit": limit,
            "dataset": DATASET,
            "records": selected[offset : offset + limit],
        }

    @staticmethod
    def _send(
        request: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        try:
            request.send_response(status)
            for name, value in headers.items():
                request.send_header(name, value)
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test)


def _danish(text: str) -> datetime:
    """A query time: Danish local time, as the API reads start and end."""
    return datetime.fromisoformat(text).replace(tzinfo=DANISH_TIME).astimezone(UTC)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
