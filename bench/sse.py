"""A small Server-Sent Events client on asyncio streams, for the gateway's tests and benchmark:
hundreds of them cost little, and a test can cut one's connection as a network would."""

from __future__ import annotations

import asyncio
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
        self._buffer = b""

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
        chunk = await self.reader.readexactly(size + 2)
        return chunk[:-2]

    async def _more(self) -> None:
        if self._chunked:
            chunk = await self._read_chunk()
            if not chunk:
                raise SseError("stream ended")
        else:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise SseError("stream closed")
        self._buffer += chunk.replace(b"\r\n", b"\n")

    async def next_event(self) -> SseEvent:
        """The next event (comments and retry-only blocks are skipped); raises SseError when
        the stream ends. Tracks the last event id as EventSource does."""
        while True:
            while b"\n\n" not in self._buffer:
                await self._more()
            block, self._buffer = self._buffer.split(b"\n\n", 1)
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
            if event_id is not None:
                self.last_event_id = event_id
            if data or event_id is not None:
                return SseEvent(event, "\n".join(data), event_id)

    def abort(self) -> None:
        """Cuts the connection at once, without a goodbye."""
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
