"""Throughput of the telemetry pipeline, end to end, against the bare broker.

    uv run python -m bench.pipeline [--samples N] [--vehicles M] [--database sqlite|postgresql]

Baseline: the same number of telemetry records produced and consumed with plain aiokafka, no
processing (what the broker and client alone can do on this machine). Platform: the records
played into fleet.telemetry.v1 of the four services running as processes; measured until
fleet-telemetry has published every activity record and until the ledger holds every entry.
With --database postgresql each service gets a fresh database of its own on the local
PostgreSQL server (deploy/local/postgres.sh), as in a deployment. Traffic stays on loopback; the
run is bounded by --samples and a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.engine import make_url

from greenpartners.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from servicekit import topics
from servicekit.codec import event_headers, to_timestamp
from servicekit.topics import TopicNames, ensure_topics
from tests.kafka_tools import start_broker, stop_broker, unique_namespace
from tools.platform import Platform, free_ports, services_on_ports

START = datetime(2026, 4, 1, 5, 0, tzinfo=UTC)
MUNICIPALITY = "aalborg-kommune"
POSTGRES_SCRIPT = Path(__file__).resolve().parents[1] / "deploy/local/postgres.sh"


def make_samples(samples: int, vehicles: int) -> list[fleet_pb2.TelemetrySample]:
    """Per vehicle, a reading every minute: 400-600 m and 40-60 ml since the previous one."""
    events = []
    per_vehicle = samples // vehicles
    for v in range(vehicles):
        odometer, fuel = 10_000_000, 1_000_000
        for step in range(per_vehicle):
            odometer += 400 + (step * 37 + v) % 200
            fuel += 40 + (step * 13 + v) % 20
            events.append(
                fleet_pb2.TelemetrySample(
                    event_id=f"bench-{v}-{step}",
                    occurred_at=to_timestamp(START + timedelta(minutes=step)),
                    vehicle_id=f"bench-{v}",
                    odometer_m=odometer,
                    fuel_used_ml=fuel,
                )
            )
    # Interleave vehicles as units reporting at the same time would.
    events.sort(key=lambda e: (e.occurred_at.seconds, e.vehicle_id))
    return events


async def produce_all(servers: str, topic: str, events: list[fleet_pb2.TelemetrySample]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            await producer.send(
                topic,
                event.SerializeToString(),
                key=event.vehicle_id.encode(),
                headers=[(k, v.encode()) for k, v in event_headers(event).items()],
            )
        await producer.flush()
    finally:
        await producer.stop()


async def consume_count(servers: str, topic: str, count: int, timeout_s: float) -> None:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=servers, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    seen = 0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"saw {seen} of {count} records on {topic}")
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                seen += len(batch)
    finally:
        await consumer.stop()


async def baseline(servers: str, events: list[fleet_pb2.TelemetrySample]) -> float:
    names = TopicNames(unique_namespace("benchbase"))
    await ensure_topics(servers, names.all_specs())
    started = time.perf_counter()
    await asyncio.gather(
        produce_all(servers, names(topics.TELEMETRY), events),
        consume_count(servers, names(topics.TELEMETRY), len(events), 120),
    )
    return time.perf_counter() - started


async def wait_for_entries(target: str, year: int, entries: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
        while True:
            inventory = await stub.GetInventory(
                ledger_pb2.GetInventoryRequest(municipality_id=MUNICIPALITY, year=year)
            )
            if inventory.entry_count >= entries:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"ledger holds {inventory.entry_count} of {entries} entries")
            await asyncio.sleep(0.2)


def _postgres_script(command: str) -> str:
    return subprocess.run(
        ["bash", str(POSTGRES_SCRIPT), command], check=True, capture_output=True, text=True
    ).stdout


@contextlib.asynccontextmanager
async def postgres_databases(names: list[str]) -> AsyncIterator[dict[str, str]]:
    """A fresh PostgreSQL database per service on the local server, dropped afterwards."""
    await asyncio.to_thread(_postgres_script, "up")
    server = make_url((await asyncio.to_thread(_postgres_script, "url")).strip())
    admin = await asyncpg.connect(server.set(drivername="postgresql").render_as_string(False))
    databases = {name: f"bench_{uuid.uuid4().hex[:12]}" for name in names}
    try:
        for database in databases.values():
            await admin.execute(f'CREATE DATABASE "{database}"')
        yield {
            name: server.set(database=database).render_as_string(hide_password=False)
            for name, database in databases.items()
        }
    finally:
        for database in databases.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def platform_run(
    servers: str, events: list[fleet_pb2.TelemetrySample], vehicles: int, database: str
) -> tuple[float, float]:
    ports = free_ports(8)
    services = services_on_ports(ports[:4], ports[4:])
    async with contextlib.AsyncExitStack() as stack:
        database_urls: dict[str, str] = {}
        if database == "postgresql":
            database_urls = await stack.enter_async_context(
                postgres_databases([service.name for service in services])
            )
        data_dir = stack.enter_context(tempfile.TemporaryDirectory())
        platform = Platform(unique_namespace("bench"), Path(data_dir), services, database_urls)
        platform.bootstrap = servers
        platform.start_services()
        try:
            await platform.wait_healthy()
            async with grpc.aio.insecure_channel(platform.fleet.target) as channel:
                stub = fleet_pb2_grpc.FleetTelemetryServiceStub(channel)
                for v in range(vehicles):
                    await stub.RegisterVehicle(
                        fleet_pb2.RegisterVehicleRequest(
                            vehicle=fleet_pb2.Vehicle(
                                vehicle_id=f"bench-{v}",
                                owner_partner_id=MUNICIPALITY,
                                municipality_id=MUNICIPALITY,
                                fuel_type=fleet_pb2.FUEL_TYPE_DIESEL,
                                vehicle_class=fleet_pb2.VEHICLE_CLASS_VAN,
                            )
                        )
                    )
            names = TopicNames(platform.namespace)
            activities = len(events) - vehicles  # each vehicle's first sample is its baseline
            started = time.perf_counter()
            fleet_done = asyncio.create_task(
                consume_count(servers, names(topics.ACTIVITY), activities, 600)
            )
            await produce_all(servers, names(topics.TELEMETRY), events)
            await fleet_done
            fleet_s = time.perf_counter() - started
            await wait_for_entries(platform.ledger.target, START.year, activities, 600)
            ledger_s = time.perf_counter() - started
            return fleet_s, ledger_s
        finally:
            platform.stop()


async def main(samples: int, vehicles: int, database: str) -> None:
    servers, started_broker = start_broker()
    try:
        events = make_samples(samples, vehicles)
        base_s = await baseline(servers, events)
        fleet_s, ledger_s = await platform_run(servers, events, vehicles, database)
    finally:
        if started_broker:
            stop_broker()
    n = len(events)
    print(
        f"telemetry samples: {n} from {vehicles} vehicles, broker {servers}, {os.cpu_count()} cores"
    )
    rows = (
        ("baseline  produce+consume, no processing", base_s, "records/s"),
        ("platform  samples -> activity published", fleet_s, "samples/s"),
        ("platform  samples -> ledger entries", ledger_s, "samples/s"),
    )
    for label, seconds, unit in rows:
        print(f"{label:<42} {seconds:7.2f} s  {n / seconds:9.0f} {unit}")
    print(f"ratio     platform end to end / baseline:  {base_s / ledger_s:7.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--vehicles", type=int, default=30)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.samples, arguments.vehicles, arguments.database))
