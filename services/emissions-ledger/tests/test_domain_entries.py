import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from emissions_ledger.domain.entries import (
    ENTRY_ID_NAMESPACE,
    MAX_ACTIVITY_AMOUNT,
    AvoidedTrip,
    AvoidedTripPolicy,
    Basis,
    CollectionProvenance,
    EntryKind,
    FuelType,
    ImplausibleActivity,
    InvalidPolicyData,
    SampleProvenance,
    Sector,
    Subsector,
    UnaccountableActivity,
    VehicleActivity,
    VehicleProfile,
    WasteCollection,
    entries_for_collection,
    entry_for_activity,
    entry_id_for,
    reporting_year,
)
from emissions_ledger.domain.factors import EnergyCarrier, FactorCatalogue, NoFactor
from emissions_ledger.domain.inventory import summarise

DATA_DIR = Path(__file__).resolve().parents[1] / "src" / "emissions_ledger" / "data"
ACTIVITY_TOPIC = "fleet.activity.v1"
LOCKER_TOPIC = "lockers.events.v1"


def factor(
    factor_id: str,
    carrier: str,
    value: str,
    activity_unit: str,
    **years: int,
) -> dict[str, Any]:
    return {
        "id": factor_id,
        "carrier": carrier,
        "value": value,
        "unit": f"kg CO2/{activity_unit}",
        "activity_unit": activity_unit,
        "source": f"{factor_id} source",
        "version": "test",
        "approach": "ipcc",
        "valid_from_year": years.get("valid_from_year", 1990),
        "valid_to_year": years.get("valid_to_year", 2100),
    }


CATALOGUE = FactorCatalogue.from_mapping(
    {
        "version": "test",
        "approaches": {"ipcc": "IPCC, tank-to-wheel, CO2"},
        "factors": [
            factor("diesel", "diesel", "2.66", "l"),
            factor("gasoline", "gasoline", "2.32", "l"),
            factor("biofuel", "biofuel", "0", "l"),
            factor("natural-gas", "natural_gas", "0.204", "kWh"),
            factor(
                "el-2013", "electricity", "0.363", "kWh", valid_from_year=2013, valid_to_year=2013
            ),
            factor(
                "el-2023", "electricity", "0.096", "kWh", valid_from_year=2023, valid_to_year=2023
            ),
        ],
    }
)

DIESEL_VAN = VehicleProfile("diesel van", FuelType.DIESEL, Decimal("8"))
POLICY = AvoidedTripPolicy(
    dedicated_trip_distance_m=14000,
    dedicated_vehicle=DIESEL_VAN,
    carrier_vehicle=replace(DIESEL_VAN, name="carrier van"),
)


def activity(**overrides: Any) -> VehicleActivity:
    values: dict[str, Any] = {
        "event_id": "evt-activity-1",
        "vehicle_id": "ak-van-017",
        "municipality_id": "aalborg-kommune",
        "fuel_type": FuelType.DIESEL,
        "subsector": Subsector.MUNICIPAL_FLEET,
        "period_end": datetime(2024, 6, 1, 16, 0, tzinfo=UTC),
        "distance_m": 48200,
        "fuel_used_ml": 12345,
        "energy_used_wh": 0,
    }
    values.update(overrides)
    return VehicleActivity(**values)


def collection(**overrides: Any) -> WasteCollection:
    values: dict[str, Any] = {
        "event_id": "evt-collection-1",
        "hub_id": "molo-hub-07",
        "municipality_id": "aalborg-kommune",
        "carrier_partner_id": "nordvaerk",
        "collected_at": datetime(2024, 9, 12, 8, 15, tzinfo=UTC),
        "carrier_extra_distance_m": 3000,
        "mass_g": 4200,
        "includes_hazardous": True,
    }
    values.update(overrides)
    return WasteCollection(**values)


def test_diesel_activity_is_litres_times_factor_exactly() -> None:
    entry = entry_for_activity(activity(), CATALOGUE, ACTIVITY_TOPIC)

    assert entry.activity_amount == Decimal("12.345")
    assert entry.activity_unit == "l"
    assert entry.kg_co2e == Decimal("32.8377")
    assert entry.kind is EntryKind.EMISSION
    assert entry.energy_carrier is EnergyCarrier.DIESEL
    assert entry.factor.factor_id == "diesel"
    assert entry.sector is Sector.TRANSPORT
    assert entry.subsector is Subsector.MUNICIPAL_FLEET
    assert entry.year == 2024
    assert entry.municipality_id == "aalborg-kommune"
    assert entry.subject_id == "ak-van-017"
    assert entry.source_event_id == "evt-activity-1"
    assert entry.source_topic == ACTIVITY_TOPIC
    assert entry.activity_at == datetime(2024, 6, 1, 16, 0, tzinfo=UTC)
    assert entry.entry_id == entry_id_for("evt-activity-1", EntryKind.EMISSION)
    assert entry.avoided_trip is None


def test_aggregated_activity_entry_keeps_which_samples_it_sums() -> None:
    samples = SampleProvenance(90, "evt-sample-1", "evt-sample-90")

    entry = entry_for_activity(activity(samples=samples), CATALOGUE, ACTIVITY_TOPIC)

    assert entry.samples == samples
    for entry in entries_for_collection(collection(), POLICY, CATALOGUE, LOCKER_TOPIC):
        assert entry.samples is None


def test_petrol_activity_uses_the_gasoline_factor() -> None:
    entry = entry_for_activity(activity(fuel_type=FuelType.PETROL), CATALOGUE, ACTIVITY_TOPIC)

    assert entry.energy_carrier is EnergyCarrier.GASOLINE
    assert entry.kg_co2e == Decimal("12.345") * Decimal("2.32")


def test_electric_activity_is_kilowatt_hours_times_year_factor() -> None:
    electric = activity(fuel_type=FuelType.ELECTRIC, fuel_used_ml=0, energy_used_wh=45678)

    entry = entry_for_activity(electric, CATALOGUE, ACTIVITY_TOPIC)

    assert entry.energy_carrier is EnergyCarrier.ELECTRICITY
    assert entry.activity_amount == Decimal("45.678")
    assert entry.activity_unit == "kWh"
    assert entry.kg_co2e == Decimal("4.385088")
    assert entry.factor.factor_id == "el-2023"


def test_electric_activity_before_the_first_published_factor_raises_no_factor() -> None:
    electric = activity(
        fuel_type=FuelType.ELECTRIC,
        fuel_used_ml=0,
        energy_used_wh=1000,
        period_end=datetime(2012, 5, 1, tzinfo=UTC),
    )

    with pytest.raises(NoFactor):
        entry_for_activity(electric, CATALOGUE, ACTIVITY_TOPIC)


@pytest.mark.parametrize(
    ("year", "stand_in", "kg"),
    # 1.000 kWh x 0.363 and x 0.096: the latest published year before stands in.
    [(2018, "el-2013", Decimal("0.363")), (2026, "el-2023", Decimal("0.096"))],
)
def test_electric_activity_in_a_year_without_published_factor_is_priced_provisionally(
    year: int, stand_in: str, kg: Decimal
) -> None:
    electric = activity(
        fuel_type=FuelType.ELECTRIC,
        fuel_used_ml=0,
        energy_used_wh=1000,
        period_end=datetime(year, 5, 1, tzinfo=UTC),
    )

    entry = entry_for_activity(electric, CATALOGUE, ACTIVITY_TOPIC)

    assert entry.year == year
    assert entry.factor.factor_id == stand_in
    assert entry.factor.provisional
    assert entry.kg_co2e == kg


def test_electric_activity_in_a_published_year_is_not_provisional() -> None:
    electric = activity(fuel_type=FuelType.ELECTRIC, fuel_used_ml=0, energy_used_wh=1000)
    electric = replace(electric, period_end=datetime(2023, 5, 1, tzinfo=UTC))

    entry = entry_for_activity(electric, CATALOGUE, ACTIVITY_TOPIC)

    assert (entry.factor.factor_id, entry.factor.provisional) == ("el-2023", False)
    assert (entry.factor.valid_from_year, entry.factor.valid_to_year) == (2023, 2023)


@pytest.mark.parametrize("fuel", [FuelType.HVO100, FuelType.BIOGAS])
def test_biofuel_activity_counts_its_litres_at_zero_kg(fuel: FuelType) -> None:
    entry = entry_for_activity(activity(fuel_type=fuel), CATALOGUE, ACTIVITY_TOPIC)

    assert entry.energy_carrier is EnergyCarrier.BIOFUEL
    assert entry.activity_amount == Decimal("12.345")
    assert entry.kg_co2e == 0


def test_natural_gas_activity_cannot_be_accounted() -> None:
    with pytest.raises(UnaccountableActivity, match="fuel_used_ml"):
        entry_for_activity(activity(fuel_type=FuelType.NATURAL_GAS), CATALOGUE, ACTIVITY_TOPIC)


def test_combustion_vehicle_with_energy_but_no_fuel_cannot_be_accounted() -> None:
    odd = activity(fuel_used_ml=0, energy_used_wh=5000)

    with pytest.raises(UnaccountableActivity, match="fuel_used_ml"):
        entry_for_activity(odd, CATALOGUE, ACTIVITY_TOPIC)


def test_electric_vehicle_with_fuel_but_no_energy_cannot_be_accounted() -> None:
    odd = activity(fuel_type=FuelType.ELECTRIC, fuel_used_ml=800, energy_used_wh=0)

    with pytest.raises(UnaccountableActivity, match="energy_used_wh"):
        entry_for_activity(odd, CATALOGUE, ACTIVITY_TOPIC)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"distance_m": -1}, "distance_m"),
        ({"fuel_used_ml": -5}, "fuel_used_ml"),
        ({"energy_used_wh": -5}, "energy_used_wh"),
        ({"period_end": datetime(2024, 6, 1, 16, 0)}, "period_end"),
        ({"subsector": Subsector.NONE}, "subsector"),
        ({"municipality_id": ""}, "municipality_id"),
        ({"event_id": " "}, "event_id"),
        ({"vehicle_id": ""}, "vehicle_id"),
        ({"samples": SampleProvenance(-1, "s-1", "s-2")}, "sample_count"),
    ],
)
def test_invalid_activity_is_rejected_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(UnaccountableActivity, match=f"^{field}:"):
        entry_for_activity(activity(**overrides), CATALOGUE, ACTIVITY_TOPIC)


def test_factor_in_another_unit_than_the_measurement_is_refused() -> None:
    per_kwh = FactorCatalogue.from_mapping(
        {
            "version": "t",
            "approaches": {"ipcc": "IPCC"},
            "factors": [factor("diesel-kwh", "diesel", "0.265", "kWh")],
        }
    )

    with pytest.raises(UnaccountableActivity, match=r"fuel_used_ml: .*per kWh"):
        entry_for_activity(activity(), per_kwh, ACTIVITY_TOPIC)


def test_entry_ids_are_stable_and_distinct_per_kind_and_event() -> None:
    emission = entry_id_for("evt-1", EntryKind.EMISSION)

    assert emission == entry_id_for("evt-1", EntryKind.EMISSION)
    assert emission != entry_id_for("evt-1", EntryKind.AVOIDED_EMISSION)
    assert emission != entry_id_for("evt-2", EntryKind.EMISSION)
    assert uuid.UUID(emission).version == 5


@pytest.mark.parametrize(
    "event_id", ["evt-1", "", "æøå-Ålborg", "f" * 200, "6bfb8050-dd13-58de-be25-668d73c45b30"]
)
def test_entry_ids_are_the_name_based_uuids_they_always_were(event_id: str) -> None:
    # Changing an id would post a redelivered event again: they stay uuid5 in the namespace.
    for kind in EntryKind:
        expected = uuid.uuid5(ENTRY_ID_NAMESPACE, f"{event_id}:{kind}")
        assert entry_id_for(event_id, kind) == str(expected)


def test_redelivered_activity_yields_the_same_entry() -> None:
    first = entry_for_activity(activity(), CATALOGUE, ACTIVITY_TOPIC)
    again = entry_for_activity(activity(), CATALOGUE, ACTIVITY_TOPIC)

    assert first == again


def test_new_years_eve_late_evening_utc_is_next_year_in_copenhagen() -> None:
    assert reporting_year(datetime(2024, 12, 31, 23, 30, tzinfo=UTC)) == 2025
    assert reporting_year(datetime(2024, 12, 31, 22, 30, tzinfo=UTC)) == 2024
    assert reporting_year(datetime(2025, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))) == 2024


def test_reporting_year_refuses_naive_timestamps() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        reporting_year(datetime(2024, 12, 31, 23, 30))


def test_activity_year_follows_copenhagen_time() -> None:
    entry = entry_for_activity(
        activity(period_end=datetime(2023, 12, 31, 23, 30, tzinfo=UTC)), CATALOGUE, ACTIVITY_TOPIC
    )

    assert entry.year == 2024


def test_an_activity_window_ending_at_new_year_belongs_to_the_old_year() -> None:
    # The 23:45-00:00 window of New Year's Eve, Copenhagen time (UTC+1 in winter).
    last_window = activity(period_end=datetime(2024, 12, 31, 23, 0, tzinfo=UTC))
    first_window = activity(period_end=datetime(2024, 12, 31, 23, 15, tzinfo=UTC))

    assert entry_for_activity(last_window, CATALOGUE, ACTIVITY_TOPIC).year == 2024
    assert entry_for_activity(first_window, CATALOGUE, ACTIVITY_TOPIC).year == 2025


def test_collection_posts_the_avoided_trip_and_the_detour_on_modelled_lines() -> None:
    avoided, detour = entries_for_collection(
        collection(
            collection_id="col-7",
            deposit_ids=("d1", "d2", "d3"),
            waste_types=("batteries", "hazardous_household", "batteries"),
        ),
        POLICY,
        CATALOGUE,
        LOCKER_TOPIC,
    )

    # 14 km at 8 l/100 km = 1.12 l x 2.66 = 2.9792 kg not emitted; the carrier's 3 km extra
    # = 0.24 l x 2.66 = 0.6384 kg emitted. The net, 2.3408 kg, is theirs to compute.
    assert (avoided.kind, avoided.basis) == (EntryKind.AVOIDED_EMISSION, Basis.MODELLED)
    assert (avoided.activity_amount, avoided.activity_unit) == (Decimal("1.12"), "l")
    assert avoided.kg_co2e == Decimal("2.9792")
    assert (detour.kind, detour.basis) == (EntryKind.EMISSION, Basis.MODELLED)
    assert (detour.activity_amount, detour.kg_co2e) == (Decimal("0.24"), Decimal("0.6384"))
    trip = AvoidedTrip(
        avoided_trip_distance_m=14000,
        avoided_vehicle="diesel van",
        avoided_kg_co2e=Decimal("2.9792"),
        carrier_extra_distance_m=3000,
        carrier_vehicle="carrier van",
        carrier_extra_kg_co2e=Decimal("0.6384"),
    )
    provenance = CollectionProvenance(
        collection_id="col-7",
        carrier_partner_id="nordvaerk",
        hub_id="molo-hub-07",
        mass_g=4200,
        includes_hazardous=True,
        waste_types=("batteries", "hazardous_household"),
        deposit_count=3,
    )
    for entry in (avoided, detour):
        assert entry.avoided_trip == trip
        assert entry.collection == provenance
        assert entry.energy_carrier is EnergyCarrier.DIESEL
        assert entry.factor.factor_id == "diesel"
        assert (entry.sector, entry.subsector) == (
            Sector.TRANSPORT,
            Subsector.PRIVATE_COMMERCIAL_TRANSPORT,
        )
        assert (entry.subject_id, entry.year, entry.source_topic) == (
            "molo-hub-07",
            2024,
            LOCKER_TOPIC,
        )
        assert entry.source_event_id == "evt-collection-1"
    assert avoided.entry_id == entry_id_for("evt-collection-1", EntryKind.AVOIDED_EMISSION)
    assert detour.entry_id == entry_id_for("evt-collection-1", EntryKind.EMISSION)


def test_modelled_amounts_never_share_a_line_with_metered_fuel() -> None:
    contractor = replace(activity(), subsector=Subsector.PRIVATE_COMMERCIAL_TRANSPORT)
    metered = entry_for_activity(contractor, CATALOGUE, ACTIVITY_TOPIC)
    _, detour = entries_for_collection(collection(), POLICY, CATALOGUE, LOCKER_TOPIC)

    inventory = summarise("aalborg-kommune", 2024, [metered, detour])

    # Same sector, sub-sector, carrier, kind and unit: two lines, told apart by their basis.
    assert [(line.basis, line.activity_amount) for line in inventory.lines] == [
        (Basis.METERED, Decimal("12.345")),
        (Basis.MODELLED, Decimal("0.24")),
    ]


def test_detour_longer_than_the_dedicated_trip_stays_a_detour() -> None:
    avoided, detour = entries_for_collection(
        collection(carrier_extra_distance_m=20000), POLICY, CATALOGUE, LOCKER_TOPIC
    )

    # 20 km = 1.6 l x 2.66 = 4.256 kg, more than the 2.9792 kg avoided: both are shown.
    assert avoided.kg_co2e == Decimal("2.9792")
    assert (detour.kind, detour.activity_amount, detour.kg_co2e) == (
        EntryKind.EMISSION,
        Decimal("1.6"),
        Decimal("4.256"),
    )


def test_a_collection_without_extra_distance_has_no_detour_entry() -> None:
    (avoided,) = entries_for_collection(
        collection(carrier_extra_distance_m=0), POLICY, CATALOGUE, LOCKER_TOPIC
    )

    assert avoided.kind is EntryKind.AVOIDED_EMISSION
    assert avoided.kg_co2e == Decimal("2.9792")


def test_collection_uses_each_vehicles_own_fuel_factor() -> None:
    hvo_carrier = replace(
        POLICY, carrier_vehicle=VehicleProfile("hvo van", FuelType.HVO100, Decimal("8"))
    )

    avoided, detour = entries_for_collection(collection(), hvo_carrier, CATALOGUE, LOCKER_TOPIC)

    assert (avoided.factor.factor_id, avoided.kg_co2e) == ("diesel", Decimal("2.9792"))
    assert (detour.factor.factor_id, detour.energy_carrier) == ("biofuel", EnergyCarrier.BIOFUEL)
    assert (detour.activity_amount, detour.kg_co2e) == (Decimal("0.24"), 0)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"carrier_extra_distance_m": -1}, "carrier_extra_distance_m"),
        ({"mass_g": -1}, "mass_g"),
        ({"collected_at": datetime(2024, 9, 12, 8, 15)}, "collected_at"),
        ({"hub_id": ""}, "hub_id"),
    ],
)
def test_invalid_collection_is_rejected_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(UnaccountableActivity, match=f"^{field}:"):
        entries_for_collection(collection(**overrides), POLICY, CATALOGUE, LOCKER_TOPIC)


def policy_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "dedicated_trip_distance_m": 14000,
        "dedicated_vehicle": {"name": "van", "fuel_type": "diesel", "litres_per_100_km": "8"},
        "carrier_vehicle": {"name": "carrier", "fuel_type": "petrol", "litres_per_100_km": "7.5"},
    }
    data.update(overrides)
    return data


def test_policy_from_mapping_defaults_to_contractor_subsector() -> None:
    policy = AvoidedTripPolicy.from_mapping(policy_data())

    assert policy.subsector is Subsector.PRIVATE_COMMERCIAL_TRANSPORT
    assert policy.carrier_vehicle == VehicleProfile("carrier", FuelType.PETROL, Decimal("7.5"))


@pytest.mark.parametrize(
    ("overrides", "expected_message"),
    [
        ({"dedicated_trip_distance_m": 0}, "dedicated_trip_distance_m"),
        ({"dedicated_trip_distance_m": 14.0}, "dedicated_trip_distance_m"),
        ({"subsector": "waste"}, "field 'subsector'"),
        ({"subsector": ""}, "field 'subsector'"),
        ({"detour_m": 1}, "unknown field 'detour_m'"),
        ({"carrier_vehicle": None}, "field 'carrier_vehicle' must be a mapping"),
        (
            {"dedicated_vehicle": {"name": "van", "fuel_type": "diesel", "litres_per_100_km": 8.0}},
            "dedicated_vehicle: field 'litres_per_100_km' must be a quoted decimal",
        ),
        (
            {"dedicated_vehicle": {"name": "van", "fuel_type": "diesel", "litres_per_100_km": "x"}},
            "dedicated_vehicle: field 'litres_per_100_km'",
        ),
        (
            {"carrier_vehicle": {"name": "ev", "fuel_type": "electric", "litres_per_100_km": "0"}},
            "carrier_vehicle: field 'fuel_type'",
        ),
        (
            {"carrier_vehicle": {"name": "", "fuel_type": "diesel", "litres_per_100_km": "8"}},
            "carrier_vehicle: field 'name'",
        ),
    ],
)
def test_invalid_policy_is_rejected_naming_the_field(
    overrides: dict[str, Any], expected_message: str
) -> None:
    with pytest.raises(InvalidPolicyData, match=expected_message):
        AvoidedTripPolicy.from_mapping(policy_data(**overrides))


def test_shipped_data_files_account_a_collection() -> None:
    factors = yaml.safe_load((DATA_DIR / "emission_factors.yaml").read_text(encoding="utf-8"))
    trips = yaml.safe_load((DATA_DIR / "avoided_trips.yaml").read_text(encoding="utf-8"))
    catalogue = FactorCatalogue.from_mapping(factors)

    policy = AvoidedTripPolicy.from_mapping(trips)
    avoided, detour = entries_for_collection(collection(), policy, catalogue, LOCKER_TOPIC)

    assert policy.dedicated_trip_distance_m == 14000
    assert policy.dedicated_vehicle.fuel_type is FuelType.DIESEL
    assert policy.dedicated_vehicle.litres_per_100_km == Decimal("8")
    assert policy.carrier_vehicle.litres_per_100_km == Decimal("8")
    assert policy.subsector is Subsector.PRIVATE_COMMERCIAL_TRANSPORT
    # 2024: the 2021 diesel factor stands in, provisionally, for both vehicles.
    assert (avoided.kg_co2e, detour.kg_co2e) == (Decimal("2.9792"), Decimal("0.6384"))
    assert avoided.factor.provisional and detour.factor.provisional


@pytest.mark.parametrize(
    ("period_end", "this_year"),
    [
        (datetime(2100, 1, 1, 12, 0, tzinfo=UTC), 2026),
        (datetime(2027, 1, 1, 12, 0, tzinfo=UTC), 2026),
        (datetime(1970, 1, 1, 12, 0, tzinfo=UTC), 2026),
    ],
)
def test_activity_outside_the_reporting_years_is_implausible(
    period_end: datetime, this_year: int
) -> None:
    with pytest.raises(ImplausibleActivity) as refused:
        entry_for_activity(
            activity(period_end=period_end), CATALOGUE, ACTIVITY_TOPIC, this_year=this_year
        )
    assert refused.value.reason == "year_out_of_range"


@pytest.mark.parametrize("field", ["distance_m", "fuel_used_ml", "energy_used_wh"])
def test_activity_beyond_any_vehicle_is_implausible(field: str) -> None:
    too_much = activity(**{field: MAX_ACTIVITY_AMOUNT[field] + 1})
    with pytest.raises(ImplausibleActivity) as refused:
        entry_for_activity(too_much, CATALOGUE, ACTIVITY_TOPIC, this_year=2026)
    assert refused.value.reason == "amount_out_of_bounds"
    assert field in str(refused.value)


def test_collections_beyond_any_hub_or_detour_are_implausible() -> None:
    for overrides in (
        {"mass_g": 10**15},
        {"carrier_extra_distance_m": 10**15},
    ):
        with pytest.raises(ImplausibleActivity) as refused:
            entries_for_collection(
                collection(**overrides), POLICY, CATALOGUE, LOCKER_TOPIC, this_year=2026
            )
        assert refused.value.reason == "amount_out_of_bounds"
