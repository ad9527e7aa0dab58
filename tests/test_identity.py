"""Who may call what: every method of every service against anonymous, allowed and refused
callers; tokens that must not pass; the method table of docs/security.md against the rules."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emissions_ledger.bootstrap import build as build_ledger
from emissions_ledger.entrypoints import grpc_api as ledger_api
from fleet_telemetry.bootstrap import build as build_fleet
from fleet_telemetry.entrypoints import grpc_api as fleet_api
from greenpartners.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from greenpartners.lockers.v1 import lockers_pb2, lockers_pb2_grpc
from greenpartners.registry.v1 import registry_pb2, registry_pb2_grpc
from locker_hubs.bootstrap import build as build_lockers
from locker_hubs.entrypoints import grpc_api as lockers_api
from partner_registry.bootstrap import build as build_registry
from partner_registry.entrypoints import grpc_api as registry_api
from servicekit.identity import (
    CARRIER,
    CLIMATE_OFFICER,
    FLEET_MANAGER,
    OPERATOR,
    RESIDENT,
    ROLES,
    Access,
    AccessPolicy,
)
from servicekit.runtime import ServiceRuntime
from tests.kafka_tools import unique_namespace
from tools.pki import DEVELOPMENT_AUDIENCE, DEVELOPMENT_ISSUER, Pki, retire, rotate

ROOT = Path(__file__).resolve().parents[1]
MUNICIPALITY = "aalborg-kommune"


@dataclass(frozen=True)
class Served:
    """One running service with its access rules."""

    name: str
    runtime: ServiceRuntime
    service_name: str
    policy: AccessPolicy

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.runtime.grpc_port}"


@pytest.fixture(scope="module")
async def platform(
    kafka: str, tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> AsyncIterator[dict[str, Served]]:
    """The four services in this process (one namespace), the registry with its mutual-TLS
    listener for locker-hubs, and a plaintext health listener on the ledger."""
    data = tmp_path_factory.mktemp("identity")
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka,
        "topic_namespace": unique_namespace("identity"),
        "grpc_port": 0,
        "outbox_poll_interval_s": 0.1,
    }
    registry = build_registry(
        database_url=f"sqlite+aiosqlite:///{data}/registry.db", grpc_mtls_port=0, **common
    )
    await registry.start()
    runtimes = [registry]
    try:
        lockers = build_lockers(
            database_url=f"sqlite+aiosqlite:///{data}/lockers.db",
            development_mode=True,
            **common,
        )
        fleet = build_fleet(database_url=f"sqlite+aiosqlite:///{data}/fleet.db", **common)
        ledger = build_ledger(
            database_url=f"sqlite+aiosqlite:///{data}/ledger.db", health_port=0, **common
        )
        for runtime in (lockers, fleet, ledger):
            await runtime.start()
            runtimes.append(runtime)
        yield {
            "partner-registry": Served(
                "partner-registry", registry, registry_api.SERVICE, registry_api.ACCESS
            ),
            "locker-hubs": Served("locker-hubs", lockers, lockers_api.SERVICE, lockers_api.ACCESS),
            "fleet-telemetry": Served(
                "fleet-telemetry", fleet, fleet_api.SERVICE, fleet_api.ACCESS
            ),
            "emissions-ledger": Served(
                "emissions-ledger", ledger, ledger_api.SERVICE, ledger_api.ACCESS
            ),
        }
    finally:
        for runtime in reversed(runtimes):
            await runtime.stop()


def all_methods(served: dict[str, Served]) -> list[tuple[Served, str, Access]]:
    return [(s, method, access) for s in served.values() for method, access in s.policy.items()]


async def call(channel: grpc.aio.Channel, served: Served, method: str) -> grpc.StatusCode:
    """Calls a method with an empty request; the status code it answers."""
    descriptor = _service_descriptor(served.service_name).methods_by_name[method]
    request_type = message_factory.GetMessageClass(descriptor.input_type)
    response_type = message_factory.GetMessageClass(descriptor.output_type)
    path = f"/{served.service_name}/{method}"
    try:
        if descriptor.server_streaming:
            stream = channel.unary_stream(
                path,
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )
            async for _ in stream(request_type(), timeout=10):
                break
        else:
            unary = channel.unary_unary(
                path,
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )
            await unary(request_type(), timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _service_descriptor(full_name: str) -> Any:
    for module in (registry_pb2, lockers_pb2, fleet_pb2, ledger_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.full_name == full_name:
                return service
    raise KeyError(full_name)


def allowed_role(access: Access) -> str:
    # An operator passes every resource check too, so a refusal could only be the rule's.
    return OPERATOR if OPERATOR in access.roles else sorted(access.roles)[0]


def refused_role(access: Access) -> str:
    # A method open to every role still refuses a token without one of them.
    return next((role for role in ROLES if role not in access.roles), "visitor")


def test_every_method_has_an_access_rule() -> None:
    for module, service_name, policy in (
        (registry_pb2, registry_api.SERVICE, registry_api.ACCESS),
        (lockers_pb2, lockers_api.SERVICE, lockers_api.ACCESS),
        (fleet_pb2, fleet_api.SERVICE, fleet_api.ACCESS),
        (ledger_pb2, ledger_api.SERVICE, ledger_api.ACCESS),
    ):
        methods = {
            method.name
            for service in module.DESCRIPTOR.services_by_name.values()
            if service.full_name == service_name
            for method in service.methods
        }
        assert methods == set(policy), service_name


async def test_role_matrix_anonymous_allowed_and_refused_caller_of_every_method(
    platform: dict[str, Served], pki: Pki
) -> None:
    outcomes = []
    for served, method, access in all_methods(platform):
        async with pki.channel(served.target) as anonymous:
            outcomes.append(
                (served.name, method, "anonymous", await call(anonymous, served, method))
            )
        async with pki.channel(served.target, allowed_role(access), MUNICIPALITY) as allowed:
            outcomes.append((served.name, method, "allowed", await call(allowed, served, method)))
        async with pki.channel(served.target, refused_role(access), MUNICIPALITY) as refused:
            outcomes.append((served.name, method, "refused", await call(refused, served, method)))
    expected_refusal = {
        "anonymous": grpc.StatusCode.UNAUTHENTICATED,
        "refused": grpc.StatusCode.PERMISSION_DENIED,
    }
    wrong = [
        outcome
        for outcome in outcomes
        if (outcome[2] in expected_refusal and outcome[3] != expected_refusal[outcome[2]])
        or (
            outcome[2] == "allowed"
            and outcome[3] in {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
        )
    ]
    assert wrong == [], wrong
    assert len(outcomes) == 3 * sum(len(s.policy) for s in platform.values())


async def test_services_are_known_by_their_certificate_on_the_mutual_tls_listener(
    platform: dict[str, Served], pki: Pki
) -> None:
    registry = platform["partner-registry"]
    target = f"127.0.0.1:{registry.runtime.grpc_mtls_port}"
    request = registry_pb2.CheckCarrierAuthorizationRequest(
        carrier_partner_id="homerunner", hub_id="molo-aalborg-03"
    )
    async with pki.service_channel(target, "locker-hubs") as channel:
        stub = registry_pb2_grpc.PartnerRegistryServiceStub(channel)
        assert (await stub.CheckCarrierAuthorization(request)).authorized
    async with pki.service_channel(target, "fleet-telemetry") as channel:
        stub = registry_pb2_grpc.PartnerRegistryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CheckCarrierAuthorization(request)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Without a client certificate the mutual-TLS listener does not even finish the handshake.
    async with pki.channel(target, OPERATOR) as channel:
        stub = registry_pb2_grpc.PartnerRegistryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as no_certificate:
            await stub.CheckCarrierAuthorization(request, timeout=5)
        assert no_certificate.value.code() == grpc.StatusCode.UNAVAILABLE


def forged_token(pki: Pki, **changes: Any) -> str:
    """A token like a development token, with claims changed (or signed by an unknown key)."""
    now = dt.datetime.now(dt.UTC)
    claims = {
        "iss": DEVELOPMENT_ISSUER,
        "aud": DEVELOPMENT_AUDIENCE,
        "sub": "someone",
        "roles": [OPERATOR],
        "iat": now,
        "exp": now + dt.timedelta(minutes=5),
    }
    key: Any = changes.pop("key", None)
    kid = changes.pop("kid", None)
    claims.update(changes)
    if key is None:
        kid, key = pki._newest_signing_key()
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


async def test_tokens_that_must_not_pass(platform: dict[str, Served], pki: Pki) -> None:
    ledger = platform["emissions-ledger"]
    request = ledger_pb2.GetInventoryRequest(municipality_id=MUNICIPALITY, year=2026)
    now = dt.datetime.now(dt.UTC)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    bad_tokens = {
        "expired": forged_token(pki, exp=now - dt.timedelta(minutes=5)),
        "another audience": forged_token(pki, aud="someone-else"),
        "another issuer": forged_token(pki, iss="https://issuer.example"),
        "an unknown key": forged_token(pki, key=stranger_key, kid="stranger"),
        "a known key id, another key": forged_token(
            pki, key=stranger_key, kid=pki._newest_signing_key()[0]
        ),
        "no subject": forged_token(pki, sub=None),
        "not a JWT": "not-a-token",
    }
    async with pki.channel(ledger.target) as channel:
        stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
        for case, token in bad_tokens.items():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetInventory(
                    request, metadata=[("authorization", f"Bearer {token}")], timeout=5
                )
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, case
            assert token not in (refused.value.details() or ""), case
        with pytest.raises(grpc.aio.AioRpcError) as basic:
            await stub.GetInventory(request, metadata=[("authorization", "Basic dXNlcg==")])
        assert basic.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_signing_keys_rotate_without_a_restart(platform: dict[str, Served], pki: Pki) -> None:
    ledger = platform["emissions-ledger"]
    request = ledger_pb2.GetInventoryRequest(municipality_id=MUNICIPALITY, year=2026)
    old_kid = pki._newest_signing_key()[0]
    old_token = pki.token(OPERATOR)
    new_kid = rotate(pki)
    new_token = pki.token(OPERATOR)
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid != old_kid
    async with pki.channel(ledger.target) as channel:
        stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
        # Both keys are accepted while tokens of the old one may still be in use...
        for token in (old_token, new_token):
            await stub.GetInventory(request, metadata=[("authorization", f"Bearer {token}")])
        # ...and once it is retired, its tokens are refused.
        retire(pki, old_kid)
        await stub.GetInventory(request, metadata=[("authorization", f"Bearer {new_token}")])
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetInventory(request, metadata=[("authorization", f"Bearer {old_token}")])
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_health_is_open_and_nothing_else_is_plaintext(
    platform: dict[str, Served], pki: Pki
) -> None:
    ledger = platform["emissions-ledger"]
    check = health_pb2.HealthCheckRequest()
    async with pki.channel(ledger.target) as anonymous:
        reply = await health_pb2_grpc.HealthStub(anonymous).Check(check)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    plaintext = f"127.0.0.1:{ledger.runtime.health_port}"
    async with grpc.aio.insecure_channel(plaintext) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(check)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as not_there:
            await ledger_pb2_grpc.EmissionsLedgerServiceStub(channel).GetInventory(
                ledger_pb2.GetInventoryRequest(municipality_id=MUNICIPALITY, year=2026)
            )
        assert not_there.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # The API port speaks TLS only.
    async with grpc.aio.insecure_channel(ledger.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health_pb2_grpc.HealthStub(channel).Check(check, timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_callers_reach_only_their_own_partners_resources(
    platform: dict[str, Served], pki: Pki
) -> None:
    fleet_target = platform["fleet-telemetry"].target

    def vehicle(vehicle_id: str, owner: str, plate: str = "") -> fleet_pb2.Vehicle:
        return fleet_pb2.Vehicle(
            vehicle_id=vehicle_id,
            owner_partner_id=owner,
            municipality_id=MUNICIPALITY,
            fuel_type=fleet_pb2.FUEL_TYPE_DIESEL,
            vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
            registration_plate=plate,
        )

    async def code(call: Any) -> grpc.StatusCode:
        try:
            await call
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    async with (
        pki.channel(fleet_target, FLEET_MANAGER, "renosyd") as renosyd_channel,
        pki.channel(fleet_target, FLEET_MANAGER, MUNICIPALITY) as kommune_channel,
        pki.channel(fleet_target, CLIMATE_OFFICER, "hjoerring-kommune") as officer_channel,
    ):
        renosyd = fleet_pb2_grpc.FleetTelemetryServiceStub(renosyd_channel)
        kommune = fleet_pb2_grpc.FleetTelemetryServiceStub(kommune_channel)
        officer = fleet_pb2_grpc.FleetTelemetryServiceStub(officer_channel)
        own = vehicle("id-kommune-van", MUNICIPALITY, "AB 12 345")
        assert await code(
            kommune.RegisterVehicle(fleet_pb2.RegisterVehicleRequest(vehicle=own))
        ) == (grpc.StatusCode.OK)
        # Repeating the registration is harmless; taking the vehicle over is not possible.
        assert await code(
            kommune.RegisterVehicle(fleet_pb2.RegisterVehicleRequest(vehicle=own))
        ) == (grpc.StatusCode.OK)
        taken = vehicle("id-kommune-van", "renosyd")
        assert (
            await code(renosyd.RegisterVehicle(fleet_pb2.RegisterVehicleRequest(vehicle=taken)))
            == grpc.StatusCode.ALREADY_EXISTS
        )
        assert (
            await code(renosyd.UpdateVehicle(fleet_pb2.UpdateVehicleRequest(vehicle=taken)))
            == grpc.StatusCode.PERMISSION_DENIED
        )
        assert (
            await code(
                renosyd.RegisterVehicle(
                    fleet_pb2.RegisterVehicleRequest(vehicle=vehicle("id-other", MUNICIPALITY))
                )
            )
            == grpc.StatusCode.PERMISSION_DENIED
        )
        # The owner changes its vehicle, but cannot give it away.
        replated = vehicle("id-kommune-van", MUNICIPALITY, "CD 67 890")
        updated = await kommune.UpdateVehicle(fleet_pb2.UpdateVehicleRequest(vehicle=replated))
        assert updated.vehicle.registration_plate == "CD 67 890"
        assert (
            await code(kommune.UpdateVehicle(fleet_pb2.UpdateVehicleRequest(vehicle=taken)))
            == grpc.StatusCode.PERMISSION_DENIED
        )
        # Another partner cannot even learn that the vehicle exists.
        get = fleet_pb2.GetVehicleRequest(vehicle_id="id-kommune-van")
        assert await code(renosyd.GetVehicle(get)) == grpc.StatusCode.NOT_FOUND
        assert await code(officer.GetVehicle(get)) == grpc.StatusCode.NOT_FOUND
        assert (await kommune.GetVehicle(get)).vehicle.owner_partner_id == MUNICIPALITY

    ledger_target = platform["emissions-ledger"].target
    async with pki.channel(ledger_target, CLIMATE_OFFICER, "hjoerring-kommune") as channel:
        other_municipality = ledger_pb2.GetInventoryRequest(municipality_id=MUNICIPALITY, year=2026)
        stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
        assert await code(stub.GetInventory(other_municipality)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )

    lockers_target = platform["locker-hubs"].target
    async with pki.channel(lockers_target, CARRIER, "homerunner") as channel:
        stub = lockers_pb2_grpc.LockerHubsServiceStub(channel)
        posing = lockers_pb2.RecordCarrierCollectionRequest(
            hub_id="molo-aalborg-04", carrier_partner_id="another-carrier"
        )
        assert await code(stub.RecordCarrierCollection(posing)) == grpc.StatusCode.PERMISSION_DENIED


async def test_a_resident_holds_only_a_few_open_codes(
    platform: dict[str, Served], pki: Pki
) -> None:
    """Three open codes at a time, two of them at one hub (the defaults)."""
    target = platform["locker-hubs"].target

    def at(hub_id: str) -> lockers_pb2.IssueDropOffCodeRequest:
        return lockers_pb2.IssueDropOffCodeRequest(hub_id=hub_id)

    async with (
        pki.channel(target, RESIDENT, subject="resident-greedy") as greedy_channel,
        pki.channel(target, RESIDENT, subject="resident-next-door") as neighbour_channel,
    ):
        greedy = lockers_pb2_grpc.LockerHubsServiceStub(greedy_channel)
        neighbour = lockers_pb2_grpc.LockerHubsServiceStub(neighbour_channel)
        first = await greedy.IssueDropOffCode(at("molo-aalborg-06"))
        await greedy.IssueDropOffCode(at("molo-aalborg-06"))
        with pytest.raises(grpc.aio.AioRpcError) as at_one_hub:
            await greedy.IssueDropOffCode(at("molo-aalborg-06"))
        assert at_one_hub.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await greedy.IssueDropOffCode(at("molo-aalborg-07"))
        with pytest.raises(grpc.aio.AioRpcError) as in_all:
            await greedy.IssueDropOffCode(at("molo-aalborg-08"))
        assert in_all.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The quota is the resident's own: the neighbour is not held up.
        await neighbour.IssueDropOffCode(at("molo-aalborg-06"))
        # A code used is no longer open: the resident may ask for another.
        await greedy.RegisterWasteDeposit(
            lockers_pb2.RegisterWasteDepositRequest(
                hub_id="molo-aalborg-06",
                code=first.code,
                waste_type=lockers_pb2.WASTE_TYPE_TEXTILES,
                mass_g=800,
            )
        )
        await greedy.IssueDropOffCode(at("molo-aalborg-08"))


def test_a_service_without_tls_and_token_keys_does_not_start() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emissions_ledger"],
        env={"PATH": "/usr/bin:/bin", "DEVELOPMENT_MODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    for variable in ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE", "AUTH_JWKS_FILE"):
        assert variable in result.stderr


def test_the_method_table_in_docs_matches_the_rules() -> None:
    """docs/security.md lists each method with who may call it; the rules must say the same."""
    text = (ROOT / "docs/security.md").read_text()
    documented: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].endswith("Service`"):
            service, method, roles, services, _also = cells
            documented[(service.strip("`"), method.strip("`"))] = (
                set(re.findall(r"`([\w-]+)`", roles)),
                set(re.findall(r"`([\w-]+)`", services)),
            )
    rules = {
        (served_name.split(".")[-1], method): (set(access.roles), set(access.services))
        for served_name, policy in (
            (registry_api.SERVICE, registry_api.ACCESS),
            (lockers_api.SERVICE, lockers_api.ACCESS),
            (fleet_api.SERVICE, fleet_api.ACCESS),
            (ledger_api.SERVICE, ledger_api.ACCESS),
        )
        for method, access in policy.items()
    }
    assert documented == rules
