"""A bounded fault-injection run: the four services as processes on a broker of the run's own,
fed telemetry and a locker day while services are killed with SIGKILL and the broker is
restarted; then the totals are checked to the gram against the feed.

    python -m tools.chaos            the short run (about a minute; `make chaos`, and `make test`
                                     runs it too, tests/test_chaos.py)
    python -m tools.chaos --long     a longer feed, every service killed three times, the broker
                                     restarted twice (once with SIGKILL)

The broker is started on free ports with a data directory of the run's own (deploy/local/
kafka.sh with KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_DATA_DIR), never the shared one, and
stopped at the end. What is checked, and fails the run when wrong:

- the ledger's metered diesel litres and kg CO2e equal what the samples add up to, exactly, and
  stay so; its modelled trips not driven and detours equal the locker day's collections at the
  ledger's own factors and policy;
- each vehicle's totals in fleet-telemetry are its last reading minus its first, every sample
  accepted once, none quarantined;
- the dead letters are exactly the poison records fed in (distinct source offsets; a dead
  letter may be written twice when a kill lands between writing it and committing);
- no activity event id was published with two contents; every service ends SERVING.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.ledger_probe import LedgerProbe
from bench.workload import Backlog, minute_backlog, register_vehicles, vehicle_ids
from emissions_ledger.adapters.data_files import load_avoided_trip_policy, load_factor_catalogue
from emissions_ledger.domain import (
    EnergyCarrier,
    EntryKind,
    WasteCollection,
    entries_for_collection,
)
from greenpartners.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from greenpartners.ledger.v1 import ledger_pb2
from servicekit import topics
from servicekit.access import ADMIN
from servicekit.codec import event_headers
from servicekit.identity import OPERATOR
from servicekit.topics import CATALOGUE, TopicNames, dead_letter_topic
from tools import kafka_access, simulator
from tools.platform import Platform, ServiceProcess, free_ports, services_on_ports

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = ROOT / "deploy/local/kafka.sh"
MUNICIPALITY = "aalborg-kommune"


class ChaosFailed(AssertionError):
    """A check of the run failed: something was lost, doubled or left stuck."""


@dataclass
class LocalBroker:
    """A broker of its own on the given ports and data directory, started and stopped by
    deploy/local/kafka.sh: the one a run may stop, kill and restart."""

    port: int
    controller_port: int
    data_dir: Path
    heap: str = "-Xms256m -Xmx256m"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _script(self, command: str) -> None:
        environment = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_DATA_DIR": str(self.data_dir),
            "KAFKA_HEAP_OPTS": self.heap,
        }
        # Never someone else's broker: the script leaves an external one alone anyway.
        environment.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        done = subprocess.run(
            ["bash", str(KAFKA_SCRIPT), command], env=environment, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"kafka.sh {command} failed:\n{done.stdout}\n{done.stderr}")

    def up(self) -> None:
        self._script("up")

    def down(self) -> None:
        """A clean stop (SIGTERM, waited for)."""
        self._script("down")

    def kill(self) -> None:
        """SIGKILL, as a crashed or OOM-killed broker ends: the next start recovers its logs."""
        pid_file = self.data_dir / "kafka.pid"
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
        pid_file.unlink(missing_ok=True)


def local_broker(data_dir: Path) -> LocalBroker:
    port, controller_port = free_ports(2)
    return LocalBroker(port, controller_port, data_dir)


@dataclass(frozen=True)
class Options:
    vehicles: int = 16
    samples_per_vehicle: int = 90
    # The feed is produced in this many chunks, with faults between them.
    chunks: int = 9
    # Poison fed in: garbage records and samples of a vehicle no one registered.
    garbage: int = 3
    unregistered: int = 2
    broker_restarts: int = 1
    kills_per_service: int = 1
    pause_s: float = 1.0
    timeout_s: float = 120.0

    @classmethod
    def long(cls) -> Options:
        return cls(
            vehicles=60,
            samples_per_vehicle=240,
            chunks=24,
            garbage=10,
            unregistered=5,
            broker_restarts=2,
            kills_per_service=3,
            pause_s=2.0,
            timeout_s=300.0,
        )


@dataclass
class Report:
    samples: int = 0
    faults: list[str] = field(default_factory=list)
    seconds: float = 0.0
    converged_after_last_fault_s: float = 0.0
    diesel_litres: Decimal = Decimal(0)
    emissions_kg: Decimal = Decimal(0)
    avoided_kg: Decimal = Decimal(0)
    collections: int = 0
    dead_letters: int = 0
    dead_letter_copies: int = 0
    activities: int = 0
    activity_copies: int = 0
    not_serving_seen: set[str] = field(default_factory=set)
    log_lines: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [
            f"feed: {self.samples} samples, {self.collections} carrier collections",
            f"faults ({len(self.faults)}): " + ", ".join(self.faults),
            f"converged {self.converged_after_last_fault_s:.1f} s after the last fault; "
            f"whole run {self.seconds:.1f} s",
            f"ledger: {self.diesel_litres} l diesel metered, {self.emissions_kg} kg CO2e emitted "
            f"(detours included), {self.avoided_kg} kg CO2e avoided: exact",
            f"dead letters: {self.dead_letters} (the poison fed in), "
            f"{self.dead_letter_copies} written twice",
            f"activities: {self.activities} distinct, {self.activity_copies} published again "
            "after a kill (same content)",
            "NOT_SERVING seen during faults: " + (", ".join(sorted(self.not_serving_seen)) or "-"),
            "log lines per service: "
            + ", ".join(f"{name} {count}" for name, count in sorted(self.log_lines.items())),
        ]


class HealthWatch:
    """Polls every service's health status in the background and remembers which ones said
    NOT_SERVING at some point."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.not_serving: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            for service in self.platform.services:
                if await health_status(self.platform, service) == "NOT_SERVING":
                    self.not_serving.add(service.name)
            await asyncio.sleep(0.5)


async def health_status(platform: Platform, service: ServiceProcess) -> str:
    """SERVING, NOT_SERVING, or DOWN when the port does not answer."""
    async with platform.pki.channel(service.target) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.aio.AioRpcError:
            return "DOWN"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def wait_answering(platform: Platform, service: ServiceProcess, timeout_s: float) -> None:
    """Until the service answers health checks at all (SERVING or not: the broker may be
    down)."""
    deadline = time.monotonic() + timeout_s
    while await health_status(platform, service) == "DOWN":
        process = platform.running(service)
        if process is not None and process.poll() is not None:
            raise ChaosFailed(f"{service.label} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise ChaosFailed(f"{service.label} did not answer within {timeout_s:.0f} s")
        await asyncio.sleep(0.2)


async def eventually(check: Callable[[], Awaitable[None]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await check()
            return
        except (AssertionError, ChaosFailed, grpc.aio.AioRpcError) as error:
            if time.monotonic() > deadline:
                raise ChaosFailed(f"{what}: {error}") from error
        await asyncio.sleep(0.5)


def feed_backlog(options: Options, namespace: str) -> Backlog:
    """Samples of diesel vans, one a minute each, ending a few minutes before now (the
    plausibility limits refuse samples from the future)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=options.samples_per_vehicle + 5)
    return minute_backlog(
        options.samples_per_vehicle,
        vehicle_ids(options.vehicles, prefix=f"chaos-{namespace[-6:]}"),
        start,
        namespace,
    )


def poison(options: Options, backlog: Backlog, namespace: str) -> list[tuple[bytes, bytes]]:
    """Records that must end as dead letters: garbage under a registered vehicle's key, and
    samples of a vehicle no one registered."""
    records = [
        (backlog.vehicle_ids[number % len(backlog.vehicle_ids)].encode(), b"\xff\xfe garbage")
        for number in range(options.garbage)
    ]
    first = fleet_pb2.TelemetrySample.FromString(backlog.records[0][1])
    for number in range(options.unregistered):
        stranger = fleet_pb2.TelemetrySample()
        stranger.CopyFrom(first)
        stranger.event_id = f"{namespace}-stranger-{number}"
        stranger.vehicle_id = "chaos-unregistered"
        stranger.occurred_at.seconds += 60 * number
        records.append((b"chaos-unregistered", stranger.SerializeToString()))
    return records


async def produce(servers: str, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
    headers = [
        (name, value.encode()) for name, value in event_headers(fleet_pb2.TelemetrySample()).items()
    ]
    producer = AIOKafkaProducer(
        **kafka_access.connection_as(ADMIN, servers), acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        acknowledgements = [
            await producer.send(topic, value, key=key, headers=headers) for key, value in records
        ]
        await asyncio.gather(*acknowledgements)
    finally:
        await producer.stop()


async def read_topic(servers: str, topic: str, quiet_s: float = 2.0) -> list[Any]:
    """Everything a topic holds, read until nothing more comes for `quiet_s`."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_access.connection_as(ADMIN, servers),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            fetched = await consumer.getmany(timeout_ms=200)
            for batch in fetched.values():
                records += batch
                last = time.monotonic()
    finally:
        await consumer.stop()
    return records


@dataclass(frozen=True)
class Expected:
    """What the ledger must show for the feed, in its own terms: the fleet's diesel metered
    and priced at the catalogue's factor; the collections modelled as trips not driven
    (avoided) and detours (emitted), by the ledger's own rules and data."""

    metered_litres: Decimal
    metered_kg: Decimal
    avoided_kg: Decimal
    detour_kg: Decimal


def expected_totals(backlog: Backlog, collections: int) -> Expected:
    policy, catalogue = load_avoided_trip_policy(), load_factor_catalogue()
    diesel = catalogue.for_carrier(EnergyCarrier.DIESEL, backlog.year)
    now = datetime.now(UTC)
    avoided = detour = Decimal(0)
    for hub_id, carrier, extra_m in simulator.COLLECTIONS[:collections]:
        for entry in entries_for_collection(
            WasteCollection(
                event_id=str(uuid.uuid4()),
                hub_id=hub_id,
                municipality_id=MUNICIPALITY,
                carrier_partner_id=carrier,
                collected_at=now,
                carrier_extra_distance_m=extra_m,
                mass_g=1,
                includes_hazardous=False,
            ),
            policy,
            catalogue,
            topics.LOCKER_EVENTS,
        ):
            if entry.kind == EntryKind.AVOIDED_EMISSION:
                avoided += entry.kg_co2e
            else:
                detour += entry.kg_co2e
    return Expected(backlog.diesel_litres, backlog.diesel_litres * diesel.value, avoided, detour)


@dataclass(frozen=True)
class Shown:
    """The same figures as the inventory shows them."""

    metered_litres: Decimal
    metered_kg: Decimal
    avoided_kg: Decimal
    detour_kg: Decimal

    @classmethod
    def of(cls, inventory: ledger_pb2.GetInventoryResponse) -> Shown:
        metered = [line for line in inventory.lines if line.basis == ledger_pb2.BASIS_METERED]
        modelled = [line for line in inventory.lines if line.basis == ledger_pb2.BASIS_MODELLED]
        return cls(
            metered_litres=sum(
                (
                    Decimal(line.activity_amount)
                    for line in metered
                    if line.energy_carrier == ledger_pb2.ENERGY_CARRIER_DIESEL
                    and line.kind == ledger_pb2.ENTRY_KIND_EMISSION
                ),
                Decimal(0),
            ),
            metered_kg=sum(
                (
                    Decimal(line.kg_co2e)
                    for line in metered
                    if line.kind == ledger_pb2.ENTRY_KIND_EMISSION
                ),
                Decimal(0),
            ),
            avoided_kg=sum(
                (
                    Decimal(line.kg_co2e)
                    for line in modelled
                    if line.kind == ledger_pb2.ENTRY_KIND_AVOIDED_EMISSION
                ),
                Decimal(0),
            ),
            detour_kg=sum(
                (
                    Decimal(line.kg_co2e)
                    for line in modelled
                    if line.kind == ledger_pb2.ENTRY_KIND_EMISSION
                ),
                Decimal(0),
            ),
        )


class Run:
    def __init__(self, options: Options, broker: LocalBroker, data_dir: Path) -> None:
        self.options = options
        self.broker = broker
        self.namespace = f"chaos{uuid.uuid4().hex[:8]}"
        ports = free_ports(8)
        self.platform = Platform(
            self.namespace,
            data_dir,
            services_on_ports(ports[:4], ports[4:]),
            service_env={
                name: {
                    # Small batches, so a kill lands in the middle of the work.
                    "CONSUMER_BATCH_SIZE": "200",
                    "READINESS_BROKER_UNREACHABLE_S": "3",
                    "LOG_REPEAT_INTERVAL_S": "30",
                }
                for name in (
                    "partner-registry",
                    "locker-hubs",
                    "fleet-telemetry",
                    "emissions-ledger",
                )
            },
        )
        self.platform.bootstrap = broker.bootstrap
        self.names = TopicNames(self.namespace)
        self.report = Report()
        self.started_at = time.monotonic()
        self.last_fault_at = time.monotonic()

    def fault(self, description: str) -> None:
        self.report.faults.append(description)
        self.last_fault_at = time.monotonic()
        print(f"  {time.monotonic() - self.started_at:5.1f} s  {description}", flush=True)

    async def kill(self, service: ServiceProcess) -> None:
        """SIGKILL and start again at once; the feed goes on while it starts (the checks at
        the end wait for every service)."""
        self.platform.kill_service(service)
        self.fault(f"kill -9 {service.name}")
        self.platform.start(service)

    async def restart_broker(self, number: int) -> None:
        hard = number % 2 == 1
        if hard:
            self.broker.kill()
        else:
            self.broker.down()
        self.fault(f"broker {'kill -9' if hard else 'stop'} and start")
        # While it is down, a service is killed and must start without it.
        victims = [s for s in self.platform.services if s.name == "partner-registry"]
        for service in victims:
            await self.kill(service)
        await asyncio.sleep(self.options.pause_s)
        self.broker.up()

    async def execute(self) -> Report:
        options = self.options
        started = self.started_at = time.monotonic()
        # Starting the services provisions the namespace: its topics, users and ACLs.
        self.platform.start_services()
        await self.platform.wait_healthy()
        backlog = feed_backlog(options, self.namespace)
        await register_vehicles(self.platform, backlog.vehicle_ids)
        print(
            f"  {time.monotonic() - started:5.1f} s  platform up, vehicles registered", flush=True
        )
        self.report.samples = backlog.samples
        watch = HealthWatch(self.platform)
        watch.start()
        try:
            await self._feed_with_faults(backlog)
            print(f"  {time.monotonic() - started:5.1f} s  feed and faults done", flush=True)
            await self._check(backlog)
        finally:
            await watch.stop()
        self.report.not_serving_seen = watch.not_serving
        self.report.seconds = time.monotonic() - started
        return self.report

    def _schedule(self) -> list[Callable[[], Awaitable[None]]]:
        """Faults to place between the feed's chunks: every service killed, broker restarts."""
        services = {service.name: service for service in self.platform.services}
        faults: list[Callable[[], Awaitable[None]]] = []
        order = ("fleet-telemetry", "emissions-ledger", "locker-hubs", "partner-registry")
        restarts = list(range(self.options.broker_restarts))
        for _round in range(self.options.kills_per_service):
            for name in order:
                faults.append(functools.partial(self.kill, services[name]))
                if name == "emissions-ledger" and restarts:
                    faults.append(functools.partial(self.restart_broker, restarts.pop(0)))
        faults += [functools.partial(self.restart_broker, number) for number in restarts]
        return faults

    async def _feed_with_faults(self, backlog: Backlog) -> None:
        options = self.options
        telemetry = self.names(topics.TELEMETRY)
        records = backlog.records
        chunk = -(-len(records) // options.chunks)
        chunks = [records[start : start + chunk] for start in range(0, len(records), chunk)]
        poison_records = poison(options, backlog, self.namespace)
        faults = self._schedule()
        # Faults spread evenly after the chunks, from the second to the one before last, so
        # that they hit a feed under way.
        first, last = 1, max(len(chunks) - 2, 1)
        after_chunk: dict[int, list[Callable[[], Awaitable[None]]]] = {}
        for index, fault in enumerate(faults):
            slot = first + (index * (last - first)) // max(len(faults) - 1, 1)
            after_chunk.setdefault(slot, []).append(fault)
        for number, part in enumerate(chunks):
            await produce(self.broker.bootstrap, telemetry, part)
            if number == 0:
                await produce(self.broker.bootstrap, telemetry, poison_records)
                self.report.collections = await simulator.play_locker_day(
                    self.platform.lockers.target, self.platform.pki
                )
            for fault in after_chunk.get(number, []):
                await fault()
            await asyncio.sleep(options.pause_s)

    async def _check(self, backlog: Backlog) -> None:
        options = self.options
        platform = self.platform
        for service in platform.services:
            await wait_answering(platform, service, 60)
        expected = expected_totals(backlog, self.report.collections)
        expected_shown = Shown(
            expected.metered_litres, expected.metered_kg, expected.avoided_kg, expected.detour_kg
        )

        async with platform.pki.channel(platform.ledger.target, OPERATOR) as channel:
            probe = LedgerProbe(channel, backlog.year)

            async def ledger_complete() -> None:
                shown = Shown.of(await probe.inventory())
                if shown.metered_litres > expected.metered_litres:
                    raise ChaosFailed(
                        f"{shown.metered_litres} l posted, more than the feed's "
                        f"{expected.metered_litres}"
                    )
                assert shown == expected_shown, f"{shown} of {expected}"

            await eventually(ledger_complete, options.timeout_s, "the ledger is incomplete")
            self.report.converged_after_last_fault_s = time.monotonic() - self.last_fault_at
            # Whatever a kill left to be published again has had time to arrive.
            await asyncio.sleep(2)
            shown = Shown.of(await probe.inventory())
        if shown != expected_shown:
            raise ChaosFailed(f"the ledger shows {shown} once settled; the feed makes {expected}")
        self.report.diesel_litres = shown.metered_litres
        self.report.emissions_kg = shown.metered_kg + shown.detour_kg
        self.report.avoided_kg = shown.avoided_kg

        await self._check_vehicles(backlog)
        await self._check_topics()
        for service in platform.services:

            async def serving(service: ServiceProcess = service) -> None:
                status = await health_status(platform, service)
                assert status == "SERVING", f"{service.name} is {status}"

            await eventually(serving, 30, "a service does not serve")
        logs = platform.data_dir / "logs"
        self.report.log_lines = {
            service.name: sum(
                len(path.read_bytes().splitlines()) for path in logs.glob(f"{service.name}*.log")
            )
            for service in platform.services
        }

    async def _check_vehicles(self, backlog: Backlog) -> None:
        first: dict[str, fleet_pb2.TelemetrySample] = {}
        last: dict[str, fleet_pb2.TelemetrySample] = {}
        for _key, payload in backlog.records:
            sample = fleet_pb2.TelemetrySample.FromString(payload)
            first.setdefault(sample.vehicle_id, sample)
            last[sample.vehicle_id] = sample
        async with self.platform.pki.channel(self.platform.fleet.target, OPERATOR) as channel:
            fleet = fleet_pb2_grpc.FleetTelemetryServiceStub(channel)
            for vehicle_id, start in first.items():
                end = last[vehicle_id]
                reply = await fleet.GetVehicle(
                    fleet_pb2.GetVehicleRequest(vehicle_id=vehicle_id), timeout=10
                )
                totals = reply.totals
                got = (
                    totals.distance_m,
                    totals.fuel_used_ml,
                    totals.samples_accepted,
                    totals.samples_quarantined,
                )
                want = (
                    end.odometer_m - start.odometer_m,
                    end.fuel_used_ml - start.fuel_used_ml,
                    self.options.samples_per_vehicle,
                    0,
                )
                if got != want:
                    raise ChaosFailed(f"{vehicle_id}: distance, fuel, accepted, quarantined {got}")

    async def _check_topics(self) -> None:
        servers = self.broker.bootstrap
        telemetry_dead = await read_topic(servers, self.names(dead_letter_topic(topics.TELEMETRY)))
        distinct = {
            (
                dict(record.headers)["dlq-source-partition"],
                dict(record.headers)["dlq-source-offset"],
            )
            for record in telemetry_dead
        }
        reasons = sorted(
            {
                (
                    dict(r.headers)["dlq-source-partition"],
                    dict(r.headers)["dlq-source-offset"],
                    dict(r.headers)["dlq-reason"].decode(),
                )
                for r in telemetry_dead
            },
            key=lambda item: item[2],
        )
        want = sorted(
            ["undecodable"] * self.options.garbage + ["unknown_vehicle"] * self.options.unregistered
        )
        if sorted(reason for *_, reason in reasons) != want:
            raise ChaosFailed(f"telemetry dead letters {[r for *_, r in reasons]}, expected {want}")
        others = []
        for spec in CATALOGUE:
            if spec.name != topics.TELEMETRY:
                others += await read_topic(servers, self.names(dead_letter_topic(spec.name)), 0.5)
        if others:
            raise ChaosFailed(
                f"unexpected dead letters: {[dict(r.headers)['dlq-reason'] for r in others]}"
            )
        self.report.dead_letters = len(distinct)
        self.report.dead_letter_copies = len(telemetry_dead) - len(distinct)

        activities = await read_topic(servers, self.names(topics.ACTIVITY), 0.5)
        contents: dict[str, bytes] = {}
        for record in activities:
            activity = fleet_pb2.VehicleActivity.FromString(record.value)
            activity.ClearField("occurred_at")
            content = activity.SerializeToString(deterministic=True)
            if contents.setdefault(activity.event_id, content) != content:
                raise ChaosFailed(f"activity {activity.event_id} published with two contents")
        self.report.activities = len(contents)
        self.report.activity_copies = len(activities) - len(contents)


async def run_chaos(options: Options, data_dir: Path, broker: LocalBroker | None = None) -> Report:
    """One run on a broker of its own (started and stopped here unless given)."""
    own = broker is None
    broker = broker or local_broker(data_dir / "kafka")
    if own:
        broker.up()
    run = Run(options, broker, data_dir)
    try:
        return await run.execute()
    finally:
        run.platform.stop()
        if own:
            broker.down()


async def main(arguments: argparse.Namespace) -> int:
    options = Options.long() if arguments.long else Options()
    data_dir = Path(tempfile.mkdtemp(prefix="chaos-", dir=arguments.data_dir))
    print(
        f"Chaos run ({'long' if arguments.long else 'short'}): {options.vehicles} vans, "
        f"{options.samples_per_vehicle} samples each, data in {data_dir}",
        flush=True,
    )
    try:
        report = await run_chaos(options, data_dir)
    except ChaosFailed as failure:
        print(f"FAILED: {failure}\nlogs: {data_dir / 'logs'}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    if not arguments.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--long", action="store_true", help="the longer run (several minutes)")
    parser.add_argument("--keep", action="store_true", help="keep logs and databases")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the run's files go")
    sys.exit(asyncio.run(main(parser.parse_args())))
