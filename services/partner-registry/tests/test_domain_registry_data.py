"""The seed file and the validation of registry data."""

import copy
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from partner_registry.domain.partners import (
    MOLO_HUBS,
    InvalidRegistryData,
    OrganisationKind,
    Partner,
    PartnerRole,
    Representative,
    registry_from_mapping,
)

SEED = Path(__file__).parents[1] / "src" / "partner_registry" / "data" / "partners.yaml"


def _seed_data() -> dict[str, Any]:
    data = yaml.safe_load(SEED.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _seed_partners() -> dict[str, Partner]:
    _, partners = registry_from_mapping(_seed_data())
    return {partner.partner_id: partner for partner in partners}


def _minimal() -> dict[str, Any]:
    return {
        "initiatives": [{"initiative_id": "green-fleets", "name": "Green Fleets"}],
        "partners": [
            {
                "partner_id": "skive-kommune",
                "name": "Skive Kommune",
                "kind": "municipality",
                "country_code": "DK",
                "participations": [{"initiative_id": "green-fleets", "role": "partner"}],
            }
        ],
    }


def _error_for(data: dict[str, Any]) -> InvalidRegistryData:
    with pytest.raises(InvalidRegistryData) as caught:
        registry_from_mapping(data)
    return caught.value


def test_seed_has_the_five_initiatives() -> None:
    initiatives, _ = registry_from_mapping(_seed_data())

    assert [initiative.initiative_id for initiative in initiatives] == [
        "aalborg-commitments",
        "green-fleets",
        "molo-hubs",
        "kimo",
        "covenant-of-mayors",
    ]


def test_seed_keeps_programmes_and_dates() -> None:
    initiatives = {i.initiative_id: i for i in registry_from_mapping(_seed_data())[0]}

    green_fleets = initiatives["green-fleets"]
    assert green_fleets.programme == "Interreg Öresund-Kattegat-Skagerrak"
    assert (green_fleets.starts_on, green_fleets.ends_on) == (date(2024, 1, 1), date(2026, 12, 31))
    assert initiatives[MOLO_HUBS].programme == "Interreg North Sea"
    assert initiatives["kimo"].starts_on is None


def test_seed_names_every_organisation_as_the_source_spells_it() -> None:
    names = {partner.name for partner in _seed_partners().values()}

    assert names == {
        "Aalborg Kommune",
        "ICLEI",
        "Aalborg Universitet",
        "Dalslands miljö- och energiförbund",
        "Foreningen for danske elbiler",
        "Fyrbodals kommunalförbund",
        "Hjørring Kommune",
        "Högskolan i Halmstad",
        "Sjuhärads Kommunalförbund / Boråsregionen",
        "Skive Kommune",
        "Homerunner",
        "Huset Venture Nordjylland",
        "Nordværk",
    }


def test_seed_records_aalborg_kommune_roles() -> None:
    aalborg = _seed_partners()["aalborg-kommune"]
    roles = {(p.initiative_id, p.role): p for p in aalborg.participations}

    assert aalborg.kind is OrganisationKind.MUNICIPALITY
    assert aalborg.country_code == "DK"
    assert set(roles) == {
        ("aalborg-commitments", PartnerRole.COORDINATOR),
        ("green-fleets", PartnerRole.LEAD),
        ("molo-hubs", PartnerRole.LEAD),
        ("kimo", PartnerRole.MEMBER),
        ("covenant-of-mayors", PartnerRole.SIGNATORY),
    }
    assert roles[("covenant-of-mayors", PartnerRole.SIGNATORY)].since_year == 2014
    assert roles[("kimo", PartnerRole.MEMBER)].since_year is None
    assert roles[("kimo", PartnerRole.MEMBER)].representatives == (
        Representative(name="Per Clausen", title="Byrådsmedlem (Ø)"),
    )


def test_seed_green_fleets_has_eight_partners_besides_the_lead() -> None:
    partners = _seed_partners().values()
    green_fleet_partners = [
        p for p in partners if p.takes_part_in("green-fleets", PartnerRole.PARTNER)
    ]

    assert len(green_fleet_partners) == 8
    swedish = {p.partner_id for p in green_fleet_partners if p.country_code == "SE"}
    assert swedish == {
        "dalslands-miljo-och-energiforbund",
        "fyrbodals-kommunalforbund",
        "hogskolan-i-halmstad",
        "sjuharads-kommunalforbund",
    }


def test_seed_molo_hubs_roles() -> None:
    partners = _seed_partners()

    assert partners["homerunner"].takes_part_in(MOLO_HUBS, PartnerRole.CARRIER)
    assert partners["homerunner"].takes_part_in(MOLO_HUBS, PartnerRole.PARTNER)
    assert partners["huset-venture-nordjylland"].takes_part_in(MOLO_HUBS, PartnerRole.PARTNER)
    assert not partners["huset-venture-nordjylland"].takes_part_in(MOLO_HUBS, PartnerRole.CARRIER)
    assert partners["nordvaerk"].takes_part_in(MOLO_HUBS, PartnerRole.WASTE_OPERATOR)
    assert partners["iclei"].kind is OrganisationKind.NETWORK


def test_seed_partners_start_at_revision_one() -> None:
    assert {partner.revision for partner in _seed_partners().values()} == {1}


def test_minimal_registry_builds_with_defaults() -> None:
    initiatives, partners = registry_from_mapping(_minimal())

    assert initiatives[0].programme == ""
    assert initiatives[0].starts_on is None
    assert partners[0].participations[0].since_year is None
    assert partners[0].participations[0].representatives == ()
    assert partners[0].revision == 1


def test_dates_given_as_text_are_parsed() -> None:
    data = _minimal()
    data["initiatives"][0]["starts_on"] = "2024-01-01"

    initiatives, _ = registry_from_mapping(data)

    assert initiatives[0].starts_on == date(2024, 1, 1)


def test_participation_in_unknown_initiative_is_rejected() -> None:
    data = _minimal()
    data["partners"][0]["participations"][0]["initiative_id"] = "blue-fleets"

    error = _error_for(data)

    assert error.entry == "partners[0] (skive-kommune)"
    assert error.field == "participations[0].initiative_id"
    assert "blue-fleets" in str(error)


def test_duplicate_partner_id_is_rejected() -> None:
    data = _minimal()
    data["partners"].append(copy.deepcopy(data["partners"][0]))

    error = _error_for(data)

    assert error.entry == "partners[1] (skive-kommune)"
    assert error.field == "partner_id"
    assert "duplicate" in error.problem


def test_duplicate_initiative_id_is_rejected() -> None:
    data = _minimal()
    data["initiatives"].append({"initiative_id": "green-fleets", "name": "Again"})

    error = _error_for(data)

    assert error.entry == "initiatives[1] (green-fleets)"
    assert error.field == "initiative_id"


def test_same_role_twice_in_one_initiative_is_rejected() -> None:
    data = _minimal()
    participations = data["partners"][0]["participations"]
    participations.append(dict(participations[0]))

    error = _error_for(data)

    assert error.field == "participations[1].role"


def test_bad_role_is_rejected_naming_the_field_and_the_choices() -> None:
    data = _minimal()
    data["partners"][0]["participations"][0]["role"] = "boss"

    error = _error_for(data)

    assert error.field == "participations[0].role"
    assert "'boss'" in error.problem
    assert "waste_operator" in error.problem


def test_bad_kind_is_rejected() -> None:
    data = _minimal()
    data["partners"][0]["kind"] = "kommune"

    error = _error_for(data)

    assert (error.entry, error.field) == ("partners[0] (skive-kommune)", "kind")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("country_code", "dk"),
        ("country_code", "DNK"),
        ("partner_id", "Skive Kommune"),
        ("name", "  "),
        ("name", None),
        ("revision", 0),
        ("revision", True),
        ("participations", {"initiative_id": "green-fleets"}),
    ],
)
def test_bad_partner_field_is_named(field: str, value: object) -> None:
    data = _minimal()
    data["partners"][0][field] = value

    assert _error_for(data).field == field


@pytest.mark.parametrize("value", [True, "2014", 214.0, 0])
def test_since_year_must_be_a_year(value: object) -> None:
    data = _minimal()
    data["partners"][0]["participations"][0]["since_year"] = value

    assert _error_for(data).field == "participations[0].since_year"


def test_representative_without_name_is_rejected() -> None:
    data = _minimal()
    data["partners"][0]["participations"][0]["representatives"] = [{"title": "Byrådsmedlem"}]

    assert _error_for(data).field == "participations[0].representatives[0].name"


def test_end_before_start_is_rejected() -> None:
    data = _minimal()
    data["initiatives"][0]["starts_on"] = date(2026, 1, 1)
    data["initiatives"][0]["ends_on"] = date(2024, 1, 1)

    error = _error_for(data)

    assert (error.entry, error.field) == ("initiatives[0] (green-fleets)", "ends_on")


def test_unparseable_date_is_rejected() -> None:
    data = _minimal()
    data["initiatives"][0]["starts_on"] = "spring 2024"

    assert _error_for(data).field == "starts_on"


def test_unknown_field_is_rejected_rather_than_dropped() -> None:
    data = _minimal()
    data["partners"][0]["country"] = "DK"

    error = _error_for(data)

    assert error.field == "country"
    assert "unknown field" in error.problem


def test_unknown_section_is_rejected() -> None:
    data = _minimal()
    data["organisations"] = []

    assert _error_for(data).field == "organisations"


def test_entry_that_is_not_a_mapping_is_rejected() -> None:
    data = _minimal()
    data["initiatives"].append("kimo")

    error = _error_for(data)

    assert error.entry == "initiatives[1]"
    assert "mapping" in error.problem
