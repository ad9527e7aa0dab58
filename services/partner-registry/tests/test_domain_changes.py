"""Revisions, field masks, authorisations and revocations (the registry's write rules)."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from partner_registry.domain import (
    MOLO_HUBS,
    PARTNER_FIELDS,
    CarrierAuthorization,
    Initiative,
    InvalidMask,
    OrganisationKind,
    Participation,
    Partner,
    PartnerRole,
    StaleRevision,
    apply_mask,
    check_revision,
    mask_paths,
    partner_problem,
    with_authorization,
    with_revocation,
)

NOW = datetime(2026, 6, 9, 10, 0, tzinfo=UTC)
MOLO = Initiative(
    MOLO_HUBS, "MoLo Hubs", "", "", None, None, hub_ids=("molo-aalborg-01", "molo-aalborg-02")
)
INITIATIVES = {MOLO_HUBS: MOLO}
CARRIER = Partner(
    partner_id="homerunner",
    name="Homerunner",
    kind=OrganisationKind.COMPANY,
    country_code="DK",
    participations=(Participation(MOLO_HUBS, PartnerRole.CARRIER, None),),
    revision=3,
    carrier_authorizations=(CarrierAuthorization("molo-aalborg-01"),),
)


def test_a_change_against_the_current_revision_passes_and_any_other_is_stale() -> None:
    check_revision("partner homerunner", current=3, expected=3)
    for stale in (1, 2, 4, 0):
        with pytest.raises(StaleRevision) as raised:
            check_revision("partner homerunner", current=3, expected=stale)
        assert (raised.value.current, raised.value.expected) == (3, stale)
        assert "revision 3" in str(raised.value)


def test_masked_fields_change_others_stay_and_the_revision_goes_up_by_one() -> None:
    patch = dataclasses.replace(
        CARRIER, name="Homerunner ApS", kind=OrganisationKind.PUBLIC_TRANSPORT_OPERATOR
    )

    changed = apply_mask(CARRIER, patch, mask_paths(["kind"], PARTNER_FIELDS))

    assert changed.kind is OrganisationKind.PUBLIC_TRANSPORT_OPERATOR
    assert changed.name == "Homerunner"
    assert changed.revision == 4
    assert changed.carrier_authorizations == CARRIER.carrier_authorizations


def test_a_masked_field_left_empty_in_the_patch_is_cleared() -> None:
    patch = dataclasses.replace(CARRIER, carrier_authorizations=())

    changed = apply_mask(CARRIER, patch, mask_paths(["carrier_authorizations"], PARTNER_FIELDS))

    assert changed.carrier_authorizations == ()


@pytest.mark.parametrize(
    "paths", [[], ["revision"], ["partner_id"], ["participations.role"], ["nmae"]]
)
def test_masks_name_changeable_top_level_fields_only(paths: list[str]) -> None:
    with pytest.raises(InvalidMask):
        mask_paths(paths, PARTNER_FIELDS)


def test_authorising_replaces_the_authorisation_at_that_hub() -> None:
    until = NOW + timedelta(days=30)

    changed = with_authorization(CARRIER, CarrierAuthorization("molo-aalborg-01", NOW, until))

    assert changed.carrier_authorizations == (CarrierAuthorization("molo-aalborg-01", NOW, until),)
    assert changed.revision == 4


def test_revoking_ends_the_authorisation_now_and_keeps_it_as_history() -> None:
    revoked = with_revocation(CARRIER, "molo-aalborg-01", NOW)

    assert revoked is not None
    assert revoked.carrier_authorizations == (CarrierAuthorization("molo-aalborg-01", None, NOW),)
    assert revoked.revision == 4
    # Revoking again changes nothing, so no new revision is published.
    assert with_revocation(revoked, "molo-aalborg-01", NOW + timedelta(seconds=1)) is None
    assert with_revocation(CARRIER, "molo-aalborg-02", NOW) is None


def test_revoking_one_that_has_not_started_drops_it() -> None:
    later = dataclasses.replace(
        CARRIER,
        carrier_authorizations=(CarrierAuthorization("molo-aalborg-01", NOW + timedelta(days=1)),),
    )

    revoked = with_revocation(later, "molo-aalborg-01", NOW)

    assert revoked is not None and revoked.carrier_authorizations == ()


def test_valid_partner_has_no_problem() -> None:
    assert partner_problem(CARRIER, INITIATIVES) is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"partner_id": "Home Runner"}, "partner_id"),
        ({"name": " "}, "name"),
        ({"country_code": "dk"}, "country_code"),
        (
            {"carrier_authorizations": (CarrierAuthorization("molo-aalborg-99"),)},
            "carrier_authorizations[0].hub_id",
        ),
        (
            {"carrier_authorizations": (CarrierAuthorization("molo-aalborg-01", NOW, NOW),)},
            "carrier_authorizations[0].valid_until",
        ),
        (
            {"participations": (Participation("green-fleets", PartnerRole.PARTNER, None),)},
            "participations[0].initiative_id",
        ),
        (
            {
                "participations": (
                    Participation(MOLO_HUBS, PartnerRole.CARRIER, 2025, until_year=2024),
                )
            },
            "participations[0].until_year",
        ),
    ],
)
def test_partner_problems_name_the_field(change: dict[str, object], field: str) -> None:
    partner = dataclasses.replace(CARRIER, **change)  # type: ignore[arg-type]

    problem = partner_problem(partner, INITIATIVES)

    assert problem is not None and problem.field == field


def test_only_a_molo_hubs_carrier_holds_authorisations() -> None:
    not_a_carrier = dataclasses.replace(CARRIER, participations=())

    problem = partner_problem(not_a_carrier, INITIATIVES)

    assert problem is not None and problem.field == "carrier_authorizations"
