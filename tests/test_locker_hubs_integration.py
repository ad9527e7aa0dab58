"""locker-hubs against the real broker, its real gRPC server and the real partner registry,
whose changelog it keeps a read model of to authorise carriers."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from greenpartners.lockers.v1 import lockers_pb2, lockers_pb2_grpc
from greenpartners.registry.v1 import registry_pb2, registry_pb2_grpc
from locker_hubs.adapters.data_files import load_shipped_hubs
from locker_hubs.bootstrap import build
from partner_registry.bootstrap import build as build_registry
from servicekit import topics
from servicekit.codec import from_timestamp
from servicekit.grpc_server import bad_request_field
from servicekit.identity import OPERATOR, RESIDENT
from servicekit.runtime import ServiceRuntime
from tests.kafka_tools import Record, read_until, unique_namespace
from tools.pki import Pki

HUB = "molo-aalborg-01"
PEPPER = "integration-test-pepper-0123456789"


@dataclass
class RegistryServer:
    """The real partner-registry service, which a test may stop."""

    runtime: ServiceRuntime
    stopped: bool = False

    @property
    def namespace(self) -> str:
        return self.runtime.names.namespace

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.runtime.grpc_port}"

    def authorisation_checks(self) -> float:
        """CheckCarrierAuthorization calls the registry answered, from its own metrics."""
        value = self.runtime.metrics.get_sample_value(
            "grpc_server_handled_total",
            {
                "grpc_method": "/greenpartners.registry.v1.PartnerRegistryService/"
                "CheckCarrierAuthorization",
                "grpc_code": "OK",
            },
        )
        return value or 0.0

    async def stop(self) -> None:
        if not self.stopped:
            await self.runtime.stop()
            self.stopped = True


@pytest.fixture
async def registry(kafka: str, tmp_path: Path) -> AsyncIterator[RegistryServer]:
    runtime = build_registry(
        kafka_bootstrap_servers=kafka,
        topic_namespace=unique_namespace(),
        database_url=f"sqlite+aiosqlite:///{tmp_path}/registry.db",
        grpc_port=0,
        grpc_mtls_port=0,
        outbox_poll_interval_s=0.1,
    )
    await runtime.start()
    running = RegistryServer(runtime)
    yield running
    await running.stop()


def start_options(kafka: str, database: Path, namespace: str) -> Any:
    return {
        "kafka_bootstrap_servers": kafka,
        "topic_namespace": namespace,
        "database_url": f"sqlite+aiosqlite:///{database}",
        "grpc_port": 0,
        "outbox_poll_interval_s": 0.1,
        "code_pepper": PEPPER,
        # These tests reserve many compartments as one resident; the quota has its own test.
        "open_codes_per_resident": 1000,
        "open_codes_per_resident_at_one_hub": 1000,
    }


@dataclass
class Lockers:
    runtime: ServiceRuntime
    database: Path
    options: dict[str, Any]

    @property
    def events_topic(self) -> str:
        return self.runtime.topic(topics.LOCKER_EVENTS)


@pytest.fixture
async def lockers(kafka: str, tmp_path: Path, registry: RegistryServer) -> AsyncIterator[Lockers]:
    database = tmp_path / "lockers.db"
    # The registry's namespace: locker-hubs reads the registry's changelog.
    options = start_options(kafka, database, registry.namespace)
    runtime = build(**options)
    await runtime.start()
    running = Lockers(runtime, database, options)
    yield running
    # A test may have restarted the service.
    await running.runtime.stop()


def stub_for(runtime: ServiceRuntime, pki: Pki) -> tuple[grpc.aio.Channel, Any]:
    """A resident who is also an operator: issues codes, and records collections naming the
    carrier in the request as only an operator may."""
    channel = pki.channel(f"127.0.0.1:{runtime.grpc_port}", (RESIDENT, OPERATOR))
    return channel, lockers_pb2_grpc.LockerHubsServiceStub(channel)


def compartment_states(hub: lockers_pb2.Hub) -> dict[str, int]:
    return {c.compartment_id: c.state for c in hub.compartments}


def locker_events(records: list[Record]) -> list[lockers_pb2.LockerEvent]:
    return [lockers_pb2.LockerEvent.FromString(record.value) for record in records]


async def deposit_hazardous_waste(stub: Any, hub_id: str, mass_g: int) -> str:
    issued = await stub.IssueDropOffCode(
        lockers_pb2.IssueDropOffCodeRequest(hub_id=hub_id, hazardous=True)
    )
    deposited = await stub.RegisterWasteDeposit(
        lockers_pb2.RegisterWasteDepositRequest(
            hub_id=hub_id,
            code=issued.code,
            waste_type=lockers_pb2.WASTE_TYPE_HAZARDOUS_HOUSEHOLD,
            hazardous=True,
            mass_g=mass_g,
        )
    )
    return str(deposited.deposit_id)


async def test_drop_off_deposit_and_collection_become_two_locker_events(
    lockers: Lockers, registry: RegistryServer, kafka: str, pki: Pki
) -> None:
    channel, stub = stub_for(lockers.runtime, pki)
    async with channel:
        listed = await stub.ListHubs(lockers_pb2.ListHubsRequest())
        assert len(listed.hubs) == 50
        hub = next(h for h in listed.hubs if h.hub_id == HUB)
        assert hub.municipality_id == "aalborg-kommune"
        assert len(hub.compartments) == 8
        assert set(compartment_states(hub).values()) == {lockers_pb2.COMPARTMENT_STATE_FREE}

        before = datetime.now(UTC)
        issued = await stub.IssueDropOffCode(
            lockers_pb2.IssueDropOffCodeRequest(hub_id=HUB, hazardous=True)
        )
        assert issued.compartment_id == f"{HUB}-h1"
        assert len(issued.code) == 8 and issued.code.isdigit()
        expires_at = from_timestamp(issued.expires_at)
        assert before + timedelta(hours=24) <= expires_at <= datetime.now(UTC) + timedelta(hours=24)

        # Only a keyed hash of the code is stored.
        with sqlite3.connect(lockers.database) as db:
            state, code_hash = db.execute(
                "SELECT state, code_hash FROM compartments WHERE compartment_id = ?",
                (issued.compartment_id,),
            ).fetchone()
        assert state == "reserved"
        assert len(code_hash) == 64
        assert issued.code not in code_hash

        deposited = await stub.RegisterWasteDeposit(
            lockers_pb2.RegisterWasteDepositRequest(
                hub_id=HUB,
                code=issued.code,
                waste_type=lockers_pb2.WASTE_TYPE_HAZARDOUS_HOUSEHOLD,
                hazardous=True,
                mass_g=1_250,
            )
        )
        assert deposited.compartment_id == f"{HUB}-h1"

        # The code is spent.
        with pytest.raises(grpc.aio.AioRpcError) as reused:
            await stub.RegisterWasteDeposit(
                lockers_pb2.RegisterWasteDepositRequest(
                    hub_id=HUB,
                    code=issued.code,
                    waste_type=lockers_pb2.WASTE_TYPE_HAZARDOUS_HOUSEHOLD,
                    hazardous=True,
                    mass_g=500,
                )
            )
        assert reused.value.code() == grpc.StatusCode.PERMISSION_DENIED

        got = await stub.GetHub(lockers_pb2.GetHubRequest(hub_id=HUB))
        assert compartment_states(got.hub)[f"{HUB}-h1"] == lockers_pb2.COMPARTMENT_STATE_HOLDS_WASTE

        collection_request = lockers_pb2.RecordCarrierCollectionRequest(
            hub_id=HUB,
            carrier_partner_id="homerunner",
            extra_distance_m=3_400,
            collection_id="homerunner-run-0042",
        )
        collected = await stub.RecordCarrierCollection(collection_request)
        assert collected.collection_id == "homerunner-run-0042"
        assert list(collected.deposit_ids) == [deposited.deposit_id]
        assert collected.mass_g == 1_250

        # A retried call answers the same and records nothing more.
        retried = await stub.RecordCarrierCollection(collection_request)
        assert retried == collected
        # Authorised from the read model both times: the registry was not asked.
        assert registry.authorisation_checks() == 0

        got = await stub.GetHub(lockers_pb2.GetHubRequest(hub_id=HUB))
        assert set(compartment_states(got.hub).values()) == {lockers_pb2.COMPARTMENT_STATE_FREE}

    # Waiting for a third event shows that none comes.
    records = await read_until(kafka, lockers.events_topic, lambda r: len(r) >= 3, timeout_s=5)
    assert len(records) == 2
    assert all(record.key == HUB for record in records)
    assert records[0].headers["event-type"] == "greenpartners.lockers.v1.LockerEvent"
    first, second = locker_events(records)
    assert first.event_id != second.event_id
    assert (first.hub_id, first.municipality_id) == (HUB, "aalborg-kommune")
    assert (second.hub_id, second.municipality_id) == (HUB, "aalborg-kommune")

    assert first.WhichOneof("kind") == "waste_deposited"
    assert first.waste_deposited == lockers_pb2.WasteDeposited(
        deposit_id=deposited.deposit_id,
        compartment_id=f"{HUB}-h1",
        waste_type=lockers_pb2.WASTE_TYPE_HAZARDOUS_HOUSEHOLD,
        hazardous=True,
        mass_g=1_250,
    )
    assert second.WhichOneof("kind") == "waste_collected"
    assert second.waste_collected == lockers_pb2.WasteCollected(
        collection_id="homerunner-run-0042",
        carrier_partner_id="homerunner",
        deposit_ids=[deposited.deposit_id],
        mass_g=1_250,
        carrier_extra_distance_m=3_400,
        includes_hazardous=True,
    )
    assert from_timestamp(first.occurred_at) <= from_timestamp(second.occurred_at)


async def test_unauthorised_carrier_is_refused_and_nothing_is_written(
    lockers: Lockers, registry: RegistryServer, kafka: str, tmp_path: Path, pki: Pki
) -> None:
    hub_id = "molo-aalborg-02"
    channel, stub = stub_for(lockers.runtime, pki)
    async with channel:
        deposit_id = await deposit_hazardous_waste(stub, hub_id, mass_g=800)

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RecordCarrierCollection(
                lockers_pb2.RecordCarrierCollectionRequest(
                    hub_id=hub_id, carrier_partner_id="some-van-co", extra_distance_m=1_000
                )
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert refused.value.details() == "unknown partner"

        got = await stub.GetHub(lockers_pb2.GetHubRequest(hub_id=hub_id))
        assert compartment_states(got.hub)[f"{hub_id}-h1"] == (
            lockers_pb2.COMPARTMENT_STATE_HOLDS_WASTE
        )

    with sqlite3.connect(lockers.database) as db:
        assert db.execute("SELECT count(*) FROM collections").fetchone() == (0,)
    records = await read_until(kafka, lockers.events_topic, lambda r: len(r) >= 2, timeout_s=5)
    assert [event.WhichOneof("kind") for event in locker_events(records)] == ["waste_deposited"]

    # A restart seeds no hub again: the waste is still waiting for its carrier.
    await lockers.runtime.stop()
    lockers.runtime = build(**lockers.options)
    await lockers.runtime.start()
    channel, stub = stub_for(lockers.runtime, pki)
    async with channel:
        listed = await stub.ListHubs(lockers_pb2.ListHubsRequest())
        assert len(listed.hubs) == 50
        got = await stub.GetHub(lockers_pb2.GetHubRequest(hub_id=hub_id))
        assert compartment_states(got.hub)[f"{hub_id}-h1"] == (
            lockers_pb2.COMPARTMENT_STATE_HOLDS_WASTE
        )
    with sqlite3.connect(lockers.database) as db:
        held = db.execute("SELECT deposit_id FROM compartments WHERE deposit_id IS NOT NULL")
        assert held.fetchall() == [(deposit_id,)]


async def collection_code(stub: Any, hub_id: str) -> grpc.StatusCode:
    """Deposits waste at the hub and has Homerunner collect it; the answer's status."""
    await deposit_hazardous_waste(stub, hub_id, mass_g=500)
    try:
        await stub.RecordCarrierCollection(
            lockers_pb2.RecordCarrierCollectionRequest(
                hub_id=hub_id, carrier_partner_id="homerunner", extra_distance_m=700
            )
        )
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_a_revocation_in_the_registry_stops_collections_within_seconds(
    lockers: Lockers, registry: RegistryServer, pki: Pki
) -> None:
    hub_id = "molo-aalborg-04"
    revoke = registry_pb2.RevokeCarrierAuthorizationRequest(
        carrier_partner_id="homerunner", hub_id=hub_id
    )
    async with pki.channel(registry.target, OPERATOR) as registry_channel:
        operator = registry_pb2_grpc.PartnerRegistryServiceStub(registry_channel)
        channel, stub = stub_for(lockers.runtime, pki)
        async with channel:
            assert await collection_code(stub, hub_id) == grpc.StatusCode.OK

            await operator.RevokeCarrierAuthorization(revoke)
            revoked_at = time.monotonic()
            await deposit_hazardous_waste(stub, hub_id, mass_g=500)
            request = lockers_pb2.RecordCarrierCollectionRequest(
                hub_id=hub_id, carrier_partner_id="homerunner", extra_distance_m=700
            )
            while True:
                try:
                    await stub.RecordCarrierCollection(request)
                except grpc.aio.AioRpcError as error:
                    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
                    assert "not valid now" in (error.details() or "")
                    break
                # Collected before the revocation arrived: deposit again and retry.
                assert time.monotonic() - revoked_at < 5, "revocation not in force after 5 s"
                await deposit_hazardous_waste(stub, hub_id, mass_g=500)
                await asyncio.sleep(0.05)
            took_s = time.monotonic() - revoked_at
            assert took_s < 5
            # Other hubs are not affected.
            assert await collection_code(stub, "molo-aalborg-05") == grpc.StatusCode.OK

        # A restarted locker-hubs rebuilds its read model from the changelog: still refused.
        await lockers.runtime.stop()
        lockers.runtime = build(**lockers.options)
        await lockers.runtime.start()
        channel, stub = stub_for(lockers.runtime, pki)
        async with channel:
            assert await collection_code(stub, hub_id) == grpc.StatusCode.PERMISSION_DENIED
            # Authorised again (the registry publishes a new revision): collections resume.
            await operator.AuthorizeCarrier(
                registry_pb2.AuthorizeCarrierRequest(carrier_partner_id="homerunner", hub_id=hub_id)
            )
            request = lockers_pb2.RecordCarrierCollectionRequest(
                hub_id=hub_id, carrier_partner_id="homerunner", extra_distance_m=700
            )
            deadline = time.monotonic() + 5
            while True:
                try:
                    await stub.RecordCarrierCollection(request)
                    break
                except grpc.aio.AioRpcError as error:
                    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)

        # Collections need no registry: with it stopped, the read model still answers.
        await registry.stop()
        channel, stub = stub_for(lockers.runtime, pki)
        async with channel:
            assert await collection_code(stub, "molo-aalborg-06") == grpc.StatusCode.OK


async def test_the_registry_and_locker_hubs_know_the_same_hubs(
    lockers: Lockers, registry: RegistryServer, pki: Pki
) -> None:
    async with pki.channel(registry.target, OPERATOR) as channel:
        stub = registry_pb2_grpc.PartnerRegistryServiceStub(channel)
        initiatives = await stub.ListInitiatives(registry_pb2.ListInitiativesRequest())
    (molo,) = [i for i in initiatives.initiatives if i.initiative_id == "molo-hubs"]
    assert sorted(molo.hub_ids) == sorted(hub.hub_id for hub in load_shipped_hubs())


async def test_bad_requests_name_the_field_and_change_nothing(lockers: Lockers, pki: Pki) -> None:
    hub_id = "molo-aalborg-03"
    channel, stub = stub_for(lockers.runtime, pki)
    async with channel:

        async def refused(call: Any, request: Any) -> grpc.aio.AioRpcError:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call(request)
            return raised.value

        error = await refused(
            stub.RegisterWasteDeposit,
            lockers_pb2.RegisterWasteDepositRequest(
                hub_id=hub_id, waste_type=lockers_pb2.WASTE_TYPE_TEXTILES
            ),
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_field(error) == "code"

        for request, bad_field in [
            (
                lockers_pb2.RecordCarrierCollectionRequest(
                    hub_id=hub_id, carrier_partner_id="homerunner", extra_distance_m=-1
                ),
                "extra_distance_m",
            ),
            (lockers_pb2.RecordCarrierCollectionRequest(hub_id=hub_id), "carrier_partner_id"),
            (
                lockers_pb2.RecordCarrierCollectionRequest(carrier_partner_id="homerunner"),
                "hub_id",
            ),
        ]:
            error = await refused(stub.RecordCarrierCollection, request)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert bad_request_field(error) == bad_field

        # Batteries belong behind a hazardous door, whatever the caller says.
        general = await stub.IssueDropOffCode(
            lockers_pb2.IssueDropOffCodeRequest(hub_id=hub_id, hazardous=False)
        )
        assert general.compartment_id == f"{hub_id}-s1"
        error = await refused(
            stub.RegisterWasteDeposit,
            lockers_pb2.RegisterWasteDepositRequest(
                hub_id=hub_id,
                code=general.code,
                waste_type=lockers_pb2.WASTE_TYPE_BATTERIES,
                mass_g=300,
            ),
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_field(error) == "waste_type"
        error = await refused(
            stub.RegisterWasteDeposit,
            lockers_pb2.RegisterWasteDepositRequest(hub_id=hub_id, code=general.code, mass_g=300),
        )
        assert bad_request_field(error) == "waste_type"

        # The refused deposits left the code usable.
        deposited = await stub.RegisterWasteDeposit(
            lockers_pb2.RegisterWasteDepositRequest(
                hub_id=hub_id,
                code=general.code,
                waste_type=lockers_pb2.WASTE_TYPE_TEXTILES,
                mass_g=2_000,
            )
        )
        assert deposited.compartment_id == f"{hub_id}-s1"

        error = await refused(
            stub.IssueDropOffCode, lockers_pb2.IssueDropOffCodeRequest(hub_id="no-such-hub")
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        error = await refused(stub.GetHub, lockers_pb2.GetHubRequest())
        assert bad_request_field(error) == "hub_id"

        # Both hazardous doors taken: no third hazardous drop-off.
        for _ in range(2):
            await stub.IssueDropOffCode(
                lockers_pb2.IssueDropOffCodeRequest(hub_id=hub_id, hazardous=True)
            )
        error = await refused(
            stub.IssueDropOffCode,
            lockers_pb2.IssueDropOffCodeRequest(hub_id=hub_id, hazardous=True),
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

        error = await refused(
            stub.RecordCarrierCollection,
            lockers_pb2.RecordCarrierCollectionRequest(
                hub_id="molo-aalborg-04", carrier_partner_id="homerunner"
            ),
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
