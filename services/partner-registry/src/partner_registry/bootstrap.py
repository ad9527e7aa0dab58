"""Composition root of partner-registry."""

from __future__ import annotations

from pydantic import Field

from greenpartners.registry.v1 import registry_pb2_grpc
from partner_registry.adapters.data_files import load_seed
from partner_registry.adapters.tables import MIGRATIONS
from partner_registry.entrypoints import grpc_api
from partner_registry.entrypoints.grpc_api import PartnerRegistryApi
from partner_registry.handlers import RegistryHandlers
from servicekit.runtime import ServiceRuntime
from servicekit.settings import ServiceSettings, load_settings


class RegistrySettings(ServiceSettings):
    service_name: str = "partner-registry"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///var/partner-registry.db"


def build(**overrides: object) -> ServiceRuntime:
    settings = load_settings(RegistrySettings, **overrides)
    runtime = ServiceRuntime(
        settings,
        migrations=MIGRATIONS,
        grpc_services=[(grpc_api.SERVICE, grpc_api.ACCESS)],
    )
    handlers = RegistryHandlers(runtime.unit_of_work, runtime.names)

    async def seed_registry() -> None:
        await handlers.seed(*load_seed())
        # Readers build their read models from the changelog: serve once it holds the seed.
        await handlers.wait_until_published()

    runtime.on_startup(seed_registry)
    api = PartnerRegistryApi(handlers)
    runtime.add_grpc(
        lambda server: registry_pb2_grpc.add_PartnerRegistryServiceServicer_to_server(api, server)
    )
    return runtime
