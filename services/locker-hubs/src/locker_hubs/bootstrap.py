"""Composition root of locker-hubs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator

from greenpartners.lockers.v1 import lockers_pb2_grpc
from locker_hubs.adapters.carrier_directory import CarrierDirectory
from locker_hubs.adapters.data_files import load_shipped_hubs
from locker_hubs.adapters.tables import MIGRATIONS
from locker_hubs.entrypoints import grpc_api
from locker_hubs.entrypoints.grpc_api import LockerHubsApi
from locker_hubs.handlers import LockerHandlers
from servicekit.partners import PartnerDirectory
from servicekit.runtime import ServiceRuntime
from servicekit.settings import ServiceSettings, load_settings

# Public, so usable only in development mode; a deployment's pepper is its own secret.
DEVELOPMENT_PEPPER = "development-only-pepper-set-CODE_PEPPER-in-deployments"
# Twice what the keyed hash itself demands (MIN_PEPPER_BYTES): a deployment secret is random.
DEPLOYMENT_PEPPER_BYTES = 32


class LockerSettings(ServiceSettings):
    service_name: str = "locker-hubs"
    grpc_port: int = Field(default=50052, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///var/locker-hubs.db"
    # HMAC key of the one-time drop-off codes: CODE_PEPPER, or the file CODE_PEPPER_FILE names
    # (a mounted secret). Required outside development mode, at least 32 bytes.
    code_pepper_file: str = ""
    code_pepper: str = Field(default="", repr=False)
    drop_off_code_ttl_s: int = Field(default=86400, gt=0)
    # Drop-off codes one resident may hold open at a time, across all hubs and at one hub (a
    # hub's compartments are shared by its street).
    open_codes_per_resident: int = Field(default=3, ge=1)
    open_codes_per_resident_at_one_hub: int = Field(default=2, ge=1)

    @field_validator("code_pepper")
    @classmethod
    def _real_pepper(cls, pepper: str, info: ValidationInfo) -> str:
        path = info.data.get("code_pepper_file", "")
        if path and not pepper:
            try:
                pepper = Path(path).read_text().rstrip("\n")
            except OSError as error:
                raise ValueError(f"CODE_PEPPER_FILE {path!r} cannot be read: {error}") from None
        if info.data.get("development_mode"):
            return pepper or DEVELOPMENT_PEPPER
        if not pepper:
            raise ValueError("required (or CODE_PEPPER_FILE) unless DEVELOPMENT_MODE is set")
        if len(pepper.encode()) < DEPLOYMENT_PEPPER_BYTES or pepper == DEVELOPMENT_PEPPER:
            raise ValueError(f"must be a secret of at least {DEPLOYMENT_PEPPER_BYTES} random bytes")
        return pepper


def build(**overrides: object) -> ServiceRuntime:
    settings = load_settings(LockerSettings, **overrides)
    runtime = ServiceRuntime(
        settings,
        migrations=MIGRATIONS,
        grpc_services=[(grpc_api.SERVICE, grpc_api.ACCESS)],
    )
    # Carriers are authorised from the registry's changelog, kept locally (servicekit.partners).
    carriers = CarrierDirectory(PartnerDirectory.follow(runtime), runtime.unit_of_work)
    handlers = LockerHandlers(
        runtime.unit_of_work,
        runtime.names,
        carriers,
        code_pepper=settings.code_pepper.encode(),
        code_ttl=timedelta(seconds=settings.drop_off_code_ttl_s),
        open_codes_per_resident=settings.open_codes_per_resident,
        open_codes_per_resident_at_one_hub=settings.open_codes_per_resident_at_one_hub,
    )
    shipped_hubs = load_shipped_hubs()

    async def seed_hubs() -> None:
        await handlers.seed_hubs(shipped_hubs)

    runtime.on_startup(seed_hubs)
    api = LockerHubsApi(handlers)
    runtime.add_grpc(
        lambda server: lockers_pb2_grpc.add_LockerHubsServiceServicer_to_server(api, server)
    )
    return runtime
