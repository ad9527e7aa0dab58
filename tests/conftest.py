from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.engine import make_url

from tests.kafka_tools import (
    NAMESPACES_USED,
    ROOT,
    delete_namespaced_topics,
    start_broker,
    stop_broker,
)
from tools.pki import Pki
from tools.pki import init as init_pki

POSTGRES_SCRIPT = ROOT / "deploy/local/postgres.sh"


@pytest.fixture(scope="session", autouse=True)
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    """Development credentials for the run. Services built in the test process read them
    from the environment; all of them show locker-hubs' certificate, the one service that
    calls another. Tests call as a role with `pki.channel(target, role, partner)`."""
    credentials = init_pki(tmp_path_factory.mktemp("pki"))
    environment = credentials.service_environment("locker-hubs")
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    yield credentials
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """One broker per test run: reused when one is running, otherwise started and then stopped."""
    servers, started = start_broker()
    yield servers
    if started:
        stop_broker()
    elif NAMESPACES_USED:
        asyncio.run(delete_namespaced_topics(servers, NAMESPACES_USED))


def _postgres_script(command: str) -> str:
    done = subprocess.run(["bash", str(POSTGRES_SCRIPT), command], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{POSTGRES_SCRIPT.name} {command} failed:\n{done.stderr}", pytrace=False)
    return done.stdout.strip()


def _local_postgres_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The PostgreSQL server for this run: TEST_DATABASE_URL, or the local one.

    The local one is started when it is not running, and then stopped again.
    """
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    already_running = _local_postgres_answers()
    _postgres_script("up")
    yield _postgres_script("url")
    if not already_running:
        _postgres_script("down")


class PostgresDatabases:
    """Creates fresh databases on the test server; the fixture drops them afterwards."""

    def __init__(self, server_url: str, admin: asyncpg.Connection) -> None:
        self.server = make_url(server_url)
        self.admin = admin
        self.names: list[str] = []

    async def create(self) -> str:
        name = f"test_{uuid.uuid4().hex[:16]}"
        await self.admin.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return self.server.set(database=name).render_as_string(hide_password=False)


@pytest.fixture
async def postgres_databases(postgres_url: str) -> AsyncIterator[PostgresDatabases]:
    admin_dsn = make_url(postgres_url).set(drivername="postgresql")
    admin = await asyncpg.connect(admin_dsn.render_as_string(hide_password=False))
    databases = PostgresDatabases(postgres_url, admin)
    try:
        yield databases
        # FORCE: a test that fails may leave its service's connections open.
        for name in databases.names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def postgres_database(postgres_databases: PostgresDatabases) -> str:
    """A fresh database of its own for one test, dropped afterwards; its URL."""
    return await postgres_databases.create()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A service's database: a test asking for it runs on a SQLite file and on a PostgreSQL
    database of its own, what deployments use."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/service.db"
    return str(request.getfixturevalue("postgres_database"))
