"""The benchmark's scenarios. Each runs a fresh platform, measures, checks the totals are exact
and stops everything it started."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import sys
import time
import urllib.request
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import grpc
from aiokafka import AIOKafkaProducer
from google.protobuf.timestamp_pb2 import Timestamp

from bench.environment import fresh_platform
from bench.kafka_io import (
    TELEMETRY_HEADERS,
    ActivityTally,
    consume_and_decode,
    produce_records,
    telemetry_producer,
)
from bench.ledger_probe import LedgerProbe
from bench.workload import (
    ML_PER_LITRE,
    Backlog,
    minute_backlog,
    register_vehicles,
    vehicle_ids,
)
from greenpartners.fleet.v1 import fleet_pb2
from servicekit import topics
from servicekit.identity import DASHBOARD, OPERATOR
from servicekit.topics import TopicNames
from tools.platform import ROOT, Platform, ServiceProcess, cpu_seconds, free_ports, resident_kib

T = TypeVar("T")

# Preloaded samples start here: a working day, far from midnight and New Year.
BACKLOG_START = datetime(2026, 4, 1, 5, 0, tzinfo=UTC)
# Written by deploy/local/kafka.sh when it started the local broker.
BROKER_PID_FILE = ROOT / "deploy/local/.kafka/data/kafka.pid"
# After both stages report the expected totals, how long they must stay exact (a stage that
# double counts would overshoot a moment later).
SETTLE_S = 2.0


@dataclass(frozen=True)
class Options:
    servers: str
    database: str
    timeout_s: float
    keep: Path | None = None


@dataclass
class CatchUp:
    samples: int
    vehicles: int
    fleet_instances: int
    produce_s: float
    # Per run: (large fetches?, seconds).
    baseline_runs_s: list[tuple[bool, float]]
    fleet_s: float
    ledger_s: float
    activities: int
    redelivered_copies: int
    accounted_samples: int
    diesel_litres: Decimal
    resident_kib: list[tuple[str, int]]
    # Seconds from starting the services until every one answers its health check.
    healthy_s: float
    # CPU seconds used from the start of the timers until the ledger showed everything.
    cpu_s: dict[str, float]
    partitions: dict[str, list[int]] = field(default_factory=dict)
    # Seconds from starting the services until the first activity arrived, and the samples it
    # and the activities fetched with it accounted: what follows is the catch-up without
    # start-up.
    first_activity_s: float = 0.0
    accounted_at_first_activity: int = 0
    # One at a time: seconds from starting fleet-telemetry until the ledger was started (once
    # fleet-telemetry had accounted every sample); 0 when both started together.
    ledger_started_s: float = 0.0

    @property
    def baseline_s(self) -> float:
        # The fastest run: the most demanding yardstick for the platform.
        return min(seconds for _, seconds in self.baseline_runs_s)


@dataclass
class Latency:
    vehicles: int
    offered: int
    load_s: float
    latencies_s: list[float]
    unseen: int
    polls: int
    failed_polls: int
    resident_kib: list[tuple[str, int]]
    # The SSE audience's results (bench.sse_audience), when there was one.
    sse: dict[str, Any] | None = None
    gateway_peak_kib: int = 0
    gateway_cpu_s: float = 0.0


@dataclass
class Memory:
    vehicles: int
    samples: int
    register_s: float
    fleet_s: float
    ledger_s: float
    resident_kib: list[tuple[str, int]]


async def catch_up(
    options: Options,
    samples: int,
    vehicles: int,
    fleet_instances: int,
    baseline_runs: int,
    one_at_a_time: bool = False,
) -> CatchUp:
    """Registers the vehicles, stops fleet-telemetry and the ledger, preloads the backlog,
    measures the plain consumer on it, then starts the two services and times them; one at a
    time, the ledger is started only once fleet-telemetry has accounted every sample, so that
    each has the machine's cores to itself (but for the broker)."""
    per_vehicle = max(samples // vehicles, 1)
    backlog = minute_backlog(per_vehicle, vehicle_ids(vehicles), BACKLOG_START, "catch-up")
    async with fresh_platform(options.servers, options.database, options.keep) as platform:
        names = TopicNames(platform.namespace)
        platform.start_services()
        await platform.wait_healthy()
        await register_vehicles(platform, backlog.vehicle_ids)
        for stage in (platform.fleet, platform.ledger):
            if (code := platform.stop_service(stage)) != 0:
                raise RuntimeError(f"{stage.label} exited with {code} when stopped")

        produce_s = await produce_records(options.servers, names(topics.TELEMETRY), backlog.records)
        baseline_runs_s = []
        for _ in range(baseline_runs):
            for large_fetch in (False, True):
                seconds = await consume_and_decode(
                    options.servers,
                    names(topics.TELEMETRY),
                    backlog.samples,
                    options.timeout_s,
                    large_fetch,
                )
                baseline_runs_s.append((large_fetch, seconds))

        fleet = [platform.fleet]
        fleet += [platform.another_instance(platform.fleet) for _ in range(fleet_instances - 1)]
        tally = ActivityTally(options.servers, names(topics.ACTIVITY))
        await tally.start()
        try:
            cpu = CpuMeter(platform)
            started = time.perf_counter()
            ledger_started = started
            if one_at_a_time:
                for stage in fleet:
                    platform.start(stage)
                fleet_done = await _while_running(
                    platform, tally.wait_for_samples(backlog.accountable_samples, options.timeout_s)
                )
                ledger_started = time.perf_counter()
                platform.start(platform.ledger)
                healthy = asyncio.create_task(_healthy_after(platform, started))
                _, ledger_done = await _measure_stages(platform, tally, backlog, options.timeout_s)
            else:
                for stage in (*fleet, platform.ledger):
                    platform.start(stage)
                healthy = asyncio.create_task(_healthy_after(platform, started))
                fleet_done, ledger_done = await _measure_stages(
                    platform, tally, backlog, options.timeout_s
                )
            cpu_s = cpu.used()
            healthy_s = await healthy
            totals = await _settled_totals(platform, tally, backlog)
            partitions = {stage.label: await _telemetry_partitions(stage) for stage in fleet}
        finally:
            await tally.stop()
        return CatchUp(
            samples=backlog.samples,
            vehicles=vehicles,
            fleet_instances=fleet_instances,
            produce_s=produce_s,
            baseline_runs_s=baseline_runs_s,
            fleet_s=fleet_done - started,
            ledger_s=ledger_done - started,
            activities=len(tally.payloads),
            redelivered_copies=tally.copies,
            accounted_samples=totals[0],
            diesel_litres=totals[1],
            resident_kib=platform.resident_memory(),
            healthy_s=healthy_s,
            cpu_s=cpu_s,
            partitions=partitions,
            first_activity_s=(tally.first_at or started) - started,
            accounted_at_first_activity=tally.counted_at_first,
            ledger_started_s=ledger_started - started,
        )


class CpuMeter:
    """CPU seconds used from now on by the platform's processes (those started later count
    from their start), the local broker, and the benchmark itself (its readers and pollers)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.broker_pid = _broker_pid()
        self.at_start = self._now()

    def _now(self) -> dict[str, float]:
        now = dict(self.platform.cpu_used())
        if self.broker_pid is not None and (broker := cpu_seconds(self.broker_pid)) is not None:
            now["kafka broker"] = broker
        times = os.times()
        now["benchmark"] = times.user + times.system
        return now

    def used(self) -> dict[str, float]:
        return {
            label: seconds - self.at_start.get(label, 0.0) for label, seconds in self._now().items()
        }


def _broker_pid() -> int | None:
    try:
        return int(BROKER_PID_FILE.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


async def _healthy_after(platform: Platform, started: float) -> float:
    await platform.wait_healthy()
    return time.perf_counter() - started


async def _measure_stages(
    platform: Platform, tally: ActivityTally, backlog: Backlog, timeout_s: float
) -> tuple[float, float]:
    """When fleet-telemetry has accounted every sample, and when the ledger shows them all."""
    async with platform.pki.channel(platform.ledger.target, OPERATOR) as channel:
        probe = LedgerProbe(channel, backlog.year)
        ledger = asyncio.create_task(probe.wait_for_litres(backlog.diesel_litres, timeout_s))
        try:
            fleet_done = await _while_running(
                platform, tally.wait_for_samples(backlog.accountable_samples, timeout_s)
            )
            ledger_done = await _while_running(platform, ledger)
        finally:
            ledger.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ledger
    return fleet_done, ledger_done


async def _settled_totals(
    platform: Platform, tally: ActivityTally, backlog: Backlog
) -> tuple[int, Decimal]:
    """The totals a moment after they were reached: they must not have moved on."""
    await asyncio.sleep(SETTLE_S)
    async with platform.pki.channel(platform.ledger.target, OPERATOR) as channel:
        litres = await LedgerProbe(channel, backlog.year).diesel_litres()
    checks = {
        "activity sample_count sum": (tally.sample_count, backlog.accountable_samples),
        "activity fuel ml": (tally.fuel_used_ml, int(backlog.diesel_litres * ML_PER_LITRE)),
        "ledger diesel litres": (litres, backlog.diesel_litres),
        "activity ids published with different contents": (len(tally.conflicts), 0),
    }
    wrong = {name: found for name, (found, expected) in checks.items() if found != expected}
    if wrong:
        raise AssertionError(f"totals are not exact: {wrong} (expected {checks})")
    return tally.sample_count, litres


async def _while_running(platform: Platform, waiting: Awaitable[T]) -> T:
    """Awaits `waiting`, failing early if a service process exits."""
    task = asyncio.ensure_future(waiting)
    try:
        while not task.done():
            exited = [
                (service.label, process.returncode)
                for service, process in platform.processes
                if process.poll() is not None
            ]
            if exited:
                raise RuntimeError(
                    f"service exited while measured: {exited}; logs in {platform.data_dir}/logs"
                )
            await asyncio.wait({task}, timeout=0.5)
        return task.result()
    finally:
        task.cancel()


async def _telemetry_partitions(stage: ServiceProcess) -> list[int]:
    """Telemetry partitions the instance reports consumer lag for (what it was assigned)."""

    def scrape() -> str:
        url = f"http://127.0.0.1:{stage.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return str(reply.read().decode())

    try:
        text = await asyncio.to_thread(scrape)
    except OSError:
        return []
    partitions = set()
    for line in text.splitlines():
        if line.startswith("kafka_consumer_lag{") and f'{topics.TELEMETRY}"' in line:
            labels = line[line.index("{") + 1 : line.index("}")]
            for label in labels.split(","):
                name, _, value = label.partition("=")
                if name == "partition":
                    partitions.add(int(value.strip('"')))
    return sorted(partitions)


async def latency(
    options: Options,
    vehicles: int,
    rate: float,
    duration_s: float,
    poll_interval_s: float,
    sse_clients: int = 0,
) -> Latency:
    """A paced load with occurred_at = now; the inventory polled as a dashboard would. With
    sse_clients, that many dashboards follow the ledger's entries through the stream gateway
    meanwhile (bench.sse_audience, a process of its own)."""
    ids = vehicle_ids(vehicles, prefix="live")
    async with fresh_platform(options.servers, options.database, options.keep) as platform:
        names = TopicNames(platform.namespace)
        platform.start_services()
        await platform.wait_healthy()
        await register_vehicles(platform, ids)
        audience: SseAudience | None = None
        if sse_clients:
            audience = await SseAudience.start(platform, sse_clients, options.timeout_s)
        producer = telemetry_producer(options.servers)
        await producer.start()
        try:
            load = PacedLoad(producer, names(topics.TELEMETRY), ids)
            # Every vehicle's first sample is only its baseline: sent before the measurement.
            await load.send_baselines()
            await asyncio.sleep(2.0)
            async with platform.pki.channel(platform.ledger.target, OPERATOR) as channel:
                watch = VisibilityWatch(LedgerProbe(channel, datetime.now(UTC).year), load)
                watching = asyncio.create_task(watch.run(poll_interval_s))
                try:
                    load_s = await _while_running(platform, load.offer(rate, duration_s))
                    await _while_running(
                        platform, watch.wait_all_visible(min(options.timeout_s, 60.0))
                    )
                finally:
                    watching.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watching
                if audience is not None:
                    posted = (await watch.probe.inventory()).entry_count
                    await audience.finish(posted)
        finally:
            await producer.stop()
            if audience is not None:
                await audience.stop()
        return Latency(
            vehicles=vehicles,
            offered=len(load.occurred_s),
            load_s=load_s,
            latencies_s=watch.latencies_s,
            unseen=len(load.occurred_s) - watch.visible,
            polls=watch.polls,
            failed_polls=watch.failed_polls,
            resident_kib=platform.resident_memory(),
            sse=None if audience is None else audience.result,
            gateway_peak_kib=0 if audience is None else audience.peak_kib,
            gateway_cpu_s=dict(platform.cpu_used()).get("stream-gateway", 0.0),
        )


class SseAudience:
    """The stream gateway started beside the services, and bench.sse_audience's clients on its
    ledger-entries stream as a dashboard; the gateway's resident memory sampled meanwhile."""

    def __init__(self, process: asyncio.subprocess.Process, gateway_pid: int) -> None:
        self.process = process
        self.gateway_pid = gateway_pid
        self.peak_kib = 0
        self.result: dict[str, Any] = {}
        self._sampling = asyncio.create_task(self._sample_memory())

    @classmethod
    async def start(cls, platform: Platform, clients: int, timeout_s: float) -> SseAudience:
        (port,) = free_ports(1)
        url = await platform.start_gateway(port)
        gateway_pid = next(p.pid for s, p in platform.processes if s.name == "stream-gateway")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.sse_audience",
            "--url",
            f"{url}/streams/ledger-entries",
            "--clients",
            str(clients),
            "--ca-file",
            str(platform.pki.ca_file),
            "--settle-timeout",
            str(min(timeout_s, 60.0)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "SSE_TOKEN": platform.pki.token(DASHBOARD, subject="bench")},
            cwd=ROOT,
        )
        audience = cls(process, gateway_pid)
        assert process.stdout is not None
        ready = await asyncio.wait_for(process.stdout.readline(), timeout=120)
        if ready.strip() != b"ready":
            await audience.stop()
            raise RuntimeError(f"the SSE audience did not start: {ready!r}")
        return audience

    async def _sample_memory(self) -> None:
        while (kib := resident_kib(self.gateway_pid)) is not None:
            self.peak_kib = max(self.peak_kib, kib)
            await asyncio.sleep(0.5)

    async def finish(self, posted_entries: int) -> None:
        """Tells the clients how many entries were posted; waits for their results."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{posted_entries}\n".encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=180)
        self.result = json.loads(line)

    async def stop(self) -> None:
        self._sampling.cancel()
        if self.process.returncode is None:
            self.process.terminate()
        await self.process.wait()


class PacedLoad:
    """Vehicles reporting in turn at a fixed total rate, each sample stamped with the moment
    it is sent. Counters advance with the time since the vehicle's previous sample (15 m/s,
    3 ml/s, at least 1 ml), so speeds stay plausible however the sends are spaced and every
    sample adds fuel that the inventory must show."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, ids: Sequence[str]) -> None:
        self.producer = producer
        self.topic = topic
        self.ids = list(ids)
        self.odometer_m = [5_000_000] * len(ids)
        self.fuel_ml = [2_000_000] * len(ids)
        self.last_ns = [0] * len(ids)
        self.sent = 0
        # Per measured sample in send order: occurred_at, and the diesel added by every
        # measured sample up to and including it.
        self.occurred_s: list[float] = []
        self.cumulative_ml: list[int] = []

    async def send_baselines(self) -> None:
        for vehicle in range(len(self.ids)):
            await self._send(vehicle, measured=False)

    async def offer(self, rate: float, duration_s: float) -> float:
        total = int(rate * duration_s)
        started = time.monotonic()
        for number in range(total):
            await self._send(number % len(self.ids), measured=True)
            ahead = started + (number + 1) / rate - time.monotonic()
            if ahead > 0.002:
                await asyncio.sleep(ahead)
        await self.producer.flush()
        return time.monotonic() - started

    async def _send(self, vehicle: int, measured: bool) -> None:
        now_ns = time.time_ns() // 1000 * 1000  # the microseconds a Timestamp keeps here
        if self.last_ns[vehicle]:
            elapsed_s = (now_ns - self.last_ns[vehicle]) / 1e9
            self.odometer_m[vehicle] += round(elapsed_s * 15)
            added_ml = max(1, round(elapsed_s * 3))
            self.fuel_ml[vehicle] += added_ml
        else:
            added_ml = 0
        self.last_ns[vehicle] = now_ns
        stamp = Timestamp()
        stamp.FromNanoseconds(now_ns)
        event = fleet_pb2.TelemetrySample(
            event_id=f"{self.topic}-{self.sent}",
            occurred_at=stamp,
            vehicle_id=self.ids[vehicle],
            odometer_m=self.odometer_m[vehicle],
            fuel_used_ml=self.fuel_ml[vehicle],
        )
        self.sent += 1
        await self.producer.send(
            self.topic,
            event.SerializeToString(),
            key=self.ids[vehicle].encode(),
            headers=TELEMETRY_HEADERS,
        )
        if measured:
            previous = self.cumulative_ml[-1] if self.cumulative_ml else 0
            self.cumulative_ml.append(previous + added_ml)
            self.occurred_s.append(now_ns / 1e9)


class VisibilityWatch:
    """Polls GetInventory. A sample is visible when the inventory's diesel reaches the fuel
    of every measured sample sent up to and including it (so a sample counts only once all
    before it are visible too), at the moment that poll's answer arrived."""

    def __init__(self, probe: LedgerProbe, load: PacedLoad) -> None:
        self.probe = probe
        self.load = load
        self.visible = 0
        self.polls = 0
        self.failed_polls = 0
        self.latencies_s: list[float] = []
        self._progress = asyncio.Event()

    async def run(self, interval_s: float) -> None:
        while True:
            began = time.monotonic()
            # Only samples sent before the question can be credited by its answer.
            sent = len(self.load.occurred_s)
            try:
                litres = await self.probe.diesel_litres()
            except grpc.aio.AioRpcError:
                # A busy ledger may answer late; the next poll asks again.
                self.failed_polls += 1
                continue
            answered_s = time.time()
            self.polls += 1
            reached_ml = int(litres * ML_PER_LITRE)
            now_visible = bisect.bisect_right(self.load.cumulative_ml, reached_ml, 0, sent)
            for index in range(self.visible, now_visible):
                self.latencies_s.append(answered_s - self.load.occurred_s[index])
            if now_visible > self.visible:
                self.visible = now_visible
                self._progress.set()
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - began)))

    async def wait_all_visible(self, timeout_s: float) -> None:
        """Until every offered sample is visible, or the time is up (the rest count unseen)."""
        deadline = time.monotonic() + timeout_s
        while self.visible < len(self.load.occurred_s):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)


async def memory(options: Options, vehicles: int, samples_per_vehicle: int) -> Memory:
    """Resident memory once many vehicles are known: registered, each with a few samples
    accounted all the way to the ledger."""
    backlog = minute_backlog(
        samples_per_vehicle, vehicle_ids(vehicles, prefix="many"), BACKLOG_START, "memory"
    )
    async with fresh_platform(options.servers, options.database, options.keep) as platform:
        names = TopicNames(platform.namespace)
        platform.start_services()
        await platform.wait_healthy()
        began = time.perf_counter()
        await register_vehicles(platform, backlog.vehicle_ids)
        register_s = time.perf_counter() - began
        tally = ActivityTally(options.servers, names(topics.ACTIVITY))
        await tally.start()
        try:
            started = time.perf_counter()
            await produce_records(options.servers, names(topics.TELEMETRY), backlog.records)
            fleet_done, ledger_done = await _measure_stages(
                platform, tally, backlog, options.timeout_s
            )
            await _settled_totals(platform, tally, backlog)
        finally:
            await tally.stop()
        return Memory(
            vehicles=vehicles,
            samples=backlog.samples,
            register_s=register_s,
            fleet_s=fleet_done - started,
            ledger_s=ledger_done - started,
            resident_kib=platform.resident_memory(),
        )
