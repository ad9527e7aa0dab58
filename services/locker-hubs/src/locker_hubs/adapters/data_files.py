"""The hubs shipped with the service (data/hubs.yaml), seeded at first start."""

from __future__ import annotations

from locker_hubs.domain import Hub, hubs_from_mapping
from servicekit.data_files import load_packaged_yaml


def load_shipped_hubs() -> list[Hub]:
    return hubs_from_mapping(load_packaged_yaml("locker_hubs", "hubs.yaml"))
