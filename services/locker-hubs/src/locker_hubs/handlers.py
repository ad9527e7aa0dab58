"""locker-hubs' use cases."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from locker_hubs.adapters.events import waste_collected_event, waste_deposited_event
from locker_hubs.adapters.repository import HubChanged, HubRepository, RecordedCollection
from locker_hubs.adapters.tables import ID_LENGTH
from locker_hubs.domain import (
    CodeCollision,
    Compartment,
    Deposit,
    Hub,
    InvalidCode,
    InvalidDeposit,
    NoFreeCompartment,
    NothingToCollect,
    WasteType,
    generate_code,
    hash_code,
)
from locker_hubs.domain.attempts import FailedAttempts
from servicekit import topics
from servicekit.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from servicekit.outbox import add_to_outbox
from servicekit.runtime import UnitOfWork
from servicekit.topics import TopicNames

# Eight-digit codes collide with an open reservation of the same hub about once in ten
# million issues; this many collisions in a row means the random source is broken.
MAX_CODE_ATTEMPTS = 5
# A carrier's detour to take a hub's waste to the waste company: within the municipality, well
# under 100 km; more is a typo or a forged call.
MAX_EXTRA_DISTANCE_M = 100_000
# A change that lost the race against another change of the same hub is redone on a fresh
# copy at most this many times.
MAX_SAVE_ATTEMPTS = 5

ResultT = TypeVar("ResultT")


class CarrierAuthorization(Protocol):
    """Whether a carrier may collect at a hub now, and why not (adapters.carrier_directory)."""

    async def is_authorized(self, carrier_partner_id: str, hub_id: str) -> tuple[bool, str]: ...


@dataclass(frozen=True)
class IssuedCode:
    compartment_id: str
    expires_at: datetime
    # The plain code goes to the caller once; kept out of repr so it cannot reach a log.
    code: str = field(repr=False)


@dataclass(frozen=True)
class RegisterDeposit:
    hub_id: str
    code: str = field(repr=False)
    waste_type: WasteType | None
    hazardous: bool
    mass_g: int


@dataclass(frozen=True)
class RecordCollection:
    hub_id: str
    carrier_partner_id: str
    extra_distance_m: int
    # Empty: the service picks one.
    collection_id: str


class LockerHandlers:
    def __init__(
        self,
        unit_of_work: UnitOfWork,
        names: TopicNames,
        carriers: CarrierAuthorization,
        code_pepper: bytes,
        code_ttl: timedelta,
        open_codes_per_resident: int = 3,
        open_codes_per_resident_at_one_hub: int = 2,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.unit_of_work = unit_of_work
        self.names = names
        self.carriers = carriers
        self.code_pepper = code_pepper
        self.code_ttl = code_ttl
        self.open_codes_per_resident = open_codes_per_resident
        self.open_codes_per_resident_at_one_hub = open_codes_per_resident_at_one_hub
        self.failed_attempts = FailedAttempts()
        self.clock = clock
        self.random_bytes = random_bytes

    async def seed_hubs(self, hubs: Sequence[Hub]) -> list[str]:
        """Adds the hubs not stored yet (existing ones keep their state); returns their ids."""
        async with self.unit_of_work() as session:
            repository = HubRepository(session)
            return [hub.hub_id for hub in hubs if await repository.add_hub_if_absent(hub)]

    async def list_hubs(self) -> list[Hub]:
        async with self.unit_of_work.read() as session:
            hubs = await HubRepository(session).list_hubs()
        now = self.clock()
        for hub in hubs:
            # Only the answer shows expired reservations as free; the next change saves it.
            hub.release_expired_reservations(now)
        return hubs

    async def get_hub(self, hub_id: str) -> Hub:
        _require("hub_id", hub_id)
        async with self.unit_of_work.read() as session:
            hub = await _load_hub(HubRepository(session), hub_id)
        hub.release_expired_reservations(self.clock())
        return hub

    async def issue_drop_off_code(
        self, hub_id: str, hazardous: bool, holder: str, request_id: str = ""
    ) -> IssuedCode:
        """Reserves a compartment under a new one-time code for a resident, who may hold only
        a few open codes at a time, fewer at one hub (so one account cannot reserve a hub's
        compartments). A retry with the same request id renews the code of the compartment
        the first call reserved instead of reserving another."""
        _require("hub_id", hub_id)

        async def attempt() -> IssuedCode:
            async with self.unit_of_work() as session:
                repository = HubRepository(session)
                now = self.clock()
                hub = await _load_hub(repository, hub_id)
                reserved = request_id and hub.reserved_by_request(holder, request_id, now)
                if reserved:
                    compartment, code = self._renew_under_fresh_code(hub, reserved)
                else:
                    held = await repository.open_codes_held_by(holder, now)
                    if held >= self.open_codes_per_resident:
                        raise ResourceExhausted(
                            f"{held} drop-off codes are open already; use or let one expire"
                        )
                    at_this_hub = hub.codes_held_by(holder, now)
                    if at_this_hub >= self.open_codes_per_resident_at_one_hub:
                        raise ResourceExhausted(
                            "open drop-off codes at this hub already; use or let one expire"
                        )
                    try:
                        compartment, code = self._reserve_under_fresh_code(
                            hub, hazardous, holder, request_id
                        )
                    except NoFreeCompartment as error:
                        raise FailedPrecondition(str(error)) from error
                await repository.save_hub(hub)
            if compartment.code_expires_at is None:
                raise RuntimeError(
                    f"reserved compartment {compartment.compartment_id} has no expiry"
                )
            return IssuedCode(
                compartment_id=compartment.compartment_id,
                expires_at=compartment.code_expires_at,
                code=code,
            )

        return await _retry_on_concurrent_change(attempt)

    async def register_deposit(
        self, command: RegisterDeposit, caller: str, request_id: str = ""
    ) -> Deposit:
        """Records waste put into the compartment the code opens. Wrong codes count against
        the caller and the hub (FailedAttempts); the code is checked before any write, so
        guessing does not hold up other residents' deposits."""
        _require("hub_id", command.hub_id)
        _require("code", command.code)
        code_hash = hash_code(command.code, command.hub_id, self.code_pepper)
        request_key = f"{caller}/{request_id}" if request_id else ""
        now = self.clock()
        wait = self.failed_attempts.refusal(command.hub_id, caller, now)
        if wait is not None:
            raise ResourceExhausted(
                f"too many wrong codes; try again in {max(1, int(wait.total_seconds()))} s"
            )
        async with self.unit_of_work.read() as session:
            repository = HubRepository(session)
            if request_key:
                registered = await repository.deposit_for_request(request_key)
                if registered is not None:
                    return registered
            hub = await _load_hub(repository, command.hub_id)
        if not hub.opens_a_compartment(code_hash, now):
            self.failed_attempts.failed(command.hub_id, caller, now)
            raise PermissionDenied("code does not open a compartment at this hub")

        async def attempt() -> Deposit:
            async with self.unit_of_work() as session:
                repository = HubRepository(session)
                hub = await _load_hub(repository, command.hub_id)
                try:
                    deposit = hub.deposit(
                        code_hash=code_hash,
                        waste_type=command.waste_type,
                        hazardous=command.hazardous,
                        mass_g=command.mass_g,
                        deposit_id=str(uuid.uuid4()),
                        now=self.clock(),
                    )
                except InvalidDeposit as error:
                    raise InvalidArgument(error.field, error.reason) from error
                except InvalidCode as error:
                    # Spent or expired between the check and now (a concurrent retry).
                    raise PermissionDenied(
                        "code does not open a compartment at this hub"
                    ) from error
                await repository.save_hub(hub)
                if request_key:
                    await repository.tag_deposit(deposit.deposit_id, request_key)
                await add_to_outbox(
                    session,
                    self.names(topics.LOCKER_EVENTS),
                    hub.hub_id,
                    waste_deposited_event(hub, deposit, str(uuid.uuid4())),
                )
            return deposit

        return await _retry_on_concurrent_change(attempt)

    async def record_collection(self, command: RecordCollection) -> RecordedCollection:
        """Hands the hub's waste to an authorised carrier; a retry with the same id is a no-op."""
        _require("hub_id", command.hub_id)
        _require("carrier_partner_id", command.carrier_partner_id)
        _limit_length("carrier_partner_id", command.carrier_partner_id)
        if not 0 <= command.extra_distance_m <= MAX_EXTRA_DISTANCE_M:
            raise InvalidArgument("extra_distance_m", f"must be from 0 to {MAX_EXTRA_DISTANCE_M} m")
        collection_id = command.collection_id or str(uuid.uuid4())
        _limit_length("collection_id", collection_id)

        authorized, reason = await self.carriers.is_authorized(
            command.carrier_partner_id, command.hub_id
        )
        if not authorized:
            raise PermissionDenied(
                reason or f"carrier {command.carrier_partner_id!r} may not collect here"
            )

        async def attempt() -> RecordedCollection:
            async with self.unit_of_work() as session:
                repository = HubRepository(session)
                recorded = await repository.get_collection(collection_id)
                if recorded is not None:
                    return _same_collection_or_refuse(recorded, command)
                hub = await _load_hub(repository, command.hub_id)
                try:
                    collection = hub.collect(collection_id)
                except NothingToCollect as error:
                    raise FailedPrecondition(str(error)) from error
                recorded = RecordedCollection(
                    collection_id=collection.collection_id,
                    hub_id=hub.hub_id,
                    carrier_partner_id=command.carrier_partner_id,
                    extra_distance_m=command.extra_distance_m,
                    deposit_ids=tuple(deposit.deposit_id for deposit in collection.deposits),
                    mass_g=collection.mass_g,
                    includes_hazardous=collection.includes_hazardous,
                    collected_at=self.clock(),
                )
                await repository.save_hub(hub)
                await repository.add_collection(recorded)
                await add_to_outbox(
                    session,
                    self.names(topics.LOCKER_EVENTS),
                    hub.hub_id,
                    waste_collected_event(hub, recorded, str(uuid.uuid4())),
                )
            return recorded

        return await _retry_on_concurrent_change(attempt)

    def _renew_under_fresh_code(self, hub: Hub, compartment_id: str) -> tuple[Compartment, str]:
        now = self.clock()
        for _ in range(MAX_CODE_ATTEMPTS):
            code = generate_code(self.random_bytes)
            try:
                code_hash = hash_code(code, hub.hub_id, self.code_pepper)
                return hub.renew_code(compartment_id, code_hash, now), code
            except CodeCollision:
                continue
        raise RuntimeError(f"{MAX_CODE_ATTEMPTS} drop-off code collisions in a row at {hub.hub_id}")

    def _reserve_under_fresh_code(
        self, hub: Hub, hazardous: bool, holder: str, request_id: str
    ) -> tuple[Compartment, str]:
        now = self.clock()
        for _ in range(MAX_CODE_ATTEMPTS):
            code = generate_code(self.random_bytes)
            code_hash = hash_code(code, hub.hub_id, self.code_pepper)
            try:
                compartment = hub.reserve_for_drop_off(
                    hazardous, code_hash, now, self.code_ttl, holder, request_id
                )
                return compartment, code
            except CodeCollision:
                continue
        raise RuntimeError(f"{MAX_CODE_ATTEMPTS} drop-off code collisions in a row at {hub.hub_id}")


async def _load_hub(repository: HubRepository, hub_id: str) -> Hub:
    hub = await repository.get_hub(hub_id)
    if hub is None:
        raise NotFound(f"no hub {hub_id!r}")
    return hub


async def _retry_on_concurrent_change(attempt: Callable[[], Awaitable[ResultT]]) -> ResultT:
    for _ in range(MAX_SAVE_ATTEMPTS):
        try:
            return await attempt()
        except HubChanged:
            continue
    raise Unavailable("the hub is changing too often right now; try again")


def _same_collection_or_refuse(
    recorded: RecordedCollection, command: RecordCollection
) -> RecordedCollection:
    # A retried call repeats its request; the same id with other values is another collection.
    if (recorded.hub_id, recorded.carrier_partner_id, recorded.extra_distance_m) != (
        command.hub_id,
        command.carrier_partner_id,
        command.extra_distance_m,
    ):
        raise AlreadyExists(f"collection {recorded.collection_id!r} was recorded with other values")
    return recorded


def _require(field_name: str, value: str) -> None:
    if not value:
        raise InvalidArgument(field_name, "required")


def _limit_length(field_name: str, value: str) -> None:
    if len(value) > ID_LENGTH:
        raise InvalidArgument(field_name, f"at most {ID_LENGTH} characters")
