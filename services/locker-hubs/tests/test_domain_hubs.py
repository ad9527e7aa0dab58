from datetime import UTC, datetime, timedelta

import pytest

from locker_hubs.domain.codes import hash_code
from locker_hubs.domain.hubs import (
    CodeCollision,
    Collection,
    Compartment,
    CompartmentSize,
    CompartmentState,
    Deposit,
    Hub,
    InvalidCode,
    InvalidDeposit,
    NoFreeCompartment,
    NothingToCollect,
    WasteType,
)

PEPPER = b"k" * 32
HUB_ID = "molo-aalborg-01"
NOW = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
TTL = timedelta(hours=24)


def _code(code: str) -> str:
    return hash_code(code, HUB_ID, PEPPER)


def _hub() -> Hub:
    return Hub(
        hub_id=HUB_ID,
        name="MoLo Hub 01",
        municipality_id="aalborg-kommune",
        latitude=0.0,
        longitude=0.0,
        compartments=[
            Compartment(f"{HUB_ID}-h1", CompartmentSize.L, hazardous_only=True),
            Compartment(f"{HUB_ID}-h2", CompartmentSize.L, hazardous_only=True),
            Compartment(f"{HUB_ID}-s1", CompartmentSize.S, hazardous_only=False),
            Compartment(f"{HUB_ID}-m1", CompartmentSize.M, hazardous_only=False),
        ],
    )


def _compartment(hub: Hub, compartment_id: str) -> Compartment:
    return next(c for c in hub.compartments if c.compartment_id == compartment_id)


def _deposit(
    hub: Hub,
    code: str,
    waste_type: WasteType | None = WasteType.TEXTILES,
    hazardous: bool = False,
    mass_g: int = 1500,
    deposit_id: str = "dep-1",
    now: datetime = NOW,
) -> Deposit:
    return hub.deposit(_code(code), waste_type, hazardous, mass_g, deposit_id, now)


# --- reservation -------------------------------------------------------------------------


def test_hazardous_reservation_takes_a_hazardous_door() -> None:
    hub = _hub()

    compartment = hub.reserve_for_drop_off(True, _code("11111111"), NOW, TTL)

    assert compartment.compartment_id == f"{HUB_ID}-h1"
    assert compartment.state is CompartmentState.RESERVED
    assert compartment.code_hash == _code("11111111")
    assert compartment.code_expires_at == NOW + TTL


def test_general_reservation_skips_the_hazardous_doors() -> None:
    hub = _hub()

    compartment = hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)

    assert compartment.compartment_id == f"{HUB_ID}-s1"
    assert not compartment.hazardous_only


def test_reservations_fill_doors_in_order_then_run_out() -> None:
    hub = _hub()

    first = hub.reserve_for_drop_off(True, _code("11111111"), NOW, TTL)
    second = hub.reserve_for_drop_off(True, _code("22222222"), NOW, TTL)

    assert [first.compartment_id, second.compartment_id] == [f"{HUB_ID}-h1", f"{HUB_ID}-h2"]
    with pytest.raises(NoFreeCompartment) as raised:
        hub.reserve_for_drop_off(True, _code("33333333"), NOW, TTL)
    assert raised.value.hazardous is True
    # General compartments stay available although the hazardous doors are full.
    assert hub.reserve_for_drop_off(False, _code("33333333"), NOW, TTL).compartment_id == (
        f"{HUB_ID}-s1"
    )


def test_expired_reservation_is_freed_for_the_next_drop_off() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(True, _code("11111111"), NOW, TTL)
    hub.reserve_for_drop_off(True, _code("22222222"), NOW + timedelta(hours=1), TTL)

    later = NOW + TTL
    compartment = hub.reserve_for_drop_off(True, _code("33333333"), later, TTL)

    assert compartment.compartment_id == f"{HUB_ID}-h1"
    assert compartment.code_hash == _code("33333333")
    assert compartment.code_expires_at == later + TTL
    assert _compartment(hub, f"{HUB_ID}-h2").code_hash == _code("22222222")


def test_release_expired_reservations_frees_only_stale_ones() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, timedelta(minutes=5))
    hub.reserve_for_drop_off(False, _code("22222222"), NOW, timedelta(hours=1))

    released = hub.release_expired_reservations(NOW + timedelta(minutes=5))

    assert [c.compartment_id for c in released] == [f"{HUB_ID}-s1"]
    s1 = _compartment(hub, f"{HUB_ID}-s1")
    assert (s1.state, s1.code_hash, s1.code_expires_at) == (CompartmentState.FREE, None, None)
    assert _compartment(hub, f"{HUB_ID}-m1").state is CompartmentState.RESERVED


def test_reservation_refuses_a_code_already_open_at_the_hub() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)

    with pytest.raises(CodeCollision):
        hub.reserve_for_drop_off(True, _code("11111111"), NOW, TTL)
    assert _compartment(hub, f"{HUB_ID}-h1").state is CompartmentState.FREE


def test_reservation_refuses_a_non_positive_ttl() -> None:
    with pytest.raises(ValueError, match="ttl"):
        _hub().reserve_for_drop_off(False, _code("11111111"), NOW, timedelta(0))


# --- deposit -----------------------------------------------------------------------------


def test_deposit_fills_the_reserved_compartment_and_spends_the_code() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)
    at = NOW + timedelta(minutes=10)

    deposit = _deposit(hub, "11111111", WasteType.TEXTILES, mass_g=2300, now=at)

    assert deposit == Deposit("dep-1", f"{HUB_ID}-s1", WasteType.TEXTILES, False, 2300, at)
    s1 = _compartment(hub, f"{HUB_ID}-s1")
    assert s1.state is CompartmentState.HOLDS_WASTE
    assert s1.code_hash is None
    assert s1.code_expires_at is None
    assert s1.deposit == deposit
    assert hub.held_deposits() == [deposit]


def test_deposit_accepts_zero_mass_from_a_box_without_scale() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)

    assert _deposit(hub, "11111111", mass_g=0).mass_g == 0


def test_hazardous_waste_type_is_stored_as_hazardous_even_without_the_flag() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(True, _code("11111111"), NOW, TTL)

    deposit = _deposit(hub, "11111111", WasteType.BATTERIES, hazardous=False)

    assert deposit.hazardous is True
    assert deposit.compartment_id == f"{HUB_ID}-h1"


def test_wrong_code_is_invalid() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)

    with pytest.raises(InvalidCode):
        _deposit(hub, "99999999")
    assert _compartment(hub, f"{HUB_ID}-s1").state is CompartmentState.RESERVED


def test_spent_code_is_invalid() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)
    _deposit(hub, "11111111", deposit_id="dep-1")

    with pytest.raises(InvalidCode):
        _deposit(hub, "11111111", deposit_id="dep-2")
    assert [d.deposit_id for d in hub.held_deposits()] == ["dep-1"]


def test_expired_code_is_invalid() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)

    with pytest.raises(InvalidCode):
        _deposit(hub, "11111111", now=NOW + TTL)
    assert hub.held_deposits() == []


def test_code_of_another_hub_is_invalid() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)
    other_hub_hash = hash_code("11111111", "molo-aalborg-02", PEPPER)

    with pytest.raises(InvalidCode):
        hub.deposit(other_hub_hash, WasteType.TEXTILES, False, 100, "dep-1", NOW)


def test_wrong_spent_and_expired_codes_raise_the_same_message() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)
    hub.reserve_for_drop_off(False, _code("22222222"), NOW, TTL)
    _deposit(hub, "11111111")
    messages = []
    for code, now in (("99999999", NOW), ("11111111", NOW), ("22222222", NOW + TTL)):
        with pytest.raises(InvalidCode) as raised:
            _deposit(hub, code, deposit_id="dep-x", now=now)
        messages.append(str(raised.value))

    assert len(set(messages)) == 1


def test_unspecified_waste_type_is_refused() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)

    with pytest.raises(InvalidDeposit) as raised:
        _deposit(hub, "11111111", waste_type=None)
    assert raised.value.field == "waste_type"


def test_negative_mass_is_refused() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)

    with pytest.raises(InvalidDeposit) as raised:
        _deposit(hub, "11111111", mass_g=-1)
    assert raised.value.field == "mass_g"


def test_flagged_hazardous_waste_in_a_general_compartment_names_hazardous() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)

    with pytest.raises(InvalidDeposit) as raised:
        _deposit(hub, "11111111", WasteType.SMALL_ELECTRONICS, hazardous=True)
    assert raised.value.field == "hazardous"


@pytest.mark.parametrize(
    "waste_type", [WasteType.HAZARDOUS_HOUSEHOLD, WasteType.BATTERIES, WasteType.LIGHT_BULBS]
)
def test_hazardous_waste_type_in_a_general_compartment_names_waste_type(
    waste_type: WasteType,
) -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)

    with pytest.raises(InvalidDeposit) as raised:
        _deposit(hub, "11111111", waste_type, hazardous=False)
    assert raised.value.field == "waste_type"


def test_non_hazardous_waste_behind_a_hazardous_door_names_hazardous() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(True, _code("11111111"), NOW, TTL)

    with pytest.raises(InvalidDeposit) as raised:
        _deposit(hub, "11111111", WasteType.TEXTILES, hazardous=False)
    assert raised.value.field == "hazardous"


def test_refused_deposit_leaves_the_code_usable() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(True, _code("11111111"), NOW, TTL)
    with pytest.raises(InvalidDeposit):
        _deposit(hub, "11111111", WasteType.TEXTILES, hazardous=False)

    deposit = _deposit(hub, "11111111", WasteType.HAZARDOUS_HOUSEHOLD, hazardous=True)

    assert deposit.compartment_id == f"{HUB_ID}-h1"


# --- collection --------------------------------------------------------------------------


def test_collect_takes_every_deposit_frees_compartments_and_sums_mass() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(True, _code("11111111"), NOW, TTL)
    hub.reserve_for_drop_off(False, _code("22222222"), NOW, TTL)
    hub.reserve_for_drop_off(False, _code("33333333"), NOW, TTL)
    _deposit(hub, "11111111", WasteType.BATTERIES, hazardous=True, mass_g=800, deposit_id="d1")
    _deposit(hub, "22222222", WasteType.TEXTILES, mass_g=3200, deposit_id="d2")

    collection = hub.collect("col-1")

    assert collection.collection_id == "col-1"
    assert [d.deposit_id for d in collection.deposits] == ["d1", "d2"]
    assert collection.mass_g == 4000
    assert collection.includes_hazardous is True
    assert hub.held_deposits() == []
    for suffix in ("h1", "s1"):
        compartment = _compartment(hub, f"{HUB_ID}-{suffix}")
        assert compartment.state is CompartmentState.FREE
        assert compartment.deposit is None
    # An open reservation is not touched by a collection.
    assert _compartment(hub, f"{HUB_ID}-m1").state is CompartmentState.RESERVED


def test_collection_without_hazardous_waste_says_so() -> None:
    deposit = Deposit("d1", "c1", WasteType.TEXTILES, False, 500, NOW)

    collection = Collection("col-1", (deposit, deposit))

    assert collection.includes_hazardous is False
    assert collection.mass_g == 1000


def test_collect_with_no_waste_raises_nothing_to_collect() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)

    with pytest.raises(NothingToCollect):
        hub.collect("col-1")


def test_second_collection_finds_nothing() -> None:
    hub = _hub()
    hub.reserve_for_drop_off(False, _code("11111111"), NOW, TTL)
    _deposit(hub, "11111111")
    hub.collect("col-1")

    with pytest.raises(NothingToCollect):
        hub.collect("col-2")


# --- invariants --------------------------------------------------------------------------


def test_compartment_refuses_inconsistent_state() -> None:
    with pytest.raises(ValueError, match="reserved"):
        Compartment("c1", CompartmentSize.S, False, state=CompartmentState.RESERVED)
    with pytest.raises(ValueError, match="deposit"):
        Compartment("c1", CompartmentSize.S, False, state=CompartmentState.HOLDS_WASTE)
    with pytest.raises(ValueError, match="holds deposit"):
        Compartment(
            "c1",
            CompartmentSize.S,
            False,
            state=CompartmentState.HOLDS_WASTE,
            deposit=Deposit("d1", "c2", WasteType.TEXTILES, False, 1, NOW),
        )


def test_hub_refuses_duplicate_compartment_ids() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Hub(
            "h",
            "H",
            "m",
            0.0,
            0.0,
            [
                Compartment("c1", CompartmentSize.S, False),
                Compartment("c1", CompartmentSize.M, False),
            ],
        )
