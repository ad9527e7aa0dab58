"""Abusive and implausible input at the gRPC boundary and in the fleet and ledger streams: each
gets a clear refusal or a dead letter with its reason, and nothing else changes."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from greenpartners.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from greenpartners.lockers.v1 import lockers_pb2, lockers_pb2_grpc
from locker_hubs.domain.attempts import CALLER_FAILURES, HUB_FAILURES
from servicekit import topics
from servicekit.codec import event_headers, to_timestamp
from servicekit.grpc_server import bad_request_field
from servicekit.identity import FLEET_MANAGER, OPERATOR, RESIDENT
from tests.kafka_tools import eventually, produce, read_until
from tests.test_identity import Served
from tests.test_identity import platform as platform  # the same four services, in-process
from tools.pki import Pki

MUNICIPALITY = "aalborg-kommune"


async def status_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str | None, str]:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), bad_request_field(error), error.details() or ""
    return grpc.StatusCode.OK, None, ""


async def test_huge_ids_are_refused_by_name_and_never_echoed(
    platform: dict[str, Served], pki: Pki
) -> None:
    huge = "x" * (1 << 20)
    async with pki.channel(platform["fleet-telemetry"].target, OPERATOR) as channel:
        fleet = fleet_pb2_grpc.FleetTelemetryServiceStub(channel)
        code, field, details = await status_of(
            fleet.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id=huge))
        )
        assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "vehicle_id")
        assert len(details) < 200
        code, field, _ = await status_of(
            fleet.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id="van 1/../etc"))
        )
        assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "vehicle_id")
    async with pki.channel(platform["emissions-ledger"].target, OPERATOR) as channel:
        ledger = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
        code, field, details = await status_of(
            ledger.GetInventory(ledger_pb2.GetInventoryRequest(municipality_id=huge, year=2026))
        )
        assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "municipality_id")
        assert huge[:100] not in details


async def test_undecodable_requests_and_unknown_enums_are_invalid_arguments(
    platform: dict[str, Served], pki: Pki
) -> None:
    target = platform["fleet-telemetry"].target
    async with pki.channel(target, FLEET_MANAGER, MUNICIPALITY) as channel:
        raw = channel.unary_unary(
            "/greenpartners.fleet.v1.FleetTelemetryService/GetVehicle",
            request_serializer=lambda data: data,
            response_deserializer=fleet_pb2.GetVehicleResponse.FromString,
        )
        code, _, _ = await status_of(raw(b"\xff\xff\xff\xff not protobuf"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT

        fleet = fleet_pb2_grpc.FleetTelemetryServiceStub(channel)
        vehicle = fleet_pb2.Vehicle(
            vehicle_id="abuse-van",
            owner_partner_id=MUNICIPALITY,
            municipality_id=MUNICIPALITY,
            fuel_type=fleet_pb2.FUEL_TYPE_DIESEL,
            vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
            covenant_subsector=999,  # type: ignore[arg-type]  # a newer client's value
        )
        code, field, _ = await status_of(
            fleet.RegisterVehicle(fleet_pb2.RegisterVehicleRequest(vehicle=vehicle))
        )
        assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "vehicle.covenant_subsector")


async def test_a_forged_page_token_is_refused(platform: dict[str, Served], pki: Pki) -> None:
    forged = base64.urlsafe_b64encode(f"{MUNICIPALITY}|2026|0|{'0' * 32}".encode()).decode()
    async with pki.channel(platform["emissions-ledger"].target, OPERATOR) as channel:
        ledger = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
        for token in (forged, "!!!", "A" * 10_000):
            code, field, _ = await status_of(
                ledger.ListEntries(
                    ledger_pb2.ListEntriesRequest(
                        municipality_id=MUNICIPALITY, year=2026, page_token=token
                    )
                )
            )
            assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "page_token")


async def test_a_guesser_is_locked_out_and_a_hub_under_attack_slows_down(
    platform: dict[str, Served], pki: Pki
) -> None:
    target = platform["locker-hubs"].target
    hub = "molo-aalborg-09"

    def guess(code: str) -> lockers_pb2.RegisterWasteDepositRequest:
        return lockers_pb2.RegisterWasteDepositRequest(
            hub_id=hub, code=code, waste_type=lockers_pb2.WASTE_TYPE_TEXTILES, mass_g=100
        )

    async with (
        pki.channel(target, RESIDENT, subject="resident-guesser") as guesser_channel,
        pki.channel(target, RESIDENT, subject="resident-honest") as honest_channel,
    ):
        guesser = lockers_pb2_grpc.LockerHubsServiceStub(guesser_channel)
        honest = lockers_pb2_grpc.LockerHubsServiceStub(honest_channel)
        own = await guesser.IssueDropOffCode(lockers_pb2.IssueDropOffCodeRequest(hub_id=hub))
        wrong = [f"{n:08d}" for n in range(CALLER_FAILURES)]
        wrong = [code for code in wrong if code != own.code]
        for code in wrong[:CALLER_FAILURES]:
            assert (await status_of(guesser.RegisterWasteDeposit(guess(code))))[0] == (
                grpc.StatusCode.PERMISSION_DENIED
            )
        # Locked out, even with the right code; other residents are not.
        locked = await status_of(guesser.RegisterWasteDeposit(guess(own.code)))
        assert locked[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert own.code not in locked[2]
        mine = await honest.IssueDropOffCode(lockers_pb2.IssueDropOffCodeRequest(hub_id=hub))
        await honest.RegisterWasteDeposit(guess(mine.code))

        # Many accounts guessing at one hub: past HUB_FAILURES the hub answers slowly.
        answers = []
        for n in range(HUB_FAILURES):
            async with pki.channel(target, RESIDENT, subject=f"resident-bot-{n}") as bot_channel:
                bot = lockers_pb2_grpc.LockerHubsServiceStub(bot_channel)
                answers.append((await status_of(bot.RegisterWasteDeposit(guess("99999999"))))[0])
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in answers
        await asyncio.sleep(1.1)  # the first backoff step
        code, _, _ = await status_of(honest.RegisterWasteDeposit(guess("99999998")))
        assert code == grpc.StatusCode.PERMISSION_DENIED  # judged again, not held off


async def test_retried_locker_calls_reserve_and_deposit_once(
    platform: dict[str, Served], pki: Pki
) -> None:
    target = platform["locker-hubs"].target
    hub = "molo-aalborg-10"
    async with pki.channel(target, RESIDENT, subject="resident-retrying") as channel:
        lockers = lockers_pb2_grpc.LockerHubsServiceStub(channel)
        issue = lockers_pb2.IssueDropOffCodeRequest(hub_id=hub, request_id="req-issue-1")
        first = await lockers.IssueDropOffCode(issue)
        retried = await lockers.IssueDropOffCode(issue)
        assert retried.compartment_id == first.compartment_id
        assert retried.code != first.code  # the first answer was lost: its code is replaced

        deposit = lockers_pb2.RegisterWasteDepositRequest(
            hub_id=hub,
            code=retried.code,
            waste_type=lockers_pb2.WASTE_TYPE_TEXTILES,
            mass_g=1_500,
            request_id="req-deposit-1",
        )
        stale = lockers_pb2.RegisterWasteDepositRequest()
        stale.CopyFrom(deposit)
        stale.code, stale.request_id = first.code, "req-deposit-0"
        assert (await status_of(lockers.RegisterWasteDeposit(stale)))[0] == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        made = await lockers.RegisterWasteDeposit(deposit)
        again = await lockers.RegisterWasteDeposit(deposit)
        assert (again.deposit_id, again.compartment_id) == (made.deposit_id, made.compartment_id)

        hub_now = (await lockers.GetHub(lockers_pb2.GetHubRequest(hub_id=hub))).hub
        states = [(c.compartment_id, c.state) for c in hub_now.compartments]
        assert [c for c, state in states if state == lockers_pb2.COMPARTMENT_STATE_HOLDS_WASTE] == [
            first.compartment_id
        ]
        assert [c for c, state in states if state == lockers_pb2.COMPARTMENT_STATE_RESERVED] == []


async def test_implausible_masses_and_detours_are_refused(
    platform: dict[str, Served], pki: Pki
) -> None:
    target = platform["locker-hubs"].target
    hub = "molo-aalborg-12"
    async with (
        pki.channel(target, RESIDENT, subject="resident-heavy") as resident_channel,
        pki.channel(target, OPERATOR) as operator_channel,
    ):
        resident = lockers_pb2_grpc.LockerHubsServiceStub(resident_channel)
        issued = await resident.IssueDropOffCode(lockers_pb2.IssueDropOffCodeRequest(hub_id=hub))
        code, field, _ = await status_of(
            resident.RegisterWasteDeposit(
                lockers_pb2.RegisterWasteDepositRequest(
                    hub_id=hub,
                    code=issued.code,
                    waste_type=lockers_pb2.WASTE_TYPE_TEXTILES,
                    mass_g=2**62,
                )
            )
        )
        assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "mass_g")
        operator = lockers_pb2_grpc.LockerHubsServiceStub(operator_channel)
        code, field, _ = await status_of(
            operator.RecordCarrierCollection(
                lockers_pb2.RecordCarrierCollectionRequest(
                    hub_id=hub, carrier_partner_id="homerunner", extra_distance_m=10**15
                )
            )
        )
        assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "extra_distance_m")


def sample(vehicle_id: str, event_id: str, at: datetime, odometer_m: int, fuel_ml: int) -> Any:
    return fleet_pb2.TelemetrySample(
        event_id=event_id,
        occurred_at=to_timestamp(at),
        vehicle_id=vehicle_id,
        odometer_m=odometer_m,
        fuel_used_ml=fuel_ml,
    )


async def test_implausible_samples_are_quarantined_and_the_vehicle_goes_on(
    platform: dict[str, Served], pki: Pki, kafka: str
) -> None:
    fleet = platform["fleet-telemetry"]
    vehicle_id = "abuse-truck"
    async with pki.channel(fleet.target, FLEET_MANAGER, MUNICIPALITY) as channel:
        stub = fleet_pb2_grpc.FleetTelemetryServiceStub(channel)
        await stub.RegisterVehicle(
            fleet_pb2.RegisterVehicleRequest(
                vehicle=fleet_pb2.Vehicle(
                    vehicle_id=vehicle_id,
                    owner_partner_id=MUNICIPALITY,
                    municipality_id=MUNICIPALITY,
                    fuel_type=fleet_pb2.FUEL_TYPE_DIESEL,
                    vehicle_class=fleet_pb2.VEHICLE_CLASS_TRUCK,
                )
            )
        )
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        feed = [
            sample(vehicle_id, "t-1970", datetime(1970, 1, 1, tzinfo=UTC), 1_000, 1_000),
            sample(vehicle_id, "t-0", start, 100_000, 50_000),
            sample(vehicle_id, "t-2100", datetime(2100, 1, 1, tzinfo=UTC), 101_000, 50_100),
            # A million litres in a minute.
            sample(vehicle_id, "t-flood", start + timedelta(minutes=1), 101_000, 10**9),
            sample(vehicle_id, "t-1", start + timedelta(minutes=10), 108_000, 53_000),
        ]
        topic = fleet.runtime.topic(topics.TELEMETRY)
        for event in feed:
            await produce(kafka, topic, vehicle_id, event, event_headers(event))

        async def counted() -> None:
            reply = await stub.GetVehicle(fleet_pb2.GetVehicleRequest(vehicle_id=vehicle_id))
            assert (reply.totals.distance_m, reply.totals.fuel_used_ml) == (8_000, 3_000)
            assert reply.totals.samples_quarantined == 3

        await eventually(counted, timeout_s=30)
    dead = await read_until(
        kafka, topics.dead_letter_topic(topic), lambda records: len(records) >= 3
    )
    assert sorted(record.headers["dlq-reason"] for record in dead) == [
        "implausible_fuel_rate",
        "implausible_time",
        "implausible_time",
    ]


async def test_the_ledger_refuses_activity_it_cannot_believe(
    platform: dict[str, Served], pki: Pki, kafka: str
) -> None:
    ledger = platform["emissions-ledger"]
    topic = ledger.runtime.topic(topics.ACTIVITY)

    def activity(event_id: str, period_end: datetime, fuel_ml: int) -> fleet_pb2.VehicleActivity:
        return fleet_pb2.VehicleActivity(
            event_id=event_id,
            occurred_at=to_timestamp(period_end),
            vehicle=fleet_pb2.Vehicle(
                vehicle_id="abuse-ledger-van",
                owner_partner_id=MUNICIPALITY,
                municipality_id=MUNICIPALITY,
                fuel_type=fleet_pb2.FUEL_TYPE_DIESEL,
                vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
                covenant_subsector=fleet_pb2.COVENANT_SUBSECTOR_MUNICIPAL_FLEET,
            ),
            period_start=to_timestamp(period_end - timedelta(minutes=15)),
            period_end=to_timestamp(period_end),
            distance_m=1_000,
            fuel_used_ml=fuel_ml,
        )

    for event in (
        activity("a-2100", datetime(2100, 6, 1, 12, 0, tzinfo=UTC), 1_000),
        activity("a-1970", datetime(1970, 6, 1, 12, 0, tzinfo=UTC), 1_000),
        activity("a-flood", datetime.now(UTC) - timedelta(hours=1), 10**15),
    ):
        await produce(kafka, topic, event.vehicle.vehicle_id, event, event_headers(event))
    dead = await read_until(
        kafka, topics.dead_letter_topic(topic), lambda records: len(records) >= 3
    )
    assert sorted(record.headers["dlq-reason"] for record in dead) == [
        "amount_out_of_bounds",
        "year_out_of_range",
        "year_out_of_range",
    ]
    refused = {"a-2100", "a-1970", "a-flood"}
    async with pki.channel(ledger.target, OPERATOR) as channel:
        stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
        listed = await stub.ListEntries(
            ledger_pb2.ListEntriesRequest(municipality_id=MUNICIPALITY, year=datetime.now(UTC).year)
        )
        assert refused.isdisjoint(entry.source_event_id for entry in listed.entries)
