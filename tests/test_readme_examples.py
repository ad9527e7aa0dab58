"""The README's grpcurl examples, run as written against a running platform: only the ports
differ, so the test can run beside `make run`."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.kafka_tools import unique_namespace
from tools import simulator
from tools.platform import SERVICES, Platform, free_ports, services_on_ports

ROOT = Path(__file__).resolve().parents[1]
# `make grpcurl` (a prerequisite of `make test`) installs it here when PATH has none.
PROJECT_TOOLS = ROOT / ".tools" / "bin"


def readme_examples() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Calling the services") :]
    return section[section.index("```\n") + 4 : section.index("\n```", section.index("```\n") + 4)]


@pytest.fixture
async def platform(kafka: str, tmp_path: Path) -> AsyncIterator[Platform]:
    ports = free_ports(8)
    # The development credentials of var/pki, which `make -s token` signs with.
    running = Platform(
        unique_namespace("readme"), tmp_path, services_on_ports(ports[:4], ports[4:])
    )
    running.bootstrap = kafka
    running.start_services()
    try:
        await running.wait_healthy()
        await simulator.register_fleet(running.fleet.target, running.pki)
        yield running
    finally:
        running.stop()


async def test_the_readme_grpcurl_examples_work_as_written(platform: Platform) -> None:
    grpcurl = shutil.which("grpcurl") or shutil.which("grpcurl", path=str(PROJECT_TOOLS))
    assert grpcurl, "grpcurl is missing: `make grpcurl` installs it into .tools/bin"
    script = readme_examples()
    for documented, running in zip(SERVICES, platform.services, strict=True):
        script = script.replace(f"127.0.0.1:{documented.grpc_port}", running.target)
    commands = [line for line in script.splitlines() if line.startswith("grpcurl")]
    assert len(commands) == 14, "the examples changed: look at what this test checks"
    done = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{Path(grpcurl).parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout
    assert "greenpartners.ledger.v1.EmissionsLedgerService" not in output  # 50051 is the registry
    assert "greenpartners.registry.v1.PartnerRegistryService" in output  # list
    assert '"authorized": true' in output
    assert re.search(r'"deposit_id": "[0-9a-f-]{36}"', output)
    assert '"mass_g": "2500"' in output  # the carrier collected the resident's deposit
    assert '"registration_plate": "AB 12 345"' in output
    assert '"odometer_m": "1200"' in output  # the baseline set
    assert '"status": "SERVING"' in output
