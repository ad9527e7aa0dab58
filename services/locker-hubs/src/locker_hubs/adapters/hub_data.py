"""The hubs shipped with the service (data/hubs.yaml), seeded at first start."""

from __future__ import annotations

from importlib.resources import files

import yaml

from locker_hubs.domain import Hub, hubs_from_mapping


def load_shipped_hubs() -> list[Hub]:
    text = (files("locker_hubs") / "data" / "hubs.yaml").read_text(encoding="utf-8")
    return hubs_from_mapping(yaml.safe_load(text))
