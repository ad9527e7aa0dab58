"""Plays a small, realistic feed into the platform, as its real producers would.

Vehicle telematics units publish cumulative counters on fleet.telemetry.v1; fleet managers
register vehicles over gRPC; residents drop waste into MoLo Hubs boxes and a carrier that is on
site anyway collects it, over locker-hubs' gRPC API. The feed is deterministic (seeded), so the
inventory it produces can be checked by hand.

Consumption figures are plausibility values from the domain notes (diesel van about 8 l/100 km,
refuse truck about 2 kg CO2e/km, electric van 18-25 kWh/100 km), not accounting data.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import grpc
from aiokafka import AIOKafkaProducer

from greenpartners.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from greenpartners.lockers.v1 import lockers_pb2, lockers_pb2_grpc
from servicekit import topics
from servicekit.codec import event_headers, to_timestamp
from servicekit.identity import CARRIER, FLEET_MANAGER, RESIDENT
from servicekit.topics import TopicNames
from tools.pki import Pki

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
FEED_NAMESPACE = uuid.UUID("5b8f3f0e-0c1d-4a55-9a56-2f1f4c7d9e10")


@dataclass(frozen=True)
class SimulatedVehicle:
    vehicle_id: str
    owner_partner_id: str
    fuel_type: int
    vehicle_class: int
    plate: str
    # Fuel in ml per km, or energy in Wh per km for electric vehicles.
    use_per_km: int
    electric: bool = False


FLEET = (
    SimulatedVehicle(
        "aal-van-01",
        "aalborg-kommune",
        fleet_pb2.FUEL_TYPE_DIESEL,
        fleet_pb2.VEHICLE_CLASS_VAN,
        "AB12345",
        use_per_km=80,
    ),
    SimulatedVehicle(
        "aal-car-02",
        "aalborg-kommune",
        fleet_pb2.FUEL_TYPE_PETROL,
        fleet_pb2.VEHICLE_CLASS_PASSENGER_CAR,
        "CD23456",
        use_per_km=60,
    ),
    SimulatedVehicle(
        "aal-evan-03",
        "aalborg-kommune",
        fleet_pb2.FUEL_TYPE_ELECTRIC,
        fleet_pb2.VEHICLE_CLASS_VAN,
        "EL34567",
        use_per_km=210,
        electric=True,
    ),
    SimulatedVehicle(
        "aal-refuse-04",
        "aalborg-kommune",
        fleet_pb2.FUEL_TYPE_DIESEL,
        fleet_pb2.VEHICLE_CLASS_REFUSE_TRUCK,
        "RF45678",
        use_per_km=750,
    ),
    # A contractor's truck on hydrotreated vegetable oil: private and commercial transport.
    SimulatedVehicle(
        "nv-truck-05",
        "nordvaerk",
        fleet_pb2.FUEL_TYPE_HVO100,
        fleet_pb2.VEHICLE_CLASS_TRUCK,
        "NV56789",
        use_per_km=300,
    ),
)


@dataclass(frozen=True)
class WasteDrop:
    hub_id: str
    waste_type: int
    hazardous: bool
    mass_g: int


DROPS = (
    WasteDrop("molo-aalborg-03", lockers_pb2.WASTE_TYPE_HAZARDOUS_HOUSEHOLD, True, 4200),
    WasteDrop("molo-aalborg-03", lockers_pb2.WASTE_TYPE_BATTERIES, True, 900),
    WasteDrop("molo-aalborg-17", lockers_pb2.WASTE_TYPE_TEXTILES, False, 3100),
    WasteDrop("molo-aalborg-42", lockers_pb2.WASTE_TYPE_LIGHT_BULBS, True, 650),
)

# (hub, carrier, extra distance in metres the carrier drives to bring the waste back)
COLLECTIONS = (
    ("molo-aalborg-03", "homerunner", 800),
    ("molo-aalborg-17", "homerunner", 1200),
    ("molo-aalborg-42", "homerunner", 600),
)


@dataclass(frozen=True)
class Sample:
    vehicle_id: str
    event_id: str
    occurred_at: datetime
    odometer_m: int
    fuel_used_ml: int | None
    energy_used_wh: int | None

    def to_event(self) -> fleet_pb2.TelemetrySample:
        event = fleet_pb2.TelemetrySample(
            event_id=self.event_id,
            occurred_at=to_timestamp(self.occurred_at),
            vehicle_id=self.vehicle_id,
            odometer_m=self.odometer_m,
        )
        if self.fuel_used_ml is not None:
            event.fuel_used_ml = self.fuel_used_ml
        if self.energy_used_wh is not None:
            event.energy_used_wh = self.energy_used_wh
        return event


WORKING_DAY = (time(7, 0), time(15, 0))


def latest_complete_day(now: datetime) -> date:
    """The latest day whose working hours (local time) are over by `now`."""
    local = now.astimezone(COPENHAGEN)
    if local >= datetime.combine(local.date(), WORKING_DAY[1], COPENHAGEN):
        return local.date()
    return local.date() - timedelta(days=1)


def working_day_samples(day: date, seed: int = 2014) -> list[Sample]:
    """Every vehicle reports every 20 minutes from 07:00 to 15:00 local time."""
    rng = random.Random(seed)
    samples = []
    start = datetime.combine(day, WORKING_DAY[0], COPENHAGEN)
    for vehicle in FLEET:
        odometer = rng.randrange(20_000_000, 90_000_000)
        counter = rng.randrange(1_000_000, 9_000_000)
        for step in range(25):
            if step:
                # 0-12 km per 20 minutes; a stop now and then.
                distance = 0 if rng.random() < 0.15 else rng.randrange(1_000, 12_000)
                odometer += distance
                counter += distance * vehicle.use_per_km // 1000
            at = (start + timedelta(minutes=20 * step)).astimezone(UTC)
            samples.append(
                Sample(
                    vehicle_id=vehicle.vehicle_id,
                    event_id=str(uuid.uuid5(FEED_NAMESPACE, f"{day}:{vehicle.vehicle_id}:{step}")),
                    occurred_at=at,
                    odometer_m=odometer,
                    fuel_used_ml=None if vehicle.electric else counter,
                    energy_used_wh=counter if vehicle.electric else None,
                )
            )
    return samples


async def register_fleet(
    fleet_target: str, pki: Pki, municipality_id: str = "aalborg-kommune"
) -> None:
    """Each owner's fleet manager registers their vehicles (again: a repeat changes nothing)."""
    async with pki.channel(fleet_target) as channel:
        stub = fleet_pb2_grpc.FleetTelemetryServiceStub(channel)
        for vehicle in FLEET:
            await stub.RegisterVehicle(
                fleet_pb2.RegisterVehicleRequest(
                    vehicle=fleet_pb2.Vehicle(
                        vehicle_id=vehicle.vehicle_id,
                        owner_partner_id=vehicle.owner_partner_id,
                        municipality_id=municipality_id,
                        fuel_type=vehicle.fuel_type,  # type: ignore[arg-type]
                        vehicle_class=vehicle.vehicle_class,  # type: ignore[arg-type]
                        registration_plate=vehicle.plate,
                    )
                ),
                timeout=10,
                credentials=pki.call_as(FLEET_MANAGER, vehicle.owner_partner_id),
            )


async def publish_samples(bootstrap_servers: str, names: TopicNames, samples: list[Sample]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for sample in samples:
            event = sample.to_event()
            await producer.send(
                names(topics.TELEMETRY),
                event.SerializeToString(),
                key=sample.vehicle_id.encode(),
                headers=[(k, v.encode()) for k, v in event_headers(event).items()],
            )
        await producer.flush()
    finally:
        await producer.stop()


async def play_locker_day(lockers_target: str, pki: Pki) -> int:
    """Residents drop waste into boxes and carriers collect it; returns the collections made."""
    async with pki.channel(lockers_target) as channel:
        stub = lockers_pb2_grpc.LockerHubsServiceStub(channel)
        for number, drop in enumerate(DROPS):
            resident = pki.call_as(RESIDENT, subject=f"resident-{number % 7}")
            issued = await stub.IssueDropOffCode(
                lockers_pb2.IssueDropOffCodeRequest(hub_id=drop.hub_id, hazardous=drop.hazardous),
                timeout=10,
                credentials=resident,
            )
            await stub.RegisterWasteDeposit(
                lockers_pb2.RegisterWasteDepositRequest(
                    hub_id=drop.hub_id,
                    code=issued.code,
                    waste_type=drop.waste_type,  # type: ignore[arg-type]
                    hazardous=drop.hazardous,
                    mass_g=drop.mass_g,
                ),
                timeout=10,
                credentials=resident,
            )
        for hub_id, carrier, extra_m in COLLECTIONS:
            await stub.RecordCarrierCollection(
                lockers_pb2.RecordCarrierCollectionRequest(
                    hub_id=hub_id, extra_distance_m=extra_m, collection_id=str(uuid.uuid4())
                ),
                timeout=10,
                credentials=pki.call_as(CARRIER, carrier),
            )
    return len(COLLECTIONS)


# The live feed of `make run`: every vehicle reports every few seconds, residents drop waste
# every couple of minutes, and a carrier that passes by collects it every few minutes.
LIVE_REPORT_S = 5.0
LIVE_DROP_S = 120.0
LIVE_COLLECTION_S = 360.0


async def play_live(
    bootstrap_servers: str,
    names: TopicNames,
    lockers_target: str,
    pki: Pki,
    after: list[Sample],
    stop: asyncio.Event,
    seed: int = 2026,
) -> None:
    """Feeds the platform in real time until `stop` is set, the vehicles' counters going on from
    their last samples in `after` (a counter that went back would be a reset)."""
    rng = random.Random(seed)
    last = {sample.vehicle_id: sample for sample in after}
    clock = max([datetime.now(UTC), *(s.occurred_at for s in after)])
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    channel = pki.channel(lockers_target)
    lockers = lockers_pb2_grpc.LockerHubsServiceStub(channel)
    held: set[str] = set()
    next_drop = next_collection = asyncio.get_running_loop().time()
    try:
        while not stop.is_set():
            clock += timedelta(seconds=LIVE_REPORT_S)
            for vehicle in FLEET:
                previous = last[vehicle.vehicle_id]
                # Town driving: 0-25 m/s, a stop now and then.
                distance = 0 if rng.random() < 0.2 else int(rng.uniform(0, 25) * LIVE_REPORT_S)
                used = distance * vehicle.use_per_km // 1000
                sample = Sample(
                    vehicle_id=vehicle.vehicle_id,
                    event_id=str(uuid.uuid4()),
                    occurred_at=clock,
                    odometer_m=previous.odometer_m + distance,
                    fuel_used_ml=None
                    if previous.fuel_used_ml is None
                    else previous.fuel_used_ml + used,
                    energy_used_wh=None
                    if previous.energy_used_wh is None
                    else previous.energy_used_wh + used,
                )
                last[vehicle.vehicle_id] = sample
                event = sample.to_event()
                await producer.send(
                    names(topics.TELEMETRY),
                    event.SerializeToString(),
                    key=sample.vehicle_id.encode(),
                    headers=[(k, v.encode()) for k, v in event_headers(event).items()],
                )
            now = asyncio.get_running_loop().time()
            try:
                if now >= next_drop:
                    next_drop = now + rng.uniform(0.5, 1.5) * LIVE_DROP_S
                    drop = rng.choice(DROPS)
                    resident = pki.call_as(RESIDENT, subject=f"resident-{rng.randrange(1000)}")
                    issued = await lockers.IssueDropOffCode(
                        lockers_pb2.IssueDropOffCodeRequest(
                            hub_id=drop.hub_id, hazardous=drop.hazardous
                        ),
                        timeout=10,
                        credentials=resident,
                    )
                    await lockers.RegisterWasteDeposit(
                        lockers_pb2.RegisterWasteDepositRequest(
                            hub_id=drop.hub_id,
                            code=issued.code,
                            waste_type=drop.waste_type,  # type: ignore[arg-type]
                            hazardous=drop.hazardous,
                            mass_g=int(drop.mass_g * rng.uniform(0.5, 1.5)),
                        ),
                        timeout=10,
                        credentials=resident,
                    )
                    held.add(drop.hub_id)
                if now >= next_collection and held:
                    next_collection = now + rng.uniform(0.5, 1.5) * LIVE_COLLECTION_S
                    hub_id = rng.choice(sorted(held))
                    held.discard(hub_id)
                    await lockers.RecordCarrierCollection(
                        lockers_pb2.RecordCarrierCollectionRequest(
                            hub_id=hub_id,
                            extra_distance_m=rng.randrange(300, 1500),
                            collection_id=str(uuid.uuid4()),
                        ),
                        timeout=10,
                        credentials=pki.call_as(CARRIER, "homerunner"),
                    )
            except grpc.aio.AioRpcError as error:  # a full hub, say: the feed goes on
                print(f"simulator: {error.code().name}: {error.details()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LIVE_REPORT_S)
    finally:
        await channel.close()
        await producer.stop()
