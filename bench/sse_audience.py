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
import ssl
import sys
import time
from array import array
from datetime import datetime

from bench.sse import SseConnection, SseError

ENTRY_ID_FIELD = '"entryId":"'
OCCURRED_AT_FIELD = '"occurredAt":"'
# What the gateway tells EventSource to wait before reconnecting.
RETRY_S = 1.0


def _field(data: str, prefix: str) -> str:
    """A string field of the event's JSON without parsing all of it (the audience reads
    hundreds of thousands of events; the ids and times are plain strings)."""
    start = data.index(prefix) + len(prefix)
    return data[start : data.index('"', start)]


class Client:
    def __init__(self) -> None:
        self.entry_ids: set[str] = set()
        self.duplicates = 0
        self.error = ""
        self.reconnects = 0
        # stream-error events: the gateway disconnected this client as too slow.
        self.stream_errors = 0


class Audience:
    def __init__(self, url: str, clients: int, tls: ssl.SSLContext, token: str) -> None:
        self.url = url
        self.tls = tls
        self.token = token
        self.clients = [Client() for _ in range(clients)]
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
        while True:
            event = await connection.next_event()
            if event.event != "ledger-entry":
                if event.event == "stream-error":
                    client.stream_errors += 1
                continue
            arrived = time.time()
            entry_id = _field(event.data, ENTRY_ID_FIELD)
            if entry_id in client.entry_ids:
                client.duplicates += 1
                continue
            client.entry_ids.add(entry_id)
            self._progress.set()
            occurred = datetime.fromisoformat(_field(event.data, OCCURRED_AT_FIELD))
            self.delays_s.append(arrived - occurred.timestamp())

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
        while any(len(c.entry_ids) < expected for c in self.clients):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(remaining, 1.0))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ordered = sorted(self.delays_s)
        return {
            "cpu_s": time.process_time(),
            "clients": len(self.clients),
            "expected_entries": expected,
            "complete_clients": sum(len(c.entry_ids) == expected for c in self.clients),
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
