"""Locker-hub domain: pure model and rules, free of I/O and frameworks."""

from locker_hubs.domain.codes import codes_match, generate_code, hash_code
from locker_hubs.domain.hubs import (
    HAZARDOUS_WASTE_TYPES,
    CodeCollision,
    Collection,
    Compartment,
    CompartmentSize,
    CompartmentState,
    Deposit,
    DomainError,
    Hub,
    InvalidCode,
    InvalidDeposit,
    NoFreeCompartment,
    NothingToCollect,
    WasteType,
    hubs_from_mapping,
)

__all__ = [
    "HAZARDOUS_WASTE_TYPES",
    "CodeCollision",
    "Collection",
    "Compartment",
    "CompartmentSize",
    "CompartmentState",
    "Deposit",
    "DomainError",
    "Hub",
    "InvalidCode",
    "InvalidDeposit",
    "NoFreeCompartment",
    "NothingToCollect",
    "WasteType",
    "codes_match",
    "generate_code",
    "hash_code",
    "hubs_from_mapping",
]
