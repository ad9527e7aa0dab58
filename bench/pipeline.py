"""Benchmark of the telemetry pipeline: the services as processes on the local broker.

    uv run python -m bench.pipeline
        [--scenario all|catch-up|latency|two-instances|memory|one-at-a-time]
        [--database sqlite|postgresql] [--quick] [sizes...]

catch-up       Vehicles registered, fleet-telemetry and the ledger stopped, a backlog preloaded
               into the telemetry topic. Baseline on that backlog, before the services start:
               a plain aiokafka consumer reading it from the beginning (getmany) and parsing
               every record, nothing else. Then the two services are started and timed until
               fleet-telemetry has accounted every sample (the distinct activities' sample_count
               sums to samples - vehicles: a vehicle's first sample is only its baseline) and
               until GetInventory shows exactly the diesel litres computed from the samples.
               Both timers start when the services are started: their start-up counts.
latency        A paced load with occurred_at = now, GetInventory polled every ~20 ms:
               p50/p95/p99 from occurred_at until the inventory includes the sample and every
               sample before it. Then the same again while 200 dashboards (--sse-clients; 0:
               not run) follow the ledger's entries through the stream gateway on the same
               cores (HTTPS, a dashboard token): p50/p95/p99 from
               an entry's commit (its LedgerEntryPosted.occurred_at, stamped in the posting
               transaction) to its arrival at each client, every client checked to receive
               every entry once; the gateway's resident memory, peak and at the end.
two-instances  The catch-up with two fleet-telemetry instances in one consumer group.
one-at-a-time  The catch-up with the ledger started only once fleet-telemetry has accounted
               every sample: what each does with the cores to itself (a diagnosis of what
               bounds the catch-up, not a target; not part of "all").
memory         Resident memory (VmRSS) of every service with many vehicles known.

Each scenario runs a platform of its own (topic namespace, databases), on loopback, bounded
by its sizes and --timeout, and checks that its totals are exact. Targets are printed beside
the figures; nothing fails on a missed target, only on wrong totals.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.scenarios import CatchUp, Latency, Memory, Options
from tests.kafka_tools import start_broker, stop_broker

FLEET_RATIO_TARGET = 0.25
LEDGER_RATIO_TARGET = 0.15
P99_TARGET_S = 1.0
RESIDENT_TARGET_MB = 150
CORES = os.cpu_count() or 1
SCENARIOS = ("catch-up", "latency", "two-instances", "memory", "one-at-a-time")


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=("all", *SCENARIOS), default="all")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes for a check that everything works (figures not meaningful)",
    )
    parser.add_argument("--samples", type=int, help="catch-up backlog (default 1000000)")
    parser.add_argument("--vehicles", type=int, help="catch-up vehicles (default 500)")
    parser.add_argument(
        "--baseline-runs",
        type=int,
        default=3,
        help="runs with aiokafka's default fetch sizes and as many with 4 MiB per partition; "
        "the fastest counts",
    )
    parser.add_argument("--latency-rate", type=float, help="samples/s offered (default 1000)")
    parser.add_argument("--latency-seconds", type=float, help="load duration (default 60)")
    parser.add_argument("--latency-vehicles", type=int, help="vehicles reporting (default 200)")
    parser.add_argument("--poll-interval", type=float, default=0.02, help="GetInventory, s")
    parser.add_argument(
        "--sse-clients", type=int, help="dashboards on the gateway during latency (default 200)"
    )
    parser.add_argument("--memory-vehicles", type=int, help="vehicles known (default 10000)")
    parser.add_argument("--memory-samples", type=int, default=3, help="samples per vehicle")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="bound of each waiting phase, in seconds"
    )
    parser.add_argument(
        "--keep", type=Path, help="copy each platform's logs and SQLite files here at its end"
    )
    arguments = parser.parse_args(argv)
    full = {
        # A backlog an outage of a few hours leaves (1,000 vehicles every 10 s for 2.8 hours):
        # large enough that the services' start-up (about a second of imports and connections)
        # is part of the catch-up without being most of it. --samples 200000 is the issue's
        # smallest backlog.
        "samples": 1_000_000,
        "vehicles": 500,
        "latency_rate": 1000.0,
        "latency_seconds": 60.0,
        "latency_vehicles": 200,
        "memory_vehicles": 10_000,
        "sse_clients": 200,
    }
    quick = {
        "samples": 2_000,
        "vehicles": 50,
        "latency_rate": 100.0,
        "latency_seconds": 10.0,
        "latency_vehicles": 20,
        "memory_vehicles": 200,
        "sse_clients": 20,
    }
    for name, value in (quick if arguments.quick else full).items():
        if getattr(arguments, name) is None:
            setattr(arguments, name, value)
    return arguments


async def run(arguments: argparse.Namespace) -> int:
    # In a thread: provisioning the broker runs an event loop of its own.
    servers, started_broker = await asyncio.to_thread(start_broker)
    options = Options(servers, arguments.database, arguments.timeout, arguments.keep)
    chosen = SCENARIOS[:4] if arguments.scenario == "all" else (arguments.scenario,)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"Telemetry pipeline benchmark: {arguments.database}, broker {servers}, "
        f"{os.cpu_count()} cores, load average {load} at the start",
        flush=True,
    )
    failed = []
    try:
        for name in chosen:
            print(flush=True)
            try:
                await run_scenario(name, options, arguments)
            except Exception as error:
                # The other scenarios still run; the benchmark fails at the end.
                print(f"Scenario {name} FAILED: {type(error).__name__}: {error}", flush=True)
                failed.append(name)
    finally:
        if started_broker:
            stop_broker()
    return 1 if failed else 0


async def run_scenario(name: str, options: Options, arguments: argparse.Namespace) -> None:
    if name in ("catch-up", "two-instances", "one-at-a-time"):
        instances = 2 if name == "two-instances" else 1
        result = await scenarios.catch_up(
            options,
            arguments.samples,
            arguments.vehicles,
            instances,
            arguments.baseline_runs,
            one_at_a_time=name == "one-at-a-time",
        )
        if name == "one-at-a-time":
            print_one_at_a_time(result)
        else:
            print_catch_up(result)
    elif name == "latency":
        # First the pipeline alone (the target), then again with the dashboards on the stream
        # gateway, which share the two cores: what a dashboard audience costs the pipeline.
        for sse_clients in sorted({0, arguments.sse_clients}):
            print_latency(
                await scenarios.latency(
                    options,
                    arguments.latency_vehicles,
                    arguments.latency_rate,
                    arguments.latency_seconds,
                    arguments.poll_interval,
                    sse_clients,
                )
            )
    else:
        print_memory(
            await scenarios.memory(options, arguments.memory_vehicles, arguments.memory_samples)
        )


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def print_catch_up(result: CatchUp) -> None:
    instances = "one fleet-telemetry" if result.fleet_instances == 1 else "two fleet-telemetry"
    print(
        f"Catch-up, {instances} instance{'s' if result.fleet_instances > 1 else ''}: "
        f"{result.samples:,} samples of {result.vehicles:,} vehicles preloaded "
        f"(produced in {result.produce_s:.1f} s, {result.samples / result.produce_s:,.0f}/s; "
        "not timed below)"
    )
    runs = "; ".join(
        f"{'4 MiB fetches' if large_fetch else 'aiokafka defaults'} "
        + ", ".join(f"{s:.2f}" for fetch, s in result.baseline_runs_s if fetch == large_fetch)
        + " s"
        for large_fetch in (False, True)
    )
    rows = (
        ("baseline  aiokafka getmany + ParseFromString", result.baseline_s, "records/s", None),
        ("fleet     samples -> accounted (activity)", result.fleet_s, "samples/s", "fleet"),
        ("ledger    samples -> visible (GetInventory)", result.ledger_s, "samples/s", "ledger"),
    )
    for label, seconds, unit, stage in rows:
        line = f"  {label:<44} {seconds:8.2f} s {result.samples / seconds:10,.0f} {unit}"
        if stage is not None:
            ratio = result.baseline_s / seconds
            target = FLEET_RATIO_TARGET if stage == "fleet" else LEDGER_RATIO_TARGET
            line += f"   ratio {ratio:6.3f}x (target >= {target}x: {verdict(ratio >= target)})"
        else:
            line += f"   (fastest run of: {runs})"
        print(line)
    print(
        "  the platform's timers start when the services are started: start-up counts "
        f"(all answered their health checks after {result.healthy_s:.1f} s)"
    )
    drained = result.accounted_samples - result.accounted_at_first_activity
    for label, done_s in (("fleet ", result.fleet_s), ("ledger", result.ledger_s)):
        seconds = done_s - result.first_activity_s
        rate = drained / seconds
        ratio = rate / (result.samples / result.baseline_s)
        print(
            f"  without start-up, {label} from the first activity "
            f"({result.first_activity_s:.2f} s) on: {drained:,} samples in {seconds:.2f} s, "
            f"{rate:,.0f} samples/s, ratio {ratio:.3f}x"
        )
    wall = result.ledger_s
    cpu = ", ".join(f"{label} {seconds:.1f} s" for label, seconds in result.cpu_s.items())
    print(
        f"  CPU used in those {wall:.1f} s ({CORES} cores: {CORES * wall:.1f} CPU s available, "
        f"{sum(result.cpu_s.values()):.1f} used): {cpu}"
    )
    print(
        f"  totals exact: {result.accounted_samples:,} samples accounted "
        f"(= {result.samples:,} - {result.vehicles:,} baselines) in {result.activities:,} "
        f"activities ({result.redelivered_copies:,} identical copies redelivered), "
        f"{result.diesel_litres:,} l diesel in the ledger as computed from the samples"
    )
    for label, partitions in result.partitions.items():
        if partitions and result.fleet_instances > 1:
            print(f"  {label} consumed telemetry partitions {partitions}")
    print_resident(result.resident_kib)


def print_one_at_a_time(result: CatchUp) -> None:
    print(
        f"Catch-up one service at a time: {result.samples:,} samples of {result.vehicles:,} "
        "vehicles preloaded; the ledger started once fleet-telemetry had accounted every sample"
    )
    rate = result.samples / result.baseline_s
    print(
        f"  {'baseline  aiokafka getmany + ParseFromString':<44} {result.baseline_s:8.2f} s "
        f"{rate:10,.0f} records/s"
    )
    ledger_s = result.ledger_s - result.ledger_started_s
    for label, seconds in (
        ("fleet     alone, samples -> accounted", result.fleet_s),
        ("ledger    alone, its samples -> visible", ledger_s),
    ):
        print(
            f"  {label:<44} {seconds:8.2f} s {result.samples / seconds:10,.0f} samples/s   "
            f"ratio {result.baseline_s / seconds:6.3f}x"
        )
    cpu = ", ".join(f"{label} {seconds:.1f} s" for label, seconds in result.cpu_s.items())
    print(f"  CPU used in the {result.ledger_s:.1f} s of both: {cpu}")
    print(
        f"  totals exact: {result.accounted_samples:,} samples accounted in "
        f"{result.activities:,} activities, {result.diesel_litres:,} l diesel in the ledger"
    )
    print_resident(result.resident_kib)


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def print_latency(result: Latency) -> None:
    audience = (
        "no dashboards"
        if result.sse is None
        else f"{result.sse['clients']} dashboards on the stream gateway meanwhile"
    )
    print(
        f"Latency, {audience}: {result.offered:,} samples from {result.vehicles:,} vehicles "
        f"offered in {result.load_s:.1f} s ({result.offered / result.load_s:,.0f} samples/s), "
        f"GetInventory polled {result.polls:,} times"
        + (f" ({result.failed_polls:,} calls failed)" if result.failed_polls else "")
    )
    ordered = sorted(result.latencies_s)
    if not ordered:
        print("  no sample became visible")
    else:
        p50, p95, p99 = (percentile(ordered, f) for f in (0.50, 0.95, 0.99))
        print(
            f"  occurred_at -> visible in GetInventory: p50 {p50 * 1000:,.0f} ms, "
            f"p95 {p95 * 1000:,.0f} ms, p99 {p99 * 1000:,.0f} ms, max {ordered[-1] * 1000:,.0f} "
            f"ms, mean {statistics.fmean(ordered) * 1000:,.0f} ms "
            + (
                f"(target p99 < {P99_TARGET_S:.0f} s: {verdict(p99 < P99_TARGET_S)})"
                if result.sse is None
                else "(the target is measured without dashboards, above)"
            )
        )
    if result.unseen:
        print(f"  {result.unseen:,} samples never became visible within the time allowed")
    if result.sse is not None:
        print_sse(result.sse, result.gateway_peak_kib, result.gateway_cpu_s)
    print_resident(result.resident_kib)


def print_sse(sse: dict[str, Any], peak_kib: int, gateway_cpu_s: float) -> None:
    delays = sse["delay_s"]
    exact = sse["complete_clients"] == sse["clients"] and sse["duplicates"] == 0
    print(
        f"  {sse['clients']} SSE clients on ledger-entries: {sse['events']:,} entries received "
        f"({sse['expected_entries']:,} posted, each client all of them exactly once: "
        f"{'yes' if exact else 'NO'}; {sse['complete_clients']} complete, "
        f"{sse['duplicates']} duplicates, {sse['errored_clients']} errors {sse['errors']}; "
        f"{sse['slow_disconnects']} disconnected as too slow, {sse['reconnects']} reconnects "
        "with Last-Event-ID)"
    )
    if delays:
        p50, p95, p99, most = (delays[k] * 1000 for k in ("p50", "p95", "p99", "max"))
        print(
            f"  entry commit -> SSE client: p50 {p50:,.0f} ms, p95 {p95:,.0f} ms, "
            f"p99 {p99:,.0f} ms, max {most:,.0f} ms"
        )
    print(
        f"  stream-gateway resident memory peak {peak_kib * 1024 / 1e6:.0f} MB; CPU used: "
        f"gateway {gateway_cpu_s:.1f} s, the clients' process {sse['cpu_s']:.1f} s"
    )


def print_memory(result: Memory) -> None:
    print(
        f"Memory: {result.vehicles:,} vehicles registered in {result.register_s:.1f} s "
        f"({result.vehicles / result.register_s:,.0f}/s over gRPC), {result.samples:,} samples "
        f"accounted in {result.fleet_s:.1f} s, visible in the ledger after {result.ledger_s:.1f} s"
    )
    print_resident(result.resident_kib, check=True)


def print_resident(sizes: Sequence[tuple[str, int]], check: bool = False) -> None:
    parts = []
    for label, kib in sizes:
        megabytes = kib * 1024 / 1e6
        mark = f" ({verdict(megabytes <= RESIDENT_TARGET_MB)})" if check else ""
        parts.append(f"{label} {megabytes:.0f} MB{mark}")
    target = f"; target <= {RESIDENT_TARGET_MB} MB (10^6 bytes) each" if check else ""
    print(f"  resident memory (VmRSS) at the end: {', '.join(parts)}{target}")


if __name__ == "__main__":
    sys.exit(asyncio.run(run(parse_arguments())))
