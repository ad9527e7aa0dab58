"""Vehicles and the Covenant of Mayors transport sub-sector their activity is reported under."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

MAX_REGISTRATION_PLATE_LENGTH = 16

_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class FuelType(StrEnum):
    DIESEL = "diesel"
    PETROL = "petrol"
    ELECTRIC = "electric"
    HVO100 = "hvo100"
    BIOGAS = "biogas"
    NATURAL_GAS = "natural_gas"


class VehicleClass(StrEnum):
    PASSENGER_CAR = "passenger_car"
    VAN = "van"
    TRUCK = "truck"
    REFUSE_TRUCK = "refuse_truck"
    BUS = "bus"


class CovenantSubsector(StrEnum):
    MUNICIPAL_FLEET = "municipal_fleet"
    PUBLIC_TRANSPORT = "public_transport"
    PRIVATE_COMMERCIAL_TRANSPORT = "private_commercial_transport"


class OwnerKind(StrEnum):
    """What the partner registry says an owner is, as far as the Covenant sub-sector of its
    vehicles goes."""

    MUNICIPALITY = "municipality"
    # A company the municipality owns (a utility, say): its vehicles are the municipal fleet.
    MUNICIPAL_COMPANY = "municipal_company"
    PUBLIC_TRANSPORT_OPERATOR = "public_transport_operator"
    # Contractors and every other kind of organisation.
    OTHER = "other"


# Fuel types whose telematics units must report a cumulative fuel counter.
COMBUSTION_FUEL_TYPES: frozenset[FuelType] = frozenset(
    {
        FuelType.DIESEL,
        FuelType.PETROL,
        FuelType.HVO100,
        FuelType.BIOGAS,
        FuelType.NATURAL_GAS,
    }
)


@dataclass(frozen=True)
class Vehicle:
    vehicle_id: str
    owner_partner_id: str
    municipality_id: str
    fuel_type: FuelType
    vehicle_class: VehicleClass
    covenant_subsector: CovenantSubsector
    registration_plate: str = ""
    # Chosen in the registration; otherwise the sub-sector follows the owner's kind, also
    # when the registry changes it later.
    subsector_assigned: bool = False

    @property
    def burns_fuel(self) -> bool:
        return self.fuel_type in COMBUSTION_FUEL_TYPES


class InvalidVehicle(ValueError):
    """A vehicle registration that breaks a rule; `field` names the offending proto field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def is_slug(value: str) -> bool:
    return _SLUG.fullmatch(value) is not None


def default_subsector(
    owner_partner_id: str, municipality_id: str, owner_kind: OwnerKind
) -> CovenantSubsector:
    """The sub-sector of a vehicle whose registration chose none: the municipality's own
    vehicles and its companies' are the municipal fleet, a public transport operator's are
    public transport, a contractor's (and anyone else's) private and commercial transport."""
    if owner_partner_id == municipality_id or owner_kind in (
        OwnerKind.MUNICIPALITY,
        OwnerKind.MUNICIPAL_COMPANY,
    ):
        return CovenantSubsector.MUNICIPAL_FLEET
    if owner_kind is OwnerKind.PUBLIC_TRANSPORT_OPERATOR:
        return CovenantSubsector.PUBLIC_TRANSPORT
    return CovenantSubsector.PRIVATE_COMMERCIAL_TRANSPORT


def check_registration(
    vehicle_id: str,
    owner_partner_id: str,
    municipality_id: str,
    fuel_type: FuelType | None,
    vehicle_class: VehicleClass | None,
    registration_plate: str,
) -> None:
    """The rules a registration must meet on its own (the registry's say comes after)."""
    for field, value in (
        ("vehicle_id", vehicle_id),
        ("owner_partner_id", owner_partner_id),
        ("municipality_id", municipality_id),
    ):
        if not value:
            raise InvalidVehicle(field, f"{field} is required")
        if not is_slug(value):
            raise InvalidVehicle(
                field,
                f"{field} {value!r} must be 1-63 characters of a-z, 0-9 and '-', "
                "starting with a letter or digit",
            )
    if fuel_type is None:
        raise InvalidVehicle("fuel_type", "fuel_type is required")
    if vehicle_class is None:
        raise InvalidVehicle("vehicle_class", "vehicle_class is required")
    if len(registration_plate) > MAX_REGISTRATION_PLATE_LENGTH:
        raise InvalidVehicle(
            "registration_plate",
            f"registration_plate has {len(registration_plate)} characters, "
            f"at most {MAX_REGISTRATION_PLATE_LENGTH} allowed",
        )


def new_vehicle(
    vehicle_id: str,
    owner_partner_id: str,
    municipality_id: str,
    fuel_type: FuelType | None,
    vehicle_class: VehicleClass | None,
    covenant_subsector: CovenantSubsector | None,
    registration_plate: str,
    owner_kind: OwnerKind,
) -> Vehicle:
    """Validate a registration and fill in the owner's sub-sector when none was chosen."""
    check_registration(
        vehicle_id, owner_partner_id, municipality_id, fuel_type, vehicle_class, registration_plate
    )
    assert fuel_type is not None and vehicle_class is not None
    return Vehicle(
        vehicle_id=vehicle_id,
        owner_partner_id=owner_partner_id,
        municipality_id=municipality_id,
        fuel_type=fuel_type,
        vehicle_class=vehicle_class,
        covenant_subsector=covenant_subsector
        or default_subsector(owner_partner_id, municipality_id, owner_kind),
        registration_plate=registration_plate,
        subsector_assigned=covenant_subsector is not None,
    )


def reclassified(vehicle: Vehicle, owner_kind: OwnerKind) -> Vehicle:
    """The vehicle once its owner is of `owner_kind`: a sub-sector chosen in the registration
    stays, one that followed the owner's kind follows the new kind."""
    if vehicle.subsector_assigned:
        return vehicle
    return replace(
        vehicle,
        covenant_subsector=default_subsector(
            vehicle.owner_partner_id, vehicle.municipality_id, owner_kind
        ),
    )
