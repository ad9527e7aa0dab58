"""The Covenant report: BEI and MEI in MWh and tonnes, change per sector, targets, the linear
trajectory and the gap to it; every figure below is worked out by hand in the comments."""

from decimal import Decimal

import pytest

from emissions_ledger.domain.covenant import (
    EnergyContents,
    InvalidEnergyContentData,
    InvalidReportRequest,
    covenant_report,
    trajectory_share,
)
from emissions_ledger.domain.entries import Basis, EntryKind, Sector, Subsector
from emissions_ledger.domain.factors import EnergyCarrier
from emissions_ledger.domain.inventory import InventoryLine, inventory_from_lines
from emissions_ledger.domain.municipalities import CovenantCommitment, EmissionTarget

AALBORG = "aalborg-kommune"
DK2020 = CovenantCommitment(
    signatory_year=2014,
    baseline_year=2013,
    targets=(
        EmissionTarget(2050, 0, True, "DK2020"),
        EmissionTarget(2030, 70, False, "DK2020"),
    ),
)
CONTENTS = EnergyContents.from_mapping(
    {
        "contents": [
            {
                "carrier": "electricity",
                "activity_unit": "kWh",
                "kwh_per_unit": "1",
                "source": "kWh",
            },
            {"carrier": "diesel", "activity_unit": "l", "kwh_per_unit": "10.04", "source": "NEA"},
        ]
    }
)
FLEET = (Sector.TRANSPORT, Subsector.MUNICIPAL_FLEET)
PRIVATE = (Sector.TRANSPORT, Subsector.PRIVATE_COMMERCIAL_TRANSPORT)


def line(
    where: tuple[Sector, Subsector],
    carrier: EnergyCarrier,
    amount: str,
    unit: str,
    kg: str,
    kind: EntryKind = EntryKind.EMISSION,
    basis: Basis = Basis.METERED,
) -> InventoryLine:
    return InventoryLine(
        where[0], where[1], carrier, kind, unit, Decimal(amount), Decimal(kg), 1, basis
    )


# 2013: 1000 l diesel at 2.67 kg/l = 2670 kg; 10000 kWh at 0.363 kg/kWh = 3630 kg; 6.3 t.
BASELINE = inventory_from_lines(
    AALBORG,
    2013,
    [
        line(FLEET, EnergyCarrier.DIESEL, "1000", "l", "2670"),
        line(FLEET, EnergyCarrier.ELECTRICITY, "10000", "kWh", "3630"),
        # Avoided emissions are no part of a BEI or MEI.
        line(PRIVATE, EnergyCarrier.DIESEL, "50", "l", "133.5", kind=EntryKind.AVOIDED_EMISSION),
    ],
)
# 2024: 400 l diesel at 2.66 = 1064 kg; 20000 kWh at 0.096 = 1920 kg; 300 l HVO at 0;
# a modelled detour of 10 l diesel at 2.66 = 26.6 kg, and 6 l metered on the same carrier.
MONITORING = inventory_from_lines(
    AALBORG,
    2024,
    [
        line(FLEET, EnergyCarrier.DIESEL, "400", "l", "1064"),
        line(FLEET, EnergyCarrier.ELECTRICITY, "20000", "kWh", "1920"),
        line(FLEET, EnergyCarrier.BIOFUEL, "300", "l", "0"),
        line(PRIVATE, EnergyCarrier.DIESEL, "10", "l", "26.6", basis=Basis.MODELLED),
        line(PRIVATE, EnergyCarrier.DIESEL, "6", "l", "15.96"),
    ],
)


def test_bei_and_mei_are_emissions_in_mwh_and_tonnes_per_sector_and_carrier() -> None:
    report = covenant_report(AALBORG, DK2020, BASELINE, MONITORING, CONTENTS)

    bei = {(r.subsector, r.energy_carrier): r for r in report.baseline.rows}
    assert set(bei) == {
        (Subsector.MUNICIPAL_FLEET, EnergyCarrier.DIESEL),
        (Subsector.MUNICIPAL_FLEET, EnergyCarrier.ELECTRICITY),
    }
    diesel = bei[(Subsector.MUNICIPAL_FLEET, EnergyCarrier.DIESEL)]
    # 1000 l x 10.04 kWh/l = 10040 kWh = 10.04 MWh; litres kept beside it.
    assert (diesel.activity_mwh, diesel.activity_amount, diesel.activity_unit) == (
        Decimal("10.04"),
        Decimal(1000),
        "l",
    )
    assert diesel.t_co2e == Decimal("2.67")
    assert bei[(Subsector.MUNICIPAL_FLEET, EnergyCarrier.ELECTRICITY)].activity_mwh == 10
    assert report.baseline.total_t_co2e == Decimal("6.3")

    mei = {(r.subsector, r.energy_carrier): r for r in report.monitoring.rows}
    # Biofuel has no energy content as data: its MWh stays blank, its litres are reported.
    hvo = mei[(Subsector.MUNICIPAL_FLEET, EnergyCarrier.BIOFUEL)]
    assert (hvo.activity_mwh, hvo.activity_amount) == (None, Decimal(300))
    # Metered and modelled diesel make one template cell: 16 l, 160.64 kWh, 42.56 kg.
    private = mei[(Subsector.PRIVATE_COMMERCIAL_TRANSPORT, EnergyCarrier.DIESEL)]
    assert (private.activity_amount, private.activity_mwh, private.t_co2e) == (
        Decimal(16),
        Decimal("0.16064"),
        Decimal("0.04256"),
    )
    # 1.064 + 1.92 + 0 + 0.04256
    assert report.monitoring.total_t_co2e == Decimal("3.02656")


def test_linear_trajectory_between_baseline_and_targets() -> None:
    assert trajectory_share(DK2020, 2013, 2013) == 1
    assert trajectory_share(DK2020, 2013, 2030) == Decimal("0.3")
    # Halfway from 2030 (0.3) to 2050 (0): 0.15.
    assert trajectory_share(DK2020, 2013, 2040) == Decimal("0.15")
    assert trajectory_share(DK2020, 2013, 2050) == 0
    assert trajectory_share(DK2020, 2013, 2060) == 0
    # 2024: 1 - 0.7 x 11/17 = 0.547058823...
    assert trajectory_share(DK2020, 2013, 2024).quantize(Decimal("0.000001")) == Decimal("0.547059")


def test_change_targets_and_gap_per_sector() -> None:
    report = covenant_report(AALBORG, DK2020, BASELINE, MONITORING, CONTENTS)

    assert [(t.target_year, t.t_co2e) for t in report.targets] == [
        (2030, Decimal("1.890")),  # 6.3 t x 0.3
        (2050, Decimal("0.000")),
    ]
    fleet, private = report.progress
    assert (fleet.sector, fleet.subsector) == FLEET
    assert fleet.baseline_t_co2e == Decimal("6.3")
    assert fleet.monitoring_t_co2e == Decimal("2.984")
    assert fleet.change_t_co2e == Decimal("-3.316")
    assert fleet.change_percent == Decimal("-52.6")  # -3.316 / 6.3 = -52.63 %
    assert fleet.trajectory_t_co2e == Decimal("3.446")  # 6.3 x 0.547059, to the kg
    assert fleet.gap_t_co2e == Decimal("-0.462")  # below the path
    # A sector absent from the baseline: no percentage, trajectory 0, all of it is gap.
    assert (private.sector, private.subsector) == PRIVATE
    assert private.change_percent is None
    assert (private.trajectory_t_co2e, private.gap_t_co2e) == (Decimal("0.000"), Decimal("0.04256"))
    assert report.monitoring_trajectory_t_co2e == Decimal("3.446")
    assert report.gap_t_co2e == Decimal("-0.41944")  # 3.02656 - 3.446


def test_a_monitoring_year_before_the_baseline_is_refused() -> None:
    with pytest.raises(InvalidReportRequest, match="before the baseline"):
        covenant_report(AALBORG, DK2020, MONITORING, BASELINE, CONTENTS)


def test_energy_content_without_a_source_is_refused() -> None:
    with pytest.raises(InvalidEnergyContentData, match="source"):
        EnergyContents.from_mapping(
            {"contents": [{"carrier": "diesel", "activity_unit": "l", "kwh_per_unit": "10.04"}]}
        )


def test_shipped_energy_content_names_its_sources() -> None:
    from emissions_ledger.adapters.data_files import load_energy_contents

    contents = load_energy_contents()
    diesel = contents.of(EnergyCarrier.DIESEL, "l")
    assert diesel is not None and diesel.kwh_per_unit == Decimal("10.04")
    assert "Norwegian Environment Agency" in diesel.source
    assert contents.of(EnergyCarrier.BIOFUEL, "l") is None
