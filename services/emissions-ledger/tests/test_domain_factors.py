from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from emissions_ledger.domain.factors import (
    EnergyCarrier,
    FactorApproach,
    FactorCatalogue,
    Gas,
    InvalidFactorData,
    InventoryMethod,
    NoFactor,
)

DATA_DIR = Path(__file__).resolve().parents[1] / "src" / "emissions_ledger" / "data"


def factor_entry(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": "diesel-test",
        "carrier": "diesel",
        "approach": "ipcc",
        "value": "2.66",
        "unit": "kg CO2/l",
        "activity_unit": "l",
        "source": "test source",
        "version": "test",
        "valid_from_year": 1990,
        "valid_to_year": 2100,
    }
    entry.update(overrides)
    return entry


def catalogue_data(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "t1",
        "approaches": {"ipcc": "IPCC, tank-to-wheel, CO2", "lca": "LCA, well-to-wheel, CO2e"},
        "factors": list(entries),
    }


def test_shipped_catalogue_parses_with_cited_factors() -> None:
    data = yaml.safe_load((DATA_DIR / "emission_factors.yaml").read_text(encoding="utf-8"))

    catalogue = FactorCatalogue.from_mapping(data)

    assert catalogue.approaches == {
        FactorApproach.IPCC: "IPCC, tank-to-wheel, CO2",
        FactorApproach.LCA: "LCA, life cycle including upstream, CO2e",
    }
    assert catalogue.version
    # 2024: published for biofuel only; every other carrier is priced with the latest
    # published factor before it, marked provisional.
    expected_2024 = {
        EnergyCarrier.DIESEL: (Decimal("2.66"), "kg CO2/l", "l", True),
        EnergyCarrier.GASOLINE: (Decimal("2.32"), "kg CO2/l", "l", True),
        EnergyCarrier.BIOFUEL: (Decimal("0"), "kg CO2/l", "l", False),
        EnergyCarrier.NATURAL_GAS: (Decimal("0.204"), "kg CO2/kWh", "kWh", True),
        EnergyCarrier.ELECTRICITY: (Decimal("0.096"), "kg CO2/kWh", "kWh", True),
    }
    for carrier, (value, unit, activity_unit, provisional) in expected_2024.items():
        factor = catalogue.for_carrier(carrier, 2024)
        assert (factor.value, factor.unit, factor.activity_unit) == (value, unit, activity_unit)
        assert factor.provisional is provisional, carrier
        assert factor.approach == FactorApproach.IPCC
        assert factor.source and factor.version
    for factor in catalogue.factors:
        assert factor.valid_from_year and factor.valid_to_year, factor.factor_id
        assert not factor.provisional
    assert catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2013).value == Decimal("0.363")
    assert not catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2023).provisional
    assert "Green Power Denmark" in catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2024).source
    assert (
        "Norwegian Environment Agency" in catalogue.for_carrier(EnergyCarrier.DIESEL, 2024).source
    )
    # The Norwegian diesel factor does not reach back before its source: IPCC's default does.
    before = catalogue.for_carrier(EnergyCarrier.DIESEL, 2013)
    assert (before.factor_id, before.value, before.provisional) == (
        "diesel-ipcc-2019-default",
        Decimal("2.67"),
        False,
    )
    assert catalogue.for_carrier(EnergyCarrier.DIESEL, 2021).factor_id == "diesel-nea-nir2021"
    with pytest.raises(NoFactor):
        catalogue.for_carrier(EnergyCarrier.GASOLINE, 2020)


def test_electricity_factor_depends_on_year() -> None:
    catalogue = FactorCatalogue.from_mapping(
        catalogue_data(
            factor_entry(
                id="el-2013",
                carrier="electricity",
                value="0.363",
                unit="kg CO2/kWh",
                activity_unit="kWh",
                valid_from_year=2013,
                valid_to_year=2013,
            ),
            factor_entry(
                id="el-2023",
                carrier="electricity",
                value="0.096",
                unit="kg CO2/kWh",
                activity_unit="kWh",
                valid_from_year=2023,
                valid_to_year=2023,
            ),
        )
    )

    published = catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2013)
    assert (published.factor_id, published.provisional) == ("el-2013", False)
    assert catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2023).factor_id == "el-2023"
    # After the latest published year, and in a gap: the latest published before, provisional.
    later = catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2026)
    assert (later.factor_id, later.value, later.provisional) == ("el-2023", Decimal("0.096"), True)
    assert (later.valid_from_year, later.valid_to_year) == (2023, 2023)
    gap = catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2018)
    assert (gap.factor_id, gap.provisional) == ("el-2013", True)
    # Before the first published year: nothing to stand in, so no factor at all.
    with pytest.raises(NoFactor, match=r"electricity.*2012"):
        catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2012)


def test_a_provisional_factor_prices_differently_from_the_published_one() -> None:
    catalogue = FactorCatalogue.from_mapping(
        catalogue_data(factor_entry(valid_from_year=2021, valid_to_year=2021))
    )
    published = catalogue.for_carrier(EnergyCarrier.DIESEL, 2021)
    provisional = catalogue.for_carrier(EnergyCarrier.DIESEL, 2022)

    assert published.prices_like(published)
    assert not published.prices_like(provisional)
    corrected = FactorCatalogue.from_mapping(
        catalogue_data(factor_entry(value="2.70", valid_from_year=2021, valid_to_year=2021))
    ).for_carrier(EnergyCarrier.DIESEL, 2021)
    assert not corrected.prices_like(published)


def test_factors_are_per_approach() -> None:
    catalogue = FactorCatalogue.from_mapping(
        catalogue_data(
            factor_entry(),
            factor_entry(id="diesel-wtw", approach="lca", value="3.24", unit="kg CO2e/l"),
        )
    )

    assert catalogue.for_carrier(EnergyCarrier.DIESEL, 2022).value == Decimal("2.66")
    lca = catalogue.for_method(
        EnergyCarrier.DIESEL, 2022, InventoryMethod(FactorApproach.LCA, Gas.CO2E)
    )
    assert (lca.factor_id, lca.value, lca.unit) == ("diesel-wtw", Decimal("3.24"), "kg CO2e/l")
    # A series is a carrier, an approach and a gas: no LCA factor counts CO2 alone, and no
    # IPCC one CO2e here, so neither is priced with the other's figure.
    with pytest.raises(NoFactor, match=r"lca, CO2\)"):
        catalogue.for_carrier(EnergyCarrier.DIESEL, 2022, FactorApproach.LCA, Gas.CO2)
    with pytest.raises(NoFactor, match=r"ipcc, CO2e\)"):
        catalogue.for_method(EnergyCarrier.DIESEL, 2022, InventoryMethod(gas=Gas.CO2E))


def test_the_shipped_lca_factors_are_the_guidebook_figures_per_litre_and_kwh() -> None:
    data = yaml.safe_load((DATA_DIR / "emission_factors.yaml").read_text(encoding="utf-8"))
    catalogue = FactorCatalogue.from_mapping(data)
    lca = InventoryMethod(FactorApproach.LCA, Gas.CO2E)

    # Per MWh in the guidebook, times the energy contents the ledger reports MWh with:
    # diesel 0.305 kg/kWh x 10.04 kWh/l = 3.0622 kg CO2e/l; petrol 0.299 x 9.03 = 2.69997.
    diesel = catalogue.for_method(EnergyCarrier.DIESEL, 2010, lca)
    assert (diesel.value, diesel.unit, diesel.provisional) == (
        Decimal("3.0622"),
        "kg CO2e/l",
        False,
    )
    assert Decimal("0.305") * Decimal("10.04") == diesel.value
    petrol = catalogue.for_method(EnergyCarrier.GASOLINE, 1990, lca)
    assert petrol.value == Decimal("0.299") * Decimal("9.03") == Decimal("2.69997")
    gas = catalogue.for_method(EnergyCarrier.NATURAL_GAS, 2005, lca)
    assert (gas.value, gas.unit) == (Decimal("0.237"), "kg CO2e/kWh")
    # Published 2010: later years are provisional.
    assert catalogue.for_method(EnergyCarrier.DIESEL, 2025, lca).provisional
    # No life-cycle figure with a source for Danish electricity or biofuel: refused.
    for carrier in (EnergyCarrier.ELECTRICITY, EnergyCarrier.BIOFUEL):
        with pytest.raises(NoFactor):
            catalogue.for_method(carrier, 2025, lca)
    for factor in catalogue.factors:
        assert factor.gas is (Gas.CO2E if factor.approach == FactorApproach.LCA else Gas.CO2)


def test_lca_counts_co2e_only() -> None:
    with pytest.raises(ValueError, match="t CO2e"):
        InventoryMethod(FactorApproach.LCA, Gas.CO2)
    assert InventoryMethod(FactorApproach.LCA, Gas.CO2E).reporting_unit == "t CO2e"
    assert InventoryMethod().reporting_unit == "t CO2"


def test_missing_carrier_has_no_factor() -> None:
    catalogue = FactorCatalogue.from_mapping(catalogue_data(factor_entry()))

    with pytest.raises(NoFactor, match="gasoline"):
        catalogue.for_carrier(EnergyCarrier.GASOLINE, 2024)


def test_value_keeps_every_digit() -> None:
    catalogue = FactorCatalogue.from_mapping(catalogue_data(factor_entry(value="0.1234567890123")))

    assert catalogue.for_carrier(EnergyCarrier.DIESEL, 2024).value == Decimal("0.1234567890123")


@pytest.mark.parametrize(
    ("overrides", "expected_message"),
    [
        ({"value": 2.66}, r"factor 'diesel-test': field 'value' must be a quoted decimal"),
        ({"value": "two"}, r"factor 'diesel-test': field 'value' is not a decimal"),
        ({"value": "-1"}, r"factor 'diesel-test': field 'value' must be a finite number"),
        ({"value": "Infinity"}, r"factor 'diesel-test': field 'value' must be a finite number"),
        ({"carrier": "coal"}, r"factor 'diesel-test': field 'carrier' is 'coal'"),
        ({"source": ""}, r"factor 'diesel-test': field 'source' must be a non-empty string"),
        ({"unit": "g CO2/l"}, r"factor 'diesel-test': field 'unit' is 'g CO2/l'"),
        ({"unit": "kg CH4/l"}, r"factor 'diesel-test': field 'unit' is 'kg CH4/l'"),
        ({"unit": "kg CO2/kWh"}, r"factor 'diesel-test': field 'unit' is 'kg CO2/kWh'"),
        ({"valid_form_year": 2020}, r"factor 'diesel-test': unknown field 'valid_form_year'"),
        ({"valid_from_year": "2020"}, r"factor 'diesel-test': field 'valid_from_year'"),
        ({"valid_to_year": True}, r"factor 'diesel-test': field 'valid_to_year'"),
        ({"valid_to_year": None}, r"factor 'diesel-test': field 'valid_to_year'"),
        ({"valid_from_year": None}, r"factor 'diesel-test': field 'valid_from_year'"),
        ({"approach": "gwp"}, r"factor 'diesel-test': field 'approach' is 'gwp'"),
        (
            {"valid_from_year": 2024, "valid_to_year": 2023},
            r"factor 'diesel-test': field 'valid_to_year' is before 'valid_from_year'",
        ),
        ({"id": None}, r"factors\[0\]: field 'id' must be a non-empty string"),
    ],
)
def test_invalid_entry_is_rejected_naming_entry_and_field(
    overrides: dict[str, Any], expected_message: str
) -> None:
    with pytest.raises(InvalidFactorData, match=expected_message):
        FactorCatalogue.from_mapping(catalogue_data(factor_entry(**overrides)))


def test_missing_field_is_named() -> None:
    entry = factor_entry()
    del entry["activity_unit"]

    with pytest.raises(InvalidFactorData, match="field 'activity_unit'"):
        FactorCatalogue.from_mapping(catalogue_data(entry))


@pytest.mark.parametrize(
    ("data", "expected_message"),
    [
        ({"version": "1", "approaches": {"ipcc": "IPCC"}, "factors": []}, "field 'factors'"),
        ({"approaches": {"ipcc": "IPCC"}, "factors": [factor_entry()]}, "field 'version'"),
        ({"version": "1", "factors": [factor_entry()]}, "field 'approaches'"),
        (
            {"version": "1", "approaches": {"co2": "?"}, "factors": [factor_entry()]},
            "approach 'co2'",
        ),
        (
            {"version": "1", "approaches": {"ipcc": "IPCC"}, "factors": [factor_entry()], "x": 1},
            "unknown field 'x'",
        ),
        ({"version": "1", "approaches": {"ipcc": "IPCC"}, "factors": ["d"]}, r"factors\[0\]"),
    ],
)
def test_invalid_catalogue_is_rejected_naming_the_field(
    data: dict[str, Any], expected_message: str
) -> None:
    with pytest.raises(InvalidFactorData, match=expected_message):
        FactorCatalogue.from_mapping(data)


def test_duplicate_factor_id_is_rejected() -> None:
    first = factor_entry(valid_to_year=2020)
    second = factor_entry(valid_from_year=2021)

    with pytest.raises(InvalidFactorData, match="factor 'diesel-test': field 'id' is used twice"):
        FactorCatalogue.from_mapping(catalogue_data(first, second))


@pytest.mark.parametrize(
    ("first_years", "second_years"),
    [
        ({}, {"valid_from_year": 2023}),
        ({"valid_to_year": 2023}, {"valid_from_year": 2023}),
        ({"valid_from_year": 2010, "valid_to_year": 2020}, {"valid_to_year": 2010}),
        (
            {"valid_from_year": 2010, "valid_to_year": 2020},
            {"valid_from_year": 2012, "valid_to_year": 2012},
        ),
    ],
)
def test_overlapping_years_of_one_carrier_are_rejected(
    first_years: dict[str, int], second_years: dict[str, int]
) -> None:
    first = factor_entry(id="diesel-a", **first_years)
    second = factor_entry(id="diesel-b", **second_years)

    with pytest.raises(InvalidFactorData, match="factor 'diesel-b': valid years overlap"):
        FactorCatalogue.from_mapping(catalogue_data(first, second))


def test_adjacent_years_of_one_carrier_are_accepted() -> None:
    first = factor_entry(id="diesel-old", value="2.67", valid_to_year=2020)
    second = factor_entry(id="diesel-new", valid_from_year=2021)

    catalogue = FactorCatalogue.from_mapping(catalogue_data(first, second))

    assert catalogue.for_carrier(EnergyCarrier.DIESEL, 2020).factor_id == "diesel-old"
    assert catalogue.for_carrier(EnergyCarrier.DIESEL, 2021).factor_id == "diesel-new"
