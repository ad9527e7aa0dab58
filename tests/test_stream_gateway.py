"""stream-gateway against the real broker, over real HTTP on loopback: live streams, filters,
exact resume (also across a restart), derived states, slow clients and limits."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from google.protobuf.message import Message

from bench.sse import Credentials, SseConnection, SseError, SseEvent
from greenpartners.ledger.v1 import ledger_pb2
from greenpartners.lockers.v1 import lockers_pb2
from servicekit import topics
from servicekit.codec import event_headers, to_timestamp
from servicekit.identity import DASHBOARD
from servicekit.topics import TopicNames, ensure_topics
from stream_gateway.bootstrap import GatewayRuntime, build
from stream_gateway.domain.positions import parse_position
from stream_gateway.entrypoints.http import STATIC
from tests.kafka_tools import ROOT, unique_namespace
from tools.pki import Pki

AALBORG = "aalborg-kommune"
AT = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)

StartGateway = Callable[..., Awaitable[GatewayRuntime]]


@pytest.fixture
async def names(kafka: str) -> TopicNames:
    names = TopicNames(unique_namespace("gw"))
    await ensure_topics(kafka, names.all_specs())
    return names


@pytest.fixture(scope="module")
def reader(pki: Pki) -> Credentials:
    """A dashboard's credentials: it reads every municipality's streams."""
    return Credentials(pki.ca_file, pki.token(DASHBOARD))


def open_as(
    credentials: Credentials, url: str, last_event_id: str | None = None
) -> Awaitable[SseConnection]:
    return SseConnection.open(url, last_event_id, credentials=credentials)


@pytest.fixture
async def start_gateway(kafka: str, names: TopicNames) -> AsyncIterator[StartGateway]:
    """Starts gateways on this test's topics (free ports); stops what is still running."""
    running: list[GatewayRuntime] = []

    async def start(**overrides: object) -> GatewayRuntime:
        runtime = build(
            kafka_bootstrap_servers=kafka,
            topic_namespace=names.namespace,
            http_port=0,
            heartbeat_s=1.0,
            **overrides,
        )
        await runtime.start()
        running.append(runtime)
        return runtime

    yield start
    for runtime in running:
        await runtime.stop()


def entry(
    municipality: str = AALBORG,
    kg: str = "1.5",
    sector: int = ledger_pb2.SECTOR_TRANSPORT,
    kind: int = ledger_pb2.ENTRY_KIND_EMISSION,
    year: int = 2026,
) -> ledger_pb2.LedgerEntryPosted:
    event_id = str(uuid.uuid4())
    return ledger_pb2.LedgerEntryPosted(
        event_id=event_id,
        occurred_at=to_timestamp(AT),
        entry=ledger_pb2.LedgerEntry(
            entry_id=f"entry-{event_id}",
            municipality_id=municipality,
            year=year,
            sector=sector,  # type: ignore[arg-type]
            subsector=ledger_pb2.SUBSECTOR_MUNICIPAL_FLEET,
            energy_carrier=ledger_pb2.ENERGY_CARRIER_DIESEL,
            activity_amount="2",
            activity_unit="l",
            emission_factor=ledger_pb2.EmissionFactor(
                factor_id="diesel-2026", value="2.66", unit="kg CO2/l", source="IPCC", version="1"
            ),
            kg_co2e=kg,
            kind=kind,  # type: ignore[arg-type]
            source_event_id=f"source-{event_id}",
            source_topic=topics.ACTIVITY,
            activity_at=to_timestamp(AT),
            subject_id="aal-van-01",
        ),
    )


async def publish(kafka: str, topic: str, keyed: list[tuple[str, Message]]) -> None:
    """Publishes the events in one go (one fetch of the gateway's tail takes them all)."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=20)
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic,
                message.SerializeToString(),
                key=key.encode(),
                headers=[(k, v.encode()) for k, v in event_headers(message).items()],
            )
            for key, message in keyed
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def publish_entries(kafka: str, names: TopicNames, entries: list[Any]) -> None:
    await publish(
        kafka, names(topics.LEDGER_ENTRIES), [(e.entry.municipality_id, e) for e in entries]
    )


async def events_until(
    connection: SseConnection, count: int, kind: str, timeout_s: float = 20.0
) -> list[SseEvent]:
    """The next `count` events named `kind` (heartbeats skipped)."""
    found: list[SseEvent] = []
    async with asyncio.timeout(timeout_s):
        while len(found) < count:
            event = await connection.next_event()
            if event.event == kind:
                found.append(event)
    return found


async def quiet(connection: SseConnection, kind: str, seconds: float) -> list[SseEvent]:
    """Events named `kind` that arrive within `seconds` (a stream that should send none)."""
    found: list[SseEvent] = []
    deadline = time.monotonic() + seconds
    try:
        async with asyncio.timeout(seconds):
            while time.monotonic() < deadline:
                event = await connection.next_event()
                if event.event == kind:
                    found.append(event)
    except TimeoutError:
        pass
    return found


def entry_ids(events: list[SseEvent]) -> list[str]:
    return [json.loads(event.data)["entry"]["entryId"] for event in events]


async def test_live_entries_are_filtered_on_the_server_and_rendered_as_protobuf_json(
    kafka: str, names: TopicNames, start_gateway: StartGateway, reader: Credentials
) -> None:
    gateway = await start_gateway()
    connection = await open_as(
        reader, f"{gateway.url}/streams/ledger-entries?municipality={AALBORG}&sector=transport"
    )
    assert connection.status == 200
    assert connection.headers["content-type"].startswith("text/event-stream")
    await events_until(connection, 1, "heartbeat")  # subscribed: the live tail has it

    wanted = [entry(kg="1.25"), entry(kg="3")]
    await publish_entries(
        kafka,
        names,
        [
            wanted[0],
            entry(municipality="hjoerring-kommune"),
            entry(sector=ledger_pb2.SECTOR_WASTE),
            wanted[1],
        ],
    )
    received = await events_until(connection, 2, "ledger-entry")
    assert sorted(entry_ids(received)) == sorted(e.entry.entry_id for e in wanted)
    first = json.loads(received[0].data)
    assert first["entry"]["sector"] == "SECTOR_TRANSPORT"
    assert first["entry"]["emissionFactor"]["version"] == "1"
    assert first["occurredAt"] == "2026-05-04T10:00:00Z"
    assert received[-1].id is not None and received[-1].id.startswith("ledger.entries.v1@0:")
    assert await quiet(connection, "ledger-entry", 1.5) == []
    await connection.close()


async def test_a_client_resumes_exactly_after_its_last_event_also_across_a_restart(
    kafka: str, names: TopicNames, start_gateway: StartGateway, reader: Credentials
) -> None:
    first_batch = [entry(municipality=f"m{i % 7}") for i in range(12)]
    await publish_entries(kafka, names, first_batch)
    gateway = await start_gateway()
    connection = await open_as(reader, f"{gateway.url}/streams/ledger-entries?from=earliest")
    seen = await events_until(connection, 5, "ledger-entry")
    connection.abort()  # the network drops it; the client only knows its last event id
    last_id = seen[-1].id
    await gateway.stop()

    second_batch = [entry(municipality=f"m{i % 5}") for i in range(8)]
    await publish_entries(kafka, names, second_batch)
    restarted = await start_gateway()
    resumed = await open_as(reader, f"{restarted.url}/streams/ledger-entries", last_id)
    rest = await events_until(resumed, 15, "ledger-entry")
    assert await quiet(resumed, "ledger-entry", 1.5) == []
    everything = entry_ids(seen) + entry_ids(rest)
    assert len(everything) == len(set(everything)) == 20  # no gap, no duplicate
    assert set(everything) == {e.entry.entry_id for e in first_batch + second_batch}
    await resumed.close()


def counted(gateway: GatewayRuntime, metric: str, stream: str = "ledger-entries") -> float:
    return gateway.metrics.get_sample_value(metric, {"stream": stream}) or 0.0


async def test_a_client_that_resumes_within_the_replay_log_is_served_from_memory(
    kafka: str, names: TopicNames, start_gateway: StartGateway, reader: Credentials
) -> None:
    history = [entry(municipality=f"m{i % 7}") for i in range(30)]
    await publish_entries(kafka, names, history)
    gateway = await start_gateway()
    url = f"{gateway.url}/streams/ledger-entries"
    connection = await open_as(reader, f"{url}?from=earliest")
    seen = await events_until(connection, 30, "ledger-entry")
    await events_until(connection, 1, "heartbeat")  # at the live end
    connection.abort()

    later = [entry(municipality=f"m{i % 5}") for i in range(10)]
    watcher = await open_as(reader, url)  # live: once it has them, so has the log
    await events_until(watcher, 1, "heartbeat")
    await publish_entries(kafka, names, later)
    await events_until(watcher, 10, "ledger-entry")
    await watcher.close()
    every_id = entry_ids(seen)
    everything = {e.entry.entry_id for e in history + later}
    # From the last event, and from one in the middle: each gets exactly what came after it.
    for resume_after in (29, 11):
        resumed = await open_as(reader, url, seen[resume_after].id)
        rest = await events_until(resumed, 40 - resume_after - 1, "ledger-entry")
        assert await quiet(resumed, "ledger-entry", 1.0) == []
        received = every_id[: resume_after + 1] + entry_ids(rest)
        assert len(received) == len(set(received)) == 40
        assert set(received) == everything
        await resumed.close()
    # The topic was read once, by the tail: every subscription was served from the log.
    assert counted(gateway, "gateway_catch_ups_total") == 0
    assert counted(gateway, "gateway_replays_total") == 3


async def test_a_position_older_than_the_replay_log_is_read_from_the_broker_then_the_log(
    kafka: str, names: TopicNames, start_gateway: StartGateway, reader: Credentials
) -> None:
    history = [entry(municipality=f"m{i % 7}") for i in range(40)]
    await publish_entries(kafka, names, history)
    # The log holds the last 8 records only.
    gateway = await start_gateway(replay_log_records=8)
    url = f"{gateway.url}/streams/ledger-entries"
    first = await open_as(reader, f"{url}?from=earliest")
    seen = await events_until(first, 40, "ledger-entry")
    assert await quiet(first, "ledger-entry", 0.5) == []
    first.abort()
    assert counted(gateway, "gateway_catch_ups_total") == 1
    assert len(set(entry_ids(seen))) == 40

    # A position 30 records back: from the broker up to the log, then from the log and live.
    resumed = await open_as(reader, url, seen[9].id)
    rest = await events_until(resumed, 30, "ledger-entry")
    assert counted(gateway, "gateway_catch_ups_total") == 2
    live = [entry(municipality=f"m{i % 3}") for i in range(5)]
    await publish_entries(kafka, names, live)
    rest += await events_until(resumed, 5, "ledger-entry")
    assert await quiet(resumed, "ledger-entry", 1.0) == []
    received = entry_ids(seen[:10]) + entry_ids(rest)
    assert len(received) == len(set(received)) == 45
    assert set(received) == {e.entry.entry_id for e in history + live}
    # Its ids resume exactly too: from one it got while it read the broker.
    again = await open_as(reader, url, rest[14].id)
    tail = await events_until(again, 20, "ledger-entry")
    assert entry_ids(tail) and set(entry_ids(tail)) == set(entry_ids(rest[15:]))
    assert await quiet(again, "ledger-entry", 1.0) == []
    for connection in (resumed, again):
        await connection.close()


async def test_a_position_written_by_another_reading_order_resumes_exactly_from_the_log(
    kafka: str, names: TopicNames, start_gateway: StartGateway, reader: Credentials
) -> None:
    """Positions are vectors and the tail interleaves partitions as fetches come; a position
    from another gateway (or made by hand) need not be one the log passed through."""
    history = [
        entry(
            municipality=f"m{i % 7}",
            sector=ledger_pb2.SECTOR_TRANSPORT if i % 4 == 0 else ledger_pb2.SECTOR_WASTE,
        )
        for i in range(60)
    ]
    await publish_entries(kafka, names, history)
    gateway = await start_gateway()
    url = f"{gateway.url}/streams/ledger-entries"
    everything = await open_as(reader, f"{url}?from=earliest")
    records = await events_until(everything, 60, "ledger-entry")
    everything.abort()
    # Where each entry is: the partition its event's id moved, and the offset before it.
    located: dict[str, tuple[int, int]] = {}
    previous: dict[int, int] = {}
    for event in records:
        position = parse_position(event.id or "", topics.LEDGER_ENTRIES)
        (moved,) = [p for p in position if position[p] != previous.get(p, 0)]
        located[entry_ids([event])[0]] = (moved, position[moved] - 1)
        previous = position
    # Half of each partition: a position the tail's reading order never passed through.
    halfway = {partition: end // 2 for partition, end in previous.items()}
    custom = "ledger.entries.v1@" + ",".join(f"{p}:{o}" for p, o in sorted(halfway.items()))
    expected = {e for e, (p, o) in located.items() if o >= halfway[p]}
    transport = {e.entry.entry_id for e in history if e.entry.sector == ledger_pb2.SECTOR_TRANSPORT}

    for sector, wanted in (("", expected), ("transport", transport & expected)):
        query = f"?sector={sector}" if sector else ""
        resumed = await open_as(reader, url + query, custom)
        got = await events_until(resumed, len(wanted), "ledger-entry")
        assert await quiet(resumed, "ledger-entry", 1.0) == []
        assert len(entry_ids(got)) == len(set(entry_ids(got))) and set(entry_ids(got)) == wanted
        # Every id it got resumes exactly: the rest after it, nothing before.
        middle = len(got) // 2
        again = await open_as(reader, url + query, got[middle].id)
        after = await events_until(again, len(got) - middle - 1, "ledger-entry")
        assert await quiet(again, "ledger-entry", 1.0) == []
        assert entry_ids(after) == entry_ids(got[middle + 1 :])
        for connection in (resumed, again):
            await connection.close()
    assert counted(gateway, "gateway_catch_ups_total") == 0


async def test_the_inventory_stream_sends_whole_totals_as_entries_are_posted(
    kafka: str, names: TopicNames, start_gateway: StartGateway, reader: Credentials
) -> None:
    await publish_entries(
        kafka,
        names,
        [
            entry(kg="1.1"),
            entry(kg="2.2"),
            entry(kg="0.7", kind=ledger_pb2.ENTRY_KIND_AVOIDED_EMISSION),
            entry(kg="9", year=2025),
        ],
    )
    gateway = await start_gateway()
    url = f"{gateway.url}/streams/inventory?municipality={AALBORG}&year=2026"
    connection = await open_as(reader, url)
    (snapshot,) = await events_until(connection, 1, "inventory")
    totals = json.loads(snapshot.data)
    assert (totals["emissionsKgCo2e"], totals["avoidedKgCo2e"], totals["entryCount"]) == (
        "3.3",
        "0.7",
        "3",
    )
    await publish_entries(kafka, names, [entry(kg="0.05"), entry(municipality="other")])
    (changed,) = await events_until(connection, 1, "inventory")
    assert json.loads(changed.data)["emissionsKgCo2e"] == "3.35"
    assert await quiet(connection, "inventory", 1.0) == []
    connection.abort()

    # Resuming from the last state sends nothing again until the totals change.
    resumed = await open_as(reader, url, changed.id)
    assert await quiet(resumed, "inventory", 1.0) == []
    await publish_entries(kafka, names, [entry(kg="1")])
    (latest,) = await events_until(resumed, 1, "inventory")
    assert json.loads(latest.data)["emissionsKgCo2e"] == "4.35"
    await resumed.close()


async def test_hub_occupancy_follows_deposits_and_collections(
    kafka: str, names: TopicNames, start_gateway: StartGateway, reader: Credentials
) -> None:
    def locker_event(hub: str, **kind: Message) -> lockers_pb2.LockerEvent:
        return lockers_pb2.LockerEvent(
            event_id=str(uuid.uuid4()),
            occurred_at=to_timestamp(AT),
            hub_id=hub,
            municipality_id=AALBORG,
            **kind,  # type: ignore[arg-type]
        )

    deposits = [
        locker_event(
            "molo-aalborg-03",
            waste_deposited=lockers_pb2.WasteDeposited(
                deposit_id=f"d{i}", mass_g=500, hazardous=i == 0
            ),
        )
        for i in range(3)
    ]
    await publish(kafka, names(topics.LOCKER_EVENTS), [(e.hub_id, e) for e in deposits])
    gateway = await start_gateway()
    connection = await open_as(reader, f"{gateway.url}/streams/hub-occupancy?hub=molo-aalborg-03")
    (state,) = await events_until(connection, 1, "hub-occupancy")
    assert (json.loads(state.data)["depositsHeld"], json.loads(state.data)["massGHeld"]) == (
        3,
        1500,
    )
    collection = locker_event(
        "molo-aalborg-03",
        waste_collected=lockers_pb2.WasteCollected(
            collection_id="c1",
            carrier_partner_id="homerunner",
            deposit_ids=["d0", "d1"],
            mass_g=1000,
        ),
    )
    await publish(kafka, names(topics.LOCKER_EVENTS), [(collection.hub_id, collection)])
    (after,) = await events_until(connection, 1, "hub-occupancy")
    occupancy = json.loads(after.data)
    assert (occupancy["depositsHeld"], occupancy["hazardousHeld"], occupancy["massGHeld"]) == (
        1,
        0,
        500,
    )
    assert occupancy["recentCollections"][0]["carrierPartnerId"] == "homerunner"
    await connection.close()


async def test_a_slow_client_gets_an_error_event_and_is_disconnected_then_resumes(
    kafka: str, names: TopicNames, start_gateway: StartGateway, reader: Credentials
) -> None:
    gateway = await start_gateway(client_queue_size=3)
    connection = await open_as(reader, f"{gateway.url}/streams/ledger-entries")
    await events_until(connection, 1, "heartbeat")
    burst = [entry() for _ in range(40)]
    await publish_entries(kafka, names, burst)
    received: list[SseEvent] = []
    with pytest.raises(SseError):  # the gateway ends the stream after the error event
        async with asyncio.timeout(20):
            while True:
                received.append(await connection.next_event())
    kinds = [event.event for event in received]
    assert "stream-error" in kinds
    assert json.loads(received[kinds.index("stream-error")].data)["reason"] == "slow_client"
    delivered = [event for event in received if event.event == "ledger-entry"]
    assert len(delivered) < len(burst)
    await connection.close()

    resumed = await open_as(
        reader, f"{gateway.url}/streams/ledger-entries", connection.last_event_id
    )
    rest = await events_until(resumed, len(burst) - len(delivered), "ledger-entry")
    assert sorted(entry_ids(delivered) + entry_ids(rest)) == sorted(e.entry.entry_id for e in burst)
    await resumed.close()


async def test_start_from_a_time_the_last_records_and_refusals(
    kafka: str, names: TopicNames, start_gateway: StartGateway, reader: Credentials
) -> None:
    early = [entry() for _ in range(3)]
    await publish_entries(kafka, names, early)
    await asyncio.sleep(0.05)
    since = datetime.now(UTC)
    await asyncio.sleep(0.05)
    late = [entry() for _ in range(2)]
    await publish_entries(kafka, names, late)
    gateway = await start_gateway(max_clients=2)

    from_time = await open_as(
        reader,
        f"{gateway.url}/streams/ledger-entries?from={since.isoformat().replace('+00:00', 'Z')}",
    )
    assert sorted(entry_ids(await events_until(from_time, 2, "ledger-entry"))) == sorted(
        e.entry.entry_id for e in late
    )
    assert await quiet(from_time, "ledger-entry", 1.0) == []

    bad_position = await open_as(
        reader, f"{gateway.url}/streams/ledger-entries", "fleet.activity.v1@0:1"
    )
    assert bad_position.status == 400
    bad_filter = await open_as(reader, f"{gateway.url}/streams/inventory?vehicle=aal-van-01")
    assert bad_filter.status == 400

    second = await open_as(reader, f"{gateway.url}/streams/fleet-distance")
    assert second.status == 200
    refused = await open_as(reader, f"{gateway.url}/streams/ledger-entries")
    assert refused.status == 503
    assert refused.headers["retry-after"] == "5"
    for connection in (from_time, bad_position, bad_filter, second, refused):
        await connection.close()


def test_the_dashboard_serves_the_locked_chart_js() -> None:
    """static/vendor holds the Chart.js of package-lock.json, byte for byte (`npm ci` brings
    it; copy node_modules/chart.js/dist/chart.umd.min.js after an upgrade)."""
    lock = json.loads((ROOT / "package-lock.json").read_text())
    locked = lock["packages"]["node_modules/chart.js"]["version"]
    served = (STATIC / "vendor" / "chart.umd.min.js").read_bytes()
    assert f"Chart.js v{locked}".encode() in served[:100]
    assert served == (ROOT / "node_modules/chart.js/dist/chart.umd.min.js").read_bytes()
