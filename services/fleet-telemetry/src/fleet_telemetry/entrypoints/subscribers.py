"""Kafka subscribers of fleet-telemetry."""

from __future__ import annotations

from fleet_telemetry.adapters.events import sample_from_event
from fleet_telemetry.handlers import FleetHandlers
from greenpartners.fleet.v1 import fleet_pb2
from servicekit import topics
from servicekit.kafka import EventContext
from servicekit.runtime import ServiceRuntime


def subscribe(runtime: ServiceRuntime, handlers: FleetHandlers) -> None:
    async def on_sample(event: fleet_pb2.TelemetrySample, _context: EventContext) -> None:
        await handlers.record_sample(sample_from_event(event))

    runtime.consume(topics.TELEMETRY, "fleet-telemetry", fleet_pb2.TelemetrySample, on_sample)
