"""Which carrier may collect at which hub, as the partner registry's changelog says.

locker-hubs decides from its own read model of registry.partners.v1 rather than asking the
registry for every collection: a revocation written in the registry reaches the read model
within about a second, and collections go on while the registry is down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class HubAuthorization:
    hub_id: str
    # None: open on that side; the end is exclusive.
    valid_from: datetime | None
    valid_until: datetime | None

    def valid_at(self, moment: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= moment) and (
            self.valid_until is None or moment < self.valid_until
        )


@dataclass(frozen=True)
class Carrier:
    """A partner as far as collections go: whether it is a MoLo Hubs carrier, and where."""

    partner_id: str
    registered_carrier: bool
    authorizations: tuple[HubAuthorization, ...]


@dataclass(frozen=True)
class CarrierDecision:
    authorized: bool
    reason: str


def may_collect(carrier: Carrier | None, hub_id: str, at: datetime) -> CarrierDecision:
    """A registered MoLo Hubs carrier with an authorisation at the hub valid at `at`."""
    if carrier is None:
        return CarrierDecision(False, "unknown partner")
    if not carrier.registered_carrier:
        return CarrierDecision(
            False, f"{carrier.partner_id} is not registered as a MoLo Hubs carrier"
        )
    at_hub = [a for a in carrier.authorizations if a.hub_id == hub_id]
    if not at_hub:
        return CarrierDecision(False, f"{carrier.partner_id} is not authorised at hub {hub_id}")
    if not any(authorization.valid_at(at) for authorization in at_hub):
        return CarrierDecision(
            False, f"{carrier.partner_id}'s authorisation at hub {hub_id} is not valid now"
        )
    return CarrierDecision(True, f"{carrier.partner_id} is authorised at hub {hub_id}")
