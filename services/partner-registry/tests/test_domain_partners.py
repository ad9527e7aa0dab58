"""Carrier authorisation, partner filtering, and a municipality's Covenant method."""

import dataclasses
from datetime import UTC, datetime, timedelta

from partner_registry.adapters.events import partner_from_proto, partner_to_proto
from partner_registry.domain.partners import (
    MOLO_HUBS,
    CarrierAuthorization,
    CovenantCommitment,
    EmissionFactorApproach,
    EmissionReportingUnit,
    OrganisationKind,
    Participation,
    Partner,
    PartnerRole,
    authorize_carrier,
    filter_partners,
    page_after,
    partner_problem,
)

NOW = datetime(2026, 6, 9, 10, 0, tzinfo=UTC)


def _partner(partner_id: str, *roles: tuple[str, PartnerRole]) -> Partner:
    return Partner(
        partner_id=partner_id,
        name=partner_id.replace("-", " ").title(),
        kind=OrganisationKind.COMPANY,
        country_code="DK",
        participations=tuple(
            Participation(initiative_id=initiative_id, role=role, since_year=None)
            for initiative_id, role in roles
        ),
    )


HOMERUNNER = dataclasses.replace(
    _partner("homerunner", (MOLO_HUBS, PartnerRole.PARTNER), (MOLO_HUBS, PartnerRole.CARRIER)),
    carrier_authorizations=(
        CarrierAuthorization("hub-aalborg-001"),
        CarrierAuthorization("hub-aalborg-050"),
    ),
)
AALBORG_UNIVERSITET = _partner("aalborg-universitet", ("green-fleets", PartnerRole.PARTNER))
AALBORG_KOMMUNE = _partner(
    "aalborg-kommune", ("green-fleets", PartnerRole.LEAD), (MOLO_HUBS, PartnerRole.LEAD)
)
# Carrier in another initiative only: must not count as a MoLo Hubs carrier.
ELSEWHERE_CARRIER = _partner("elsewhere-carrier", ("green-fleets", PartnerRole.CARRIER))
NORDVAERK = _partner("nordvaerk", (MOLO_HUBS, PartnerRole.WASTE_OPERATOR))
UNATTACHED = _partner("unattached")

ALL = [NORDVAERK, HOMERUNNER, UNATTACHED, AALBORG_KOMMUNE, ELSEWHERE_CARRIER, AALBORG_UNIVERSITET]


def _ids(partners: list[Partner]) -> list[str]:
    return [partner.partner_id for partner in partners]


def test_carrier_is_authorised_at_the_hubs_it_holds_an_authorisation_for() -> None:
    for hub_id in ("hub-aalborg-001", "hub-aalborg-050"):
        decision = authorize_carrier(HOMERUNNER, hub_id, NOW)

        assert decision.authorized
        assert hub_id in decision.reason
    elsewhere = authorize_carrier(HOMERUNNER, "hub-aalborg-002", NOW)
    assert not elsewhere.authorized
    assert elsewhere.reason == "homerunner is not authorised at hub hub-aalborg-002"


def test_authorisation_counts_only_within_its_period() -> None:
    period = CarrierAuthorization("hub-aalborg-001", NOW, NOW + timedelta(days=1))
    carrier = dataclasses.replace(HOMERUNNER, carrier_authorizations=(period,))

    assert not authorize_carrier(carrier, "hub-aalborg-001", NOW - timedelta(seconds=1)).authorized
    assert authorize_carrier(carrier, "hub-aalborg-001", NOW).authorized
    # The end is exclusive: a revocation at a moment is in force at that moment.
    ended = authorize_carrier(carrier, "hub-aalborg-001", NOW + timedelta(days=1))
    assert not ended.authorized
    assert "not valid now" in ended.reason


def test_partner_without_carrier_role_is_refused() -> None:
    decision = authorize_carrier(AALBORG_UNIVERSITET, "hub-aalborg-001")

    assert not decision.authorized
    assert decision.reason == "aalborg-universitet is not registered as a MoLo Hubs carrier"


def test_lead_and_waste_operator_are_not_carriers() -> None:
    assert not authorize_carrier(AALBORG_KOMMUNE, "hub-aalborg-001").authorized
    assert not authorize_carrier(NORDVAERK, "hub-aalborg-001").authorized


def test_carrier_of_another_initiative_is_refused() -> None:
    decision = authorize_carrier(ELSEWHERE_CARRIER, "hub-aalborg-001")

    assert not decision.authorized
    assert "not registered as a MoLo Hubs carrier" in decision.reason


def test_unknown_partner_is_refused() -> None:
    decision = authorize_carrier(None, "hub-aalborg-001")

    assert not decision.authorized
    assert decision.reason == "unknown partner"


def test_no_filter_returns_everyone_sorted_by_id() -> None:
    assert _ids(filter_partners(ALL, None, None)) == [
        "aalborg-kommune",
        "aalborg-universitet",
        "elsewhere-carrier",
        "homerunner",
        "nordvaerk",
        "unattached",
    ]


def test_filter_by_initiative() -> None:
    assert _ids(filter_partners(ALL, MOLO_HUBS, None)) == [
        "aalborg-kommune",
        "homerunner",
        "nordvaerk",
    ]


def test_filter_by_role_across_initiatives() -> None:
    assert _ids(filter_partners(ALL, None, PartnerRole.CARRIER)) == [
        "elsewhere-carrier",
        "homerunner",
    ]


def test_filter_by_initiative_and_role_needs_both_in_one_participation() -> None:
    assert _ids(filter_partners(ALL, MOLO_HUBS, PartnerRole.CARRIER)) == ["homerunner"]
    assert _ids(filter_partners(ALL, "green-fleets", PartnerRole.LEAD)) == ["aalborg-kommune"]
    assert filter_partners(ALL, "kimo", None) == []


def test_filter_by_kind_and_country() -> None:
    swedish_university = dataclasses.replace(
        AALBORG_UNIVERSITET,
        partner_id="hogskolan-i-halmstad",
        kind=OrganisationKind.UNIVERSITY,
        country_code="SE",
    )
    partners = [*ALL, swedish_university]

    assert _ids(filter_partners(partners, None, None, kind=OrganisationKind.UNIVERSITY)) == [
        "hogskolan-i-halmstad"
    ]
    assert filter_partners(partners, None, None, kind=OrganisationKind.NETWORK) == []
    assert _ids(filter_partners(partners, None, None, country_code="SE")) == [
        "hogskolan-i-halmstad"
    ]
    assert _ids(
        filter_partners(partners, "green-fleets", PartnerRole.PARTNER, country_code="DK")
    ) == ["aalborg-universitet"]


def test_pages_follow_the_ids_and_end_without_a_next_page() -> None:
    everyone = filter_partners(ALL, None, None)

    first = page_after(everyone, None, 4)
    second = page_after(everyone, first.last_id, 4)

    assert _ids(first.partners) == _ids(everyone)[:4]
    assert first.last_id == "homerunner"
    assert _ids(second.partners) == ["nordvaerk", "unattached"]
    assert second.last_id is None
    assert page_after(everyone, None, 6).last_id is None


def test_filter_accepts_any_iterable() -> None:
    assert _ids(filter_partners(iter(ALL), MOLO_HUBS, PartnerRole.WASTE_OPERATOR)) == ["nordvaerk"]


def test_a_commitment_states_its_factor_approach_and_lca_reports_in_co2e() -> None:
    municipality = dataclasses.replace(
        AALBORG_KOMMUNE, kind=OrganisationKind.MUNICIPALITY, participations=()
    )
    lca = CovenantCommitment(
        signatory_year=2014,
        baseline_year=None,
        emission_factor_approach=EmissionFactorApproach.LCA,
        emission_reporting_unit=EmissionReportingUnit.T_CO2E,
    )
    stated = dataclasses.replace(municipality, covenant_commitment=lca)
    assert partner_problem(stated, {}) is None
    # The wire keeps it; a commitment that names no approach is IPCC in t CO2, and LCA with no
    # unit is in t CO2e.
    assert partner_from_proto(partner_to_proto(stated)).covenant_commitment == lca
    plain = partner_to_proto(stated)
    plain.covenant_commitment.ClearField("emission_reporting_unit")
    assert partner_from_proto(plain).covenant_commitment == lca
    plain.covenant_commitment.ClearField("emission_factor_approach")
    default = partner_from_proto(plain).covenant_commitment
    assert default is not None
    assert (default.emission_factor_approach, default.emission_reporting_unit) == (
        EmissionFactorApproach.IPCC,
        EmissionReportingUnit.T_CO2,
    )
    # LCA factors count CO2 equivalents: LCA in t CO2 is refused, naming the field.
    mixed = dataclasses.replace(
        municipality,
        covenant_commitment=dataclasses.replace(
            lca, emission_reporting_unit=EmissionReportingUnit.T_CO2
        ),
    )
    problem = partner_problem(mixed, {})
    assert problem is not None
    assert problem.field == "covenant_commitment.emission_reporting_unit"
