"""Restatement arithmetic, with figures computed by hand in the comments."""

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from emissions_ledger.domain import (
    EntryKind,
    FactorCatalogue,
    FuelType,
    LedgerEntry,
    Posting,
    Sector,
    Subsector,
    VehicleActivity,
    changes_per_sector,
    current_factor,
    entry_for_activity,
    restated_pair,
    restatement_entries,
    summarise,
)

AALBORG = "aalborg-kommune"


def electricity(factor_id: str, value: str, version: str, year: int) -> dict[str, Any]:
    return {
        "id": factor_id,
        "carrier": "electricity",
        "approach": "ipcc",
        "value": value,
        "unit": "kg CO2/kWh",
        "activity_unit": "kWh",
        "source": "test",
        "version": version,
        "valid_from_year": year,
        "valid_to_year": year,
    }


DIESEL_2021 = {
    "id": "diesel-2021",
    "carrier": "diesel",
    "approach": "ipcc",
    "value": "2.66",
    "unit": "kg CO2/l",
    "activity_unit": "l",
    "source": "test",
    "version": "2021",
    "valid_from_year": 2021,
    "valid_to_year": 2021,
}


def catalogue(version: str, *electricity_factors: dict[str, Any]) -> FactorCatalogue:
    return FactorCatalogue.from_mapping(
        {
            "version": version,
            "approaches": {"ipcc": "IPCC, tank-to-wheel, CO2"},
            "factors": [DIESEL_2021, *electricity_factors],
        }
    )


# v1: 2023 published only, so 2024 is provisional. v2: 2024 published. v3: 2024 corrected.
V1 = catalogue("v1", electricity("el-2023", "0.096", "2023", 2023))
V2 = catalogue(
    "v2",
    electricity("el-2023", "0.096", "2023", 2023),
    electricity("el-2024", "0.080", "2024 (preliminary)", 2024),
)
V3 = catalogue(
    "v3",
    electricity("el-2023", "0.096", "2023", 2023),
    electricity("el-2024", "0.085", "2024", 2024),
)


def vehicle_entry(
    event_id: str, fuel: FuelType, fuel_ml: int = 0, energy_wh: int = 0
) -> LedgerEntry:
    return entry_for_activity(
        VehicleActivity(
            event_id,
            f"van-{event_id}",
            AALBORG,
            fuel,
            Subsector.MUNICIPAL_FLEET,
            datetime(2024, 6, 3, 10, 0, tzinfo=UTC),
            10_000,
            fuel_ml,
            energy_wh,
        ),
        V1,
        "fleet.activity.v1",
    )


def current(entries: list[LedgerEntry]) -> list[LedgerEntry]:
    """Entries not reversed and not reversals: what a restatement looks at."""
    reversed_ids = {e.restates_entry_id for e in entries if e.posting is Posting.REVERSAL}
    return [
        e for e in entries if e.posting is not Posting.REVERSAL and e.entry_id not in reversed_ids
    ]


def test_a_published_factor_restates_provisional_entries_by_hand_computed_difference() -> None:
    # 100 kWh at the provisional 0.096 = 9.6 kg; 10 l diesel at the provisional 2.66 = 26.6 kg.
    ev = vehicle_entry("ev", FuelType.ELECTRIC, energy_wh=100_000)
    van = vehicle_entry("van", FuelType.DIESEL, fuel_ml=10_000)
    assert (ev.kg_co2e, ev.factor.provisional) == (Decimal("9.6"), True)
    assert (van.kg_co2e, van.factor.provisional) == (Decimal("26.6"), True)

    posted = restatement_entries([ev, van], V2, "r1")

    # Only electricity 2024 is published now; diesel 2024 is as provisional as before.
    reversal, restated = posted
    assert reversal.posting is Posting.REVERSAL and restated.posting is Posting.RESTATEMENT
    assert (reversal.activity_amount, reversal.kg_co2e) == (Decimal("-100.000"), Decimal("-9.6"))
    # 100 kWh x 0.080 = 8.0 kg.
    assert restated.kg_co2e == Decimal("8.0")
    assert restated.activity_amount == Decimal("100.000")
    assert (restated.factor.factor_id, restated.factor.provisional) == ("el-2024", False)
    for entry in posted:
        assert (entry.revision, entry.restates_entry_id, entry.restatement_id) == (
            1,
            ev.entry_id,
            "r1",
        )
        assert entry.source_event_id == "ev"
    assert len({ev.entry_id, reversal.entry_id, restated.entry_id}) == 3

    # The change per sector: 9.6 -> 8.0, -1.6 kg.
    (change,) = changes_per_sector(posted)
    assert (change.sector, change.subsector, change.kind) == (
        Sector.TRANSPORT,
        Subsector.MUNICIPAL_FLEET,
        EntryKind.EMISSION,
    )
    assert (change.kg_before, change.kg_after, change.kg_difference) == (
        Decimal("9.6"),
        Decimal("8.0"),
        Decimal("-1.6"),
    )
    assert change.restated_entries == 1

    # The year's total moves by exactly that: 36.2 -> 34.6 kg, still two entries behind it.
    ledger = [ev, van, *posted]
    inventory = summarise(AALBORG, 2024, ledger)
    assert inventory.emissions_kg_co2e == Decimal("34.6")
    assert inventory.entry_count == 2
    (line,) = [line for line in inventory.lines if line.activity_unit == "kWh"]
    assert (line.activity_amount, line.kg_co2e, line.entry_count) == (
        Decimal("100.000"),
        Decimal("8.0"),
        1,
    )


def test_restatement_is_idempotent_and_a_correction_restates_the_restatement() -> None:
    ev = vehicle_entry("ev", FuelType.ELECTRIC, energy_wh=100_000)
    ledger = [ev, *restatement_entries([ev], V2, "r1")]

    # The same catalogue again: everything is priced as it says, nothing to post.
    assert restatement_entries(current(ledger), V2, "r2") == []
    # Computed twice, the same pair: the ledger's unique entry ids hold it once.
    assert restatement_entries([ev], V2, "r1") == ledger[1:]

    # 2024 corrected from 0.080 to 0.085: 8.0 -> 8.5 kg, revision 2 replaces revision 1.
    corrected = restatement_entries(current(ledger), V3, "r3")
    reversal, restated = corrected
    assert (reversal.kg_co2e, restated.kg_co2e) == (Decimal("-8.0"), Decimal("8.5"))
    assert reversal.restates_entry_id == ledger[2].entry_id
    assert (reversal.revision, restated.revision) == (2, 2)
    assert restated.factor.version == "2024"
    (change,) = changes_per_sector(corrected)
    assert change.kg_difference == Decimal("0.5")

    ledger += corrected
    assert summarise(AALBORG, 2024, ledger).emissions_kg_co2e == Decimal("8.5")
    assert restatement_entries(current(ledger), V3, "r4") == []


def test_entries_of_the_legacy_approach_name_are_restated_in_its_series() -> None:
    ev = vehicle_entry("ev", FuelType.ELECTRIC, energy_wh=1_000)
    legacy = replace(ev, factor=replace(ev.factor, approach="IPCC, tank-to-wheel, CO2"))

    factor = current_factor(legacy, V2)

    assert factor is not None and factor.factor_id == "el-2024"


def test_a_reversal_is_never_restated() -> None:
    ev = vehicle_entry("ev", FuelType.ELECTRIC, energy_wh=1_000)
    reversal, _ = restated_pair(ev, V2.for_carrier(ev.energy_carrier, 2024), "r1")

    with pytest.raises(ValueError, match="reversal"):
        restated_pair(reversal, V3.for_carrier(ev.energy_carrier, 2024), "r2")
