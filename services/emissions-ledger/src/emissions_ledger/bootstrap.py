"""Composition root of emissions-ledger."""

from __future__ import annotations

import hashlib
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator

from emissions_ledger.adapters.data_files import (
    load_activity_units,
    load_avoided_trip_policy,
    load_energy_contents,
    load_factor_catalogue,
)
from emissions_ledger.adapters.energi_data_service import EnergiDataServiceClient
from emissions_ledger.adapters.municipalities import MunicipalityDirectory
from emissions_ledger.adapters.tables import MIGRATIONS
from emissions_ledger.domain import HourlyPricingPolicy
from emissions_ledger.domain.hourly import ALL_MUNICIPALITIES, DATASET
from emissions_ledger.entrypoints import grpc_api, subscribers
from emissions_ledger.entrypoints.grpc_api import EmissionsLedgerApi
from emissions_ledger.grid_intensities import GridIntensityFetcher, GridIntensityMetrics
from emissions_ledger.handlers import LedgerHandlers
from emissions_ledger.inventory_watch import InventoryWatch
from greenpartners.ledger.v1 import ledger_pb2_grpc
from servicekit.partners import PartnerDirectory
from servicekit.runtime import ServiceRuntime
from servicekit.settings import LOOPBACK_HOSTS, ServiceSettings, load_settings


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

    # Danish electricity by the hour (docs/ledger.md). The background task that fetches hourly
    # CO2 intensities of one price area from Energi Data Service into the ledger's cache:
    energi_data_service_enabled: bool = False
    energi_data_service_url: str = "https://api.energidataservice.dk"
    energi_data_service_price_area: Literal["DK1", "DK2"] = "DK1"
    # Per request: connecting, and each read of the answer.
    energi_data_service_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Attempts per request (429, 5xx, connection errors and timeouts are retried), the first
    # backoff and its ceiling (doubled per attempt, with jitter; a Retry-After wins).
    energi_data_service_max_attempts: int = Field(default=5, ge=1, le=20)
    energi_data_service_backoff_s: float = Field(default=2.0, gt=0)
    energi_data_service_backoff_max_s: float = Field(default=300.0, gt=0)
    # At least this long between two requests: the service accepts one request per dataset
    # per minute from one address (its API guide, since August 2025).
    energi_data_service_min_request_interval_s: float = Field(default=60.0, ge=0)
    # Records per page: a week of five-minute values.
    energi_data_service_page_size: int = Field(default=2016, ge=12, le=100_000)
    energi_data_service_poll_interval_s: float = Field(default=900.0, gt=0)
    # An hour is fetched once it ended this long ago, and never again (the API may still
    # revise the latest hours; docs/ledger.md).
    energi_data_service_settle_hours: int = Field(default=3, ge=1, le=24 * 14)
    # How far back the cache is filled.
    energi_data_service_backfill_days: int = Field(default=31, ge=1, le=3660)
    # Whose electricity is priced by the hour: municipality ids, comma-separated, or "*" for
    # all. Empty (the default): none, every inventory uses the yearly factor.
    hourly_electricity_municipalities: str = ""

    @field_validator("energi_data_service_url")
    @classmethod
    def _https_or_local(cls, url: str, info: ValidationInfo) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host")
        local = parts.hostname in LOOPBACK_HOSTS or parts.hostname.startswith("127.")
        if parts.scheme == "http" and not local and not info.data.get("development_mode"):
            raise ValueError("plain http only to this machine (or in DEVELOPMENT_MODE)")
        return url

    @field_validator("energi_data_service_backoff_max_s")
    @classmethod
    def _ceiling_above_first_backoff(cls, ceiling: float, info: ValidationInfo) -> float:
        if ceiling < info.data.get("energi_data_service_backoff_s", 0):
            raise ValueError("must not be below ENERGI_DATA_SERVICE_BACKOFF_S")
        return ceiling

    @field_validator("hourly_electricity_municipalities")
    @classmethod
    def _hourly_needs_a_source(cls, municipalities: str, info: ValidationInfo) -> str:
        named = hourly_municipalities(municipalities)
        if named and not info.data.get("energi_data_service_enabled"):
            raise ValueError("hourly pricing needs ENERGI_DATA_SERVICE_ENABLED=true")
        if ALL_MUNICIPALITIES in named and len(named) > 1:
            raise ValueError(f"either {ALL_MUNICIPALITIES!r} or municipality ids")
        return municipalities


def hourly_municipalities(setting: str) -> frozenset[str]:
    return frozenset(part.strip() for part in setting.split(",") if part.strip())


def _grid_intensity_client(settings: LedgerSettings) -> EnergiDataServiceClient:
    return EnergiDataServiceClient(
        settings.energi_data_service_url,
        timeout_s=settings.energi_data_service_timeout_s,
        max_attempts=settings.energi_data_service_max_attempts,
        backoff_s=settings.energi_data_service_backoff_s,
        backoff_max_s=settings.energi_data_service_backoff_max_s,
        min_interval_s=settings.energi_data_service_min_request_interval_s,
        page_size=settings.energi_data_service_page_size,
    )


def build(**overrides: object) -> ServiceRuntime:
    settings = load_settings(LedgerSettings, **overrides)
    runtime = ServiceRuntime(
        settings,
        migrations=MIGRATIONS,
        grpc_services=[(grpc_api.SERVICE, grpc_api.ACCESS)],
    )
    # Municipalities and their Covenant commitments, from the registry's changelog.
    municipalities = MunicipalityDirectory(PartnerDirectory.follow(runtime), runtime.unit_of_work)
    # Hourly intensities are fetched by a background task into the ledger's database; the
    # consumers read them from there and never wait for the API.
    fetcher = None
    if settings.energi_data_service_enabled:
        fetcher = GridIntensityFetcher(
            _grid_intensity_client(settings),
            runtime.unit_of_work,
            dataset=DATASET,
            price_area=settings.energi_data_service_price_area,
            poll_interval_s=settings.energi_data_service_poll_interval_s,
            settle_hours=settings.energi_data_service_settle_hours,
            backfill_days=settings.energi_data_service_backfill_days,
            metrics=GridIntensityMetrics(runtime.metrics),
            log_interval_s=settings.log_repeat_interval_s,
        )
        runtime.on_startup(fetcher.start)
        runtime.on_shutdown(fetcher.stop)
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
        hourly=HourlyPricingPolicy(
            settings.energi_data_service_price_area,
            hourly_municipalities(settings.hourly_electricity_municipalities),
        ),
        hourly_status=None if fetcher is None else fetcher.status,
    )
    subscribers.subscribe(runtime, handlers)
    watch = InventoryWatch(runtime.database, settings.watch_poll_interval_s, settings.max_watchers)
    runtime.on_stopping(watch.stop)
    api = EmissionsLedgerApi(handlers, watch, municipalities)
    runtime.add_grpc(
        lambda server: ledger_pb2_grpc.add_EmissionsLedgerServiceServicer_to_server(api, server)
    )
    return runtime
