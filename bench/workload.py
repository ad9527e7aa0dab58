"""The telemetry the benchmark plays, and what the platform must make of it.

Every vehicle is a diesel van of the municipal fleet reporting cumulative counters once a
minute, on the minute. Activity windows are whole multiples of a minute, so no sample's
increment spans two windows and the activities' `sample_count` sums to exactly the samples
that carried an increment: all but each vehicle's first, which is only its baseline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from greenpartners.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from servicekit.codec import to_timestamp
from servicekit.identity import FLEET_MANAGER
from tools.platform import Platform

MUNICIPALITY = "aalborg-kommune"
ML_PER_LITRE = Decimal(1000)


@dataclass(frozen=True, slots=True)
class Backlog:
    """Serialized samples in the order a broker would receive them, with the expected result."""

    records: list[tuple[bytes, bytes]]  # (key, payload)
    vehicle_ids: list[str]
    # Samples whose increments fleet-telemetry must account: every sample but the baselines.
    accountable_samples: int
    diesel_litres: Decimal
    year: int

    @property
    def samples(self) -> int:
        return len(self.records)


def vehicle_ids(count: int, prefix: str = "bench") -> list[str]:
    return [f"{prefix}-{number:05d}" for number in range(count)]


def minute_backlog(
    samples_per_vehicle: int, vehicles: Sequence[str], start: datetime, event_prefix: str
) -> Backlog:
    """Per vehicle a reading every minute: 400-599 m and 40-59 ml since the previous one
    (24-36 km/h, 10 l/100 km: a van in town). Vehicles interleave as units reporting at the
    same moment would."""
    if start.second or start.microsecond:
        raise ValueError("samples must fall on whole minutes")
    records: list[tuple[bytes, bytes]] = []
    odometers = [10_000_000] * len(vehicles)
    fuels = [1_000_000] * len(vehicles)
    for step in range(samples_per_vehicle):
        occurred_at = to_timestamp(start + timedelta(minutes=step))
        for number, vehicle_id in enumerate(vehicles):
            if step:
                odometers[number] += 400 + (step * 37 + number) % 200
                fuels[number] += 40 + (step * 13 + number) % 20
            event = fleet_pb2.TelemetrySample(
                event_id=f"{event_prefix}-{vehicle_id}-{step}",
                occurred_at=occurred_at,
                vehicle_id=vehicle_id,
                odometer_m=odometers[number],
                fuel_used_ml=fuels[number],
            )
            records.append((vehicle_id.encode(), event.SerializeToString()))
    return Backlog(
        records=records,
        vehicle_ids=list(vehicles),
        accountable_samples=max(samples_per_vehicle - 1, 0) * len(vehicles),
        diesel_litres=Decimal(sum(fuels) - 1_000_000 * len(vehicles)) / ML_PER_LITRE,
        year=start.year,
    )


async def register_vehicles(
    platform: Platform, ids: Sequence[str], concurrency: int = 16, timeout_s: float = 30.0
) -> None:
    """RegisterVehicle for each id, as the municipality's fleet manager, a few calls in flight
    at a time."""
    pending = iter(ids)
    target = platform.fleet.target
    async with platform.pki.channel(target, FLEET_MANAGER, MUNICIPALITY) as channel:
        stub = fleet_pb2_grpc.FleetTelemetryServiceStub(channel)

        async def register_some() -> None:
            for vehicle_id in pending:
                await stub.RegisterVehicle(
                    fleet_pb2.RegisterVehicleRequest(
                        vehicle=fleet_pb2.Vehicle(
                            vehicle_id=vehicle_id,
                            owner_partner_id=MUNICIPALITY,
                            municipality_id=MUNICIPALITY,
                            fuel_type=fleet_pb2.FUEL_TYPE_DIESEL,
                            vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
                        )
                    ),
                    timeout=timeout_s,
                )

        await asyncio.gather(*(register_some() for _ in range(concurrency)))
