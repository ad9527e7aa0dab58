"""fleet-telemetry's use cases."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.protobuf.message import Message
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_telemetry.adapters.events import (
    activity_event,
    quality_event,
    vehicle_to_proto,
)
from fleet_telemetry.adapters.partners import FleetPartners
from fleet_telemetry.adapters.repository import FleetRepository
from fleet_telemetry.adapters.state_cache import VehicleStateCache
from fleet_telemetry.domain import (
    CovenantSubsector,
    FuelType,
    InvalidBaseline,
    InvalidVehicle,
    Reading,
    StreamPosition,
    TelemetrySample,
    Vehicle,
    VehicleClass,
    VehicleState,
    VehicleTotals,
    baseline_set_event,
    check_registration,
    fold_samples,
    new_vehicle,
    operator_baseline,
    set_baseline,
)
from servicekit import topics
from servicekit.errors import AlreadyExists, InvalidArgument, NotFound
from servicekit.identity import CLIMATE_OFFICER, Principal, require_partner
from servicekit.kafka import Delivered, Rejection
from servicekit.outbox import add_many_to_outbox, add_to_outbox
from servicekit.runtime import UnitOfWork
from servicekit.topics import TopicNames


@dataclass(frozen=True)
class RegisterVehicle:
    vehicle_id: str
    owner_partner_id: str
    municipality_id: str
    fuel_type: FuelType | None
    vehicle_class: VehicleClass | None
    covenant_subsector: CovenantSubsector | None
    registration_plate: str


@dataclass(frozen=True)
class SetVehicleBaseline:
    vehicle_id: str
    # None when the request carries no time.
    occurred_at_us: int | None
    odometer_m: int
    fuel_used_ml: int | None
    energy_used_wh: int | None
    reason: str


@dataclass(frozen=True)
class BaselineCorrected:
    baseline: Reading
    previous_baseline: Reading | None


class SampleOutcomes:
    """Samples counted by outcome, for Prometheus (a batch handled again counts again)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter(
            "fleet_telemetry_samples",
            "Telemetry samples by outcome: accepted, late, quarantined",
            ["outcome"],
            registry=registry,
        )

    def record(self, before: VehicleTotals, after: VehicleTotals) -> None:
        for outcome, change in (
            ("accepted", after.samples_accepted - before.samples_accepted),
            ("late", after.samples_late - before.samples_late),
            ("quarantined", after.samples_quarantined - before.samples_quarantined),
        ):
            if change:
                self.counter.labels(outcome).inc(change)


class FleetHandlers:
    def __init__(
        self,
        unit_of_work: UnitOfWork,
        names: TopicNames,
        partners: FleetPartners,
        window_us: int,
        outcomes: SampleOutcomes | None = None,
        clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        self.unit_of_work = unit_of_work
        # Samples dated too far ahead of this clock are implausible.
        self.clock_us = clock_us
        self.names = names
        self.partners = partners
        self.window_us = window_us
        self.outcomes = outcomes
        self.states = VehicleStateCache()

    async def _vehicle(self, session: AsyncSession, command: RegisterVehicle) -> Vehicle:
        """The vehicle a registration describes, its owner and municipality checked against
        the partner registry (INVALID_ARGUMENT naming the field when the registry has no such
        partner: the id is wrong, as a typo would make it, until the registry has it)."""
        owner_kind = await self.partners.owner_kind(session, command.owner_partner_id)
        if owner_kind is None:
            raise InvalidArgument(
                "vehicle.owner_partner_id",
                f"the partner registry has no partner {command.owner_partner_id!r}",
            )
        if not await self.partners.is_municipality(session, command.municipality_id):
            raise InvalidArgument(
                "vehicle.municipality_id",
                f"the partner registry has no municipality {command.municipality_id!r}",
            )
        try:
            return new_vehicle(
                vehicle_id=command.vehicle_id,
                owner_partner_id=command.owner_partner_id,
                municipality_id=command.municipality_id,
                fuel_type=command.fuel_type,
                vehicle_class=command.vehicle_class,
                covenant_subsector=command.covenant_subsector,
                registration_plate=command.registration_plate,
                owner_kind=owner_kind,
            )
        except InvalidVehicle as error:
            raise InvalidArgument(f"vehicle.{error.field}", error.message) from error

    @staticmethod
    def _check(command: RegisterVehicle) -> None:
        try:
            check_registration(
                command.vehicle_id,
                command.owner_partner_id,
                command.municipality_id,
                command.fuel_type,
                command.vehicle_class,
                command.registration_plate,
            )
        except InvalidVehicle as error:
            raise InvalidArgument(f"vehicle.{error.field}", error.message) from error

    async def register_vehicle(self, command: RegisterVehicle, caller: Principal) -> Vehicle:
        """A new vehicle of the caller's partner; repeating a registration exactly is a no-op."""
        self._check(command)
        require_partner(caller, command.owner_partner_id, "vehicle.owner_partner_id")
        async with self.unit_of_work() as session:
            await self.partners.lock(session, (command.owner_partner_id, command.municipality_id))
            repository = FleetRepository(session)
            existing = await repository.state(command.vehicle_id, for_update=True)
            if existing is not None:
                # An existing id is ALREADY_EXISTS whatever the registry says of the request;
                # only a registration repeated exactly is a no-op.
                with contextlib.suppress(InvalidArgument):
                    if await self._vehicle(session, command) == existing.vehicle:
                        return existing.vehicle
                raise AlreadyExists(
                    f"vehicle {command.vehicle_id!r} exists; UpdateVehicle changes it"
                )
            vehicle = await self._vehicle(session, command)
            await repository.save_vehicle(vehicle)
        return vehicle

    async def update_vehicle(self, command: RegisterVehicle, caller: Principal) -> Vehicle:
        """A registered vehicle changed by its owner (or an operator): a new revision."""
        self._check(command)
        async with self.unit_of_work() as session:
            await self.partners.lock(session, (command.owner_partner_id, command.municipality_id))
            repository = FleetRepository(session)
            existing = await repository.state(command.vehicle_id, for_update=True)
            if existing is None:
                raise NotFound(f"no vehicle {command.vehicle_id!r}")
            require_partner(caller, existing.vehicle.owner_partner_id, "the vehicle")
            require_partner(caller, command.owner_partner_id, "vehicle.owner_partner_id")
            vehicle = await self._vehicle(session, command)
            await repository.save_vehicle(vehicle)
        return vehicle

    async def get_vehicle(self, vehicle_id: str, caller: Principal) -> VehicleState:
        if not vehicle_id:
            raise InvalidArgument("vehicle_id", "required")
        async with self.unit_of_work.read() as session:
            state = await FleetRepository(session).state(vehicle_id)
        # The same answer for a vehicle that does not exist and one the caller may not see.
        if state is None or not _may_see(caller, state.vehicle):
            raise NotFound(f"no vehicle {vehicle_id!r}")
        return state

    async def set_vehicle_baseline(
        self, command: SetVehicleBaseline, caller: Principal
    ) -> BaselineCorrected:
        """Replaces a vehicle's baseline, with an audit row (naming the caller) and a
        BASELINE_SET event."""
        for field, value in (
            ("vehicle_id", command.vehicle_id),
            ("reason", command.reason.strip()),
        ):
            if not value:
                raise InvalidArgument(field, f"{field} is required")
        async with self.unit_of_work() as session:
            repository = FleetRepository(session)
            state = await repository.state(command.vehicle_id, for_update=True)
            if state is None or not _may_see(caller, state.vehicle):
                raise NotFound(f"no vehicle {command.vehicle_id!r}")
            require_partner(caller, state.vehicle.owner_partner_id, "the vehicle")
            try:
                baseline = operator_baseline(
                    state.vehicle,
                    command.occurred_at_us,
                    command.odometer_m,
                    command.fuel_used_ml,
                    command.energy_used_wh,
                )
            except InvalidBaseline as error:
                raise InvalidArgument(f"baseline.{error.field}", error.message) from error
            revision = await repository.next_revision(command.vehicle_id)
            await repository.save_states([set_baseline(state, baseline, revision)])
            await repository.record_correction(
                vehicle_id=command.vehicle_id,
                revision=revision,
                requested_by=caller.subject,
                reason=command.reason.strip(),
                previous=state.baseline,
                new=baseline,
                dropped_pending=state.pending_reset,
            )
            event = baseline_set_event(
                command.vehicle_id,
                state.baseline,
                baseline,
                revision,
                f"set by {caller.subject}: {command.reason.strip()}",
            )
            await add_to_outbox(
                session, self.names(topics.QUALITY), command.vehicle_id, quality_event(event)
            )
        return BaselineCorrected(baseline=baseline, previous_baseline=state.baseline)

    async def record_samples(self, batch: Sequence[Delivered[TelemetrySample]]) -> list[Rejection]:
        """Folds a batch of samples into their vehicles' states: one query to lock and version
        the vehicles, one to load those not cached, one upsert of the changed states, one
        insert of the resulting events."""
        now_us = self.clock_us()
        records: dict[str, list[tuple[StreamPosition, TelemetrySample]]] = {}
        batch_indexes: dict[str, list[int]] = {}
        for index, (sample, partition, offset) in enumerate(batch):
            vehicle_records = records.get(sample.vehicle_id)
            if vehicle_records is None:
                vehicle_records = records[sample.vehicle_id] = []
                batch_indexes[sample.vehicle_id] = []
            vehicle_records.append(((partition, offset), sample))
            batch_indexes[sample.vehicle_id].append(index)

        rejections: list[Rejection] = []
        async with self.unit_of_work() as session:
            repository = FleetRepository(session)
            versions = await repository.lock_versions(list(records))
            states: dict[str, VehicleState] = {}
            to_load = []
            for vehicle_id, (revision, position) in versions.items():
                cached = self.states.current(vehicle_id, revision, position)
                if cached is None:
                    to_load.append(vehicle_id)
                else:
                    states[vehicle_id] = cached
            if to_load:
                loaded = await repository.load_states(to_load)
                self.states.put_all(loaded)
                states.update((state.vehicle.vehicle_id, state) for state in loaded)

            changed: list[VehicleState] = []
            outgoing: list[tuple[str, str, Message]] = []
            activity_topic = self.names(topics.ACTIVITY)
            quality_topic = self.names(topics.QUALITY)
            for vehicle_id, vehicle_records in records.items():
                state = states.get(vehicle_id)
                indexes = batch_indexes[vehicle_id]
                if state is None:
                    rejections.extend(
                        Rejection(
                            index, "unknown_vehicle", f"vehicle {vehicle_id!r} is not registered"
                        )
                        for index in indexes
                    )
                    continue
                result = fold_samples(state, vehicle_records, self.window_us, now_us)
                rejections.extend(
                    Rejection(indexes[rejected.index], rejected.reason, rejected.detail)
                    for rejected in result.rejections
                )
                if not result.changed:
                    continue
                changed.append(result.state)
                if self.outcomes is not None:
                    self.outcomes.record(state.totals, result.state.totals)
                if result.activities:
                    vehicle = vehicle_to_proto(state.vehicle)
                    outgoing.extend(
                        (activity_topic, vehicle_id, activity_event(vehicle, activity))
                        for activity in result.activities
                    )
                outgoing.extend(
                    (quality_topic, vehicle_id, quality_event(event))
                    for event in result.quality_events
                )
            await repository.save_states(changed)
            await add_many_to_outbox(session, outgoing)
        # Cached before the batch's transaction commits: if it rolls back, the stored
        # position differs from the cached one and the next batch reloads the state.
        self.states.put_all(changed)
        rejections.sort(key=lambda rejection: rejection.index)
        return rejections

    async def partitions_assigned(self, partitions: set[int]) -> None:
        """Starts the new partitions from the stored states (another instance may have moved
        them on while they were not ours)."""
        self.states.drop_partitions(partitions)
        async with self.unit_of_work.read() as session:
            self.states.put_all(await FleetRepository(session).states_in_partitions(partitions))

    async def partitions_revoked(self, partitions: set[int]) -> None:
        self.states.drop_partitions(partitions)


def _may_see(caller: Principal, vehicle: Vehicle) -> bool:
    """Operators see every vehicle; a fleet manager their partner's; a climate officer their
    municipality's."""
    if caller.is_operator or caller.partner_id == vehicle.owner_partner_id:
        return True
    return caller.has_role(CLIMATE_OFFICER) and caller.partner_id == vehicle.municipality_id
