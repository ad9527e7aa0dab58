"""partner-registry against the real broker and its real gRPC server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select

from greenpartners.registry.v1 import registry_pb2, registry_pb2_grpc
from partner_registry.adapters.data_files import load_seed
from partner_registry.bootstrap import build
from servicekit import topics
from servicekit.database import outbox
from servicekit.grpc_server import bad_request_field
from servicekit.identity import OPERATOR
from servicekit.runtime import ServiceRuntime
from tests.kafka_tools import Record, read_until, unique_namespace
from tools.pki import Pki


def registry_runtime(kafka: str, namespace: str, database: Path) -> ServiceRuntime:
    return build(
        kafka_bootstrap_servers=kafka,
        topic_namespace=namespace,
        database_url=f"sqlite+aiosqlite:///{database}",
        grpc_port=0,
        outbox_poll_interval_s=0.1,
    )


@pytest.fixture
async def registry(kafka: str, tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    runtime = registry_runtime(kafka, unique_namespace(), tmp_path / "registry.db")
    await runtime.start()
    yield runtime
    await runtime.stop()


async def outbox_rows(runtime: ServiceRuntime) -> int:
    async with runtime.database.read() as session:
        return int((await session.execute(select(func.count()).select_from(outbox))).scalar_one())


async def test_seeding_publishes_each_partner_once(kafka: str, tmp_path: Path) -> None:
    namespace = unique_namespace()
    database = tmp_path / "registry.db"
    _, seeded = load_seed()
    seed_ids = [partner.partner_id for partner in seeded]
    assert len(seed_ids) == 13

    first = registry_runtime(kafka, namespace, database)
    await first.start()
    try:
        partners_topic = first.topic(topics.PARTNERS)
        records = await read_until(kafka, partners_topic, lambda r: len(r) >= len(seed_ids))
    finally:
        await first.stop()

    assert partners_topic == f"{namespace}.registry.partners.v1"
    assert [record.key for record in records] == seed_ids
    events = [registry_pb2.PartnerChanged.FromString(record.value) for record in records]
    assert [event.partner.partner_id for event in events] == seed_ids
    assert len({event.event_id for event in events}) == len(seed_ids)
    assert all(event.HasField("occurred_at") for event in events)
    assert records[0].headers["event-type"] == "greenpartners.registry.v1.PartnerChanged"
    kommune = events[seed_ids.index("aalborg-kommune")].partner
    assert kommune.name == "Aalborg Kommune"
    assert kommune.kind == registry_pb2.ORGANISATION_KIND_MUNICIPALITY
    assert len(kommune.participations) == 5

    # A restart over the same database finds every partner stored and announces nothing new.
    # The relay publishes at least once, so a batch cut off by the first stop may reappear
    # with the same event ids; only an event id not seen before would be a second seeding.
    seeded_event_ids = {event.event_id for event in events}

    def event_ids(found: list[Record]) -> set[str]:
        return {registry_pb2.PartnerChanged.FromString(r.value).event_id for r in found}

    second = registry_runtime(kafka, namespace, database)
    await second.start()
    try:
        # The first run published its seeding and the relay deleted what it published; the
        # second wrote nothing new to the outbox.
        assert await outbox_rows(second) == 0
        again = await read_until(
            kafka,
            partners_topic,
            lambda found: bool(event_ids(found) - seeded_event_ids),
            timeout_s=3.0,
        )
    finally:
        await second.stop()
    assert event_ids(again) == seeded_event_ids
    assert {record.key for record in again} == set(seed_ids)


async def test_queries_return_the_seeded_registry(registry: ServiceRuntime, pki: Pki) -> None:
    async with pki.channel(f"127.0.0.1:{registry.grpc_port}", OPERATOR) as channel:
        stub = registry_pb2_grpc.PartnerRegistryServiceStub(channel)

        kommune = (
            await stub.GetPartner(registry_pb2.GetPartnerRequest(partner_id="aalborg-kommune"))
        ).partner
        assert (kommune.name, kommune.country_code, kommune.revision) == (
            "Aalborg Kommune",
            "DK",
            1,
        )
        roles = {p.initiative_id: p for p in kommune.participations}
        assert roles["kimo"].role == registry_pb2.PARTNER_ROLE_MEMBER
        assert [(r.name, r.title) for r in roles["kimo"].representatives] == [
            ("Per Clausen", "Byrådsmedlem (Ø)")
        ]
        assert roles["covenant-of-mayors"].role == registry_pb2.PARTNER_ROLE_SIGNATORY
        assert roles["covenant-of-mayors"].since_year == 2014
        assert roles["green-fleets"].since_year == 0

        carriers = await stub.ListPartners(
            registry_pb2.ListPartnersRequest(
                initiative_id="molo-hubs", role=registry_pb2.PARTNER_ROLE_CARRIER
            )
        )
        assert [p.partner_id for p in carriers.partners] == ["homerunner"]

        green_fleets = await stub.ListPartners(
            registry_pb2.ListPartnersRequest(initiative_id="green-fleets")
        )
        green_ids = [p.partner_id for p in green_fleets.partners]
        assert len(green_ids) == 9
        assert green_ids == sorted(green_ids)
        assert "aalborg-universitet" in green_ids and "homerunner" not in green_ids

        leads = await stub.ListPartners(
            registry_pb2.ListPartnersRequest(role=registry_pb2.PARTNER_ROLE_LEAD)
        )
        assert [p.partner_id for p in leads.partners] == ["aalborg-kommune"]
        everyone = await stub.ListPartners(registry_pb2.ListPartnersRequest())
        assert len(everyone.partners) == 13

        initiatives = {
            i.initiative_id: i
            for i in (await stub.ListInitiatives(registry_pb2.ListInitiativesRequest())).initiatives
        }
        assert set(initiatives) == {
            "aalborg-commitments",
            "green-fleets",
            "molo-hubs",
            "kimo",
            "covenant-of-mayors",
        }
        molo = initiatives["molo-hubs"]
        assert (molo.programme, molo.starts_on, molo.ends_on) == (
            "Interreg North Sea",
            "2023-01-01",
            "2026-12-31",
        )
        assert initiatives["kimo"].starts_on == ""

        homerunner = await stub.CheckCarrierAuthorization(
            registry_pb2.CheckCarrierAuthorizationRequest(
                carrier_partner_id="homerunner", hub_id="hub-aalborg-01"
            )
        )
        assert homerunner.authorized
        assert "hub-aalborg-01" in homerunner.reason
        university = await stub.CheckCarrierAuthorization(
            registry_pb2.CheckCarrierAuthorizationRequest(
                carrier_partner_id="aalborg-universitet", hub_id="hub-aalborg-01"
            )
        )
        assert not university.authorized
        assert "not registered as a MoLo Hubs carrier" in university.reason
        stranger = await stub.CheckCarrierAuthorization(
            registry_pb2.CheckCarrierAuthorizationRequest(
                carrier_partner_id="no-such-carrier", hub_id="hub-aalborg-01"
            )
        )
        assert (stranger.authorized, stranger.reason) == (False, "unknown partner")


async def test_bad_requests_name_the_field(registry: ServiceRuntime, pki: Pki) -> None:
    async with pki.channel(f"127.0.0.1:{registry.grpc_port}", OPERATOR) as channel:
        stub = registry_pb2_grpc.PartnerRegistryServiceStub(channel)

        async def code_and_field(call: Awaitable[object]) -> tuple[grpc.StatusCode, str | None]:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call
            return raised.value.code(), bad_request_field(raised.value)

        invalid = grpc.StatusCode.INVALID_ARGUMENT
        assert await code_and_field(
            stub.GetPartner(registry_pb2.GetPartnerRequest(partner_id=""))
        ) == (invalid, "partner_id")
        assert await code_and_field(
            stub.GetPartner(registry_pb2.GetPartnerRequest(partner_id="nope"))
        ) == (grpc.StatusCode.NOT_FOUND, None)
        assert await code_and_field(
            stub.ListPartners(
                registry_pb2.ListPartnersRequest(role=registry_pb2.PartnerRole.ValueType(99))
            )
        ) == (invalid, "role")
        assert await code_and_field(
            stub.ListPartners(registry_pb2.ListPartnersRequest(initiative_id="nope"))
        ) == (grpc.StatusCode.NOT_FOUND, None)
        assert await code_and_field(
            stub.CheckCarrierAuthorization(
                registry_pb2.CheckCarrierAuthorizationRequest(hub_id="hub-aalborg-01")
            )
        ) == (invalid, "carrier_partner_id")
        assert await code_and_field(
            stub.CheckCarrierAuthorization(
                registry_pb2.CheckCarrierAuthorizationRequest(carrier_partner_id="homerunner")
            )
        ) == (invalid, "hub_id")
