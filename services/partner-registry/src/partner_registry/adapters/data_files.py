"""The registry seed shipped with the service (data/partners.yaml)."""

from __future__ import annotations

from partner_registry.domain import Initiative, Partner, registry_from_mapping
from servicekit.data_files import load_packaged_yaml


def load_seed() -> tuple[list[Initiative], list[Partner]]:
    """The seeded initiatives and partners, validated; raises InvalidRegistryData when wrong."""
    return registry_from_mapping(load_packaged_yaml("partner_registry", "partners.yaml"))
