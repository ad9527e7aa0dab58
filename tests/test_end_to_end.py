"""The four services as separate OS processes on the real broker, driven like production.

Telemetry for a diesel van, an electric van and a refuse truck whose telematics unit is
replaced mid-stream, a hazardous-waste deposit and an authorised carrier collection must reach
the Covenant inventory exactly as computed here by hand from the activity and the declared
emission factors (emissions-ledger/data/emission_factors.yaml, avoided_trips.yaml).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from greenpartners.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from greenpartners.lockers.v1 import lockers_pb2, lockers_pb2_grpc
from greenpartners.registry.v1 import registry_pb2, registry_pb2_grpc
from servicekit import topics
from servicekit.codec import to_timestamp
from servicekit.grpc_server import bad_request_field
from servicekit.identity import CARRIER, CLIMATE_OFFICER, FLEET_MANAGER, OPERATOR, RESIDENT
from servicekit.topics import TopicNames
from tests.conftest import PostgresDatabases
from tests.kafka_tools import produce, read_until, unique_namespace
from tools.pki import Pki
from tools.platform import Platform, free_ports, services_on_ports, wait_for_inventory

# Declared factors (emission_factors.yaml): diesel 2.66 kg CO2/l (Norwegian Environment
# Agency), Danish consumption-mix electricity from 2023 0.096 kg CO2/kWh (Green Power Denmark).
DIESEL_KG_PER_L = Decimal("2.66")
ELECTRICITY_KG_PER_KWH = Decimal("0.096")
# avoided_trips.yaml: a 14 km dedicated trip by a diesel van at 8 l/100 km; the carrier's van
# also at 8 l/100 km.
DEDICATED_TRIP_KM = Decimal("14")
VAN_L_PER_KM = Decimal("0.08")

DAY = datetime(2026, 6, 9, 6, 0, tzinfo=UTC)
MUNICIPALITY = "aalborg-kommune"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def platform(
    kafka: str,
    tmp_path: Path,
    database_kind: str,
    postgres_databases: PostgresDatabases,
    pki: Pki,
) -> AsyncIterator[Platform]:
    """The four services as processes, each with a database of its own: a SQLite file, or a
    database on the PostgreSQL server as in a deployment."""
    ports = free_ports(8)
    services = services_on_ports(ports[:4], ports[4:])
    database_urls = {}
    if database_kind == "postgresql":
        database_urls = {service.name: await postgres_databases.create() for service in services}
    running = Platform(unique_namespace("e2e"), tmp_path, services, database_urls, pki=pki)
    running.bootstrap = kafka
    running.start_services()
    try:
        await running.wait_healthy()
        yield running
    finally:
        running.stop()


def sample(
    vehicle_id: str,
    step: int,
    odometer_m: int,
    fuel_ml: int | None = None,
    energy_wh: int | None = None,
) -> fleet_pb2.TelemetrySample:
    event = fleet_pb2.TelemetrySample(
        event_id=f"{vehicle_id}-sample-{step}",
        # One reading per 15-minute activity window: each increment is one activity.
        occurred_at=to_timestamp(DAY + timedelta(minutes=15 * step)),
        vehicle_id=vehicle_id,
        odometer_m=odometer_m,
    )
    if fuel_ml is not None:
        event.fuel_used_ml = fuel_ml
    if energy_wh is not None:
        event.energy_used_wh = energy_wh
    return event


async def inventory(
    stub: ledger_pb2_grpc.EmissionsLedgerServiceStub,
) -> ledger_pb2.GetInventoryResponse:
    return await stub.GetInventory(
        ledger_pb2.GetInventoryRequest(municipality_id=MUNICIPALITY, year=2026)
    )


async def test_feed_reaches_the_covenant_inventory_exactly_once(
    platform: Platform, kafka: str, pki: Pki
) -> None:
    names = TopicNames(platform.namespace)
    # Each call as the one who makes it in life: the municipality's fleet manager, a
    # resident, the carrier (whose identity is its token, not a request field), and the
    # municipality's climate officer.
    fleet_channel = pki.channel(platform.fleet.target, FLEET_MANAGER, MUNICIPALITY)
    lockers_channel = pki.channel(platform.lockers.target, RESIDENT, subject="resident-e2e")
    carrier_channel = pki.channel(platform.lockers.target, CARRIER, "homerunner")
    outsider_channel = pki.channel(platform.lockers.target, CARRIER, "aalborg-universitet")
    ledger_channel = pki.channel(platform.ledger.target, CLIMATE_OFFICER, MUNICIPALITY)
    registry_channel = pki.channel(platform.registry.target, OPERATOR)
    registry = registry_pb2_grpc.PartnerRegistryServiceStub(registry_channel)
    fleet = fleet_pb2_grpc.FleetTelemetryServiceStub(fleet_channel)
    lockers = lockers_pb2_grpc.LockerHubsServiceStub(lockers_channel)
    carrier = lockers_pb2_grpc.LockerHubsServiceStub(carrier_channel)
    outsider = lockers_pb2_grpc.LockerHubsServiceStub(outsider_channel)
    ledger = ledger_pb2_grpc.EmissionsLedgerServiceStub(ledger_channel)
    try:
        for vehicle_id, fuel, vehicle_class in (
            ("e2e-diesel", fleet_pb2.FUEL_TYPE_DIESEL, fleet_pb2.VEHICLE_CLASS_VAN),
            ("e2e-ev", fleet_pb2.FUEL_TYPE_ELECTRIC, fleet_pb2.VEHICLE_CLASS_VAN),
            ("e2e-refuse", fleet_pb2.FUEL_TYPE_DIESEL, fleet_pb2.VEHICLE_CLASS_REFUSE_TRUCK),
        ):
            await fleet.RegisterVehicle(
                fleet_pb2.RegisterVehicleRequest(
                    vehicle=fleet_pb2.Vehicle(
                        vehicle_id=vehicle_id,
                        owner_partner_id=MUNICIPALITY,
                        municipality_id=MUNICIPALITY,
                        fuel_type=fuel,  # type: ignore[arg-type]
                        vehicle_class=vehicle_class,  # type: ignore[arg-type]
                    )
                )
            )

        # An owner the partner registry does not know (a typo) is refused, by the field.
        async with pki.channel(platform.fleet.target, OPERATOR) as operator_channel:
            operator_fleet = fleet_pb2_grpc.FleetTelemetryServiceStub(operator_channel)
            with pytest.raises(grpc.aio.AioRpcError) as unknown_owner:
                await operator_fleet.RegisterVehicle(
                    fleet_pb2.RegisterVehicleRequest(
                        vehicle=fleet_pb2.Vehicle(
                            vehicle_id="e2e-typo",
                            owner_partner_id="aalborg-komune",
                            municipality_id=MUNICIPALITY,
                            fuel_type=fleet_pb2.FUEL_TYPE_DIESEL,
                            vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
                        )
                    )
                )
        assert unknown_owner.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_field(unknown_owner.value) == "vehicle.owner_partner_id"

        # Diesel van: 12.4 km on 961 ml, then 8.05 km on 702 ml.
        # Electric van: 20.3 km on 4 263 Wh.
        # Refuse truck: 6.2 km on 4 650 ml, 5.7 km on 4 275 ml; then its telematics unit is
        # replaced and the counters start again near zero (1.3 km, 980 ml). That first reading
        # of the new unit is only the new baseline: the drive from the old unit's last reading
        # to it is measured by neither unit. Then 5.6 km on 4 200 ml, 5.2 km on 3 900 ml.
        telemetry = [
            sample("e2e-diesel", 0, 1_000_000, fuel_ml=50_000),
            sample("e2e-diesel", 1, 1_012_400, fuel_ml=50_961),
            sample("e2e-diesel", 2, 1_020_450, fuel_ml=51_663),
            sample("e2e-ev", 0, 300_000, energy_wh=70_000),
            sample("e2e-ev", 1, 320_300, energy_wh=74_263),
            sample("e2e-refuse", 0, 48_000_000, fuel_ml=9_000_000),
            sample("e2e-refuse", 1, 48_006_200, fuel_ml=9_004_650),
            sample("e2e-refuse", 2, 48_011_900, fuel_ml=9_008_925),
            sample("e2e-refuse", 3, 1_300, fuel_ml=980),
            sample("e2e-refuse", 4, 6_900, fuel_ml=5_180),
            sample("e2e-refuse", 5, 12_100, fuel_ml=9_080),
        ]
        for event in telemetry:
            await produce(kafka, names(topics.TELEMETRY), event.vehicle_id, event)

        hub = "molo-aalborg-07"
        issued = await lockers.IssueDropOffCode(
            lockers_pb2.IssueDropOffCodeRequest(hub_id=hub, hazardous=True)
        )
        await lockers.RegisterWasteDeposit(
            lockers_pb2.RegisterWasteDepositRequest(
                hub_id=hub,
                code=issued.code,
                waste_type=lockers_pb2.WASTE_TYPE_HAZARDOUS_HOUSEHOLD,
                hazardous=True,
                mass_g=3_400,
            )
        )
        collection_id = str(uuid.uuid4())
        collect = lockers_pb2.RecordCarrierCollectionRequest(
            hub_id=hub, extra_distance_m=700, collection_id=collection_id
        )
        collected = await carrier.RecordCarrierCollection(collect)
        assert collected.mass_g == 3_400

        diesel_kg = (Decimal("0.961") + Decimal("0.702")) * DIESEL_KG_PER_L
        electric_kg = Decimal("4.263") * ELECTRICITY_KG_PER_KWH
        refuse_kg = (
            Decimal("4.650") + Decimal("4.275") + Decimal("4.200") + Decimal("3.900")
        ) * DIESEL_KG_PER_L
        # The collection: the dedicated trip not driven, and the carrier's 0.7 km detour.
        avoided_kg = DEDICATED_TRIP_KM * VAN_L_PER_KM * DIESEL_KG_PER_L
        detour_kg = Decimal("0.7") * VAN_L_PER_KM * DIESEL_KG_PER_L
        assert (diesel_kg, electric_kg, refuse_kg, avoided_kg, detour_kg) == (
            Decimal("4.42358"),
            Decimal("0.409248"),
            Decimal("45.2865"),
            Decimal("2.9792"),
            Decimal("0.14896"),
        )

        # One entry per increment (each within one activity window), two for the collection.
        first = await wait_for_inventory(platform, 2026, entries=9, timeout_s=90)
        assert first.entry_count == 9
        # The fleet manager's view of the same activity.
        diesel_van = await fleet.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id="e2e-diesel"))
        assert (diesel_van.totals.distance_m, diesel_van.totals.fuel_used_ml) == (20_450, 1_663)
        refuse = await fleet.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id="e2e-refuse"))
        assert (refuse.totals.distance_m, refuse.totals.fuel_used_ml) == (22_700, 17_025)
        assert (refuse.totals.counter_resets, refuse.totals.samples_quarantined) == (1, 0)
        assert (refuse.baseline.odometer_m, refuse.baseline.fuel_used_ml) == (12_100, 9_080)
        assert refuse.baseline.sample_event_id == "e2e-refuse-sample-5"
        assert not refuse.HasField("pending_reset")
        # To the gram, and in fact exactly.
        assert Decimal(first.emissions_kg_co2e) == diesel_kg + electric_kg + refuse_kg + detour_kg
        assert Decimal(first.avoided_kg_co2e) == avoided_kg
        emission, metered = ledger_pb2.ENTRY_KIND_EMISSION, ledger_pb2.BASIS_METERED
        lines = {(line.energy_carrier, line.kind, line.basis): line for line in first.lines}
        diesel_line = lines[(ledger_pb2.ENERGY_CARRIER_DIESEL, emission, metered)]
        assert Decimal(diesel_line.kg_co2e) == diesel_kg + refuse_kg
        # The detour is modelled: on a line of its own, never with the metered fuel.
        detour_line = lines[(ledger_pb2.ENERGY_CARRIER_DIESEL, emission, ledger_pb2.BASIS_MODELLED)]
        assert Decimal(detour_line.kg_co2e) == detour_kg
        electric_line = lines[(ledger_pb2.ENERGY_CARRIER_ELECTRICITY, emission, metered)]
        assert Decimal(electric_line.kg_co2e) == electric_kg
        assert electric_line.subsector == ledger_pb2.SUBSECTOR_MUNICIPAL_FLEET

        # Redelivery: the same telemetry, the same activity and locker events, the same
        # collection call again. None of it may change the ledger.
        for event in telemetry:
            await produce(kafka, names(topics.TELEMETRY), event.vehicle_id, event)
        for topic in (topics.ACTIVITY, topics.LOCKER_EVENTS):
            for record in await read_until(kafka, names(topic), lambda r: False, timeout_s=2):
                await produce(kafka, names(topic), record.key, record.value, record.headers)
        again = await carrier.RecordCarrierCollection(collect)
        assert again.collection_id == collection_id

        # A malformed event, then a good one behind it on the same partition.
        await produce(
            kafka,
            names(topics.TELEMETRY),
            "e2e-diesel",
            b"\x08\x96\x01 garbage",
            {"event-type": "greenpartners.fleet.v1.TelemetrySample"},
        )
        await produce(
            kafka,
            names(topics.TELEMETRY),
            "e2e-diesel",
            sample("e2e-diesel", 3, 1_025_450, fuel_ml=52_063),
        )
        later_kg = Decimal("0.400") * DIESEL_KG_PER_L

        final = await wait_for_inventory(platform, 2026, entries=10, timeout_s=90)
        assert final.entry_count == 10
        assert Decimal(final.emissions_kg_co2e) == (
            diesel_kg + electric_kg + refuse_kg + detour_kg + later_kg
        )
        assert Decimal(final.avoided_kg_co2e) == avoided_kg

        dead = await read_until(
            kafka, names(topics.dead_letter_topic(topics.TELEMETRY)), lambda r: len(r) >= 1
        )
        assert dead[0].headers["dlq-reason"] == "undecodable"
        assert dead[0].key == "e2e-diesel"

        # An organisation that is not a MoLo Hubs carrier may not collect.
        issued = await lockers.IssueDropOffCode(
            lockers_pb2.IssueDropOffCodeRequest(hub_id=hub, hazardous=False)
        )
        await lockers.RegisterWasteDeposit(
            lockers_pb2.RegisterWasteDepositRequest(
                hub_id=hub,
                code=issued.code,
                waste_type=lockers_pb2.WASTE_TYPE_TEXTILES,
                mass_g=1_000,
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await outsider.RecordCarrierCollection(
                lockers_pb2.RecordCarrierCollectionRequest(hub_id=hub, extra_distance_m=100)
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await carrier.RecordCarrierCollection(
                lockers_pb2.RecordCarrierCollectionRequest(hub_id=hub, extra_distance_m=-5)
            )
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_field(invalid.value) == "extra_distance_m"

        # An operator revokes Homerunner at an empty hub: once locker-hubs' read model has the
        # revocation, the carrier is refused there (before, it is let in and finds nothing).
        empty_hub = "molo-aalborg-09"
        await registry.RevokeCarrierAuthorization(
            registry_pb2.RevokeCarrierAuthorizationRequest(
                carrier_partner_id="homerunner", hub_id=empty_hub
            )
        )
        deadline = time.monotonic() + 10
        while True:
            with pytest.raises(grpc.aio.AioRpcError) as revoked:
                await carrier.RecordCarrierCollection(
                    lockers_pb2.RecordCarrierCollectionRequest(hub_id=empty_hub)
                )
            if revoked.value.code() == grpc.StatusCode.PERMISSION_DENIED:
                break
            assert revoked.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert time.monotonic() < deadline, "the revocation did not reach locker-hubs"
            await asyncio.sleep(0.1)

        assert (await inventory(ledger)).entry_count == 10
        # A municipality the registry does not know has no inventory (not an empty one).
        async with pki.channel(platform.ledger.target, OPERATOR) as operator_channel:
            with pytest.raises(grpc.aio.AioRpcError) as unknown_municipality:
                await ledger_pb2_grpc.EmissionsLedgerServiceStub(operator_channel).GetInventory(
                    ledger_pb2.GetInventoryRequest(municipality_id="aalborg-komune", year=2026)
                )
        assert unknown_municipality.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        for channel in (
            fleet_channel,
            lockers_channel,
            carrier_channel,
            outsider_channel,
            ledger_channel,
            registry_channel,
        ):
            await channel.close()

    # SIGTERM: every service drains and exits cleanly.
    assert platform.stop() == {service.name: 0 for service in platform.services}


# How long a registry change may take to reach fleet-telemetry's read model.
FOLLOW_BOUND_S = 10.0


async def within_bound(check: Callable[[], Awaitable[bool]], what: str) -> float:
    """Seconds until `check` holds, polling; fails past FOLLOW_BOUND_S."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < FOLLOW_BOUND_S, what
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_fleet_telemetry_follows_the_registry_also_across_a_restart(
    platform: Platform, pki: Pki
) -> None:
    """An operator changes a partner's kind and deletes partners; fleet-telemetry's
    classification and its owners follow within seconds, and the changes made while it was
    stopped are there when it is back."""
    registry_channel = pki.channel(platform.registry.target, OPERATOR)
    registry = registry_pb2_grpc.PartnerRegistryServiceStub(registry_channel)

    def vehicle(vehicle_id: str, owner: str) -> fleet_pb2.Vehicle:
        return fleet_pb2.Vehicle(
            vehicle_id=vehicle_id,
            owner_partner_id=owner,
            municipality_id=MUNICIPALITY,
            fuel_type=fleet_pb2.FUEL_TYPE_DIESEL,
            vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
        )

    async def registration_code(
        fleet: fleet_pb2_grpc.FleetTelemetryServiceStub, owner: str
    ) -> grpc.StatusCode:
        try:
            await fleet.RegisterVehicle(
                # A vehicle id of its own: an existing vehicle would be ALREADY_EXISTS.
                fleet_pb2.RegisterVehicleRequest(
                    vehicle=vehicle(f"e2e-{uuid.uuid4().hex[:12]}", owner)
                )
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    async def subsector(fleet: fleet_pb2_grpc.FleetTelemetryServiceStub) -> int:
        got = await fleet.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id="e2e-nordvaerk-van"))
        return got.vehicle.covenant_subsector

    async def set_kind(partner_id: str, kind: registry_pb2.OrganisationKind.ValueType) -> None:
        current = await registry.GetPartner(registry_pb2.GetPartnerRequest(partner_id=partner_id))
        changed = registry_pb2.Partner(
            partner_id=partner_id, kind=kind, revision=current.partner.revision
        )
        await registry.UpdatePartner(
            registry_pb2.UpdatePartnerRequest(
                partner=changed, update_mask=field_mask_pb2.FieldMask(paths=["kind"])
            )
        )

    async def delete(partner_id: str) -> None:
        current = await registry.GetPartner(registry_pb2.GetPartnerRequest(partner_id=partner_id))
        await registry.DeletePartner(
            registry_pb2.DeletePartnerRequest(
                partner_id=partner_id, revision=current.partner.revision
            )
        )

    try:
        for haulier in ("e2e-haulier-a", "e2e-haulier-b"):
            await registry.CreatePartner(
                registry_pb2.CreatePartnerRequest(
                    partner=registry_pb2.Partner(
                        partner_id=haulier,
                        name=f"Haulier {haulier[-1].upper()}",
                        kind=registry_pb2.ORGANISATION_KIND_COMPANY,
                        country_code="DK",
                    )
                )
            )
        async with pki.channel(platform.fleet.target, OPERATOR) as channel:
            fleet = fleet_pb2_grpc.FleetTelemetryServiceStub(channel)
            await fleet.RegisterVehicle(
                fleet_pb2.RegisterVehicleRequest(vehicle=vehicle("e2e-nordvaerk-van", "nordvaerk"))
            )
            assert (
                await subsector(fleet) == fleet_pb2.COVENANT_SUBSECTOR_PRIVATE_COMMERCIAL_TRANSPORT
            )

            # New partners become owners; a change of kind re-classifies; a deleted partner
            # owns no new vehicles.
            await within_bound(
                lambda: _is(registration_code(fleet, "e2e-haulier-a"), grpc.StatusCode.OK),
                "a new partner did not reach fleet-telemetry",
            )
            await set_kind("nordvaerk", registry_pb2.ORGANISATION_KIND_PUBLIC_TRANSPORT_OPERATOR)
            await within_bound(
                lambda: _is(subsector(fleet), fleet_pb2.COVENANT_SUBSECTOR_PUBLIC_TRANSPORT),
                "the change of kind did not reach fleet-telemetry",
            )
            await delete("e2e-haulier-a")
            await within_bound(
                lambda: _is(
                    registration_code(fleet, "e2e-haulier-a"), grpc.StatusCode.INVALID_ARGUMENT
                ),
                "the deletion did not reach fleet-telemetry",
            )

        # Changes made while fleet-telemetry is stopped are in its read model once it is back.
        assert platform.stop_service(platform.fleet) == 0
        await set_kind("nordvaerk", registry_pb2.ORGANISATION_KIND_MUNICIPAL_COMPANY)
        await delete("e2e-haulier-b")
        platform.start(platform.fleet)
        await platform.wait_healthy()
        async with pki.channel(platform.fleet.target, OPERATOR) as channel:
            fleet = fleet_pb2_grpc.FleetTelemetryServiceStub(channel)
            # Healthy means caught up: no waiting.
            assert await subsector(fleet) == fleet_pb2.COVENANT_SUBSECTOR_MUNICIPAL_FLEET
            assert (
                await registration_code(fleet, "e2e-haulier-b") == grpc.StatusCode.INVALID_ARGUMENT
            )
            # And it goes on following.
            await set_kind("nordvaerk", registry_pb2.ORGANISATION_KIND_COMPANY)
            await within_bound(
                lambda: _is(
                    subsector(fleet), fleet_pb2.COVENANT_SUBSECTOR_PRIVATE_COMMERCIAL_TRANSPORT
                ),
                "a change after the restart did not reach fleet-telemetry",
            )
    finally:
        await registry_channel.close()


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected
