"""Who may read the gateway: HTTPS only, the platform's bearer tokens in a header or in the
session cookie POST /session sets, read-only roles, a climate officer kept to their own
municipality."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from bench.sse import Credentials, SseConnection, SseError
from servicekit.identity import CLIMATE_OFFICER, DASHBOARD, FLEET_MANAGER, OPERATOR, RESIDENT
from servicekit.topics import TopicNames
from tests.test_identity import forged_token
from tests.test_stream_gateway import (
    AALBORG,
    StartGateway,
    entry,
    entry_ids,
    events_until,
    publish_entries,
    quiet,
)
from tests.test_stream_gateway import names as names
from tests.test_stream_gateway import start_gateway as start_gateway
from tools.pki import Pki

AARHUS = "aarhus-kommune"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: Any


def request(
    pki: Pki,
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> Answer:
    """One HTTPS request, checking the gateway's certificate against the platform's CA."""
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    connection = http.client.HTTPSConnection(parts.netloc, context=context, timeout=10)
    try:
        connection.request(
            method, parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers or {}
        )
        response = connection.getresponse()
        raw = response.read()
        body = (
            json.loads(raw) if raw and "json" in response.headers.get("content-type", "") else raw
        )
        return Answer(response.status, response.headers, body)
    finally:
        connection.close()


async def call(pki: Pki, url: str, method: str = "GET", **headers: str) -> Answer:
    return await asyncio.to_thread(request, pki, url, method, headers)


async def stream_status(gateway_url: str, pki: Pki, path: str, token: str = "") -> int:
    connection = await SseConnection.open(
        f"{gateway_url}{path}", tls=Credentials(pki.ca_file, "").ssl_context(), token=token
    )
    await connection.close()
    return connection.status


async def test_only_readers_with_a_valid_token_get_data(
    start_gateway: StartGateway, pki: Pki
) -> None:
    gateway = await start_gateway()
    url = gateway.url
    path = "/streams/ledger-entries"
    assert await stream_status(url, pki, path) == 401
    no_token = await call(pki, f"{url}{path}")
    assert no_token.headers["www-authenticate"] == 'Bearer realm="stream-gateway"'
    assert await stream_status(url, pki, path, "not-a-jwt") == 401
    unknown_key = forged_token(pki, key=ec.generate_private_key(ec.SECP256R1()), kid="unknown")
    assert await stream_status(url, pki, path, unknown_key) == 401
    assert await stream_status(url, pki, path, forged_token(pki, exp=1_000_000_000)) == 401
    assert await stream_status(url, pki, path, forged_token(pki, aud="elsewhere")) == 401
    for role in (RESIDENT, FLEET_MANAGER):
        assert await stream_status(url, pki, path, pki.token(role, AALBORG)) == 403
    for role in (DASHBOARD, OPERATOR):
        assert await stream_status(url, pki, path, pki.token(role)) == 200
    dashboard = pki.token(DASHBOARD)
    assert (await call(pki, f"{url}/streams")).status == 401
    assert (await call(pki, f"{url}/streams", authorization=f"Bearer {dashboard}")).status == 200
    # Health, readiness, metrics and the page itself (no data in it) are open.
    for open_path in ("/healthz", "/readyz", "/metrics", "/", "/static/dashboard.js"):
        assert (await call(pki, f"{url}{open_path}")).status == 200, open_path
    # HTTPS only: a plaintext request gets no HTTP answer.
    plain = url.replace("https://", "http://")
    try:
        connection = await SseConnection.open(f"{plain}{path}")
        answered = connection.status
        await connection.close()
    except (SseError, ValueError, ConnectionError, IndexError):
        answered = 0
    assert answered in (0, 400)


async def test_a_climate_officer_reads_their_own_municipality_only(
    kafka: str, names: TopicNames, start_gateway: StartGateway, pki: Pki
) -> None:
    ours, theirs = entry(kg="2"), entry(municipality=AARHUS, kg="7")
    await publish_entries(kafka, names, [ours, theirs])
    gateway = await start_gateway()
    officer = Credentials(pki.ca_file, pki.token(CLIMATE_OFFICER, AALBORG))
    connection = await SseConnection.open(
        f"{gateway.url}/streams/ledger-entries?from=earliest", credentials=officer
    )
    assert connection.status == 200
    assert entry_ids(await events_until(connection, 1, "ledger-entry")) == [ours.entry.entry_id]
    assert await quiet(connection, "ledger-entry", 1.0) == []
    await connection.close()
    inventory = await SseConnection.open(
        f"{gateway.url}/streams/inventory?year=2026", credentials=officer
    )
    (state,) = await events_until(inventory, 1, "inventory")
    assert json.loads(state.data)["municipalityId"] == AALBORG
    await inventory.close()
    refused = await SseConnection.open(
        f"{gateway.url}/streams/ledger-entries?municipality={AARHUS}", credentials=officer
    )
    assert refused.status == 403
    await refused.close()
    without_municipality = pki.token(CLIMATE_OFFICER)
    assert await stream_status(gateway.url, pki, "/streams/inventory", without_municipality) == 403


async def test_a_browser_session_is_a_secure_http_only_cookie_set_from_a_bearer_token(
    start_gateway: StartGateway, pki: Pki
) -> None:
    gateway = await start_gateway()
    url = gateway.url
    token = pki.token(CLIMATE_OFFICER, AALBORG, subject="officer-7")
    signed_in = await call(pki, f"{url}/session", "POST", authorization=f"Bearer {token}")
    assert signed_in.status == 200
    assert signed_in.body["subject"] == "officer-7"
    assert signed_in.body["municipality"] == AALBORG
    cookie_header = signed_in.headers["set-cookie"]
    cookie = SimpleCookie(cookie_header)["gateway_session"]
    assert cookie.value == token
    attributes = cookie_header.lower()
    for attribute in ("httponly", "secure", "samesite=strict", "path=/", "max-age="):
        assert attribute in attributes, attribute
    assert 0 < int(cookie["max-age"]) <= 8 * 3600

    session_cookie = f"gateway_session={cookie.value}"
    assert (await call(pki, f"{url}/session", cookie=session_cookie)).body["subject"] == (
        "officer-7"
    )
    connection = await SseConnection.open(
        f"{url}/streams/inventory?year=2026",
        tls=Credentials(pki.ca_file, "").ssl_context(),
        token="",
    )
    assert connection.status == 401
    await connection.close()
    with_cookie = await asyncio.to_thread(
        request, pki, f"{url}/streams", "GET", {"cookie": session_cookie}
    )
    assert with_cookie.status == 200

    # Only the Authorization header signs in: a form another site could post does not.
    form = await call(
        pki,
        f"{url}/session",
        "POST",
        **{"content-type": "application/x-www-form-urlencoded"},
    )
    assert form.status == 401
    refused = await call(
        pki, f"{url}/session", "POST", authorization=f"Bearer {pki.token(RESIDENT)}"
    )
    assert refused.status == 403
    assert "set-cookie" not in refused.headers
    signed_out = await call(pki, f"{url}/session", "DELETE", cookie=session_cookie)
    assert signed_out.status == 204
    assert 'gateway_session=""' in signed_out.headers["set-cookie"]
    assert (await call(pki, f"{url}/session")).status == 401
