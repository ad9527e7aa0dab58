"""Composition root of emissions-ledger."""

from __future__ import annotations

import hashlib

from pydantic import Field

from emissions_ledger.adapters.data_files import (
    load_activity_units,
    load_avoided_trip_policy,
    load_energy_contents,
    load_factor_catalogue,
)
from emissions_ledger.adapters.municipalities import MunicipalityDirectory
from emissions_ledger.adapters.tables import MIGRATIONS
from emissions_ledger.entrypoints import grpc_api, subscribers
from emissions_ledger.entrypoints.grpc_api import EmissionsLedgerApi
from emissions_ledger.handlers import LedgerHandlers
from emissions_ledger.inventory_watch import InventoryWatch
from greenpartners.ledger.v1 import ledger_pb2_grpc
from servicekit.partners import PartnerDirectory
from servicekit.runtime import ServiceRuntime
from servicekit.settings import ServiceSettings, load_settings


class LedgerSettings(ServiceSettings):
    service_name: str = "emissions-ledger"
    grpc_port: int = Field(default=50054, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///var/emissions-ledger.db"
    # An entry costs far more memory and time than a telemetry sample, and fleet activity
    # arrives already aggregated: smaller batches cost no throughput and keep memory flat.
    consumer_batch_size: int = Field(default=2000, ge=1, le=50_000)
    # WatchInventory: how often an open watch looks for a new posting, and how many may be open.
    watch_poll_interval_s: float = Field(default=0.25, gt=0)
    max_watchers: int = Field(default=100, ge=1)


def build(**overrides: object) -> ServiceRuntime:
    settings = load_settings(LedgerSettings, **overrides)
    runtime = ServiceRuntime(
        settings,
        migrations=MIGRATIONS,
        grpc_services=[(grpc_api.SERVICE, grpc_api.ACCESS)],
    )
    # Municipalities and their Covenant commitments, from the registry's changelog.
    municipalities = MunicipalityDirectory(PartnerDirectory.follow(runtime), runtime.unit_of_work)
    handlers = LedgerHandlers(
        runtime.unit_of_work,
        runtime.names,
        load_factor_catalogue(),
        load_avoided_trip_policy(),
        # From the service's own private key: every replica signs and accepts the same tokens,
        # and no further secret is needed.
        page_token_key=hashlib.sha256(b"ledger page tokens\0" + runtime.tls.private_key).digest(),
        municipalities=municipalities,
        energy_contents=load_energy_contents(),
        activity_units=load_activity_units(),
    )
    subscribers.subscribe(runtime, handlers)
    watch = InventoryWatch(runtime.database, settings.watch_poll_interval_s, settings.max_watchers)
    runtime.on_stopping(watch.stop)
    api = EmissionsLedgerApi(handlers, watch, municipalities)
    runtime.add_grpc(
        lambda server: ledger_pb2_grpc.add_EmissionsLedgerServiceServicer_to_server(api, server)
    )
    return runtime
