"""partner-registry against the real broker and its real gRPC server on loopback, on SQLite and
on PostgreSQL: the seed, the queries, the write API and the changelog it keeps."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import JSON, BigInteger, Column, MetaData, String, Table, func, insert, select

from greenpartners.registry.v1 import registry_pb2, registry_pb2_grpc
from partner_registry.adapters.data_files import load_seed
from partner_registry.adapters.tables import MIGRATIONS
from partner_registry.bootstrap import build
from partner_registry.handlers import RegistryHandlers
from servicekit import topics
from servicekit.codec import to_timestamp
from servicekit.database import Database, outbox
from servicekit.grpc_server import bad_request_field
from servicekit.identity import OPERATOR
from servicekit.runtime import ServiceRuntime
from tests.conftest import PostgresDatabases
from tests.kafka_tools import Record, read_until, unique_namespace
from tools.pki import Pki

INITIATIVE_KEYS = [
    "initiative:aalborg-commitments",
    "initiative:green-fleets",
    "initiative:molo-hubs",
    "initiative:kimo",
    "initiative:covenant-of-mayors",
]


def registry_runtime(kafka: str, namespace: str, database_url: str) -> ServiceRuntime:
    return build(
        kafka_bootstrap_servers=kafka,
        topic_namespace=namespace,
        database_url=database_url,
        grpc_port=0,
        outbox_poll_interval_s=0.1,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases
) -> str:
    if request.param == "postgresql":
        return await postgres_databases.create()
    return f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
async def registry(kafka: str, database_url: str) -> AsyncIterator[ServiceRuntime]:
    runtime = registry_runtime(kafka, unique_namespace(), database_url)
    await runtime.start()
    yield runtime
    await runtime.stop()


async def outbox_rows(runtime: ServiceRuntime) -> int:
    async with runtime.database.read() as session:
        return int((await session.execute(select(func.count()).select_from(outbox))).scalar_one())


def changed(record: Record) -> registry_pb2.PartnerChanged:
    return registry_pb2.PartnerChanged.FromString(record.value)


def event_ids(found: list[Record]) -> set[str]:
    return {changed(record).event_id for record in found}


async def test_seeding_publishes_each_record_once(kafka: str, database_url: str) -> None:
    namespace = unique_namespace()
    _, seeded = load_seed()
    seed_keys = INITIATIVE_KEYS + [partner.partner_id for partner in seeded]
    assert len(seeded) == 13

    first = registry_runtime(kafka, namespace, database_url)
    await first.start()
    try:
        # The registry serves only once its changelog holds the seed.
        assert await outbox_rows(first) == 0
        partners_topic = first.topic(topics.PARTNERS)
        records = await read_until(kafka, partners_topic, lambda r: len(r) >= len(seed_keys))
    finally:
        await first.stop()

    assert partners_topic == f"{namespace}.registry.partners.v1"
    assert [record.key for record in records] == seed_keys
    events = [changed(record) for record in records]
    assert [event.initiative.initiative_id for event in events[:5]] == [
        key.removeprefix("initiative:") for key in INITIATIVE_KEYS
    ]
    assert [event.partner.partner_id for event in events[5:]] == seed_keys[5:]
    assert all(not event.HasField("partner") for event in events[:5])
    assert len(event_ids(records)) == len(seed_keys)
    assert all(event.HasField("occurred_at") for event in events)
    assert records[0].headers["event-type"] == "greenpartners.registry.v1.PartnerChanged"
    kommune = events[seed_keys.index("aalborg-kommune")].partner
    assert kommune.kind == registry_pb2.ORGANISATION_KIND_MUNICIPALITY
    assert len(kommune.participations) == 5
    assert kommune.covenant_commitment.signatory_year == 2014

    # A restart over the same database writes nothing and announces nothing new. The relay
    # publishes at least once, so a batch cut off by the first stop may reappear with the same
    # event ids; only an event id not seen before would be a second seeding.
    second = registry_runtime(kafka, namespace, database_url)
    await second.start()
    try:
        assert await outbox_rows(second) == 0
        again = await read_until(
            kafka,
            partners_topic,
            lambda found: bool(event_ids(found) - event_ids(records)),
            timeout_s=3.0,
        )
    finally:
        await second.stop()
    assert event_ids(again) == event_ids(records)


async def test_the_seed_never_overwrites_later_changes(registry: ServiceRuntime, pki: Pki) -> None:
    async with pki.channel(f"127.0.0.1:{registry.grpc_port}", OPERATOR) as channel:
        stub = registry_pb2_grpc.PartnerRegistryServiceStub(channel)
        universitet = (
            await stub.GetPartner(registry_pb2.GetPartnerRequest(partner_id="aalborg-universitet"))
        ).partner
        universitet.name = "Aalborg Universitet (AAU)"
        await stub.UpdatePartner(
            registry_pb2.UpdatePartnerRequest(
                partner=universitet, update_mask=FieldMask(paths=["name"])
            )
        )
        await stub.DeletePartner(
            registry_pb2.DeletePartnerRequest(partner_id="skive-kommune", revision=1)
        )

        # A later release of the seed renames three partners: only the one nobody changed
        # through the API takes the seed's new name, at its next revision.
        initiatives, partners = load_seed()
        renamed = {
            "aalborg-universitet": "Aalborg University",
            "skive-kommune": "Skive Municipality",
            "hjorring-kommune": "Hjørring Municipality",
        }
        next_seed = [
            dataclasses.replace(p, name=renamed.get(p.partner_id, p.name)) for p in partners
        ]
        handlers = RegistryHandlers(registry.unit_of_work, registry.names)
        assert await handlers.seed(initiatives, next_seed) == ["hjorring-kommune"]
        assert await handlers.seed(initiatives, next_seed) == []

        async def partner(partner_id: str) -> registry_pb2.Partner:
            request = registry_pb2.GetPartnerRequest(partner_id=partner_id)
            return (await stub.GetPartner(request)).partner

        hjorring = await partner("hjorring-kommune")
        assert (hjorring.name, hjorring.revision) == ("Hjørring Municipality", 2)
        kept = await partner("aalborg-universitet")
        assert (kept.name, kept.revision) == ("Aalborg Universitet (AAU)", 2)
        with pytest.raises(grpc.aio.AioRpcError) as deleted:
            await partner("skive-kommune")
        assert deleted.value.code() == grpc.StatusCode.NOT_FOUND


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
        assert roles["aalborg-commitments"].since_year == 1994
        assert roles["green-fleets"].since_year == 0
        commitment = kommune.covenant_commitment
        assert [
            (t.target_year, t.reduction_percent, t.climate_neutral) for t in commitment.targets
        ] == [
            (2030, 70, False),
            (2050, 0, True),
        ]

        carriers = await stub.ListPartners(
            registry_pb2.ListPartnersRequest(
                initiative_id="molo-hubs", role=registry_pb2.PARTNER_ROLE_CARRIER
            )
        )
        assert [p.partner_id for p in carriers.partners] == ["homerunner"]
        assert carriers.next_page_token == ""
        homerunner_hubs = {a.hub_id for a in carriers.partners[0].carrier_authorizations}
        assert len(homerunner_hubs) == 50

        green_fleets = await stub.ListPartners(
            registry_pb2.ListPartnersRequest(initiative_id="green-fleets")
        )
        green_ids = [p.partner_id for p in green_fleets.partners]
        assert len(green_ids) == 9
        assert green_ids == sorted(green_ids)
        assert "aalborg-universitet" in green_ids and "homerunner" not in green_ids
        swedish = await stub.ListPartners(
            registry_pb2.ListPartnersRequest(initiative_id="green-fleets", country_code="SE")
        )
        assert len(swedish.partners) == 4
        universities = await stub.ListPartners(
            registry_pb2.ListPartnersRequest(kind=registry_pb2.ORGANISATION_KIND_UNIVERSITY)
        )
        assert [p.partner_id for p in universities.partners] == [
            "aalborg-universitet",
            "hogskolan-i-halmstad",
        ]

        leads = await stub.ListPartners(
            registry_pb2.ListPartnersRequest(role=registry_pb2.PARTNER_ROLE_LEAD)
        )
        assert [p.partner_id for p in leads.partners] == ["aalborg-kommune"]

        # Pages of 5 walk the whole directory once, in id order.
        paged: list[str] = []
        token = ""
        pages = 0
        while True:
            page = await stub.ListPartners(
                registry_pb2.ListPartnersRequest(page_size=5, page_token=token)
            )
            paged += [p.partner_id for p in page.partners]
            pages += 1
            token = page.next_page_token
            if not token:
                break
        assert (len(paged), pages) == (13, 3)
        assert paged == sorted(paged)

        initiatives = {
            i.initiative_id: i
            for i in (await stub.ListInitiatives(registry_pb2.ListInitiativesRequest())).initiatives
        }
        assert set(initiatives) == {key.removeprefix("initiative:") for key in INITIATIVE_KEYS}
        molo = initiatives["molo-hubs"]
        assert (molo.programme, molo.starts_on, molo.ends_on) == (
            "Interreg North Sea",
            "2023-01-01",
            "2026-12-31",
        )
        assert len(molo.hub_ids) == 50
        assert initiatives["kimo"].starts_on == ""

        homerunner = await stub.CheckCarrierAuthorization(
            registry_pb2.CheckCarrierAuthorizationRequest(
                carrier_partner_id="homerunner", hub_id="molo-aalborg-01"
            )
        )
        assert homerunner.authorized
        assert "molo-aalborg-01" in homerunner.reason
        unknown_hub = await stub.CheckCarrierAuthorization(
            registry_pb2.CheckCarrierAuthorizationRequest(
                carrier_partner_id="homerunner", hub_id="hub-aalborg-01"
            )
        )
        assert not unknown_hub.authorized
        university = await stub.CheckCarrierAuthorization(
            registry_pb2.CheckCarrierAuthorizationRequest(
                carrier_partner_id="aalborg-universitet", hub_id="molo-aalborg-01"
            )
        )
        assert not university.authorized
        assert "not registered as a MoLo Hubs carrier" in university.reason
        stranger = await stub.CheckCarrierAuthorization(
            registry_pb2.CheckCarrierAuthorizationRequest(
                carrier_partner_id="no-such-carrier", hub_id="molo-aalborg-01"
            )
        )
        assert (stranger.authorized, stranger.reason) == (False, "unknown partner")


def new_carrier() -> registry_pb2.Partner:
    return registry_pb2.Partner(
        partner_id="fjordbud",
        name="Fjordbud",
        kind=registry_pb2.ORGANISATION_KIND_COMPANY,
        country_code="DK",
        participations=[
            registry_pb2.Participation(
                initiative_id="molo-hubs", role=registry_pb2.PARTNER_ROLE_CARRIER
            )
        ],
    )


async def code_of(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_every_write_is_a_new_revision_on_the_changelog(
    registry: ServiceRuntime, kafka: str, pki: Pki
) -> None:
    """Create, update under a mask, a stale update, authorise, revoke, delete and create again:
    each change a revision of its own on the changelog, the deletion a tombstone."""
    partners_topic = registry.topic(topics.PARTNERS)
    async with pki.channel(f"127.0.0.1:{registry.grpc_port}", OPERATOR) as channel:
        stub = registry_pb2_grpc.PartnerRegistryServiceStub(channel)
        created = (
            await stub.CreatePartner(registry_pb2.CreatePartnerRequest(partner=new_carrier()))
        ).partner
        assert created.revision == 1
        assert (
            await code_of(stub.CreatePartner(registry_pb2.CreatePartnerRequest(partner=created)))
            == grpc.StatusCode.ALREADY_EXISTS
        )

        # The mask says what changes: the name in the request is ignored.
        patch = registry_pb2.Partner()
        patch.CopyFrom(created)
        patch.name = "ignored"
        patch.kind = registry_pb2.ORGANISATION_KIND_PUBLIC_TRANSPORT_OPERATOR
        updated = (
            await stub.UpdatePartner(
                registry_pb2.UpdatePartnerRequest(
                    partner=patch, update_mask=FieldMask(paths=["kind"])
                )
            )
        ).partner
        assert (updated.name, updated.kind, updated.revision) == (
            "Fjordbud",
            registry_pb2.ORGANISATION_KIND_PUBLIC_TRANSPORT_OPERATOR,
            2,
        )
        # Someone who read revision 1 cannot overwrite revision 2.
        stale = registry_pb2.UpdatePartnerRequest(
            partner=patch, update_mask=FieldMask(paths=["name"])
        )
        assert await code_of(stub.UpdatePartner(stale)) == grpc.StatusCode.ABORTED

        until = datetime.now(UTC) + timedelta(days=30)
        authorised = (
            await stub.AuthorizeCarrier(
                registry_pb2.AuthorizeCarrierRequest(
                    carrier_partner_id="fjordbud",
                    hub_id="molo-aalborg-07",
                    valid_until=to_timestamp(until),
                    revision=2,
                )
            )
        ).partner
        assert authorised.revision == 3
        check = registry_pb2.CheckCarrierAuthorizationRequest(
            carrier_partner_id="fjordbud", hub_id="molo-aalborg-07"
        )
        assert (await stub.CheckCarrierAuthorization(check)).authorized
        # A hub MoLo Hubs does not have, and a partner that is no carrier, are refused.
        assert (
            await code_of(
                stub.AuthorizeCarrier(
                    registry_pb2.AuthorizeCarrierRequest(
                        carrier_partner_id="fjordbud", hub_id="molo-aalborg-51"
                    )
                )
            )
            == grpc.StatusCode.NOT_FOUND
        )
        assert (
            await code_of(
                stub.AuthorizeCarrier(
                    registry_pb2.AuthorizeCarrierRequest(
                        carrier_partner_id="nordvaerk", hub_id="molo-aalborg-07"
                    )
                )
            )
            == grpc.StatusCode.FAILED_PRECONDITION
        )

        revoked = (
            await stub.RevokeCarrierAuthorization(
                registry_pb2.RevokeCarrierAuthorizationRequest(
                    carrier_partner_id="fjordbud", hub_id="molo-aalborg-07"
                )
            )
        ).partner
        assert revoked.revision == 4
        assert revoked.carrier_authorizations[0].HasField("valid_until")
        assert not (await stub.CheckCarrierAuthorization(check)).authorized
        # Revoking again changes nothing.
        again = await stub.RevokeCarrierAuthorization(
            registry_pb2.RevokeCarrierAuthorizationRequest(
                carrier_partner_id="fjordbud", hub_id="molo-aalborg-07"
            )
        )
        assert again.partner.revision == 4

        assert (
            await code_of(
                stub.DeletePartner(
                    registry_pb2.DeletePartnerRequest(partner_id="fjordbud", revision=3)
                )
            )
            == grpc.StatusCode.ABORTED
        )
        await stub.DeletePartner(
            registry_pb2.DeletePartnerRequest(partner_id="fjordbud", revision=4)
        )
        assert (
            await code_of(stub.GetPartner(registry_pb2.GetPartnerRequest(partner_id="fjordbud")))
            == grpc.StatusCode.NOT_FOUND
        )
        # Created again, the partner continues the revisions, so no reader mistakes it for stale.
        recreated = (
            await stub.CreatePartner(registry_pb2.CreatePartnerRequest(partner=new_carrier()))
        ).partner
        assert (recreated.revision, list(recreated.carrier_authorizations)) == (6, [])

    records = await read_until(
        kafka, partners_topic, lambda found: sum(r.key == "fjordbud" for r in found) >= 6
    )
    history = [record for record in records if record.key == "fjordbud"]
    tombstones = [record for record in history if not record.value]
    revisions = [changed(record).partner.revision for record in history if record.value]
    assert revisions == [1, 2, 3, 4, 6]
    assert len(tombstones) == 1 and history[4] is tombstones[0]


async def test_initiatives_change_by_revision_and_keep_authorised_hubs(
    registry: ServiceRuntime, pki: Pki
) -> None:
    async with pki.channel(f"127.0.0.1:{registry.grpc_port}", OPERATOR) as channel:
        stub = registry_pb2_grpc.PartnerRegistryServiceStub(channel)
        created = (
            await stub.CreateInitiative(
                registry_pb2.CreateInitiativeRequest(
                    initiative=registry_pb2.Initiative(
                        initiative_id="test-initiative", name="Test", starts_on="2025-01-01"
                    )
                )
            )
        ).initiative
        assert created.revision == 1
        created.ends_on = "2027-12-31"
        updated = (
            await stub.UpdateInitiative(
                registry_pb2.UpdateInitiativeRequest(
                    initiative=created, update_mask=FieldMask(paths=["ends_on"])
                )
            )
        ).initiative
        assert (updated.ends_on, updated.revision) == ("2027-12-31", 2)

        molo = next(
            i
            for i in (await stub.ListInitiatives(registry_pb2.ListInitiativesRequest())).initiatives
            if i.initiative_id == "molo-hubs"
        )
        # Homerunner is authorised at every hub: none can be dropped before it is revoked.
        del molo.hub_ids[-1]
        assert (
            await code_of(
                stub.UpdateInitiative(
                    registry_pb2.UpdateInitiativeRequest(
                        initiative=molo, update_mask=FieldMask(paths=["hub_ids"])
                    )
                )
            )
            == grpc.StatusCode.FAILED_PRECONDITION
        )
        await stub.RevokeCarrierAuthorization(
            registry_pb2.RevokeCarrierAuthorizationRequest(
                carrier_partner_id="homerunner", hub_id="molo-aalborg-50"
            )
        )
        shrunk = await stub.UpdateInitiative(
            registry_pb2.UpdateInitiativeRequest(
                initiative=molo, update_mask=FieldMask(paths=["hub_ids"])
            )
        )
        assert len(shrunk.initiative.hub_ids) == 49


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
            stub.ListPartners(registry_pb2.ListPartnersRequest(page_token="bm9wZQ"))
        ) == (invalid, "page_token")
        assert await code_and_field(
            stub.ListPartners(registry_pb2.ListPartnersRequest(page_size=1000))
        ) == (invalid, "page_size")
        assert await code_and_field(
            stub.ListPartners(registry_pb2.ListPartnersRequest(initiative_id="nope"))
        ) == (grpc.StatusCode.NOT_FOUND, None)
        assert await code_and_field(
            stub.CheckCarrierAuthorization(
                registry_pb2.CheckCarrierAuthorizationRequest(hub_id="molo-aalborg-01")
            )
        ) == (invalid, "carrier_partner_id")
        assert await code_and_field(
            stub.CheckCarrierAuthorization(
                registry_pb2.CheckCarrierAuthorizationRequest(carrier_partner_id="homerunner")
            )
        ) == (invalid, "hub_id")

        bad_country = new_carrier()
        bad_country.country_code = "Denmark"
        assert await code_and_field(
            stub.CreatePartner(registry_pb2.CreatePartnerRequest(partner=bad_country))
        ) == (invalid, "partner.country_code")
        no_kind = new_carrier()
        no_kind.kind = registry_pb2.ORGANISATION_KIND_UNSPECIFIED
        assert await code_and_field(
            stub.CreatePartner(registry_pb2.CreatePartnerRequest(partner=no_kind))
        ) == (invalid, "partner.kind")
        unknown_initiative = new_carrier()
        unknown_initiative.participations[0].initiative_id = "blue-fleets"
        assert await code_and_field(
            stub.CreatePartner(registry_pb2.CreatePartnerRequest(partner=unknown_initiative))
        ) == (invalid, "partner.participations[0].initiative_id")
        homerunner = registry_pb2.Partner(partner_id="homerunner", revision=1)
        assert await code_and_field(
            stub.UpdatePartner(registry_pb2.UpdatePartnerRequest(partner=homerunner))
        ) == (invalid, "update_mask")
        assert await code_and_field(
            stub.UpdatePartner(
                registry_pb2.UpdatePartnerRequest(
                    partner=homerunner, update_mask=FieldMask(paths=["revision"])
                )
            )
        ) == (invalid, "update_mask")
        homerunner.revision = 0
        assert await code_and_field(
            stub.UpdatePartner(
                registry_pb2.UpdatePartnerRequest(
                    partner=homerunner, update_mask=FieldMask(paths=["name"])
                )
            )
        ) == (invalid, "partner.revision")
        homerunner.revision = 1
        assert await code_and_field(
            stub.UpdatePartner(
                registry_pb2.UpdatePartnerRequest(
                    partner=homerunner, update_mask=FieldMask(paths=["name"])
                )
            )
        ) == (invalid, "partner.name")
        # Taking the carrier role away while it holds authorisations breaks a rule.
        assert await code_and_field(
            stub.UpdatePartner(
                registry_pb2.UpdatePartnerRequest(
                    partner=homerunner, update_mask=FieldMask(paths=["participations"])
                )
            )
        ) == (invalid, "partner.carrier_authorizations")


async def test_a_registry_from_before_the_write_api_takes_this_release_s_seed(
    kafka: str, database_url: str
) -> None:
    """A database made by migration 1 (seeded, nothing ever changed) is migrated and brought
    up to this seed's records: commitments, hubs, authorisations."""
    database = Database(database_url)
    await database.migrate(MIGRATIONS[:1])
    async with database.transaction() as session:
        await session.execute(
            insert(partners_v1()).values(
                partner_id="homerunner",
                name="Homerunner",
                kind="company",
                country_code="DK",
                participations=[
                    {
                        "initiative_id": "molo-hubs",
                        "role": "carrier",
                        "since_year": None,
                        "representatives": [],
                    }
                ],
                revision=1,
            )
        )
    await database.dispose()

    runtime = registry_runtime(kafka, unique_namespace(), database_url)
    await runtime.start()
    try:
        handlers = RegistryHandlers(runtime.unit_of_work, runtime.names)
        homerunner = await handlers.get_partner("homerunner")
        decision = await handlers.check_carrier_authorization("homerunner", "molo-aalborg-01")
    finally:
        await runtime.stop()
    assert homerunner.revision == 2
    assert len(homerunner.carrier_authorizations) == 50
    assert decision.authorized


def partners_v1() -> Table:
    return Table(
        "partners",
        MetaData(),
        Column("partner_id", String(64), primary_key=True),
        Column("name", String(200)),
        Column("kind", String(32)),
        Column("country_code", String(2)),
        Column("participations", JSON),
        Column("revision", BigInteger),
    )
