"""Pure model and rules of the partner registry (no I/O)."""

from partner_registry.domain.partners import (
    MOLO_HUBS,
    CarrierAuthorization,
    Initiative,
    InvalidRegistryData,
    OrganisationKind,
    Participation,
    Partner,
    PartnerRole,
    Representative,
    authorize_carrier,
    filter_partners,
    registry_from_mapping,
)

__all__ = [
    "MOLO_HUBS",
    "CarrierAuthorization",
    "Initiative",
    "InvalidRegistryData",
    "OrganisationKind",
    "Participation",
    "Partner",
    "PartnerRole",
    "Representative",
    "authorize_carrier",
    "filter_partners",
    "registry_from_mapping",
]
