"""Runs the whole platform on one machine: the Kafka broker, the four services as separate
processes, and the feed simulator.

    python -m tools.platform run    plays a day's feed, starts the stream gateway, then feeds
                                    the platform live until Ctrl-C (--once: the day only)
    python -m tools.platform demo   plays the feed into a fresh namespace, prints the
                                    Covenant inventory from the ledger and exits
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from servicekit.access import ADMIN, service_principal
from servicekit.identity import CLIMATE_OFFICER, DASHBOARD
from servicekit.topics import TopicNames
from tools import covenant_report, kafka_access, simulator
from tools.pki import Pki
from tools.pki import init as init_pki

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = ROOT / "deploy/local/kafka.sh"
MUNICIPALITY = "aalborg-kommune"
GATEWAY_PORT = 8090


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    package: str
    grpc_port: int
    metrics_port: int
    # 0 for a service's first instance; more instances share its database and consumer groups.
    instance: int = 0
    # The listener for other services (client certificates); None: the service has none.
    mtls_port: int | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def label(self) -> str:
        return self.name if self.instance == 0 else f"{self.name}-{self.instance}"


SERVICES = (
    # The one service with a mutual-TLS listener for other services (docs/security.md).
    ServiceProcess("partner-registry", "partner_registry", 50051, 9101, mtls_port=50061),
    ServiceProcess("locker-hubs", "locker_hubs", 50052, 9102),
    ServiceProcess("fleet-telemetry", "fleet_telemetry", 50053, 9103),
    ServiceProcess("emissions-ledger", "emissions_ledger", 50054, 9104),
)


def free_ports(count: int) -> list[int]:
    """Loopback ports free at this moment, for a platform beside a running one."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def services_on_ports(
    grpc_ports: Sequence[int], metrics_ports: Sequence[int]
) -> tuple[ServiceProcess, ...]:
    """The four services on other ports (tests run beside a running platform)."""
    return tuple(
        ServiceProcess(
            service.name,
            service.package,
            grpc_port,
            metrics_port,
            mtls_port=None if service.mtls_port is None else free_ports(1)[0],
        )
        for service, grpc_port, metrics_port in zip(
            SERVICES, grpc_ports, metrics_ports, strict=True
        )
    )


def _answers(url: str, ca_file: Path | None = None) -> bool:
    """Whether a GET of the URL answers 200 (blocking: run it in a thread); an https URL's
    certificate is checked against `ca_file`."""
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def resident_kib(pid: int) -> int | None:
    """A process's resident set size in KiB, None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time a process has used so far (user + system), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    # Fields after the command name, which is in parentheses and may contain spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / os.sysconf("SC_CLK_TCK")


class Platform:
    def __init__(
        self,
        namespace: str,
        data_dir: Path,
        services: Sequence[ServiceProcess] = SERVICES,
        database_urls: dict[str, str] | None = None,
        service_env: dict[str, dict[str, str]] | None = None,
        pki: Pki | None = None,
    ) -> None:
        self.namespace = namespace
        # Development credentials: certificates for the services, tokens for the callers.
        self.pki = pki or init_pki()
        self.data_dir = data_dir
        self.services = tuple(services)
        # Per service name; a service without one gets a SQLite file in data_dir.
        self.database_urls = dict(database_urls or {})
        # Extra environment variables per service name (CONSUMER_BATCH_SIZE, ...).
        self.service_env = {name: dict(env) for name, env in (service_env or {}).items()}
        self.registry, self.lockers, self.fleet, self.ledger = self.services
        self.bootstrap = kafka_access.local_bootstrap()
        self.started_broker = False
        self.provisioned = False
        self.processes: list[tuple[ServiceProcess, subprocess.Popen[bytes]]] = []
        self.day_samples: list[simulator.Sample] = []

    def start_broker(self) -> None:
        self.started_broker = kafka_access.start_local_broker()

    def provision(self) -> None:
        """The namespace's Kafka users, topics and ACLs, once, as the admin: each service then
        runs as its own principal with only its rights (servicekit.access)."""
        if self.provisioned or not kafka_access.uses_principals():
            return
        admin = kafka_access.tool_connection(ADMIN, self.bootstrap)
        # In a thread of its own: callers may be inside an event loop (tests) or not.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, kafka_access.apply(self.namespace, admin)).result()
        self.provisioned = True

    def revoke(self) -> None:
        """Removes the ACLs `provision` made for a namespace of its own (a demo's, a test's);
        the platform's catalogue names keep theirs."""
        if not (self.provisioned and self.namespace):
            return
        admin = kafka_access.tool_connection(ADMIN, self.bootstrap)
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, kafka_access.revoke(self.namespace, admin)).result(60)
        except Exception as error:  # the broker may be gone already; the ACLs then stay
            print(f"could not remove the ACLs of {self.namespace}: {error!r}", file=sys.stderr)
        self.provisioned = False

    def kafka_identity(self, service: ServiceProcess) -> dict[str, str]:
        if not kafka_access.uses_principals():
            return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap}
        return kafka_access.principal_environment(service_principal(service.name), self.bootstrap)

    def start_services(self, names: Collection[str] | None = None) -> None:
        """Starts the services (those named, or all four), each as a process of its own."""
        self.provision()
        for service in self.services:
            if names is None or service.name in names:
                self.start(service)

    def start(self, service: ServiceProcess) -> subprocess.Popen[bytes]:
        """Starts one instance of a service; instances of one service share its database."""
        if self.running(service) is not None:
            raise RuntimeError(f"{service.label} is already running")
        self.provision()  # once per platform: a later start works while the broker is down
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {
            # A platform on one machine is a development set-up (public secrets allowed),
            # unless the caller says otherwise.
            "DEVELOPMENT_MODE": "1",
            **os.environ,
            **self.kafka_identity(service),
            "TOPIC_NAMESPACE": self.namespace,
            "DATABASE_URL": self.database_urls.get(
                service.name, f"sqlite+aiosqlite:///{self.data_dir / service.name}.db"
            ),
            "GRPC_PORT": str(service.grpc_port),
            "METRICS_PORT": str(service.metrics_port),
            **self.pki.service_environment(service.name),
            **({"GRPC_MTLS_PORT": str(service.mtls_port)} if service.mtls_port else {}),
            "OUTBOX_POLL_INTERVAL_S": "0.2",
            **self.service_env.get(service.name, {}),
        }
        log_file = (logs / f"{service.label}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", service.package],
            env=env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Own process group: Ctrl-C reaches the supervisor, which stops them in order.
            start_new_session=True,
        )
        log_file.close()
        self.processes.append((service, process))
        return process

    async def start_gateway(self, port: int = GATEWAY_PORT, timeout_s: float = 60.0) -> str:
        """Starts stream-gateway (HTTP, no gRPC) once the services run; returns its URL when
        it is ready (it has read the topics as they stood)."""
        self.service_env.setdefault("stream-gateway", {})["HTTP_PORT"] = str(port)
        process = self.start(ServiceProcess("stream-gateway", "stream_gateway", 0, 0))
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while True:
            if await asyncio.to_thread(_answers, f"{url}/readyz", self.pki.ca_file):
                return url
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stream-gateway did not start; see {self.data_dir}/logs")
            await asyncio.sleep(0.3)

    def another_instance(self, service: ServiceProcess) -> ServiceProcess:
        """One more instance of a service on free ports (start it with `start`)."""
        taken = [s.instance for s, _ in self.processes if s.name == service.name]
        grpc_port, metrics_port, mtls_port = free_ports(3)
        return replace(
            service,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
            mtls_port=None if service.mtls_port is None else mtls_port,
            instance=max(taken, default=0) + 1,
        )

    def running(self, service: ServiceProcess) -> subprocess.Popen[bytes] | None:
        for candidate, process in self.processes:
            if candidate == service:
                return process
        return None

    def stop_service(self, service: ServiceProcess, timeout_s: float = 20.0) -> int:
        """SIGTERM to one instance; its exit code (0: a clean shutdown)."""
        process = self._take(service)
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            print(f"{service.label} did not stop in time; killing it", file=sys.stderr)
            process.kill()
            return process.wait()

    def kill_service(self, service: ServiceProcess) -> int:
        """SIGKILL to one instance, as a crash or an OOM kill would end it."""
        process = self._take(service)
        process.kill()
        return process.wait()

    def _take(self, service: ServiceProcess) -> subprocess.Popen[bytes]:
        process = self.running(service)
        if process is None:
            raise RuntimeError(f"{service.label} is not running")
        self.processes.remove((service, process))
        return process

    async def wait_healthy(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        for service, process in self.processes:
            async with self.pki.channel(service.target) as channel:
                stub = health_pb2_grpc.HealthStub(channel)  # health needs no token
                while True:
                    if process.poll() is not None:
                        raise RuntimeError(
                            f"{service.label} exited with {process.returncode}; see "
                            f"{self.data_dir / 'logs' / service.label}.log"
                        )
                    try:
                        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                        if reply.status == health_pb2.HealthCheckResponse.SERVING:
                            break
                    except grpc.aio.AioRpcError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{service.label} did not become healthy")
                    await asyncio.sleep(0.3)

    def stop(self) -> dict[str, int]:
        """SIGTERM to every running instance, then their exit codes (0: a clean shutdown)."""
        for _service, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        exit_codes = {}
        for service, process in self.processes:
            try:
                exit_codes[service.label] = process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print(f"{service.label} did not stop in time; killing it", file=sys.stderr)
                process.kill()
                exit_codes[service.label] = process.wait()
        self.processes.clear()
        self.revoke()
        if self.started_broker:
            subprocess.run(["bash", str(KAFKA_SCRIPT), "down"], check=False)
        return exit_codes

    def resident_memory(self) -> list[tuple[str, int]]:
        """Resident set size of each running instance, in KiB (VmRSS of Linux /proc)."""
        sizes = []
        for service, process in self.processes:
            kib = resident_kib(process.pid)
            if kib is not None:
                sizes.append((service.label, kib))
        return sizes

    def cpu_used(self) -> list[tuple[str, float]]:
        """CPU seconds each running instance has used since it started."""
        used = []
        for service, process in self.processes:
            seconds = cpu_seconds(process.pid)
            if seconds is not None:
                used.append((service.label, seconds))
        return used

    def print_addresses(self) -> None:
        print(
            f"Kafka broker:      {self.bootstrap}"
            + (f" (topic namespace {self.namespace})" if self.namespace else "")
        )
        for service, process in self.processes:
            metrics = f"http://127.0.0.1:{service.metrics_port}/metrics"
            print(
                f"{service.label:<18} gRPC {service.target}  metrics {metrics}  pid {process.pid}"
            )
        print(f"Logs and databases: {self.data_dir}")
        print(
            f"Calls need TLS (CA {self.pki.ca_file}) and a token: "
            "make -s token ROLE=<role> [PARTNER=<partner id>] (README: Calling the services)"
        )


@dataclass(frozen=True)
class FeedOutcome:
    """What the ledger must show once a played feed is posted: the fleet's activity amounts
    per unit (litres, kWh) on emission lines, and the carrier collections as avoided entries.
    Entry counts are no yardstick: fleet-telemetry aggregates samples into activity."""

    emission_amounts: dict[str, Decimal]
    collections: int

    def reached(self, inventory: ledger_pb2.GetInventoryResponse) -> bool:
        amounts: dict[str, Decimal] = {}
        avoided_entries = 0
        for line in inventory.lines:
            if line.kind == ledger_pb2.ENTRY_KIND_AVOIDED_EMISSION:
                avoided_entries += line.entry_count
            elif line.basis != ledger_pb2.BASIS_MODELLED:  # carriers' detours are modelled
                amounts[line.activity_unit] = amounts.get(line.activity_unit, Decimal(0)) + Decimal(
                    line.activity_amount
                )
        return amounts == self.emission_amounts and avoided_entries == self.collections


def fleet_amounts(samples: Sequence[simulator.Sample]) -> dict[str, Decimal]:
    """Litres and kWh the samples add up to: each vehicle's last counters minus its first (the
    simulated counters never reset)."""
    first: dict[str, simulator.Sample] = {}
    last: dict[str, simulator.Sample] = {}
    for sample in samples:
        first.setdefault(sample.vehicle_id, sample)
        last[sample.vehicle_id] = sample
    amounts: dict[str, Decimal] = {}
    for vehicle_id, start in first.items():
        end = last[vehicle_id]
        if end.fuel_used_ml is not None and start.fuel_used_ml is not None:
            used, unit = end.fuel_used_ml - start.fuel_used_ml, "l"
        elif end.energy_used_wh is not None and start.energy_used_wh is not None:
            used, unit = end.energy_used_wh - start.energy_used_wh, "kWh"
        else:
            continue
        if used:
            amounts[unit] = amounts.get(unit, Decimal(0)) + Decimal(used) / 1000
    return amounts


async def play_feed(platform: Platform, day: date) -> FeedOutcome:
    """Plays the simulator's day; returns what the ledger should show for it."""
    samples = platform.day_samples = simulator.working_day_samples(day)
    await simulator.register_fleet(platform.fleet.target, platform.pki)
    await simulator.publish_samples(
        kafka_access.tool_connection("telematics-unit", platform.bootstrap),
        TopicNames(platform.namespace),
        samples,
    )
    collections = await simulator.play_locker_day(platform.lockers.target, platform.pki)
    return FeedOutcome(fleet_amounts(samples), collections)


async def wait_for_feed(
    platform: Platform, year: int, outcome: FeedOutcome, timeout_s: float = 120.0
) -> ledger_pb2.GetInventoryResponse:
    return await poll_inventory(
        platform, year, outcome.reached, "the ledger does not show the whole feed", timeout_s
    )


async def wait_for_inventory(
    platform: Platform, year: int, entries: int, timeout_s: float = 120.0
) -> ledger_pb2.GetInventoryResponse:
    return await poll_inventory(
        platform,
        year,
        lambda inventory: inventory.entry_count >= entries,
        f"the ledger does not hold {entries} entries",
        timeout_s,
    )


async def poll_inventory(
    platform: Platform,
    year: int,
    done: Callable[[ledger_pb2.GetInventoryResponse], bool],
    failure: str,
    timeout_s: float,
) -> ledger_pb2.GetInventoryResponse:
    """Asks the ledger for the municipality's inventory, as its climate officer, until `done`
    holds for it."""
    deadline = time.monotonic() + timeout_s
    officer = platform.pki.call_as(CLIMATE_OFFICER, MUNICIPALITY)
    async with platform.pki.channel(platform.ledger.target) as channel:
        stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
        while True:
            inventory = await stub.GetInventory(
                ledger_pb2.GetInventoryRequest(municipality_id=MUNICIPALITY, year=year),
                timeout=10,
                credentials=officer,
            )
            if done(inventory):
                return inventory
            if time.monotonic() > deadline:
                raise TimeoutError(f"{failure}: {inventory}")
            await asyncio.sleep(0.5)


def format_inventory(inventory: ledger_pb2.GetInventoryResponse) -> str:
    def name(enum: object, number: int, prefix: str) -> str:
        return str(enum.Name(number)).removeprefix(prefix).lower().replace("_", " ")  # type: ignore[attr-defined]

    lines = [
        f"Covenant of Mayors inventory: {inventory.municipality_id}, {inventory.year}",
        f"{'sector':<10} {'sub-sector':<30} {'carrier':<12} {'kind':<17} {'basis':<9} "
        f"{'activity':>16} {'kg CO2e':>14} {'entries':>7}",
    ]
    for line in inventory.lines:
        lines.append(
            f"{name(ledger_pb2.Sector, line.sector, 'SECTOR_'):<10} "
            f"{name(ledger_pb2.Subsector, line.subsector, 'SUBSECTOR_'):<30} "
            f"{name(ledger_pb2.EnergyCarrier, line.energy_carrier, 'ENERGY_CARRIER_'):<12} "
            f"{name(ledger_pb2.EntryKind, line.kind, 'ENTRY_KIND_'):<17} "
            f"{name(ledger_pb2.Basis, line.basis, 'BASIS_'):<9} "
            f"{line.activity_amount + ' ' + line.activity_unit:>16} "
            f"{line.kg_co2e:>14} {line.entry_count:>7}"
        )
    lines.append(f"Emissions:         {inventory.emissions_kg_co2e} kg CO2e")
    lines.append(
        f"Avoided emissions: {inventory.avoided_kg_co2e} kg CO2e (shared carrier capacity)"
    )
    lines.append(f"Ledger entries:    {inventory.entry_count}")
    return "\n".join(lines)


# The Covenant's recommended baseline year (docs/ledger.md), used when the commitment the
# ledger knows states none.
RECOMMENDED_BASELINE_YEAR = 1990


# Made up, and said so on the entry: the demo's feed covers one day of one year, and a
# Covenant comparison needs a baseline year's activity, which only reported activity brings.
DEMO_BASELINE_DIESEL_LITRES = "300"


async def record_demo_baseline(platform: Platform, year: int) -> None:
    """Records, as a climate officer would import it, the municipal fleet's diesel on one day of
    the baseline year: a made-up figure for comparison with the day the demo played."""
    officer = platform.pki.call_as(CLIMATE_OFFICER, MUNICIPALITY)
    line = ledger_pb2.ActivityLine(
        year=year,
        sector=ledger_pb2.SECTOR_TRANSPORT,
        subsector=ledger_pb2.SUBSECTOR_MUNICIPAL_FLEET,
        energy_carrier=ledger_pb2.ENERGY_CARRIER_DIESEL,
        amount=DEMO_BASELINE_DIESEL_LITRES,
        unit="l",
        note=f"demo figure, made up: the municipal fleet's diesel on one day of {year}",
        source_document="make demo",
    )
    async with platform.pki.channel(platform.ledger.target) as channel:
        stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
        await stub.RecordActivity(
            ledger_pb2.RecordActivityRequest(
                municipality_id=MUNICIPALITY,
                idempotency_key=f"make-demo-baseline-{year}",
                lines=[line],
            ),
            credentials=officer,
        )


async def covenant_summary(platform: Platform, year: int) -> str:
    """BEI against MEI and the gap to the targets, as the municipality's climate officer sees
    them; the commitment's baseline year, else the recommended one, said so."""
    officer = platform.pki.call_as(CLIMATE_OFFICER, MUNICIPALITY)
    async with platform.pki.channel(platform.ledger.target) as channel:
        stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
        request = ledger_pb2.GetCovenantReportRequest(
            municipality_id=MUNICIPALITY, monitoring_year=year
        )
        try:
            report = await stub.GetCovenantReport(request, credentials=officer)
            return covenant_report.format_covenant_report(report)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
        request.baseline_year = RECOMMENDED_BASELINE_YEAR
        report = await stub.GetCovenantReport(request, credentials=officer)
    return (
        f"The commitment states no baseline year; BEI in {RECOMMENDED_BASELINE_YEAR}, the"
        " Covenant's recommended baseline year.\n" + covenant_report.format_covenant_report(report)
    )


async def main(mode: str, once: bool = False) -> int:
    # A day whose feed lies wholly in the past: samples from the future are implausible.
    day = simulator.latest_complete_day(datetime.now(UTC))
    if mode == "demo":
        namespace = f"demo{uuid.uuid4().hex[:8]}"
        data_dir = ROOT / "var" / namespace
    else:
        namespace = os.environ.get("TOPIC_NAMESPACE", "")
        data_dir = ROOT / "var" / "platform"
    platform = Platform(namespace, data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        started = time.monotonic()
        platform.start_broker()
        platform.start_services()
        await platform.wait_healthy()
        platform.print_addresses()
        print(f"Platform ready in {time.monotonic() - started:.1f} s; playing the feed for {day}.")
        expected = await play_feed(platform, day)
        if mode == "demo":
            inventory = await wait_for_feed(platform, day.year, expected)
            print()
            print(format_inventory(inventory))
            print()
            await record_demo_baseline(platform, RECOMMENDED_BASELINE_YEAR)
            print(
                f"Recorded a made-up baseline for the comparison: {DEMO_BASELINE_DIESEL_LITRES} l"
                f" of municipal fleet diesel on one day of {RECOMMENDED_BASELINE_YEAR}, as"
                " reported activity (docs/ledger.md, 'Reported activity')."
            )
            print(await covenant_summary(platform, day.year))
            print()
            for name, kib in platform.resident_memory():
                print(f"{name:<18} resident memory {kib / 1024:.0f} MiB")
            return 0
        dashboard = await platform.start_gateway()
        # The token rides in the fragment, which the browser keeps to itself: the page trades
        # it for a session cookie and drops it from the address (docs/security.md).
        print(
            f"Dashboard:         {dashboard}/?municipality={MUNICIPALITY}&year={day.year}"
            f"#token={platform.pki.token(DASHBOARD, subject='dashboard:make-run')}"
        )
        print(
            f"                   (HTTPS with the development CA {platform.pki.ca_file}: import it"
            " into the browser or accept the warning; 8 hours, then sign in with"
            " make -s token ROLE=dashboard)"
        )
        if once:
            print("Feed played. Press Ctrl-C to stop.")
            await stop.wait()
            return 0
        print("Day played; the feed goes on live. Press Ctrl-C to stop.")
        await simulator.play_live(
            kafka_access.tool_connection("telematics-unit", platform.bootstrap),
            TopicNames(platform.namespace),
            platform.lockers.target,
            platform.pki,
            platform.day_samples,
            stop,
        )
        return 0
    finally:
        print("Stopping the platform...", flush=True)
        platform.stop()
        print(f"Stopped at {datetime.now():%H:%M:%S}.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["run", "demo"])
    parser.add_argument("--once", action="store_true", help="run: play one day, then only wait")
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.mode, arguments.once)))
