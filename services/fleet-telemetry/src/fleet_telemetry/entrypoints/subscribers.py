"""Kafka subscribers of fleet-telemetry."""

from __future__ import annotations

from fleet_telemetry.adapters.events import sample_from_event
from fleet_telemetry.handlers import FleetHandlers
from greenpartners.fleet.v1 import fleet_pb2
from servicekit import topics
from servicekit.runtime import ServiceRuntime


def subscribe(runtime: ServiceRuntime, handlers: FleetHandlers) -> None:
    runtime.consume_batches(
        topics.TELEMETRY,
        "fleet-telemetry",
        fleet_pb2.TelemetrySample,
        handlers.record_samples,
        convert=sample_from_event,
        on_assigned=handlers.partitions_assigned,
        on_revoked=handlers.partitions_revoked,
        # Keyed by vehicle, so that a vehicle's samples share a partition and keep their order.
        subject_of=lambda sample: sample.vehicle_id,
    )
