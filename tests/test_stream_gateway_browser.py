"""The live dashboard in a real browser (Debian's chromium, driven by Playwright): signed in with
a token in the address's fragment (as make run prints it) or the sign-in form, totals change
when an event is produced, and after the gateway drops every connection (a restart), the page
resumes without losing or doubling a ledger entry.

The gateway serves HTTPS with a certificate of the test's own CA, which chromium does not know:
the browser is told to accept it (`ignore_https_errors`), the rest of TLS is real."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from greenpartners.ledger.v1 import ledger_pb2
from servicekit.identity import CLIMATE_OFFICER, DASHBOARD, RESIDENT
from servicekit.topics import TopicNames
from stream_gateway.bootstrap import GatewayRuntime, build
from tests.kafka_tools import ROOT
from tests.test_stream_gateway import AALBORG, entry, publish_entries
from tests.test_stream_gateway import names as names
from tools.pki import Pki
from tools.platform import free_ports

SCREENSHOTS = ROOT / "var" / "screenshots"


def chromium_path() -> str:
    found = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if found is None:
        pytest.fail("no chromium: install Debian's chromium package (.ci/run does)", pytrace=False)
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        await browser.close()


async def new_page(browser: Browser) -> Page:
    page = await browser.new_page(viewport={"width": 1280, "height": 900}, ignore_https_errors=True)
    page.on("console", lambda message: print("console:", message.text))
    page.on("pageerror", lambda error: print("page error:", error))
    return page


async def exact_total(page: Page) -> Decimal:
    return Decimal(await page.get_attribute("#total-emissions", "data-exact") or "0")


async def test_the_dashboard_shows_live_totals_and_resumes_after_the_connection_is_killed(
    kafka: str, names: TopicNames, browser: Browser, tmp_path: Path, pki: Pki
) -> None:
    (port,) = free_ports(1)

    async def start() -> GatewayRuntime:
        runtime = build(
            kafka_bootstrap_servers=kafka,
            topic_namespace=names.namespace,
            http_port=port,
            heartbeat_s=1.0,
        )
        await runtime.start()
        return runtime

    before = [entry(kg="10"), entry(kg="2.5", kind=ledger_pb2.ENTRY_KIND_AVOIDED_EMISSION)]
    await publish_entries(kafka, names, before)
    gateway = await start()
    try:
        page = await new_page(browser)
        address = f"{gateway.url}/?municipality={AALBORG}&year=2026"
        await page.goto(f"{address}#token={pki.token(DASHBOARD)}")
        await page.wait_for_selector("#status[data-state=live]", timeout=20_000)
        # The token became the session cookie and left the address bar.
        assert page.url == address
        cookies = await page.context.cookies()
        assert [(c["name"], c["httpOnly"], c["secure"]) for c in cookies] == [
            ("gateway_session", True, True)
        ]
        await page.wait_for_function("window.dashboardState.inventory !== null", timeout=20_000)
        assert await exact_total(page) == Decimal("10")
        # Recent entries start with the last ones posted before the page opened.
        await page.wait_for_function("window.dashboardState.entryIds.size === 2", timeout=20_000)

        # An event produced into Kafka changes the page's totals.
        await publish_entries(kafka, names, [entry(kg="1.25")])
        await page.wait_for_function(
            "document.querySelector('#total-emissions').dataset.exact === '11.25'", timeout=20_000
        )
        await page.wait_for_function("window.dashboardState.entryIds.size === 3", timeout=20_000)

        # The gateway goes away with every SSE connection; entries are posted meanwhile.
        await gateway.stop()
        await page.wait_for_selector("#status[data-state=reconnecting]", timeout=20_000)
        while_down = [entry(kg="0.5") for _ in range(4)]
        await publish_entries(kafka, names, while_down)
        gateway = await start()
        after = [entry(kg="0.25") for _ in range(3)]
        await publish_entries(kafka, names, after)

        expected = len(before) + 1 + len(while_down) + len(after)
        await page.wait_for_function(
            f"window.dashboardState.entryIds.size >= {expected}", timeout=30_000
        )
        await page.wait_for_selector("#status[data-state=live]", timeout=20_000)
        assert await page.evaluate("window.dashboardState.duplicates") == 0
        assert await page.evaluate("window.dashboardState.entryIds.size") == expected
        await page.wait_for_function(
            "document.querySelector('#total-emissions').dataset.exact === '14'",
            timeout=20_000,
        )
        assert await exact_total(page) == Decimal("14")
        assert await page.locator("#entries tbody tr").count() == expected
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "dashboard-test.png"), full_page=True)
    finally:
        await gateway.stop()


async def test_the_dashboard_asks_to_sign_in_and_keeps_a_climate_officer_to_their_municipality(
    kafka: str, names: TopicNames, browser: Browser, pki: Pki
) -> None:
    await publish_entries(
        kafka, names, [entry(kg="3"), entry(municipality="aarhus-kommune", kg="100")]
    )
    gateway = build(kafka_bootstrap_servers=kafka, topic_namespace=names.namespace, http_port=0)
    await gateway.start()
    try:
        page = await new_page(browser)
        # The address asks for another municipality; the officer's own is shown.
        await page.goto(f"{gateway.url}/?municipality=aarhus-kommune&year=2026")
        await page.wait_for_selector("#sign-in:not([hidden])", timeout=20_000)
        await page.fill("#token", pki.token(RESIDENT, subject="resident-42"))
        await page.click("#sign-in button")
        await page.wait_for_selector("#sign-in-reason:has-text('may not read')", timeout=10_000)
        await page.fill("#token", pki.token(CLIMATE_OFFICER, AALBORG))
        await page.click("#sign-in button")
        await page.wait_for_selector("#status[data-state=live]", timeout=20_000)
        await page.wait_for_function(
            "document.querySelector('#total-emissions').dataset.exact === '3'", timeout=20_000
        )
        assert await page.text_content("#place") == f"{AALBORG}, 2026"
        await page.wait_for_function("window.dashboardState.entryIds.size === 1", timeout=20_000)
    finally:
        await gateway.stop()
