from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kafka_tools import start_broker, stop_broker


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """One broker per test run: reused when one is running, otherwise started and then stopped."""
    servers, started = start_broker()
    yield servers
    if started:
        stop_broker()
