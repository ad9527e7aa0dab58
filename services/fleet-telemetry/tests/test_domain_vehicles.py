import pytest

from fleet_telemetry.domain.vehicles import (
    CovenantSubsector,
    FuelType,
    InvalidVehicle,
    OwnerKind,
    Vehicle,
    VehicleClass,
    new_vehicle,
    reclassified,
)


def register(
    *,
    vehicle_id: str = "ak-van-017",
    owner_partner_id: str = "aalborg-kommune",
    municipality_id: str = "aalborg-kommune",
    fuel_type: FuelType | None = FuelType.DIESEL,
    vehicle_class: VehicleClass | None = VehicleClass.VAN,
    covenant_subsector: CovenantSubsector | None = None,
    registration_plate: str = "AB 12 345",
    owner_kind: OwnerKind = OwnerKind.MUNICIPALITY,
) -> Vehicle:
    return new_vehicle(
        vehicle_id=vehicle_id,
        owner_partner_id=owner_partner_id,
        municipality_id=municipality_id,
        fuel_type=fuel_type,
        vehicle_class=vehicle_class,
        covenant_subsector=covenant_subsector,
        registration_plate=registration_plate,
        owner_kind=owner_kind,
    )


def test_enum_values_are_lower_case_names() -> None:
    assert [f.value for f in FuelType] == [
        "diesel",
        "petrol",
        "electric",
        "hvo100",
        "biogas",
        "natural_gas",
    ]
    assert [c.value for c in VehicleClass] == [
        "passenger_car",
        "van",
        "truck",
        "refuse_truck",
        "bus",
    ]
    assert [s.value for s in CovenantSubsector] == [
        "municipal_fleet",
        "public_transport",
        "private_commercial_transport",
    ]


def test_valid_registration_keeps_every_field() -> None:
    vehicle = register(covenant_subsector=CovenantSubsector.PUBLIC_TRANSPORT)
    assert vehicle == Vehicle(
        vehicle_id="ak-van-017",
        owner_partner_id="aalborg-kommune",
        municipality_id="aalborg-kommune",
        fuel_type=FuelType.DIESEL,
        vehicle_class=VehicleClass.VAN,
        covenant_subsector=CovenantSubsector.PUBLIC_TRANSPORT,
        registration_plate="AB 12 345",
        subsector_assigned=True,
    )


def test_vehicle_is_immutable() -> None:
    vehicle = register()
    with pytest.raises(AttributeError):
        vehicle.fuel_type = FuelType.ELECTRIC  # type: ignore[misc]


def test_municipality_owned_vehicle_defaults_to_municipal_fleet() -> None:
    assert register().covenant_subsector is CovenantSubsector.MUNICIPAL_FLEET


def test_vehicle_of_a_municipal_company_defaults_to_municipal_fleet() -> None:
    vehicle = register(owner_partner_id="aalborg-forsyning", owner_kind=OwnerKind.MUNICIPAL_COMPANY)
    assert vehicle.covenant_subsector is CovenantSubsector.MUNICIPAL_FLEET
    assert not vehicle.subsector_assigned


def test_own_vehicles_of_the_municipality_are_municipal_whatever_its_kind_says() -> None:
    vehicle = register(owner_kind=OwnerKind.OTHER)
    assert vehicle.covenant_subsector is CovenantSubsector.MUNICIPAL_FLEET


def test_public_transport_operator_vehicle_defaults_to_public_transport() -> None:
    vehicle = register(
        owner_partner_id="nordjyllands-trafikselskab",
        owner_kind=OwnerKind.PUBLIC_TRANSPORT_OPERATOR,
    )
    assert vehicle.covenant_subsector is CovenantSubsector.PUBLIC_TRANSPORT


def test_contractor_vehicle_defaults_to_private_and_commercial_transport() -> None:
    vehicle = register(owner_partner_id="nordvaerk", owner_kind=OwnerKind.OTHER)
    assert vehicle.covenant_subsector is CovenantSubsector.PRIVATE_COMMERCIAL_TRANSPORT


def test_explicit_subsector_overrides_the_default() -> None:
    vehicle = register(
        owner_partner_id="nordvaerk",
        covenant_subsector=CovenantSubsector.MUNICIPAL_FLEET,
        owner_kind=OwnerKind.OTHER,
    )
    assert vehicle.covenant_subsector is CovenantSubsector.MUNICIPAL_FLEET
    assert vehicle.subsector_assigned


def test_a_change_of_the_owner_kind_reclassifies_only_what_followed_the_kind() -> None:
    following = register(owner_partner_id="nordvaerk", owner_kind=OwnerKind.OTHER)
    chosen = register(
        owner_partner_id="nordvaerk",
        covenant_subsector=CovenantSubsector.PRIVATE_COMMERCIAL_TRANSPORT,
        owner_kind=OwnerKind.OTHER,
    )
    moved = reclassified(following, OwnerKind.PUBLIC_TRANSPORT_OPERATOR)
    assert moved.covenant_subsector is CovenantSubsector.PUBLIC_TRANSPORT
    assert moved == register(
        owner_partner_id="nordvaerk", owner_kind=OwnerKind.PUBLIC_TRANSPORT_OPERATOR
    )
    assert reclassified(chosen, OwnerKind.PUBLIC_TRANSPORT_OPERATOR) == chosen


def test_empty_plate_is_allowed_and_sixteen_characters_fit() -> None:
    assert register(registration_plate="").registration_plate == ""
    assert register(registration_plate="X" * 16).registration_plate == "X" * 16


@pytest.mark.parametrize("field", ["vehicle_id", "owner_partner_id", "municipality_id"])
@pytest.mark.parametrize(
    "bad_value",
    ["", "Upper-case", "-leading-dash", "has space", "under_score", "a" * 64, "æble"],
)
def test_ids_must_be_slugs(field: str, bad_value: str) -> None:
    with pytest.raises(InvalidVehicle) as raised:
        register(**{field: bad_value})  # type: ignore[arg-type]
    assert raised.value.field == field
    assert field in str(raised.value)


def test_longest_slug_is_accepted() -> None:
    assert register(vehicle_id="a" * 63).vehicle_id == "a" * 63


def test_fuel_type_is_required() -> None:
    with pytest.raises(InvalidVehicle) as raised:
        register(fuel_type=None)
    assert raised.value.field == "fuel_type"


def test_vehicle_class_is_required() -> None:
    with pytest.raises(InvalidVehicle) as raised:
        register(vehicle_class=None)
    assert raised.value.field == "vehicle_class"


def test_plate_longer_than_sixteen_characters_is_rejected() -> None:
    with pytest.raises(InvalidVehicle) as raised:
        register(registration_plate="X" * 17)
    assert raised.value.field == "registration_plate"
    assert "17" in raised.value.message


def test_invalid_vehicle_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="vehicle_class is required"):
        register(vehicle_class=None)


@pytest.mark.parametrize(
    ("fuel_type", "burns_fuel"),
    [
        (FuelType.DIESEL, True),
        (FuelType.PETROL, True),
        (FuelType.HVO100, True),
        (FuelType.BIOGAS, True),
        (FuelType.NATURAL_GAS, True),
        (FuelType.ELECTRIC, False),
    ],
)
def test_combustion_fuel_types_burn_fuel(fuel_type: FuelType, burns_fuel: bool) -> None:
    assert register(fuel_type=fuel_type).burns_fuel is burns_fuel
