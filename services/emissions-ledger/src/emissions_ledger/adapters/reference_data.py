"""The ledger's data files: emission factors with their sources, and the avoided-trip policy."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import yaml

from emissions_ledger.domain import AvoidedTripPolicy, FactorCatalogue


def _load(name: str) -> Any:
    return yaml.safe_load((files("emissions_ledger") / "data" / name).read_text(encoding="utf-8"))


def load_factor_catalogue() -> FactorCatalogue:
    return FactorCatalogue.from_mapping(_load("emission_factors.yaml"))


def load_avoided_trip_policy() -> AvoidedTripPolicy:
    return AvoidedTripPolicy.from_mapping(_load("avoided_trips.yaml"))
