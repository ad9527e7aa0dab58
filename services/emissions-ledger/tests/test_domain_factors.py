from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from emissions_ledger.domain.factors import (
    EnergyCarrier,
    FactorCatalogue,
    InvalidFactorData,
    NoFactor,
)

DATA_DIR = Path(__file__).resolve().parents[1] / "src" / "emissions_ledger" / "data"


def factor_entry(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": "diesel-test",
        "carrier": "diesel",
        "value": "2.66",
        "unit": "kg CO2/l",
        "activity_unit": "l",
        "source": "test source",
        "version": "test",
    }
    entry.update(overrides)
    return entry


def catalogue_data(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"version": "t1", "approach": "IPCC, tank-to-wheel, CO2", "factors": list(entries)}


def test_shipped_catalogue_parses_with_cited_factors() -> None:
    data = yaml.safe_load((DATA_DIR / "emission_factors.yaml").read_text(encoding="utf-8"))

    catalogue = FactorCatalogue.from_mapping(data)

    assert catalogue.approach == "IPCC, tank-to-wheel, CO2"
    assert catalogue.version
    expected_2024 = {
        EnergyCarrier.DIESEL: (Decimal("2.66"), "kg CO2/l", "l"),
        EnergyCarrier.GASOLINE: (Decimal("2.32"), "kg CO2/l", "l"),
        EnergyCarrier.BIOFUEL: (Decimal("0"), "kg CO2/l", "l"),
        EnergyCarrier.NATURAL_GAS: (Decimal("0.204"), "kg CO2/kWh", "kWh"),
        EnergyCarrier.ELECTRICITY: (Decimal("0.096"), "kg CO2/kWh", "kWh"),
    }
    for carrier, (value, unit, activity_unit) in expected_2024.items():
        factor = catalogue.for_carrier(carrier, 2024)
        assert (factor.value, factor.unit, factor.activity_unit) == (value, unit, activity_unit)
        assert factor.approach == catalogue.approach
        assert factor.source and factor.version
    assert catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2013).value == Decimal("0.363")
    assert "Green Power Denmark" in catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2024).source
    assert (
        "Norwegian Environment Agency" in catalogue.for_carrier(EnergyCarrier.DIESEL, 2024).source
    )


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
            ),
        )
    )

    assert catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2013).factor_id == "el-2013"
    assert catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2023).factor_id == "el-2023"
    assert catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2024).value == Decimal("0.096")
    with pytest.raises(NoFactor, match=r"electricity.*2018"):
        catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2018)
    with pytest.raises(NoFactor, match=r"electricity.*2012"):
        catalogue.for_carrier(EnergyCarrier.ELECTRICITY, 2012)


def test_factor_without_valid_years_applies_to_every_year() -> None:
    catalogue = FactorCatalogue.from_mapping(catalogue_data(factor_entry()))

    assert catalogue.for_carrier(EnergyCarrier.DIESEL, 1990).value == Decimal("2.66")
    assert catalogue.for_carrier(EnergyCarrier.DIESEL, 2050).value == Decimal("2.66")


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
        ({"unit": "kg CO2/kWh"}, r"factor 'diesel-test': field 'unit' is 'kg CO2/kWh'"),
        ({"valid_form_year": 2020}, r"factor 'diesel-test': unknown field 'valid_form_year'"),
        ({"valid_from_year": "2020"}, r"factor 'diesel-test': field 'valid_from_year'"),
        ({"valid_to_year": True}, r"factor 'diesel-test': field 'valid_to_year'"),
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
        ({"version": "1", "approach": "IPCC", "factors": []}, "field 'factors'"),
        ({"approach": "IPCC", "factors": [factor_entry()]}, "field 'version'"),
        ({"version": "1", "factors": [factor_entry()]}, "field 'approach'"),
        (
            {"version": "1", "approach": "IPCC", "factors": [factor_entry()], "extra": 1},
            "unknown field 'extra'",
        ),
        ({"version": "1", "approach": "IPCC", "factors": ["diesel"]}, r"factors\[0\]"),
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
