"""The ledger's data files: emission factors with their sources, the avoided-trip policy, energy
contents and the conversions of reported activity's units."""

from __future__ import annotations

from emissions_ledger.domain import ActivityUnits, AvoidedTripPolicy, FactorCatalogue
from emissions_ledger.domain.covenant import EnergyContents
from servicekit.data_files import load_packaged_yaml


def load_factor_catalogue() -> FactorCatalogue:
    return FactorCatalogue.from_mapping(
        load_packaged_yaml("emissions_ledger", "emission_factors.yaml")
    )


def load_avoided_trip_policy() -> AvoidedTripPolicy:
    return AvoidedTripPolicy.from_mapping(
        load_packaged_yaml("emissions_ledger", "avoided_trips.yaml")
    )


def load_energy_contents() -> EnergyContents:
    return EnergyContents.from_mapping(
        load_packaged_yaml("emissions_ledger", "energy_content.yaml")
    )


def load_activity_units() -> ActivityUnits:
    return ActivityUnits.from_mapping(load_packaged_yaml("emissions_ledger", "activity_units.yaml"))
