"""The municipalities an inventory can be kept for, and their Covenant of Mayors commitments,
as the partner registry states them."""

from __future__ import annotations

from dataclasses import dataclass, field

from emissions_ledger.domain.factors import InventoryMethod


@dataclass(frozen=True, slots=True)
class EmissionTarget:
    target_year: int
    # Cut against the baseline year, in percent (70 = -70 %); 0 when only neutrality is stated.
    reduction_percent: int
    climate_neutral: bool
    source: str


@dataclass(frozen=True, slots=True)
class CovenantCommitment:
    signatory_year: int
    # None when the registry does not state it.
    baseline_year: int | None
    targets: tuple[EmissionTarget, ...]
    # The factor approach and reporting unit, the same for the BEI and every MEI.
    method: InventoryMethod = field(default_factory=InventoryMethod)


@dataclass(frozen=True, slots=True)
class Municipality:
    municipality_id: str
    name: str
    # None for a municipality that has not signed the Covenant (as far as the registry says).
    commitment: CovenantCommitment | None

    @property
    def method(self) -> InventoryMethod:
        """How its inventories are priced: its commitment's method, IPCC in t CO2 without one."""
        return InventoryMethod() if self.commitment is None else self.commitment.method
