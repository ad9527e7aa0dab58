"""Many SSE clients on one gateway stream, in a process of their own (so that their parsing does
not slow the load generator, nor its pacing their clocks).

    python -m bench.sse_audience --url URL --clients N --ca-file CA   (token in SSE_TOKEN)

Opens the clients, prints `ready` once every one has its response headers, then records, per
`ledger-entry` event, the delay from the entry's `occurredAt` (stamped in the ledger's posting
transaction, just before it commits) to the moment the client read it. When a line with an
entry count arrives on stdin, it waits (bounded) until every client has that many distinct
entries, then prints one JSON line of results and exits. A client whose stream ends (the gateway
disconnects clients that fall too far behind) reconnects with Last-Event-ID, as EventSource does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import ssl
import sys
import time
from array import array
from datetime import datetime

from bench.sse import SseConnection, SseError

# A ledger-entry event's commit time and entry id, found by the regular expression engine
# rather than by parsing the JSON (the audience reads millions of events). LedgerEntryPosted
# renders event_id, occurred_at, entry in that order, and the entry's first field is its id.
ENTRY_EVENT = re.compile(
    rb'event: ledger-entry\n(?:id: [^\n]*\n)?data: \{"eventId":"[^"]*",'
    rb'"occurredAt":"([^"]*)","entry":\{"entryId":"([^"]*)"'
)
ENTRY_EVENT_NAME = b"event: ledger-entry\n"
ERROR_EVENT = b"event: stream-error\n"
# What the gateway tells EventSource to wait before reconnecting.
RETRY_S = 1.0


class Entries:
    """Every entry any client received, numbered once (each client keeps a set of numbers, not
    of id strings) and its commit time parsed once."""

    def __init__(self) -> None:
        self.numbers: dict[bytes, int] = {}
        self.committed_s: list[float] = []

    def numbered(self, found: list[tuple[bytes, bytes]]) -> list[int]:
        numbers = self.numbers
        for occurred_at, entry_id in found:
            if entry_id not in numbers:
                numbers[entry_id] = len(self.committed_s)
                moment = datetime.fromisoformat(occurred_at.decode())
                self.committed_s.append(moment.timestamp())
        return [numbers[entry_id] for _, entry_id in found]


class Client:
    def __init__(self) -> None:
        self.received: set[int] = set()
        self.duplicates = 0
        self.error = ""
        self.reconnects = 0
        # stream-error events: the gateway disconnected this client as too slow.
        self.stream_errors = 0

    @property
    def distinct(self) -> int:
        return len(self.received)


class Audience:
    def __init__(self, url: str, clients: int, tls: ssl.SSLContext, token: str) -> None:
        self.url = url
        self.tls = tls
        self.token = token
        self.clients = [Client() for _ in range(clients)]
        self.entries = Entries()
        self.delays_s = array("d")
        self.connected = 0
        self._all_connected = asyncio.Event()
        self._progress = asyncio.Event()

    async def follow(self, client: Client) -> None:
        """One dashboard: like EventSource, it reconnects with Last-Event-ID when its stream
        ends (the gateway disconnects a client that falls too far behind) and goes on."""
        last_event_id: str | None = None
        first = True
        while True:
            if not first:
                client.reconnects += 1
                await asyncio.sleep(RETRY_S)
            try:
                connection = await SseConnection.open(
                    self.url, last_event_id, tls=self.tls, token=self.token
                )
            except (OSError, SseError) as error:
                client.error = f"{type(error).__name__}: {error}"
                if first:
                    first = False
                    self._connected()
                continue
            if first:
                first = False
                self._connected()
            if connection.status != 200:
                client.error = f"HTTP {connection.status}"
                await connection.close()
                continue
            try:
                await self._read(client, connection)
            except (OSError, SseError):
                pass  # the stream ended: resume after the last event
            finally:
                last_event_id = connection.last_event_id
                await connection.close()

    async def _read(self, client: Client, connection: SseConnection) -> None:
        entries, delays, received = self.entries, self.delays_s, client.received
        while True:
            buffer, start, end = await connection.next_region()
            arrived = time.time()
            region = buffer[start:end] if start or end < len(buffer) else buffer
            found = ENTRY_EVENT.findall(region)
            if len(found) != region.count(ENTRY_EVENT_NAME):
                raise AssertionError("a ledger-entry event the audience cannot read")
            client.stream_errors += region.count(ERROR_EVENT)
            numbers = entries.numbered(found)
            # Only a first arrival has a delay; a duplicate is counted apart.
            if not received.isdisjoint(numbers):
                numbers = [number for number in numbers if number not in received]
            before = len(received)
            received.update(numbers)
            client.duplicates += len(found) - (len(received) - before)
            committed = entries.committed_s
            delays.extend([arrived - committed[number] for number in numbers])
            self._progress.set()

    def _connected(self) -> None:
        self.connected += 1
        if self.connected == len(self.clients):
            self._all_connected.set()

    async def run(self, settle_timeout_s: float) -> dict[str, object]:
        tasks = []
        for client in self.clients:
            tasks.append(asyncio.create_task(self.follow(client)))
            await asyncio.sleep(0.005)  # a crowd arriving, not a single burst
        await self._all_connected.wait()
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        expected = int(line)
        deadline = time.monotonic() + settle_timeout_s
        while any(c.distinct < expected for c in self.clients):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(remaining, 1.0))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        cpu_s = time.process_time()
        ordered = sorted(self.delays_s)
        return {
            "cpu_s": cpu_s,
            "clients": len(self.clients),
            "expected_entries": expected,
            "complete_clients": sum(c.distinct == expected for c in self.clients),
            "duplicates": sum(c.duplicates for c in self.clients),
            "errors": sorted({c.error for c in self.clients if c.error})[:5],
            "errored_clients": sum(bool(c.error) for c in self.clients),
            "slow_disconnects": sum(c.stream_errors for c in self.clients),
            "reconnects": sum(c.reconnects for c in self.clients),
            "events": len(ordered),
            "delay_s": {
                name: _percentile(ordered, fraction)
                for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
            }
            if ordered
            else {},
        }


def _percentile(ordered: list[float], fraction: float) -> float:
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--settle-timeout", type=float, default=60.0)
    arguments = parser.parse_args(argv)
    audience = Audience(
        arguments.url,
        arguments.clients,
        ssl.create_default_context(cafile=arguments.ca_file),
        os.environ["SSE_TOKEN"],
    )
    print(json.dumps(await audience.run(arguments.settle_timeout)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
