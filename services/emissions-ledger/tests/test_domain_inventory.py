from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emissions_ledger.domain.entries import (
    AvoidedTripPolicy,
    Basis,
    EntryKind,
    FuelType,
    LedgerEntry,
    Posting,
    Sector,
    Subsector,
    VehicleActivity,
    VehicleProfile,
    WasteCollection,
    entries_for_collection,
    entry_for_activity,
)
from emissions_ledger.domain.factors import EnergyCarrier, FactorCatalogue
from emissions_ledger.domain.inventory import (
    DuplicateEntry,
    InventoryLine,
    LineIncrement,
    add_lines,
    add_to_line,
    increments_per_line,
    inventory_from_lines,
    line_of,
    summarise,
)

AALBORG = "aalborg-kommune"
CATALOGUE = FactorCatalogue.from_mapping(
    {
        "version": "test",
        "approaches": {"ipcc": "IPCC, tank-to-wheel, CO2"},
        "factors": [
            {
                "id": "diesel",
                "carrier": "diesel",
                "value": "2.66",
                "unit": "kg CO2/l",
                "activity_unit": "l",
                "source": "test",
                "version": "test",
                "approach": "ipcc",
                "valid_from_year": 1990,
                "valid_to_year": 2100,
            },
            {
                "id": "electricity",
                "carrier": "electricity",
                "value": "0.096",
                "unit": "kg CO2/kWh",
                "activity_unit": "kWh",
                "source": "test",
                "version": "test",
                "approach": "ipcc",
                "valid_from_year": 1990,
                "valid_to_year": 2100,
            },
        ],
    }
)
DIESEL_VAN = VehicleProfile("diesel van", FuelType.DIESEL, Decimal("8"))
POLICY = AvoidedTripPolicy(14000, DIESEL_VAN, DIESEL_VAN)


def vehicle_entry(event_id: str, **overrides: Any) -> LedgerEntry:
    values: dict[str, Any] = {
        "event_id": event_id,
        "vehicle_id": "ak-van-017",
        "municipality_id": AALBORG,
        "fuel_type": FuelType.DIESEL,
        "subsector": Subsector.MUNICIPAL_FLEET,
        "period_end": datetime(2024, 6, 1, 16, 0, tzinfo=UTC),
        "distance_m": 40000,
        "fuel_used_ml": 1000,
        "energy_used_wh": 0,
    }
    values.update(overrides)
    return entry_for_activity(VehicleActivity(**values), CATALOGUE, "fleet.activity.v1")


def collection_entries(event_id: str, carrier_extra_distance_m: int) -> list[LedgerEntry]:
    collection = WasteCollection(
        event_id=event_id,
        hub_id="molo-hub-07",
        municipality_id=AALBORG,
        carrier_partner_id="nordvaerk",
        collected_at=datetime(2024, 9, 12, 8, 15, tzinfo=UTC),
        carrier_extra_distance_m=carrier_extra_distance_m,
        mass_g=1000,
        includes_hazardous=False,
    )
    return entries_for_collection(collection, POLICY, CATALOGUE, "lockers.events.v1")


def mixed_entries() -> list[LedgerEntry]:
    return [
        *collection_entries("c-1", carrier_extra_distance_m=3000),
        vehicle_entry("v-1", fuel_used_ml=1000),
        vehicle_entry(
            "v-2",
            fuel_type=FuelType.ELECTRIC,
            fuel_used_ml=0,
            energy_used_wh=10000,
        ),
        vehicle_entry("v-3", fuel_used_ml=2500),
        vehicle_entry("v-4", subsector=Subsector.PRIVATE_COMMERCIAL_TRANSPORT, fuel_used_ml=100),
        *collection_entries("c-2", carrier_extra_distance_m=20000),
        # Outside the inventory: another municipality, another year.
        vehicle_entry("v-other-town", municipality_id="hjoerring-kommune"),
        vehicle_entry("v-last-year", period_end=datetime(2023, 6, 1, tzinfo=UTC)),
    ]


def test_summarise_groups_per_line_in_template_order() -> None:
    inventory = summarise(AALBORG, 2024, mixed_entries())

    transport = Sector.TRANSPORT
    assert inventory.lines == (
        InventoryLine(
            transport,
            Subsector.MUNICIPAL_FLEET,
            EnergyCarrier.ELECTRICITY,
            EntryKind.EMISSION,
            "kWh",
            activity_amount=Decimal("10"),
            kg_co2e=Decimal("0.96"),
            entry_count=1,
            distance_km=Decimal("40"),
        ),
        InventoryLine(
            transport,
            Subsector.MUNICIPAL_FLEET,
            EnergyCarrier.DIESEL,
            EntryKind.EMISSION,
            "l",
            activity_amount=Decimal("3.5"),
            kg_co2e=Decimal("9.31"),
            entry_count=2,
            distance_km=Decimal("80"),  # two vans, 40 km each
        ),
        # The commercial van's metered 0.1 l, apart from the carriers' modelled detours
        # (3 km and 20 km at 8 l/100 km: 0.24 l + 1.6 l, x 2.66 kg/l).
        InventoryLine(
            transport,
            Subsector.PRIVATE_COMMERCIAL_TRANSPORT,
            EnergyCarrier.DIESEL,
            EntryKind.EMISSION,
            "l",
            activity_amount=Decimal("0.1"),
            kg_co2e=Decimal("0.266"),
            entry_count=1,
            distance_km=Decimal("40"),
        ),
        InventoryLine(
            transport,
            Subsector.PRIVATE_COMMERCIAL_TRANSPORT,
            EnergyCarrier.DIESEL,
            EntryKind.EMISSION,
            "l",
            activity_amount=Decimal("1.84"),
            kg_co2e=Decimal("4.8944"),
            entry_count=2,
            basis=Basis.MODELLED,
            distance_km=Decimal("23"),  # the detours: 3 km + 20 km
        ),
        # Two dedicated 14 km trips not driven: 2 x 1.12 l x 2.66 kg/l.
        InventoryLine(
            transport,
            Subsector.PRIVATE_COMMERCIAL_TRANSPORT,
            EnergyCarrier.DIESEL,
            EntryKind.AVOIDED_EMISSION,
            "l",
            activity_amount=Decimal("2.24"),
            kg_co2e=Decimal("5.9584"),
            entry_count=2,
            basis=Basis.MODELLED,
            distance_km=Decimal("28"),  # two trips of 14 km not driven
        ),
    )


def test_summarise_totals_emissions_and_avoided_separately() -> None:
    inventory = summarise(AALBORG, 2024, mixed_entries())

    assert inventory.municipality_id == AALBORG
    assert inventory.year == 2024
    # 0.96 + 9.31 + 0.266 + 4.8944 emitted; 5.9584 avoided.
    assert inventory.emissions_kg_co2e == Decimal("15.4304")
    assert inventory.avoided_kg_co2e == Decimal("5.9584")
    assert inventory.entry_count == 8


def test_summarise_does_not_depend_on_entry_order() -> None:
    entries = mixed_entries()

    assert summarise(AALBORG, 2024, entries) == summarise(AALBORG, 2024, reversed(entries))


def test_summarise_without_matching_entries_is_empty() -> None:
    inventory = summarise("skive-kommune", 2024, mixed_entries())

    assert inventory.lines == ()
    assert inventory.emissions_kg_co2e == 0
    assert inventory.avoided_kg_co2e == 0
    assert inventory.entry_count == 0


def test_summarise_refuses_to_count_an_entry_twice() -> None:
    entry = vehicle_entry("v-1")

    with pytest.raises(DuplicateEntry, match=entry.entry_id):
        summarise(AALBORG, 2024, [entry, entry])


def test_running_line_totals_give_the_same_inventory_as_summing_all_entries() -> None:
    entries = [e for e in mixed_entries() if e.municipality_id == AALBORG and e.year == 2024]
    lines: dict[tuple[object, ...], InventoryLine] = {}
    for entry in entries:
        key = (
            entry.sector,
            entry.subsector,
            entry.energy_carrier,
            entry.kind,
            entry.basis,
            entry.activity_unit,
        )
        lines[key] = add_to_line(lines.get(key), entry)
    running = inventory_from_lines(AALBORG, 2024, lines.values())
    assert running == summarise(AALBORG, 2024, entries)
    assert running.entry_count == 8


def test_an_entry_cannot_be_added_to_another_line() -> None:
    diesel, electric = (
        vehicle_entry("a1"),
        vehicle_entry("a2", fuel_type=FuelType.ELECTRIC, energy_used_wh=1000, fuel_used_ml=0),
    )
    with pytest.raises(ValueError, match="does not belong"):
        add_to_line(add_to_line(None, diesel), electric)


def test_a_batch_is_summed_once_per_line_of_each_municipality_and_year() -> None:
    increments = increments_per_line(mixed_entries())

    # Municipality, then year, then the template's order: every writer locks lines alike.
    assert [(i.municipality_id, i.year) for i in increments] == [
        (AALBORG, 2023),
        *[(AALBORG, 2024)] * 5,
        ("hjoerring-kommune", 2024),
    ]
    aalborg_2024 = [i.line for i in increments if (i.municipality_id, i.year) == (AALBORG, 2024)]
    assert tuple(aalborg_2024) == summarise(AALBORG, 2024, mixed_entries()).lines
    assert increments[0] == LineIncrement(AALBORG, 2023, line_of(mixed_entries()[-1]))
    assert sum(i.line.entry_count for i in increments) == len(mixed_entries())


def test_a_batchs_increment_is_the_line_added_entry_by_entry_to_the_last_digit() -> None:
    # Reversals take an entry away; entries without a distance are counted apart.
    entries = [
        *mixed_entries(),
        replace(vehicle_entry("r-1"), entry_id="r-1-reversal", posting=Posting.REVERSAL),
        replace(vehicle_entry("n-1"), entry_id="n-1-no-distance", distance_m=None),
    ]
    folded: dict[tuple[object, ...], InventoryLine] = {}
    for entry in entries:
        key = (entry.municipality_id, entry.year, entry.sector, entry.subsector)
        key += (entry.energy_carrier, entry.kind, entry.basis, entry.activity_unit)
        folded[key] = add_to_line(folded.get(key), entry)

    increments = increments_per_line(entries)

    assert len(increments) == len(folded)
    for increment in increments:
        line = increment.line
        key = (increment.municipality_id, increment.year, line.sector, line.subsector)
        key += (line.energy_carrier, line.kind, line.basis, line.activity_unit)
        expected = folded[key]
        assert line == expected
        for amount in ("activity_amount", "kg_co2e", "distance_km"):
            assert str(getattr(line, amount)) == str(getattr(expected, amount))


def test_an_empty_batch_adds_nothing() -> None:
    assert increments_per_line([]) == []


def test_a_batch_refuses_to_count_an_entry_twice() -> None:
    entry = vehicle_entry("v-1")

    with pytest.raises(DuplicateEntry, match=entry.entry_id):
        increments_per_line([entry, vehicle_entry("v-2"), entry])


@given(
    order=st.permutations(range(len(mixed_entries()))),
    cuts=st.sets(st.integers(min_value=1, max_value=len(mixed_entries()) - 1)),
)
def test_batch_increments_add_up_to_the_whole_however_the_stream_is_split(
    order: list[int], cuts: set[int]
) -> None:
    entries = [mixed_entries()[i] for i in order]
    bounds = [0, *sorted(cuts), len(entries)]
    running: dict[tuple[object, ...], InventoryLine] = {}
    for start, end in pairwise(bounds):
        for increment in increments_per_line(entries[start:end]):
            line = increment.line
            key = (increment.municipality_id, increment.year, line.sector, line.subsector)
            key += (line.energy_carrier, line.kind, line.basis, line.activity_unit)
            running[key] = add_lines(running.get(key), line)

    for municipality_id, year in [(AALBORG, 2024), (AALBORG, 2023), ("hjoerring-kommune", 2024)]:
        lines = [line for key, line in running.items() if key[:2] == (municipality_id, year)]
        assert inventory_from_lines(municipality_id, year, lines) == summarise(
            municipality_id, year, entries
        )


def test_totals_of_different_lines_cannot_be_added() -> None:
    diesel = line_of(vehicle_entry("a1"))
    electric = line_of(
        vehicle_entry("a2", fuel_type=FuelType.ELECTRIC, energy_used_wh=1000, fuel_used_ml=0)
    )
    with pytest.raises(ValueError, match="cannot be added"):
        add_lines(diesel, electric)
