"""Programme views and the factor approach per municipality, figures worked out by hand in the
comments: Green Fleets and MoLo Hubs over the same entries as the Covenant inventory, each
entry in one view at most, and a carrier's detour counted once when its fuel is metered."""

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from emissions_ledger.domain.covenant import EnergyContents, covenant_inventory
from emissions_ledger.domain.entries import (
    AvoidedTripPolicy,
    FuelType,
    LedgerEntry,
    Subsector,
    VehicleActivity,
    VehicleProfile,
    WasteCollection,
    entries_for_collection,
    entry_for_activity,
)
from emissions_ledger.domain.factors import (
    EnergyCarrier,
    FactorApproach,
    FactorCatalogue,
    Gas,
    InventoryMethod,
    NoFactor,
)
from emissions_ledger.domain.inventory import summarise
from emissions_ledger.domain.programmes import (
    DepositTotals,
    FleetOwnership,
    GreenFleetsTally,
    MoloHubsTally,
    detours_within_metered,
    is_fleet_entry,
)
from emissions_ledger.domain.restatement import restated_pair, restatement_entries

AALBORG = "aalborg-kommune"
CARRIER = "homerunner"
YEAR = 2024
LCA = InventoryMethod(FactorApproach.LCA, Gas.CO2E)


def factor(factor_id: str, carrier: str, approach: str, value: str, unit: str) -> dict[str, Any]:
    return {
        "id": factor_id,
        "carrier": carrier,
        "approach": approach,
        "value": value,
        "unit": unit,
        "activity_unit": unit.rpartition("/")[2],
        "source": "made up for this test",
        "version": "test",
        "valid_from_year": 1990,
        "valid_to_year": 2100,
    }


CATALOGUE = FactorCatalogue.from_mapping(
    {
        "version": "test",
        "approaches": {"ipcc": "IPCC", "lca": "LCA"},
        "factors": [
            factor("diesel-ipcc", "diesel", "ipcc", "2.66", "kg CO2/l"),
            factor("diesel-lca", "diesel", "lca", "3.0622", "kg CO2e/l"),
            factor("el-ipcc", "electricity", "ipcc", "0.1", "kg CO2/kWh"),
            factor("bio-ipcc", "biofuel", "ipcc", "0", "kg CO2/l"),
        ],
    }
)
DIESEL_VAN = VehicleProfile("diesel van", FuelType.DIESEL, Decimal("8"))
POLICY = AvoidedTripPolicy(14_000, DIESEL_VAN, DIESEL_VAN)


def activity(event_id: str, owner: str, fuel: FuelType, **amounts: int) -> VehicleActivity:
    values: dict[str, Any] = {"distance_m": 0, "fuel_used_ml": 0, "energy_used_wh": 0}
    values.update(amounts)
    return VehicleActivity(
        event_id=event_id,
        vehicle_id=f"v-{event_id}",
        municipality_id=AALBORG,
        fuel_type=fuel,
        subsector=Subsector.MUNICIPAL_FLEET
        if owner == AALBORG
        else Subsector.PRIVATE_COMMERCIAL_TRANSPORT,
        period_end=datetime(YEAR, 5, 2, 10, 0, tzinfo=UTC),
        owner_partner_id=owner,
        **values,
    )


def priced(activity_: VehicleActivity, method: InventoryMethod | None = None) -> LedgerEntry:
    return entry_for_activity(
        activity_, CATALOGUE, "fleet.activity.v1", method=method or InventoryMethod()
    )


def collection(event_id: str, extra_m: int, mass_g: int) -> list[LedgerEntry]:
    return entries_for_collection(
        WasteCollection(
            event_id=event_id,
            hub_id="hub-aalborg-001",
            municipality_id=AALBORG,
            carrier_partner_id=CARRIER,
            collected_at=datetime(YEAR, 9, 12, 8, 15, tzinfo=UTC),
            carrier_extra_distance_m=extra_m,
            mass_g=mass_g,
            includes_hazardous=True,
        ),
        POLICY,
        CATALOGUE,
        "lockers.events.v1",
    )


def fleet_entries() -> list[LedgerEntry]:
    return [
        # Municipal: a diesel van, 100 km on 8 l (21.28 kg); an EV, 50 km on 10 kWh (1 kg).
        priced(activity("van", AALBORG, FuelType.DIESEL, distance_m=100_000, fuel_used_ml=8_000)),
        priced(
            activity("ev", AALBORG, FuelType.ELECTRIC, distance_m=50_000, energy_used_wh=10_000)
        ),
        # The carrier's own van, metered: 40 km on 4 l (10.64 kg); an HVO truck 60 km on 20 l.
        priced(activity("c-van", CARRIER, FuelType.DIESEL, distance_m=40_000, fuel_used_ml=4_000)),
        priced(activity("c-hvo", CARRIER, FuelType.HVO100, distance_m=60_000, fuel_used_ml=20_000)),
    ]


def test_entries_carry_their_km_and_owner_and_are_priced_in_the_municipality_s_method() -> None:
    van = activity("van", AALBORG, FuelType.DIESEL, distance_m=100_000, fuel_used_ml=8_000)

    ipcc = priced(van)
    lca = priced(van, LCA)

    assert (ipcc.distance_m, ipcc.owner_partner_id) == (100_000, AALBORG)
    # 8 l x 2.66 = 21.28 kg CO2; 8 l x 3.0622 = 24.4976 kg CO2e.
    assert (ipcc.factor.factor_id, ipcc.kg_co2e, ipcc.factor.gas) == (
        "diesel-ipcc",
        Decimal("21.28"),
        Gas.CO2,
    )
    assert (lca.factor.factor_id, lca.kg_co2e, lca.factor.gas) == (
        "diesel-lca",
        Decimal("24.4976"),
        Gas.CO2E,
    )
    # No LCA electricity factor: refused, not priced with the IPCC one.
    ev = activity("ev", AALBORG, FuelType.ELECTRIC, distance_m=50_000, energy_used_wh=10_000)
    with pytest.raises(NoFactor, match="electricity"):
        priced(ev, LCA)
    # A collection's entries are priced in the method too, and carry their modelled km.
    avoided, detour = entries_for_collection(
        WasteCollection(
            event_id="c",
            hub_id="hub-aalborg-001",
            municipality_id=AALBORG,
            carrier_partner_id=CARRIER,
            collected_at=datetime(YEAR, 9, 12, tzinfo=UTC),
            carrier_extra_distance_m=2_000,
            mass_g=1,
            includes_hazardous=False,
        ),
        POLICY,
        CATALOGUE,
        "lockers.events.v1",
        method=LCA,
    )
    assert {avoided.factor.factor_id, detour.factor.factor_id} == {"diesel-lca"}
    assert (avoided.distance_m, detour.distance_m) == (14_000, 2_000)


def test_a_restatement_into_the_municipality_s_new_method_reprices_every_entry() -> None:
    entries = [priced(activity("van", AALBORG, FuelType.DIESEL, distance_m=1, fuel_used_ml=8_000))]

    # Same method: nothing to restate. LCA: a reversal and an LCA replacement.
    assert restatement_entries(entries, CATALOGUE, "r0") == []
    reversal, replacement = restatement_entries(entries, CATALOGUE, "r1", method=LCA)
    assert (reversal.kg_co2e, reversal.distance_m, reversal.factor.factor_id) == (
        Decimal("-21.28"),
        -1,
        "diesel-ipcc",
    )
    assert (replacement.kg_co2e, replacement.factor.factor_id) == (Decimal("24.4976"), "diesel-lca")


def test_green_fleets_km_litres_fossil_free_share_and_co2_per_km_per_fleet() -> None:
    tally = GreenFleetsTally()
    for entry in fleet_entries():
        tally.add(entry)

    view = tally.view()

    municipal, contractor = view.fleets
    assert municipal.ownership is FleetOwnership.MUNICIPAL
    diesel, electricity = (
        next(c for c in municipal.carriers if c.energy_carrier is carrier)
        for carrier in (EnergyCarrier.DIESEL, EnergyCarrier.ELECTRICITY)
    )
    assert (diesel.distance_km, diesel.litres, diesel.kg_co2e) == (
        Decimal("100"),
        Decimal("8"),
        Decimal("21.28"),
    )
    assert (electricity.distance_km, electricity.kwh, electricity.kg_co2e) == (
        Decimal("50"),
        Decimal("10"),
        Decimal("1"),
    )
    # 150 km, 50 of them electric: 33.3 %; (21.28 + 1) kg / 150 km = 148.5 g/km.
    assert (municipal.distance_km, municipal.fossil_free_distance_km) == (
        Decimal("150"),
        Decimal("50"),
    )
    assert municipal.fossil_free_share_percent == Decimal("33.3")
    assert municipal.g_co2e_per_km == Decimal("148.5")
    # Contractor: 40 km diesel + 60 km HVO100 (biofuel, fossil-free, 0 kg): 60 %;
    # 10.64 kg / 100 km = 106.4 g/km.
    assert contractor.ownership is FleetOwnership.CONTRACTOR
    assert contractor.fossil_free_share_percent == Decimal("60")
    assert contractor.g_co2e_per_km == Decimal("106.4")
    # Together: 250 km, 110 fossil-free (44 %); 32.92 kg / 250 km = 131.7 g/km (131.68).
    assert (view.total.distance_km, view.total.kg_co2e) == (Decimal("250"), Decimal("32.92"))
    assert view.total.fossil_free_share_percent == Decimal("44")
    assert view.total.g_co2e_per_km == Decimal("131.7")


def test_a_restated_entry_counts_once_and_an_entry_without_km_counts_its_fuel_only() -> None:
    van, *_ = fleet_entries()
    reversal, replacement = restated_pair(
        van, CATALOGUE.for_carrier(EnergyCarrier.DIESEL, YEAR), "r"
    )
    older = replace(
        priced(activity("old", AALBORG, FuelType.DIESEL, fuel_used_ml=1_000)),
        distance_m=None,
    )
    tally = GreenFleetsTally()
    for entry in (van, reversal, replacement, older):
        tally.add(entry)

    (municipal,) = tally.view().fleets
    (diesel,) = municipal.carriers
    # The van once (100 km, 8 l), the older entry's 1 l without km.
    assert (diesel.distance_km, diesel.litres, diesel.entry_count) == (
        Decimal("100"),
        Decimal("9"),
        2,
    )
    assert diesel.entries_without_distance == 1
    # CO2 per km over the entries that know their km: 21.28 kg / 100 km.
    assert municipal.g_co2e_per_km == Decimal("212.8")


def test_molo_hubs_collections_avoided_trips_detours_and_net() -> None:
    # Two collections: 3 km and 0 km of detour, 2.5 kg and 1.2 kg collected.
    entries = collection("k1", 3_000, 2_500) + collection("k2", 0, 1_200)
    tally = MoloHubsTally(
        DepositTotals(count=5, mass_g=4_000, hazardous_mass_g=700), frozenset({CARRIER})
    )
    for entry in entries:
        tally.add(entry)

    view = tally.view()

    assert (view.deposit_count, view.deposited_kg, view.hazardous_deposited_kg) == (
        5,
        Decimal("4"),
        Decimal("0.7"),
    )
    assert (view.collection_count, view.collected_kg) == (2, Decimal("3.7"))
    # Two 14 km trips not driven at 8 l/100 km: 2 x 1.12 l x 2.66 = 5.9584 kg.
    assert (view.avoided_trip_km, view.avoided_kg_co2e) == (Decimal("28"), Decimal("5.9584"))
    # One 3 km detour: 0.24 l x 2.66 = 0.6384 kg; net 5.9584 - 0.6384 = 5.32 kg.
    assert (view.detour_km, view.detour_kg_co2e) == (Decimal("3"), Decimal("0.6384"))
    assert view.net_avoided_kg_co2e == Decimal("5.32")
    # The carrier's own van is metered: its detour is inside that fuel.
    assert view.detour_kg_co2e_within_metered == Decimal("0.6384")


def test_views_never_exceed_the_entries_and_the_covenant_total_counts_a_detour_once() -> None:
    fleet = fleet_entries()
    hubs = collection("k1", 3_000, 2_500)
    entries = fleet + hubs
    inventory = summarise(AALBORG, YEAR, entries)

    # Every entry in one programme at most: metered vehicle activity or a collection's.
    assert all(is_fleet_entry(entry) != (entry.collection is not None) for entry in entries)
    fleets = GreenFleetsTally()
    for entry in fleet:
        fleets.add(entry)
    molo = MoloHubsTally(DepositTotals(), frozenset({CARRIER}))
    for entry in hubs:
        molo.add(entry)
    fleet_kg, detour_kg = fleets.view().total.kg_co2e, molo.view().detour_kg_co2e
    # 32.92 kg metered + 0.6384 kg detour = 33.5584 kg: all the emissions the entries hold.
    assert fleet_kg + detour_kg == inventory.emissions_kg_co2e == Decimal("33.5584")

    # The carrier's own van is metered, so its fuel holds the detour: the Covenant figure
    # counts the 0.6384 kg once, in the metered litres, and leaves the modelled one out.
    left_out = summarise(
        AALBORG, YEAR, detours_within_metered(hubs, frozenset({CARRIER, AALBORG}))
    ).lines
    covenant = covenant_inventory(inventory, EnergyContents(()), left_out)
    assert covenant.total_t_co2e == Decimal("0.03292")
    assert covenant.detours_within_metered_t_co2e == Decimal("0.0006384")
    commercial_diesel = next(
        row
        for row in covenant.rows
        if (row.subsector, row.energy_carrier)
        == (Subsector.PRIVATE_COMMERCIAL_TRANSPORT, EnergyCarrier.DIESEL)
    )
    assert (commercial_diesel.activity_amount, commercial_diesel.distance_km) == (
        Decimal("4"),
        Decimal("40"),
    )
    # A carrier whose vehicles are not metered: its detour is the only record of that fuel.
    assert detours_within_metered(hubs, frozenset({AALBORG})) == []
    assert covenant_inventory(inventory, EnergyContents(())).total_t_co2e == Decimal("0.0335584")
