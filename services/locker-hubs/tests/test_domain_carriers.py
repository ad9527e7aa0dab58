"""Carrier authorisation as locker-hubs decides it from its read model."""

from datetime import UTC, datetime, timedelta

from locker_hubs.domain.carriers import Carrier, HubAuthorization, may_collect

NOW = datetime(2026, 6, 9, 10, 0, tzinfo=UTC)
HUB = "molo-aalborg-01"


def carrier(*authorizations: HubAuthorization, registered: bool = True) -> Carrier:
    return Carrier("homerunner", registered, authorizations)


def test_an_authorisation_at_the_hub_valid_now_lets_the_carrier_collect() -> None:
    decision = may_collect(carrier(HubAuthorization(HUB, None, None)), HUB, NOW)

    assert decision.authorized
    assert HUB in decision.reason


def test_other_hubs_unknown_partners_and_non_carriers_are_refused() -> None:
    assert not may_collect(
        carrier(HubAuthorization("molo-aalborg-02", None, None)), HUB, NOW
    ).authorized
    assert may_collect(None, HUB, NOW).reason == "unknown partner"
    not_registered = carrier(HubAuthorization(HUB, None, None), registered=False)
    assert "not registered" in may_collect(not_registered, HUB, NOW).reason


def test_a_revoked_authorisation_ends_at_its_revocation() -> None:
    revoked = carrier(HubAuthorization(HUB, NOW - timedelta(days=1), NOW))

    assert may_collect(revoked, HUB, NOW - timedelta(seconds=1)).authorized
    assert not may_collect(revoked, HUB, NOW).authorized
    assert "not valid now" in may_collect(revoked, HUB, NOW).reason
