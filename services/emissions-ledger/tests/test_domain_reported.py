"""Reported activity: unit conversions and line checks, with figures worked out by hand."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from emissions_ledger.adapters.data_files import load_activity_units, load_factor_catalogue
from emissions_ledger.domain import (
    REPORTED_SOURCE,
    ActivityBatch,
    ActivityUnits,
    Basis,
    EnergyCarrier,
    InvalidActivity,
    InvalidUnitData,
    ReportedLine,
    Sector,
    Subsector,
    batch_id,
    content_digest,
    entries_for_batch,
    restated_pair,
)

CATALOGUE = load_factor_catalogue()
UNITS = load_activity_units()
AT = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def line(**given: Any) -> ReportedLine:
    values: dict[str, Any] = {
        "year": 2013,
        "sector": Sector.MUNICIPAL_BUILDINGS,
        "subsector": Subsector.NONE,
        "energy_carrier": EnergyCarrier.ELECTRICITY,
        "amount": "1000",
        "unit": "kWh",
    }
    values.update(given)
    return ReportedLine(**values)


def priced(*lines: ReportedLine, key: str = "k1") -> list[Any]:
    batch = ActivityBatch("aalborg-kommune", key, tuple(lines))
    return entries_for_batch(batch, CATALOGUE, UNITS, "officer-anna", AT, this_year=2026)


def problems(*lines: ReportedLine) -> list[tuple[str, str]]:
    with pytest.raises(InvalidActivity) as refused:
        priced(*lines)
    return [(p.path, p.reason) for p in refused.value.problems]


@pytest.mark.parametrize(
    ("carrier", "amount", "unit", "converted", "rounded"),
    [
        (EnergyCarrier.ELECTRICITY, "2.5", "MWh", "2500", False),
        # 3.6 GJ x 1000/3.6 = 1000 kWh exactly.
        (EnergyCarrier.ELECTRICITY, "3.6", "GJ", "1000", False),
        # 1 GJ = 277.777... kWh: no finite decimal, rounded half-even to 6 places.
        (EnergyCarrier.ELECTRICITY, "1", "GJ", "277.777778", True),
        # 0.0018 GJ x 1000/3.6 = 0.5 kWh exactly.
        (EnergyCarrier.ELECTRICITY, "0.0018", "GJ", "0.5", False),
        # 1000 m3 x 11.00 kWh/m3 (HB2016's 2.245 kg/m3 over 0.204 kg/kWh).
        (EnergyCarrier.NATURAL_GAS, "1000", "m3", "11000", False),
        (EnergyCarrier.NATURAL_GAS, "1.5", "MWh", "1500", False),
        # 12 t x 15.6 GJ/t x 1000/3.6 = 187200/3.6 = 52000 kWh.
        (EnergyCarrier.BIOMASS, "12", "t", "52000", False),
        # 1 t: 15600/3.6 = 4333.333... kWh.
        (EnergyCarrier.BIOMASS, "1", "t", "4333.333333", True),
        (EnergyCarrier.DIESEL, "1.5", "m3", "1500", False),
        (EnergyCarrier.DIESEL, "12.345", "l", "12.345", False),
    ],
)
def test_units_convert_to_the_factors_unit_exactly_or_say_they_rounded(
    carrier: EnergyCarrier, amount: str, unit: str, converted: str, rounded: bool
) -> None:
    sector = Sector.TRANSPORT if carrier is EnergyCarrier.DIESEL else Sector.RESIDENTIAL_BUILDINGS
    subsector = Subsector.PUBLIC_TRANSPORT if sector is Sector.TRANSPORT else Subsector.NONE
    (entry,) = priced(
        line(
            year=2016,
            sector=sector,
            subsector=subsector,
            energy_carrier=carrier,
            amount=amount,
            unit=unit,
        )
    )
    assert entry.activity_amount == Decimal(converted)
    assert entry.reported.conversion_rounded is rounded
    assert (entry.reported.reported_amount, entry.reported.reported_unit) == (amount, unit)


def test_a_batch_priced_by_hand() -> None:
    entries = priced(
        # 1000 m3 x 11.00 = 11000 kWh x 0.202 (IPCC 2006 default, 1990-2015) = 2222 kg.
        line(energy_carrier=EnergyCarrier.NATURAL_GAS, amount="1000", unit="m3"),
        # 2 MWh = 2000 kWh x 0.267 = 534 kg.
        line(
            sector=Sector.RESIDENTIAL_BUILDINGS,
            energy_carrier=EnergyCarrier.HEATING_OIL,
            amount="2",
            unit="MWh",
        ),
        # 3.6 GJ = 1000 kWh x 0.363 (2013 mix) = 363 kg.
        line(sector=Sector.PUBLIC_LIGHTING, amount="3.6", unit="GJ", note="street lamps"),
        # 2025: 1 GJ = 277.777778 kWh x 0.096 (2023's mix, provisional) = 26.666666688 kg.
        line(year=2025, amount="1", unit="GJ"),
        # 500 m3 x 11.00 = 5500 kWh x 0.204 (HB2016, provisional) = 1122 kg.
        line(
            year=2025,
            sector=Sector.INDUSTRY,
            subsector=Subsector.NON_ETS,
            energy_carrier=EnergyCarrier.NATURAL_GAS,
            amount="500",
            unit="m3",
        ),
    )
    assert [e.kg_co2e for e in entries] == [
        Decimal("2222"),
        Decimal("534"),
        Decimal("363"),
        Decimal("26.666666688"),
        Decimal("1122"),
    ]
    assert [e.factor.provisional for e in entries] == [False, False, False, True, True]
    assert [e.factor.factor_id for e in entries][:2] == [
        "natural-gas-ipcc-2006-default",
        "heating-oil-ipcc-2006-default",
    ]
    first = entries[0]
    assert (first.basis, first.source_topic, first.activity_unit) == (
        Basis.REPORTED,
        REPORTED_SOURCE,
        "kWh",
    )
    assert first.subject_id == batch_id("aalborg-kommune", "k1")
    assert first.reported.recorded_by == "officer-anna"
    assert first.reported.conversion == "11.00"
    assert "HB2016" in first.reported.conversion_source
    assert entries[2].reported.note == "street lamps"
    # The line covers its year: dated at its first instant, local time.
    assert first.activity_at.year == 2013 and first.activity_at.month == 1
    assert len({e.entry_id for e in entries}) == 5
    # The same batch prices to the same entry ids (which the ledger holds once); another
    # key's batch to others.
    assert priced(line())[0].entry_id == priced(line())[0].entry_id
    assert priced(line(), key="k2")[0].entry_id != priced(line())[0].entry_id


def test_every_problem_of_every_line_is_named_and_nothing_priced() -> None:
    found = problems(
        line(),  # fine
        line(year=1989, sector=None, amount="1,5"),
        line(energy_carrier=EnergyCarrier.HEAT),
        line(sector=Sector.TRANSPORT, energy_carrier=EnergyCarrier.DIESEL, unit="kWh"),
        line(amount="-3", unit=""),
        line(sector=Sector.WASTE, subsector=Subsector.ETS, amount="0"),
        line(year=2012),  # electricity is published from 2013 only
        line(amount="1e3", energy_carrier=None),
    )
    paths = [path for path, _ in found]
    assert paths == [
        "lines[1].year",
        "lines[1].sector",
        "lines[1].amount",
        "lines[2].energy_carrier",
        "lines[3].subsector",
        "lines[3].unit",
        "lines[4].amount",
        "lines[4].unit",
        "lines[5].subsector",
        "lines[5].amount",
        "lines[6].year",
        "lines[7].amount",
        "lines[7].energy_carrier",
    ]
    reasons = dict(found)
    assert reasons["lines[1].amount"].startswith("use a point as the decimal separator")
    assert "no ipcc factor for heat" in reasons["lines[2].energy_carrier"]
    assert (
        "priced per l" in reasons["lines[3].unit"] and "accepted: l, m3" in reasons["lines[3].unit"]
    )
    assert "needs one of: municipal_fleet" in reasons["lines[3].subsector"]
    assert reasons["lines[5].subsector"] == "waste has no sub-sector: leave it empty"
    assert reasons["lines[5].amount"] == "must be above 0"
    assert "2012 or earlier" in reasons["lines[6].year"]


def test_years_after_this_one_are_refused() -> None:
    assert problems(line(year=2027)) == [
        ("lines[0].year", "must be from 1990 to 2026 (the current year)")
    ]


def test_the_digest_is_the_content_less_the_file_name() -> None:
    one = ActivityBatch("aalborg-kommune", "k", (line(source_file="a.csv", source_line=2),))
    renamed = ActivityBatch("aalborg-kommune", "k", (line(source_file="b.csv", source_line=2),))
    other = ActivityBatch("aalborg-kommune", "k", (line(amount="1001", source_line=2),))
    elsewhere = ActivityBatch("vesthimmerland", "k", one.lines)
    assert content_digest(one) == content_digest(renamed)
    assert content_digest(one) != content_digest(other)
    assert content_digest(one) != content_digest(elsewhere)


def test_a_carriers_own_conversion_comes_before_the_general_one() -> None:
    units = ActivityUnits.from_mapping(
        {
            "rounding_places": 3,
            "conversions": [
                {"from_unit": "m3", "to_unit": "kWh", "per_unit": "10", "source": "general"},
                {
                    "carrier": "natural_gas",
                    "from_unit": "m3",
                    "to_unit": "kWh",
                    "per_unit": "2/3",
                    "source": "own",
                },
            ],
        }
    )
    gas = units.conversion(EnergyCarrier.NATURAL_GAS, "m3", "kWh")
    other = units.conversion(EnergyCarrier.HEAT, "m3", "kWh")
    assert gas is not None and gas.per_unit == Fraction(2, 3) and gas.source == "own"
    assert other is not None and other.source == "general"
    # 1 m3 x 2/3 = 0.666..., to 3 places half-even: 0.667.
    assert units.convert(Decimal(1), gas).amount == Decimal("0.667")
    assert units.units_for(EnergyCarrier.HEAT, "kWh") == ["m3"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"conversions": []}, "rounding_places"),
        ({"rounding_places": 6, "conversions": []}, "non-empty list"),
        (
            {"rounding_places": 6, "conversions": [{"from_unit": "GJ", "to_unit": "kWh"}]},
            "'per_unit'",
        ),
        (
            {
                "rounding_places": 6,
                "conversions": [
                    {"from_unit": "GJ", "to_unit": "kWh", "per_unit": "3.6e2", "source": "x"}
                ],
            },
            "ratio",
        ),
        (
            {
                "rounding_places": 6,
                "conversions": [
                    {"from_unit": "GJ", "to_unit": "kWh", "per_unit": "1/0", "source": "x"}
                ],
            },
            "ratio",
        ),
        (
            {
                "rounding_places": 6,
                "conversions": [
                    {
                        "carrier": "coal",
                        "from_unit": "t",
                        "to_unit": "kWh",
                        "per_unit": "1",
                        "source": "x",
                    }
                ],
            },
            "carrier",
        ),
    ],
)
def test_malformed_unit_data_is_refused_naming_the_field(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidUnitData, match=message):
        ActivityUnits.from_mapping(data)


def test_every_shipped_conversion_names_a_source_and_every_factor_unit_has_one() -> None:
    assert all(conversion.source for conversion in UNITS.conversions)
    for factor in CATALOGUE.factors:
        assert UNITS.conversion(factor.energy_carrier, factor.activity_unit, factor.activity_unit)


def test_a_restatement_re_prices_a_reported_entry_and_keeps_its_provenance() -> None:
    # 2025: 2 MWh = 2000 kWh x 0.096 (2023's mix, provisional) = 192 kg; once 2025's mix is
    # published at 0.085 (made up here): 2000 x 0.085 = 170 kg.
    (entry,) = priced(line(year=2025, amount="2", unit="MWh", source_file="f.csv", source_line=7))
    assert entry.kg_co2e == Decimal("192")
    published = replace(
        entry.factor,
        factor_id="electricity-dk-mix-2025",
        value=Decimal("0.085"),
        version="2025",
        valid_from_year=2025,
        valid_to_year=2025,
        provisional=False,
    )
    reversal, restatement = restated_pair(entry, published, "r1")
    assert (reversal.kg_co2e, restatement.kg_co2e) == (Decimal("-192"), Decimal("170"))
    assert restatement.basis is Basis.REPORTED
    assert restatement.reported == entry.reported
    assert (restatement.reported.source_file, restatement.reported.source_line) == ("f.csv", 7)
