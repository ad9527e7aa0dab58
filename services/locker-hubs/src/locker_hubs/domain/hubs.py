"""Locker hubs: compartments, drop-off reservations, waste deposits and carrier collections."""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from locker_hubs.domain.codes import codes_match


class WasteType(StrEnum):
    HAZARDOUS_HOUSEHOLD = "hazardous_household"
    BATTERIES = "batteries"
    SMALL_ELECTRONICS = "small_electronics"
    TEXTILES = "textiles"
    LIGHT_BULBS = "light_bulbs"


class CompartmentSize(StrEnum):
    S = "s"
    M = "m"
    L = "l"
    XL = "xl"


# The most a box's scale may report for one deposit, by compartment size: household waste of
# that volume at the density of batteries or paint tins, with room to spare. More is a faulty
# scale or a forged call, and would inflate the mass the carrier is credited with.
MAX_DEPOSIT_MASS_G = {
    CompartmentSize.S: 20_000,
    CompartmentSize.M: 50_000,
    CompartmentSize.L: 100_000,
    CompartmentSize.XL: 200_000,
}


class CompartmentState(StrEnum):
    FREE = "free"
    RESERVED = "reserved"
    HOLDS_WASTE = "holds_waste"


# Waste that belongs behind the waste company's hazardous doors whatever the caller declares.
HAZARDOUS_WASTE_TYPES: frozenset[WasteType] = frozenset(
    {WasteType.HAZARDOUS_HOUSEHOLD, WasteType.BATTERIES, WasteType.LIGHT_BULBS}
)


class DomainError(Exception):
    """A locker-hub rule refused the request."""


class NoFreeCompartment(DomainError):
    def __init__(self, hub_id: str, hazardous: bool) -> None:
        kind = "hazardous" if hazardous else "general"
        super().__init__(f"hub {hub_id} has no free {kind} compartment")
        self.hub_id = hub_id
        self.hazardous = hazardous


class CodeCollision(DomainError):
    """The hub already has an open reservation under this code; a fresh code is needed."""

    def __init__(self, hub_id: str) -> None:
        super().__init__(f"hub {hub_id} already has an open reservation with this code")
        self.hub_id = hub_id


class InvalidCode(DomainError):
    """The code is wrong, spent or expired; which one is deliberately not told."""

    def __init__(self) -> None:
        super().__init__("drop-off code is not valid")


class InvalidDeposit(DomainError):
    """The deposit breaks a rule; `field` names the offending request field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NothingToCollect(DomainError):
    def __init__(self, hub_id: str) -> None:
        super().__init__(f"hub {hub_id} holds no waste")
        self.hub_id = hub_id


@dataclass(frozen=True)
class Deposit:
    deposit_id: str
    compartment_id: str
    waste_type: WasteType
    hazardous: bool
    mass_g: int
    deposited_at: datetime


@dataclass(frozen=True)
class Collection:
    collection_id: str
    deposits: tuple[Deposit, ...]

    @property
    def mass_g(self) -> int:
        return sum(deposit.mass_g for deposit in self.deposits)

    @property
    def includes_hazardous(self) -> bool:
        return any(deposit.hazardous for deposit in self.deposits)


@dataclass
class Compartment:
    compartment_id: str
    size: CompartmentSize
    hazardous_only: bool
    state: CompartmentState = CompartmentState.FREE
    code_hash: str | None = None
    code_expires_at: datetime | None = None
    # Who asked for the open code (the resident's subject), for the per-resident quota.
    code_holder: str | None = None
    # The client's id of the request that reserved it, so a retry renews instead of reserving.
    code_request_id: str | None = None
    deposit: Deposit | None = None

    def __post_init__(self) -> None:
        # Rebuilt compartments (e.g. from storage) must be in a state the rules can act on.
        reserved = self.state is CompartmentState.RESERVED
        if reserved != (self.code_hash is not None) or reserved != (
            self.code_expires_at is not None
        ):
            raise ValueError(
                f"compartment {self.compartment_id}: a code hash and expiry belong to, "
                "and only to, a reserved compartment"
            )
        holds_waste = self.state is CompartmentState.HOLDS_WASTE
        if holds_waste != (self.deposit is not None):
            raise ValueError(
                f"compartment {self.compartment_id}: a deposit belongs to, and only to, "
                "a compartment holding waste"
            )
        if self.deposit is not None and self.deposit.compartment_id != self.compartment_id:
            raise ValueError(
                f"compartment {self.compartment_id}: holds deposit {self.deposit.deposit_id} "
                f"of compartment {self.deposit.compartment_id}"
            )

    def reservation_open(self, now: datetime) -> bool:
        """True while the compartment is reserved under a code that has not expired."""
        return (
            self.state is CompartmentState.RESERVED
            and self.code_expires_at is not None
            and now < self.code_expires_at
        )

    def _free(self) -> None:
        self.state = CompartmentState.FREE
        self.code_hash = None
        self.code_expires_at = None
        self.code_holder = None
        self.code_request_id = None
        self.deposit = None


@dataclass
class Hub:
    hub_id: str
    name: str
    municipality_id: str
    latitude: float
    longitude: float
    compartments: list[Compartment]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for compartment in self.compartments:
            if compartment.compartment_id in seen:
                raise ValueError(
                    f"hub {self.hub_id}: duplicate compartment id {compartment.compartment_id}"
                )
            seen.add(compartment.compartment_id)

    def release_expired_reservations(self, now: datetime) -> list[Compartment]:
        """Free every reserved compartment whose code has expired; return them."""
        released = []
        for compartment in self.compartments:
            stale = not compartment.reservation_open(now)
            if compartment.state is CompartmentState.RESERVED and stale:
                compartment._free()
                released.append(compartment)
        return released

    def reserve_for_drop_off(
        self,
        hazardous: bool,
        code_hash: str,
        now: datetime,
        ttl: timedelta,
        holder: str = "",
        request_id: str = "",
    ) -> Compartment:
        """Reserve the first free compartment of the requested door kind under the code."""
        if not code_hash:
            raise ValueError("code_hash must not be empty")
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        self.release_expired_reservations(now)
        compartment = next(
            (
                candidate
                for candidate in self.compartments
                if candidate.state is CompartmentState.FREE
                and candidate.hazardous_only == hazardous
            ),
            None,
        )
        if compartment is None:
            raise NoFreeCompartment(self.hub_id, hazardous)
        # Two open reservations under one code would make the code open the wrong door.
        if self._open_reservation_for(code_hash, now) is not None:
            raise CodeCollision(self.hub_id)
        compartment.state = CompartmentState.RESERVED
        compartment.code_hash = code_hash
        compartment.code_expires_at = now + ttl
        compartment.code_holder = holder or None
        compartment.code_request_id = request_id or None
        return compartment

    def opens_a_compartment(self, code_hash: str, now: datetime) -> bool:
        """Whether the code opens a reserved compartment now (a check that changes nothing)."""
        return self._open_reservation_for(code_hash, now) is not None

    def reserved_by_request(self, holder: str, request_id: str, now: datetime) -> str | None:
        """The compartment an earlier call with this request id reserved, if still open."""
        for compartment in self.compartments:
            if (
                compartment.code_holder == holder
                and compartment.code_request_id == request_id
                and compartment.reservation_open(now)
            ):
                return compartment.compartment_id
        return None

    def codes_held_by(self, holder: str, now: datetime) -> int:
        return sum(
            1 for c in self.compartments if c.code_holder == holder and c.reservation_open(now)
        )

    def renew_code(self, compartment_id: str, code_hash: str, now: datetime) -> Compartment:
        """Replaces the open code of a reserved compartment (the caller lost the first one);
        the old code no longer opens it, the expiry stays."""
        compartment = next(
            (c for c in self.compartments if c.compartment_id == compartment_id), None
        )
        if compartment is None or not compartment.reservation_open(now):
            raise InvalidCode()
        if self._open_reservation_for(code_hash, now) is not None:
            raise CodeCollision(self.hub_id)
        compartment.code_hash = code_hash
        return compartment

    def deposit(
        self,
        code_hash: str,
        waste_type: WasteType | None,
        hazardous: bool,
        mass_g: int,
        deposit_id: str,
        now: datetime,
    ) -> Deposit:
        """Record waste put into the compartment the code opened, and spend the code.

        `waste_type` None stands for an unspecified waste type and is refused.
        """
        if not deposit_id:
            raise ValueError("deposit_id must not be empty")
        if not isinstance(waste_type, WasteType):
            raise InvalidDeposit("waste_type", "must be specified")
        if mass_g < 0:
            raise InvalidDeposit("mass_g", "must not be negative")
        compartment = self._open_reservation_for(code_hash, now)
        if compartment is None:
            raise InvalidCode()
        if mass_g > MAX_DEPOSIT_MASS_G[compartment.size]:
            raise InvalidDeposit(
                "mass_g",
                f"at most {MAX_DEPOSIT_MASS_G[compartment.size]} g fit a {compartment.size} "
                "compartment",
            )
        hazardous_waste = hazardous or waste_type in HAZARDOUS_WASTE_TYPES
        if hazardous_waste and not compartment.hazardous_only:
            # Blame the flag when the caller declared it, otherwise the waste type forced it.
            field = "hazardous" if hazardous else "waste_type"
            raise InvalidDeposit(
                field, f"hazardous waste ({waste_type}) must go behind a hazardous door"
            )
        if not hazardous_waste and compartment.hazardous_only:
            raise InvalidDeposit(
                "hazardous",
                f"non-hazardous waste ({waste_type}) must not go behind a hazardous door",
            )
        deposit = Deposit(
            deposit_id=deposit_id,
            compartment_id=compartment.compartment_id,
            waste_type=waste_type,
            hazardous=hazardous_waste,
            mass_g=mass_g,
            deposited_at=now,
        )
        compartment.state = CompartmentState.HOLDS_WASTE
        compartment.code_hash = None
        compartment.code_expires_at = None
        compartment.code_holder = None
        compartment.code_request_id = None
        compartment.deposit = deposit
        return deposit

    def collect(self, collection_id: str) -> Collection:
        """Hand every held deposit to a carrier and free the compartments."""
        if not collection_id:
            raise ValueError("collection_id must not be empty")
        holding = [
            compartment
            for compartment in self.compartments
            if compartment.state is CompartmentState.HOLDS_WASTE
        ]
        deposits = tuple(
            compartment.deposit for compartment in holding if compartment.deposit is not None
        )
        if not deposits:
            raise NothingToCollect(self.hub_id)
        for compartment in holding:
            compartment._free()
        return Collection(collection_id=collection_id, deposits=deposits)

    def held_deposits(self) -> list[Deposit]:
        return [
            compartment.deposit
            for compartment in self.compartments
            if compartment.deposit is not None
        ]

    def _open_reservation_for(self, code_hash: str, now: datetime) -> Compartment | None:
        for compartment in self.compartments:
            if (
                compartment.reservation_open(now)
                and compartment.code_hash is not None
                and codes_match(compartment.code_hash, code_hash)
            ):
                return compartment
        return None


# --- loading hubs from parsed configuration -------------------------------------------------

_TOP_LEVEL_KEYS = frozenset({"municipality_id", "layout", "hubs"})
_HUB_KEYS = frozenset({"hub_id", "name", "municipality_id", "latitude", "longitude", "layout"})
_LAYOUT_KEYS = frozenset({"suffix", "size", "hazardous_only"})


@dataclass(frozen=True)
class _CompartmentSpec:
    suffix: str
    size: CompartmentSize
    hazardous_only: bool


def hubs_from_mapping(data: Mapping[str, Any]) -> list[Hub]:
    """Build hubs from parsed configuration (see data/hubs.yaml for the shape).

    A hub without its own `layout` gets the top-level one; compartment ids are
    `<hub_id>-<suffix>`. Raises ValueError naming the entry and field at fault.
    """
    if not isinstance(data, Mapping):
        raise ValueError("hub data: expected a mapping at the top level")
    _reject_unknown_keys(data, _TOP_LEVEL_KEYS, "hub data")
    default_municipality = (
        _text(data, "municipality_id", "hub data") if "municipality_id" in data else None
    )
    default_layout = _layout(data["layout"], "layout") if "layout" in data else None
    raw_hubs = data.get("hubs")
    if not isinstance(raw_hubs, list) or not raw_hubs:
        raise ValueError("hubs: expected a non-empty list")

    hubs: list[Hub] = []
    seen_ids: set[str] = set()
    for index, raw_hub in enumerate(raw_hubs):
        where = f"hubs[{index}]"
        if not isinstance(raw_hub, Mapping):
            raise ValueError(f"{where}: expected a mapping")
        hub_id = _text(raw_hub, "hub_id", where)
        where = f"hubs[{index}] ({hub_id})"
        if hub_id in seen_ids:
            raise ValueError(f"{where}.hub_id: duplicate hub id")
        seen_ids.add(hub_id)
        _reject_unknown_keys(raw_hub, _HUB_KEYS, where)

        if "municipality_id" in raw_hub:
            municipality_id = _text(raw_hub, "municipality_id", where)
        elif default_municipality is not None:
            municipality_id = default_municipality
        else:
            raise ValueError(f"{where}.municipality_id: missing and no top-level default")

        if "layout" in raw_hub:
            layout = _layout(raw_hub["layout"], f"{where}.layout")
        elif default_layout is not None:
            layout = default_layout
        else:
            raise ValueError(f"{where}.layout: missing and no top-level layout")

        hubs.append(
            Hub(
                hub_id=hub_id,
                name=_text(raw_hub, "name", where),
                municipality_id=municipality_id,
                latitude=_coordinate(raw_hub, "latitude", where, limit=90.0),
                longitude=_coordinate(raw_hub, "longitude", where, limit=180.0),
                compartments=[
                    Compartment(
                        compartment_id=f"{hub_id}-{spec.suffix}",
                        size=spec.size,
                        hazardous_only=spec.hazardous_only,
                    )
                    for spec in layout
                ],
            )
        )
    return hubs


def _layout(raw: Any, where: str) -> list[_CompartmentSpec]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{where}: expected a non-empty list of compartments")
    specs: list[_CompartmentSpec] = []
    seen_suffixes: set[str] = set()
    for index, entry in enumerate(raw):
        entry_where = f"{where}[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{entry_where}: expected a mapping")
        _reject_unknown_keys(entry, _LAYOUT_KEYS, entry_where)
        suffix = _text(entry, "suffix", entry_where)
        if suffix in seen_suffixes:
            raise ValueError(f"{entry_where}.suffix: duplicate suffix {suffix!r}")
        seen_suffixes.add(suffix)
        raw_size = entry.get("size")
        sizes = {member.value: member for member in CompartmentSize}
        if not isinstance(raw_size, str) or raw_size not in sizes:
            allowed = ", ".join(sizes)
            raise ValueError(f"{entry_where}.size: {raw_size!r} is not one of {allowed}")
        size = sizes[raw_size]
        hazardous_only = entry.get("hazardous_only", False)
        if not isinstance(hazardous_only, bool):
            raise ValueError(f"{entry_where}.hazardous_only: expected true or false")
        specs.append(_CompartmentSpec(suffix=suffix, size=size, hazardous_only=hazardous_only))
    return specs


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}.{key}: expected a non-empty string")
    return value


def _coordinate(entry: Mapping[str, Any], key: str, where: str, limit: float) -> float:
    value = entry.get(key)
    # bool is an int subclass; `true` in YAML is not a coordinate.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}.{key}: expected a number")
    coordinate = float(value)
    if not math.isfinite(coordinate) or abs(coordinate) > limit:
        raise ValueError(f"{where}.{key}: {value!r} is outside -{limit:g}..{limit:g}")
    return coordinate


def _reject_unknown_keys(entry: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    # A misspelt key would otherwise be ignored silently and its default used instead.
    unknown = sorted(str(key) for key in entry if key not in allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
