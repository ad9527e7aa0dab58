"""The registry seed shipped with the service (data/partners.yaml)."""

from __future__ import annotations

from importlib.resources import files

import yaml

from partner_registry.domain import Initiative, Partner, registry_from_mapping

SEED_FILE = "partners.yaml"


def load_seed() -> tuple[list[Initiative], list[Partner]]:
    """The seeded initiatives and partners, validated; raises InvalidRegistryData when wrong."""
    text = (files("partner_registry") / "data" / SEED_FILE).read_text(encoding="utf-8")
    return registry_from_mapping(yaml.safe_load(text))
