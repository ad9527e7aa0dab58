"""Composition root of fleet-telemetry."""

from __future__ import annotations

from pydantic import Field, field_validator

from fleet_telemetry.adapters.partners import FleetPartners, reclassify_on_kind_change
from fleet_telemetry.adapters.tables import MIGRATIONS
from fleet_telemetry.domain import DEFAULT_ACTIVITY_WINDOW_MINUTES, window_length_us
from fleet_telemetry.entrypoints import grpc_api, subscribers
from fleet_telemetry.entrypoints.grpc_api import FleetTelemetryApi
from fleet_telemetry.handlers import FleetHandlers, SampleOutcomes
from greenpartners.fleet.v1 import fleet_pb2_grpc
from servicekit.partners import PartnerDirectory
from servicekit.runtime import ServiceRuntime
from servicekit.settings import ServiceSettings, load_settings


class FleetSettings(ServiceSettings):
    service_name: str = "fleet-telemetry"
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///var/fleet-telemetry.db"
    # Length of the activity windows a vehicle's increments are summed in. It must divide an
    # hour, so windows align with every whole-hour time zone and never cross midnight.
    activity_window_minutes: int = Field(default=DEFAULT_ACTIVITY_WINDOW_MINUTES, ge=1, le=60)
    # A backlog comes a partition at a time, thousands of samples from a few dozen vehicles:
    # large transactions cost less per sample and cut fewer windows into two activities (20,000
    # cost no less than 10,000, and held 20 MB more at the end of a catch-up). What a batch
    # holds grows with its vehicles (states, activities, rows), so a batch of many vehicles (a
    # fleet reporting live) is handled a few thousand at a time.
    consumer_batch_size: int = Field(default=10_000, ge=1, le=50_000)
    consumer_max_subjects_per_batch: int = Field(default=2_500, ge=0, le=50_000)

    @field_validator("activity_window_minutes")
    @classmethod
    def _divides_an_hour(cls, minutes: int) -> int:
        window_length_us(minutes)
        return minutes


def build(**overrides: object) -> ServiceRuntime:
    settings = load_settings(FleetSettings, **overrides)
    runtime = ServiceRuntime(
        settings,
        migrations=MIGRATIONS,
        grpc_services=[(grpc_api.SERVICE, grpc_api.ACCESS)],
    )
    # Owners, municipalities and owners' kinds come from the registry's changelog.
    partners = FleetPartners(PartnerDirectory.follow(runtime, reclassify_on_kind_change))
    handlers = FleetHandlers(
        runtime.unit_of_work,
        runtime.names,
        partners,
        window_length_us(settings.activity_window_minutes),
        SampleOutcomes(runtime.metrics),
    )
    subscribers.subscribe(runtime, handlers)
    api = FleetTelemetryApi(handlers)
    runtime.add_grpc(
        lambda server: fleet_pb2_grpc.add_FleetTelemetryServiceServicer_to_server(api, server)
    )
    return runtime
