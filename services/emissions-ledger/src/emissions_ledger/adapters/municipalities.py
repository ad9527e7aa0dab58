"""Municipalities from the ledger's read model of the partner registry's changelog
(registry.partners.v1): an inventory is kept only for a municipality the registry knows."""

from __future__ import annotations

from emissions_ledger.domain.factors import FactorApproach, Gas, InventoryMethod
from emissions_ledger.domain.municipalities import (
    CovenantCommitment,
    EmissionTarget,
    Municipality,
)
from greenpartners.registry.v1 import registry_pb2
from servicekit.errors import NotFound
from servicekit.partners import PartnerDirectory
from servicekit.runtime import UnitOfWork


def municipality_from_partner(partner: registry_pb2.Partner) -> Municipality | None:
    """The municipality a partner record describes; None for any other kind of partner."""
    if partner.kind != registry_pb2.ORGANISATION_KIND_MUNICIPALITY:
        return None
    commitment = None
    if partner.HasField("covenant_commitment"):
        wire = partner.covenant_commitment
        commitment = CovenantCommitment(
            signatory_year=wire.signatory_year,
            baseline_year=wire.baseline_year or None,
            targets=tuple(
                EmissionTarget(
                    target_year=target.target_year,
                    reduction_percent=target.reduction_percent,
                    climate_neutral=target.climate_neutral,
                    source=target.source,
                )
                for target in wire.targets
            ),
            method=method_of(wire),
        )
    return Municipality(partner.partner_id, partner.name, commitment)


def method_of(commitment: registry_pb2.CovenantCommitment) -> InventoryMethod:
    """The approach and unit a commitment states: IPCC in t CO2 when it names neither. LCA
    factors count CO2 equivalents only, so LCA is always in t CO2e (the registry refuses LCA
    in t CO2)."""
    if commitment.emission_factor_approach == registry_pb2.EMISSION_FACTOR_APPROACH_LCA:
        return InventoryMethod(FactorApproach.LCA, Gas.CO2E)
    if commitment.emission_reporting_unit == registry_pb2.EMISSION_REPORTING_UNIT_T_CO2E:
        return InventoryMethod(FactorApproach.IPCC, Gas.CO2E)
    return InventoryMethod()


class MunicipalityDirectory:
    """The municipalities as the ledger last read them from the changelog."""

    def __init__(self, partners: PartnerDirectory, unit_of_work: UnitOfWork) -> None:
        self.partners = partners
        self.unit_of_work = unit_of_work

    async def municipality(self, municipality_id: str) -> Municipality | None:
        async with self.unit_of_work.read() as session:
            partner = await self.partners.partner(session, municipality_id)
        return None if partner is None else municipality_from_partner(partner)

    def caught_up(self) -> bool:
        """Whether the read model holds the changelog as it was when the service started."""
        return self.partners.model.caught_up.is_set()

    async def require(self, municipality_id: str) -> Municipality:
        """The municipality; NOT_FOUND when the registry has none by that id, rather than an
        inventory that is empty because the id is wrong."""
        municipality = await self.municipality(municipality_id)
        if municipality is None:
            raise NotFound(f"the partner registry has no municipality {municipality_id!r}")
        return municipality
