from __future__ import annotations

import pytest

from tests.kafka_tools import bootstrap_servers


@pytest.fixture(scope="session")
def kafka() -> str:
    return bootstrap_servers()
