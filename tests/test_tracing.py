"""One trace runs from the carrier-collection gRPC call, through the outbox and Kafka, to
the span that posts the ledger entry (in-memory exporter, services in one
process so that one exporter sees all their spans)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from emissions_ledger.bootstrap import build as build_ledger
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from greenpartners.lockers.v1 import lockers_pb2, lockers_pb2_grpc
from locker_hubs.bootstrap import build as build_lockers
from partner_registry.bootstrap import build as build_registry
from servicekit import topics
from servicekit.identity import OPERATOR, RESIDENT
from servicekit.runtime import ServiceRuntime
from servicekit.telemetry import setup_tracing
from tests.kafka_tools import eventually, unique_namespace
from tools.pki import Pki

COPENHAGEN = ZoneInfo("Europe/Copenhagen")


@pytest.fixture
async def services(kafka: str, tmp_path: Path) -> AsyncIterator[tuple[ServiceRuntime, ...]]:
    common = {
        "kafka_bootstrap_servers": kafka,
        "topic_namespace": unique_namespace("trace"),
        "grpc_port": 0,
        "outbox_poll_interval_s": 0.1,
    }
    registry = build_registry(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/registry.db", grpc_mtls_port=0, **common
    )
    await registry.start()
    lockers = build_lockers(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/lockers.db",
        development_mode=True,
        **common,
    )
    ledger = build_ledger(database_url=f"sqlite+aiosqlite:///{tmp_path}/ledger.db", **common)
    started = [registry]
    try:
        for runtime in (lockers, ledger):
            await runtime.start()
            started.append(runtime)
        yield registry, lockers, ledger
    finally:
        for runtime in reversed(started):
            await runtime.stop()


async def test_collection_trace_reaches_the_ledger_entry(
    services: tuple[ServiceRuntime, ...], pki: Pki
) -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("tests", exporter=exporter)
    _registry, lockers, ledger = services
    hub = "molo-aalborg-11"
    async with pki.channel(f"127.0.0.1:{lockers.grpc_port}", (RESIDENT, OPERATOR)) as channel:
        stub = lockers_pb2_grpc.LockerHubsServiceStub(channel)
        issued = await stub.IssueDropOffCode(
            lockers_pb2.IssueDropOffCodeRequest(hub_id=hub, hazardous=True)
        )
        await stub.RegisterWasteDeposit(
            lockers_pb2.RegisterWasteDepositRequest(
                hub_id=hub,
                code=issued.code,
                waste_type=lockers_pb2.WASTE_TYPE_BATTERIES,
                hazardous=True,
                mass_g=500,
            )
        )
        exporter.clear()
        await stub.RecordCarrierCollection(
            lockers_pb2.RecordCarrierCollectionRequest(
                hub_id=hub, carrier_partner_id="homerunner", extra_distance_m=300
            )
        )

    call_spans = [
        s
        for s in exporter.get_finished_spans()
        if s.name.endswith("LockerHubsService/RecordCarrierCollection")
    ]
    assert call_spans, "the collection call was not traced"
    trace_id = call_spans[0].context.trace_id
    # The carrier is authorised from locker-hubs' read model: no call to the registry.
    assert not [s for s in exporter.get_finished_spans() if "CheckCarrierAuthorization" in s.name]

    def ledger_span_in_same_trace() -> None:
        posted = [s for s in exporter.get_finished_spans() if s.name == "ledger post entries"]
        assert posted, "no ledger entry posted yet"
        assert {s.context.trace_id for s in posted} == {trace_id}
        # The collection's two entries: the trip not driven and the carrier's detour.
        assert [dict(s.attributes or {}).get("ledger.entry_count") for s in posted] == [2]

    await eventually(ledger_span_in_same_trace, timeout_s=45)
    # The posting runs in the ledger's span of the consumed batch, which continues the trace.
    spans = exporter.get_finished_spans()
    (posting,) = [s for s in spans if s.name == "ledger post entries"]
    batch_spans = [s for s in spans if s.name == f"{ledger.topic(topics.LOCKER_EVENTS)} process"]
    assert posting.parent is not None
    assert posting.parent.span_id in {s.context.span_id for s in batch_spans}

    async with pki.channel(f"127.0.0.1:{ledger.grpc_port}", OPERATOR) as channel:
        entries = await ledger_pb2_grpc.EmissionsLedgerServiceStub(channel).ListEntries(
            ledger_pb2.ListEntriesRequest(
                municipality_id="aalborg-kommune", year=datetime.now(COPENHAGEN).year
            )
        )
    # The entries record the trace they were posted in: the figures lead back to the call.
    assert [e.trace_id for e in entries.entries] == [format(trace_id, "032x")] * 2
