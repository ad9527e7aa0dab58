"""A small Server-Sent Events client on asyncio streams, for the gateway's tests and benchmark:
hundreds of them cost little, and a test can cut one's connection as a network would."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None


class SseError(Exception):
    pass


@dataclass(frozen=True)
class Credentials:
    """How a client reaches the gateway: the CA its certificate is signed by, and a token."""

    ca_file: Path
    token: str

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


class SseConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.last_event_id: str | None = None
        self._chunked = False
        # What was read and not yet parsed starts at _start (no copy per event taken).
        self._buffer = b""
        self._start = 0
        self._parsed: collections.deque[SseEvent] = collections.deque()

    @classmethod
    async def open(
        cls,
        url: str,
        last_event_id: str | None = None,
        *,
        credentials: Credentials | None = None,
        tls: ssl.SSLContext | None = None,
        token: str | None = None,
    ) -> SseConnection:
        """Sends the GET; returns once the response's headers are in (any status). An https
        URL is reached over TLS (`tls`, else the credentials' CA); the token (`token`, else the
        credentials') goes in the Authorization header."""
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        if secure and tls is None:
            if credentials is None:
                raise SseError("an https URL needs credentials or a TLS context")
            tls = credentials.ssl_context()
        reader, writer = await asyncio.open_connection(
            parts.hostname, parts.port or (443 if secure else 80), ssl=tls if secure else None
        )
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Accept: text/event-stream",
        ]
        token = token if token is not None else (credentials.token if credentials else "")
        if token:
            lines.append(f"Authorization: Bearer {token}")
        if last_event_id:
            lines.append(f"Last-Event-ID: {last_event_id}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        connection = cls(reader, writer)
        connection.last_event_id = last_event_id
        status_line = await reader.readline()
        if not status_line:
            raise SseError("connection closed before a response")
        connection.status = int(status_line.split()[1])
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode().partition(":")
            connection.headers[name.strip().lower()] = value.strip()
        connection._chunked = connection.headers.get("transfer-encoding") == "chunked"
        return connection

    async def body(self) -> bytes:
        """The whole body of a response that is not a stream (an error, say)."""
        if self._chunked:
            data = b""
            while chunk := await self._read_chunk():
                data += chunk
            return data
        length = int(self.headers.get("content-length", "0"))
        return await self.reader.readexactly(length)

    async def _read_chunk(self) -> bytes:
        size_line = await self.reader.readline()
        if not size_line:
            raise SseError("stream closed")
        size = int(size_line.split(b";")[0], 16)
        chunk = await self.reader.readexactly(size)
        await self.reader.readexactly(2)
        return chunk

    async def _more(self) -> None:
        if self._chunked:
            chunk = await self._read_chunk()
            if not chunk:
                raise SseError("stream ended")
        else:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise SseError("stream closed")
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        if self._start >= len(self._buffer):
            self._buffer = chunk
        else:
            self._buffer = self._buffer[self._start :] + chunk
        self._start = 0

    async def next_region(self) -> tuple[bytes, int, int]:
        """Every complete event block read so far, unparsed, as `buffer[start:end]` (at least
        one block; waits for it): for a reader of many events that needs a few bytes of each.
        Moves last_event_id to the last id among them."""
        while True:
            end = self._buffer.rfind(b"\n\n", self._start)
            if end >= 0:
                buffer, start, self._start = self._buffer, self._start, end + 2
                id_line = buffer.rfind(b"\nid:", start, end)
                if id_line >= 0:
                    id_line += 1
                elif buffer.startswith(b"id:", start):
                    id_line = start
                if id_line >= 0:
                    line_end = buffer.find(b"\n", id_line)
                    self.last_event_id = buffer[id_line + 3 : line_end].decode().removeprefix(" ")
                return buffer, start, end + 2
            await self._more()

    async def next_event(self) -> SseEvent:
        """The next event (comments and retry-only blocks are skipped); raises SseError when
        the stream ends. Tracks the last event id as EventSource does."""
        while not self._parsed:
            end = self._buffer.rfind(b"\n\n", self._start)
            if end < 0:
                await self._more()
                continue
            blocks = self._buffer[self._start : end].split(b"\n\n")
            self._start = end + 2
            self._parsed.extend(filter(None, map(_parse_block, blocks)))
        event = self._parsed.popleft()
        if event.id is not None:
            self.last_event_id = event.id
        return event

    def abort(self) -> None:
        """Cuts the connection at once, without a goodbye."""
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def _parse_block(block: bytes) -> SseEvent | None:
    event, data, event_id = "message", [], None
    for line in block.decode().split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
    if data or event_id is not None:
        return SseEvent(event, "\n".join(data), event_id)
    return None
