"""Where fleet-telemetry's and the ledger's CPU goes, stage by stage, in one process.

    uv run python -m bench.hot_path [--samples 40000] [--vehicles 500]
                                    [--batch-sizes 5000,10000,20000] [--repeat 3]

No broker and no other process: each stage of the services' hot path is timed alone on the
same samples (one a minute per van, as the pipeline benchmark's backlog), in CPU microseconds
per sample, and as a multiple of the first stage: parsing the sample (`ParseFromString`), the
part of the pipeline benchmark's baseline that is the same work. A stage's figure is the best
of `--repeat` runs. The garbage collector is set up as the services set it up.

Stages:
  parse      TelemetrySample.FromString
  consume    the consumer's per-record work: parse, the topic's contract checks, the domain
             sample made of the event (fleet-telemetry's `convert`), with its position
             (BatchConsumer's decoding)
  convert    of that, the domain sample alone (fleet-telemetry's adapter)
  fold       the domain fold of each vehicle's samples into state and activities
  handler    fleet-telemetry's batch handler on SQLite, consume included: states, the fold,
             the activities into the outbox, one transaction per batch (per batch size)
  ledger     the ledger's batch handler on SQLite posting the activities the handler wrote
             (2,000 per batch, as the service takes them), per activity and per sample

Not included: fetching from the broker, the outbox relay publishing, the broker itself. The
pipeline benchmark (bench.pipeline) measures those together.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord
from sqlalchemy import select

from bench.kafka_io import TELEMETRY_HEADERS
from bench.workload import minute_backlog, vehicle_ids
from emissions_ledger.adapters.data_files import (
    load_avoided_trip_policy,
    load_energy_contents,
    load_factor_catalogue,
)
from emissions_ledger.adapters.events import activity_from_event
from emissions_ledger.adapters.tables import MIGRATIONS as LEDGER_MIGRATIONS
from emissions_ledger.handlers import LedgerHandlers
from fleet_telemetry.adapters.events import sample_from_event
from fleet_telemetry.adapters.repository import FleetRepository
from fleet_telemetry.adapters.tables import MIGRATIONS as FLEET_MIGRATIONS
from fleet_telemetry.domain.activity import window_length_us
from fleet_telemetry.domain.telemetry import TelemetrySample, VehicleState, fold_samples
from fleet_telemetry.domain.vehicles import CovenantSubsector, FuelType, Vehicle, VehicleClass
from fleet_telemetry.handlers import FleetHandlers
from greenpartners.fleet.v1 import fleet_pb2
from servicekit import topics
from servicekit.database import Database, outbox
from servicekit.kafka import BatchConsumer
from servicekit.runtime import UnitOfWork, settle_garbage_collector
from servicekit.topics import TopicNames

MUNICIPALITY = "aalborg-kommune"
LEDGER_BATCH = 2000
WINDOW_US = window_length_us(15)


class _IdleRelay:
    """Stands in for the outbox relay: the rows stay in the outbox, where the ledger stage
    reads them."""

    def notify(self) -> None:
        pass


def _best_of(repeat: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def _records(samples: int, vehicles: Sequence[str]) -> list[ConsumerRecord[bytes, bytes]]:
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    backlog = minute_backlog(samples // len(vehicles), vehicles, start, "hot-path")
    return [
        ConsumerRecord(
            topics.TELEMETRY,
            offset % 12,
            offset,
            0,
            0,
            key,
            value,
            None,
            len(key),
            len(value),
            TELEMETRY_HEADERS,
        )
        for offset, (key, value) in enumerate(backlog.records)
    ]


def _consumer() -> BatchConsumer[fleet_pb2.TelemetrySample, TelemetrySample]:
    async def no_handler(batch: Sequence[Any]) -> list[Any]:
        return []

    return BatchConsumer(
        connection={},
        client_id="hot-path",
        # Never used: decoding publishes nothing (a dead letter would, and there is none).
        producer=None,  # type: ignore[arg-type]
        names=TopicNames(),
        topic=topics.TELEMETRY,
        group_id="hot-path",
        message_type=fleet_pb2.TelemetrySample,
        handle_batch=no_handler,
        subject_of=lambda sample: sample.vehicle_id,
        convert=sample_from_event,
    )


def _vehicle(vehicle_id: str) -> Vehicle:
    return Vehicle(
        vehicle_id,
        MUNICIPALITY,
        MUNICIPALITY,
        FuelType.DIESEL,
        VehicleClass.VAN,
        CovenantSubsector.MUNICIPAL_FLEET,
    )


async def _fleet_handler(
    directory: Path, vehicles: Sequence[str], records: list[Any], batch_size: int
) -> tuple[float, Database]:
    """CPU seconds of consuming and handling the records in batches; the database it wrote."""
    database = Database(f"sqlite+aiosqlite:///{directory}/fleet-{batch_size}.db")
    await database.migrate(FLEET_MIGRATIONS)
    unit_of_work = UnitOfWork(database, _IdleRelay())  # type: ignore[arg-type]
    async with unit_of_work() as session:
        repository = FleetRepository(session)
        for vehicle_id in vehicles:
            await repository.save_vehicle(_vehicle(vehicle_id))
    handlers = FleetHandlers(unit_of_work, TopicNames(), None, WINDOW_US)  # type: ignore[arg-type]
    consumer = _consumer()
    started = time.process_time()
    for first in range(0, len(records), batch_size):
        batch, _ = consumer._decode_all(records[first : first + batch_size])
        rejections = await handlers.record_samples(batch.delivered)
        if rejections:
            raise AssertionError(f"samples refused: {rejections[:3]}")
    return time.process_time() - started, database


async def _ledger(directory: Path, fleet_database: Database) -> tuple[float, int]:
    """CPU seconds of posting the activities fleet-telemetry wrote; how many there were."""
    async with fleet_database.read() as session:
        payloads = (
            (
                await session.execute(
                    select(outbox.c.payload)
                    .where(outbox.c.topic == topics.ACTIVITY)
                    .order_by(outbox.c.id)
                )
            )
            .scalars()
            .all()
        )
    activities = [
        activity_from_event(fleet_pb2.VehicleActivity.FromString(payload)) for payload in payloads
    ]
    database = Database(f"sqlite+aiosqlite:///{directory}/ledger.db")
    await database.migrate(LEDGER_MIGRATIONS)
    handlers = LedgerHandlers(
        UnitOfWork(database, _IdleRelay()),  # type: ignore[arg-type]
        TopicNames(),
        load_factor_catalogue(),
        load_avoided_trip_policy(),
        page_token_key=b"\0" * 32,
        energy_contents=load_energy_contents(),
    )
    started = time.process_time()
    for first in range(0, len(activities), LEDGER_BATCH):
        batch = list(enumerate(activities[first : first + LEDGER_BATCH]))
        rejections = await handlers.post_activities(batch)
        if rejections:
            raise AssertionError(f"activities refused: {rejections[:3]}")
    cpu_s = time.process_time() - started
    await database.dispose()
    return cpu_s, len(activities)


async def main(arguments: argparse.Namespace) -> int:
    vehicles = vehicle_ids(arguments.vehicles, "hot-path")
    records = _records(arguments.samples, vehicles)
    count = len(records)
    settle_garbage_collector()
    consumer = _consumer()

    def per_sample(seconds: float) -> float:
        return seconds / count * 1e6

    parse_us = per_sample(
        _best_of(
            arguments.repeat,
            lambda: [fleet_pb2.TelemetrySample.FromString(r.value) for r in records],
        )
    )
    rows: list[tuple[str, float]] = [("parse", parse_us)]
    delivered = consumer._decode_all(records)[0].delivered
    rows.append(
        ("consume", per_sample(_best_of(arguments.repeat, lambda: consumer._decode_all(records))))
    )
    events = [fleet_pb2.TelemetrySample.FromString(r.value) for r in records]
    rows.append(
        (
            "convert",
            per_sample(_best_of(arguments.repeat, lambda: [sample_from_event(e) for e in events])),
        )
    )
    by_vehicle: dict[str, list[Any]] = {}
    for d in delivered:
        by_vehicle.setdefault(d.event.vehicle_id, []).append(((d.partition, d.offset), d.event))
    states = {v: VehicleState(vehicle=_vehicle(v), revision=1) for v in by_vehicle}
    now_us = time.time_ns() // 1000
    rows.append(
        (
            "fold",
            per_sample(
                _best_of(
                    arguments.repeat,
                    lambda: [
                        fold_samples(states[v], rs, WINDOW_US, now_us)
                        for v, rs in by_vehicle.items()
                    ],
                )
            ),
        )
    )
    print(
        f"{count:,} samples of {len(vehicles)} vehicles (one a minute each), CPU per sample, "
        f"best of {arguments.repeat}:"
    )
    for name, micros in rows:
        print(f"  {name:<28} {micros:7.2f} us   {micros / parse_us:5.1f}x parse")
    with tempfile.TemporaryDirectory(prefix="hot-path-") as directory:
        last_database: Database | None = None
        for batch_size in arguments.batch_sizes:
            best = float("inf")
            for _ in range(arguments.repeat):
                cpu_s, database = await _fleet_handler(
                    Path(directory), vehicles, records, batch_size
                )
                best = min(best, cpu_s)
                if last_database is not None:
                    await last_database.dispose()
                last_database = database
            micros = per_sample(best)
            stage = f"handler, batches of {batch_size:,}"
            print(f"  {stage:<28} {micros:7.2f} us   {micros / parse_us:5.1f}x parse")
        assert last_database is not None
        cpu_s, activities = await _ledger(Path(directory), last_database)
        await last_database.dispose()
    print(
        f"  {'ledger, per sample':<28} {per_sample(cpu_s):7.2f} us   "
        f"{per_sample(cpu_s) / parse_us:5.1f}x parse   ({cpu_s / activities * 1e6:.0f} us per "
        f"activity, {activities:,} activities from the last batch size, "
        f"{count / activities:.1f} samples each)"
    )
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=40_000)
    parser.add_argument("--vehicles", type=int, default=500)
    parser.add_argument(
        "--batch-sizes",
        type=lambda text: [int(size) for size in text.split(",")],
        default=[5_000, 10_000, 20_000],
    )
    parser.add_argument("--repeat", type=int, default=3)
    return asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(run())
