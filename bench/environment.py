"""A fresh platform per scenario: its own topic namespace, its own databases (SQLite files, or
databases on the local PostgreSQL server as in a deployment), services on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from tests.kafka_tools import unique_namespace
from tools.platform import Platform, free_ports, services_on_ports

POSTGRES_SCRIPT = Path(__file__).resolve().parents[1] / "deploy/local/postgres.sh"


def _postgres_script(command: str) -> str:
    return subprocess.run(
        ["bash", str(POSTGRES_SCRIPT), command], check=True, capture_output=True, text=True
    ).stdout


@contextlib.asynccontextmanager
async def postgres_databases(names: list[str]) -> AsyncIterator[dict[str, str]]:
    """A fresh PostgreSQL database per service on the local server, dropped afterwards."""
    await asyncio.to_thread(_postgres_script, "up")
    server = make_url((await asyncio.to_thread(_postgres_script, "url")).strip())
    admin = await asyncpg.connect(server.set(drivername="postgresql").render_as_string(False))
    databases = {name: f"bench_{uuid.uuid4().hex[:12]}" for name in names}
    try:
        for database in databases.values():
            await admin.execute(f'CREATE DATABASE "{database}"')
        yield {
            name: server.set(database=database).render_as_string(hide_password=False)
            for name, database in databases.items()
        }
    finally:
        for database in databases.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def fresh_platform(
    servers: str, database: str, keep: Path | None = None
) -> AsyncIterator[Platform]:
    """A platform whose services are not started yet; every process is stopped on the way
    out. Topics are created up front so that a backlog can be preloaded before any service
    runs. With `keep`, the services' logs and SQLite files are copied there at the end."""
    ports = free_ports(8)
    services = services_on_ports(ports[:4], ports[4:])
    async with contextlib.AsyncExitStack() as stack:
        database_urls: dict[str, str] = {}
        if database == "postgresql":
            database_urls = await stack.enter_async_context(
                postgres_databases([service.name for service in services])
            )
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        platform = Platform(unique_namespace("bench"), data_dir, services, database_urls)
        platform.bootstrap = servers
        platform.provision()
        try:
            yield platform
        finally:
            platform.stop()
            if keep is not None:
                shutil.copytree(data_dir, keep / platform.namespace)
