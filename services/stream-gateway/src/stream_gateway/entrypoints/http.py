"""The gateway's HTTP API: Server-Sent Events streams, the live dashboard, health, metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sse_starlette import EventSourceResponse, ServerSentEvent
from uvicorn.protocols.http.h11_impl import H11Protocol

from servicekit.identity import TokenVerifier
from stream_gateway.adapters.catalogue import STREAMS, EventStream, StateStream
from stream_gateway.domain.filters import StreamFilter, normalise_enum
from stream_gateway.domain.positions import InvalidPosition, parse_position
from stream_gateway.entrypoints.access import (
    CHALLENGE,
    SESSION_COOKIE,
    SESSION_COOKIE_PATH,
    Reader,
    authenticate,
    authorise_reader,
    bearer_token,
)
from stream_gateway.handlers import (
    PositionAhead,
    SlowClient,
    Start,
    StreamGateway,
    TooManyClients,
)

log = logging.getLogger(__name__)

# What the TLS layer may hold for a client before the writer waits (asyncio's default is
# 512 KiB): with hundreds of clients that do not read, their send buffers would otherwise be
# most of the gateway's memory.
SEND_BUFFER_BYTES = 64 * 1024


class BoundedSendH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a smaller write buffer per connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        transport.set_write_buffer_limits(high=SEND_BUFFER_BYTES)
        super().connection_made(transport)


STATIC = Path(__file__).resolve().parents[1] / "static"
MAX_LAST = 10_000
# EventSource waits this long (ms) before it reconnects after a drop.
RETRY_MS = 1000


def _stream_filter(stream: EventStream | StateStream, **given: Any) -> StreamFilter:
    unknown = [name for name, value in given.items() if value and name not in stream.filters]
    if unknown:
        raise HTTPException(
            400,
            f"stream {stream.name} has no filter {', '.join(unknown)}; it has "
            f"{', '.join(stream.filters)}",
        )
    return StreamFilter(
        municipality=given["municipality"] or "",
        year=given["year"] or 0,
        sector=normalise_enum(given["sector"] or "", "SECTOR_"),
        vehicle=given["vehicle"] or "",
        hub=given["hub"] or "",
        fuel=normalise_enum(given["fuel"] or "", "FUEL_TYPE_"),
    )


def _start(topic: str, last_event_id: str | None, from_: str | None, last: int | None) -> Start:
    if last_event_id:
        try:
            return Start(position=parse_position(last_event_id, topic))
        except InvalidPosition as error:
            raise HTTPException(400, str(error)) from error
    if from_:
        if from_ == "earliest":
            return Start(at_ms=0)
        try:
            moment = datetime.fromisoformat(from_)
        except ValueError as error:
            raise HTTPException(400, "from: an ISO 8601 time or 'earliest'") from error
        if moment.tzinfo is None:
            raise HTTPException(400, "from: the time needs a UTC offset, e.g. Z")
        return Start(at_ms=int(moment.timestamp() * 1000))
    if last is not None:
        return Start(last=last)
    return Start()


def _stream_error(reason: str, detail: str) -> ServerSentEvent:
    return ServerSentEvent(
        data=json.dumps({"reason": reason, "detail": detail}), event="stream-error"
    )


def _session(reader: Reader) -> dict[str, Any]:
    principal = reader.principal
    return {
        "subject": principal.subject,
        "roles": sorted(principal.roles),
        "partner": principal.partner_id,
        "municipality": reader.confined_to,
        "expiresAt": datetime.fromtimestamp(reader.expires_at).astimezone().isoformat(),
    }


def create_app(
    gateway: StreamGateway,
    registry: CollectorRegistry,
    tokens: TokenVerifier,
    send_timeout_s: float = 30.0,
) -> FastAPI:
    app = FastAPI(
        title="Green Partnerships stream gateway",
        version="1",
        description=(
            "Live streams of the platform's topics and of states derived from them, as "
            "Server-Sent Events. Each event's id is its position; reconnect with Last-Event-ID "
            "to resume with the next event. Message schemas: docs/asyncapi/streams.yaml. "
            "Every route with data needs a platform bearer token (Authorization: Bearer, or "
            "the session cookie POST /session sets from one): docs/security.md."
        ),
    )
    app.state.tokens = tokens

    @app.get("/streams/{stream_name}", response_class=Response, tags=["streams"])
    async def stream(
        stream_name: str,
        reader: Annotated[Reader, Depends(authorise_reader)],
        last_event_id: Annotated[str | None, Header(description="resume after this event")] = None,
        position: Annotated[
            str | None, Query(description="resume after this position (as Last-Event-ID)")
        ] = None,
        from_: Annotated[
            str | None,
            Query(alias="from", description="start at this ISO 8601 time, or 'earliest'"),
        ] = None,
        last: Annotated[
            int | None, Query(ge=0, le=MAX_LAST, description="start N records per partition back")
        ] = None,
        municipality: str | None = None,
        year: Annotated[int | None, Query(ge=1990, le=2100)] = None,
        sector: Annotated[str | None, Query(description="e.g. transport or SECTOR_WASTE")] = None,
        vehicle: str | None = None,
        hub: str | None = None,
        fuel: Annotated[str | None, Query(description="e.g. diesel or FUEL_TYPE_ELECTRIC")] = None,
    ) -> EventSourceResponse:
        """Subscribes to one stream (see GET /streams for their names and filters)."""
        selected = STREAMS.get(stream_name)
        if selected is None:
            raise HTTPException(404, f"no stream {stream_name}; see /streams")
        if reader.confined_to is not None and "municipality" not in selected.filters:
            raise HTTPException(403, f"stream {stream_name} is not one municipality's")
        wanted = _stream_filter(
            selected,
            municipality=reader.municipality(municipality),
            year=year,
            sector=sector,
            vehicle=vehicle,
            hub=hub,
            fuel=fuel,
        )
        start = _start(selected.topic, last_event_id or position, from_, last)
        try:
            gateway.admit(selected.name)
        except TooManyClients as error:
            raise HTTPException(503, str(error), headers={"Retry-After": "5"}) from error

        async def events() -> AsyncIterator[ServerSentEvent | bytes]:
            try:
                yield ServerSentEvent(comment="stream " + selected.name, retry=RETRY_MS)
                if isinstance(selected, EventStream):
                    source = gateway.subscribe_events(selected, wanted, start)
                else:
                    source = gateway.subscribe_states(selected, wanted, start)
                async for chunk in source:
                    yield chunk
            except SlowClient as error:
                yield _stream_error("slow_client", str(error))
            except PositionAhead as error:
                yield _stream_error("position_ahead", str(error))
            finally:
                gateway.leave(selected.name)

        return EventSourceResponse(events(), ping=0, send_timeout=send_timeout_s)

    @app.get("/streams", tags=["streams"])
    async def streams(reader: Annotated[Reader, Depends(authorise_reader)]) -> list[dict[str, Any]]:
        """The streams, their topics, filters and SSE event names."""
        return [
            {
                "name": s.name,
                "kind": "events" if isinstance(s, EventStream) else "states",
                "topic": s.topic,
                "event": s.event,
                "filters": list(s.filters),
                "description": s.description,
                "path": f"/streams/{s.name}",
            }
            for s in STREAMS.values()
        ]

    @app.post("/session", tags=["session"])
    async def sign_in(request: Request) -> JSONResponse:
        """Signs a browser in: the bearer token of the Authorization header (never a form field,
        which another site could post) becomes an HttpOnly cookie the streams accept."""
        token = bearer_token(request, cookie=False)
        if token is None:
            raise HTTPException(401, "send the token as 'Authorization: Bearer <token>'", CHALLENGE)
        reader = authenticate(tokens, token)
        response = JSONResponse(_session(reader))
        response.set_cookie(
            SESSION_COOKIE,
            reader.token,
            max_age=max(0, reader.expires_at - int(time.time())),
            path=SESSION_COOKIE_PATH,
            secure=True,
            httponly=True,
            samesite="strict",
        )
        return response

    @app.get("/session", tags=["session"])
    async def session(reader: Annotated[Reader, Depends(authorise_reader)]) -> dict[str, Any]:
        """Who the request's token or session cookie names (401 when none is valid)."""
        return _session(reader)

    @app.delete("/session", tags=["session"], status_code=204)
    async def sign_out() -> Response:
        response = Response(status_code=204)
        response.delete_cookie(
            SESSION_COOKIE, path=SESSION_COOKIE_PATH, secure=True, httponly=True, samesite="strict"
        )
        return response

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "serving"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """Ready once every topic's tail has read what the topic held at start."""
        ready = gateway.ready
        return JSONResponse(
            {
                "ready": ready,
                "clients": gateway.clients_connected,
                "positions": {t: h.position_id() for t, h in gateway.hubs.items()},
            },
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def dashboard(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
