"""Covenant commitments from the ledger's own data file (covenant_commitments.yaml), until the
ledger reads them from the partner registry's changelog: the same one-method shape as the
registry's read model, so either can be handed to the handlers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emissions_ledger.domain.municipalities import (
    CovenantCommitment,
    EmissionTarget,
    Municipality,
)
from servicekit.data_files import load_packaged_yaml


class CommitmentsFile:
    def __init__(self, municipalities: Mapping[str, Municipality]) -> None:
        self._municipalities = dict(municipalities)

    async def municipality(self, municipality_id: str) -> Municipality | None:
        return self._municipalities.get(municipality_id)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CommitmentsFile:
        municipalities: dict[str, Municipality] = {}
        for raw in data["municipalities"]:
            wire = raw.get("commitment")
            commitment = (
                None
                if wire is None
                else CovenantCommitment(
                    signatory_year=int(wire["signatory_year"]),
                    baseline_year=None
                    if wire.get("baseline_year") is None
                    else int(wire["baseline_year"]),
                    targets=tuple(
                        EmissionTarget(
                            target_year=int(target["target_year"]),
                            reduction_percent=int(target["reduction_percent"]),
                            climate_neutral=bool(target["climate_neutral"]),
                            source=str(target["source"]),
                        )
                        for target in wire.get("targets") or ()
                    ),
                )
            )
            municipality_id = str(raw["municipality_id"])
            municipalities[municipality_id] = Municipality(
                municipality_id, str(raw["name"]), commitment
            )
        return cls(municipalities)


def load_commitments_file() -> CommitmentsFile:
    return CommitmentsFile.from_mapping(
        load_packaged_yaml("emissions_ledger", "covenant_commitments.yaml")
    )
