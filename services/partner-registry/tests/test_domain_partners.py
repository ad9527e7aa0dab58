"""Carrier authorisation and partner filtering."""

from partner_registry.domain.partners import (
    MOLO_HUBS,
    OrganisationKind,
    Participation,
    Partner,
    PartnerRole,
    authorize_carrier,
    filter_partners,
)


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


HOMERUNNER = _partner(
    "homerunner", (MOLO_HUBS, PartnerRole.PARTNER), (MOLO_HUBS, PartnerRole.CARRIER)
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


def test_registered_molo_hubs_carrier_is_authorised_at_any_hub() -> None:
    for hub_id in ("hub-aalborg-001", "hub-aalborg-050"):
        decision = authorize_carrier(HOMERUNNER, hub_id)

        assert decision.authorized
        assert hub_id in decision.reason


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


def test_filter_accepts_any_iterable() -> None:
    assert _ids(filter_partners(iter(ALL), MOLO_HUBS, PartnerRole.WASTE_OPERATOR)) == ["nordvaerk"]
