"""Partners, the initiatives they take part in, and who may use the MoLo Hubs lockers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, TypeVar

MOLO_HUBS = "molo-hubs"


class OrganisationKind(StrEnum):
    MUNICIPALITY = "municipality"
    MUNICIPAL_ASSOCIATION = "municipal_association"
    UNIVERSITY = "university"
    ASSOCIATION = "association"
    COMPANY = "company"
    NETWORK = "network"


class PartnerRole(StrEnum):
    LEAD = "lead"
    PARTNER = "partner"
    MEMBER = "member"
    SIGNATORY = "signatory"
    COORDINATOR = "coordinator"
    CARRIER = "carrier"
    WASTE_OPERATOR = "waste_operator"


@dataclass(frozen=True)
class Initiative:
    """A partnership, project or network that Aalborg Kommune takes part in."""

    initiative_id: str
    name: str
    description: str
    # Funding programme, "" when the initiative has none.
    programme: str
    starts_on: date | None
    ends_on: date | None


@dataclass(frozen=True)
class Representative:
    name: str
    title: str


@dataclass(frozen=True)
class Participation:
    """One role a partner holds in one initiative."""

    initiative_id: str
    role: PartnerRole
    since_year: int | None
    representatives: tuple[Representative, ...] = ()


@dataclass(frozen=True)
class Partner:
    """An organisation and every role it holds across the initiatives."""

    partner_id: str
    name: str
    kind: OrganisationKind
    country_code: str
    participations: tuple[Participation, ...]
    # Bumped on every change, so consumers of the compacted topic can drop stale copies.
    revision: int = 1

    def takes_part_in(self, initiative_id: str | None, role: PartnerRole | None = None) -> bool:
        """True when one participation matches both the initiative and the role (None: any)."""
        return any(
            (initiative_id is None or participation.initiative_id == initiative_id)
            and (role is None or participation.role == role)
            for participation in self.participations
        )


@dataclass(frozen=True)
class CarrierAuthorization:
    authorized: bool
    reason: str


def authorize_carrier(partner: Partner | None, hub_id: str) -> CarrierAuthorization:
    """Decide whether a partner may collect waste at a MoLo Hubs locker hub.

    The hubs are open to all carriers, so a carrier registered for MoLo Hubs may use every hub;
    nothing is granted per hub.
    """
    if partner is None:
        return CarrierAuthorization(authorized=False, reason="unknown partner")
    if not partner.takes_part_in(MOLO_HUBS, PartnerRole.CARRIER):
        return CarrierAuthorization(
            authorized=False,
            reason=f"{partner.partner_id} is not registered as a MoLo Hubs carrier",
        )
    return CarrierAuthorization(
        authorized=True,
        reason=(
            f"{partner.partner_id} is a registered MoLo Hubs carrier; "
            f"hub {hub_id} is open to all of them"
        ),
    )


def filter_partners(
    partners: Iterable[Partner], initiative_id: str | None, role: PartnerRole | None
) -> list[Partner]:
    """Partners holding `role` in `initiative_id` (None: no constraint), sorted by id.

    Both constraints must hold in the same participation: a carrier in one initiative is not
    a carrier in another.
    """
    if initiative_id is None and role is None:
        selected = list(partners)
    else:
        selected = [partner for partner in partners if partner.takes_part_in(initiative_id, role)]
    return sorted(selected, key=lambda partner: partner.partner_id)


class InvalidRegistryData(ValueError):
    """Registry data (seed file or import) that does not describe a valid registry."""

    def __init__(self, entry: str, field: str, problem: str) -> None:
        super().__init__(f"{entry}, field {field!r}: {problem}")
        self.entry = entry
        self.field = field
        self.problem = problem


# Ids travel as Kafka keys and URL parts, so they stay plain lowercase slugs.
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_COUNTRY_CODE = re.compile(r"[A-Z]{2}")

_REGISTRY_FIELDS = frozenset({"initiatives", "partners"})
_INITIATIVE_FIELDS = frozenset(
    {"initiative_id", "name", "description", "programme", "starts_on", "ends_on"}
)
_PARTNER_FIELDS = frozenset(
    {"partner_id", "name", "kind", "country_code", "participations", "revision"}
)
_PARTICIPATION_FIELDS = frozenset({"initiative_id", "role", "since_year", "representatives"})
_REPRESENTATIVE_FIELDS = frozenset({"name", "title"})

_EnumT = TypeVar("_EnumT", bound=StrEnum)


@dataclass(frozen=True)
class _Fields:
    """Typed reads from one parsed mapping; every error names the entry and the field."""

    entry: str
    prefix: str
    values: Mapping[str, Any]

    @classmethod
    def of(cls, raw: object, entry: str, prefix: str, known: frozenset[str], where: str) -> _Fields:
        if not isinstance(raw, Mapping):
            raise InvalidRegistryData(entry, where, "expected a mapping")
        fields = cls(entry, prefix, raw)
        for name in raw:
            if name not in known:
                # Typos would otherwise drop data without a word.
                raise fields.error(str(name), f"unknown field; expected one of {sorted(known)}")
        return fields

    def error(self, name: str, problem: str) -> InvalidRegistryData:
        return InvalidRegistryData(self.entry, self.prefix + name, problem)

    def text(self, name: str, *, required: bool = True) -> str:
        value = self.values.get(name)
        if value is None:
            if required:
                raise self.error(name, "missing")
            return ""
        if not isinstance(value, str):
            raise self.error(name, f"expected text, got {value!r}")
        if required and not value.strip():
            raise self.error(name, "must not be empty")
        return value.strip()

    def slug(self, name: str) -> str:
        value = self.text(name)
        if not _SLUG.fullmatch(value):
            raise self.error(name, f"{value!r} is not a lowercase slug such as 'green-fleets'")
        return value

    def choice(self, name: str, allowed: type[_EnumT]) -> _EnumT:
        value = self.text(name)
        try:
            return allowed(value)
        except ValueError:
            options = ", ".join(member.value for member in allowed)
            raise self.error(name, f"{value!r} is not one of {options}") from None

    def optional_date(self, name: str) -> date | None:
        value = self.values.get(name)
        if value is None:
            return None
        # YAML turns bare ISO dates into dates (a timestamp would be a datetime, a date subclass).
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise self.error(name, f"expected a date YYYY-MM-DD, got {value!r}")

    def optional_year(self, name: str) -> int | None:
        value = self.values.get(name)
        if value is None:
            return None
        # bool is an int in Python; a yes/no in YAML is not a year.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected a year, got {value!r}")
        if not date.min.year <= value <= date.max.year:
            raise self.error(name, f"{value} is not a calendar year")
        return value

    def positive_int(self, name: str, default: int) -> int:
        value = self.values.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.error(name, f"expected a whole number of at least 1, got {value!r}")
        return value

    def mappings(self, name: str) -> list[object]:
        value = self.values.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(name, "expected a list")
        return value


def _entry_label(section: str, index: int, raw: object, id_field: str) -> str:
    label = f"{section}[{index}]"
    if isinstance(raw, Mapping) and isinstance(raw.get(id_field), str):
        label += f" ({raw[id_field]})"
    return label


def _section(data: Mapping[str, Any], name: str) -> list[object]:
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRegistryData("registry", name, "expected a list")
    return value


def _initiative(raw: object, index: int) -> Initiative:
    entry = _entry_label("initiatives", index, raw, "initiative_id")
    fields = _Fields.of(raw, entry, "", _INITIATIVE_FIELDS, "initiatives")
    starts_on = fields.optional_date("starts_on")
    ends_on = fields.optional_date("ends_on")
    if starts_on is not None and ends_on is not None and ends_on < starts_on:
        raise fields.error("ends_on", f"{ends_on} is before starts_on {starts_on}")
    return Initiative(
        initiative_id=fields.slug("initiative_id"),
        name=fields.text("name"),
        description=fields.text("description", required=False),
        programme=fields.text("programme", required=False),
        starts_on=starts_on,
        ends_on=ends_on,
    )


def _representative(raw: object, entry: str, prefix: str) -> Representative:
    fields = _Fields.of(raw, entry, prefix, _REPRESENTATIVE_FIELDS, prefix.rstrip("."))
    return Representative(name=fields.text("name"), title=fields.text("title", required=False))


def _participation(
    raw: object, entry: str, prefix: str, initiative_ids: frozenset[str]
) -> Participation:
    fields = _Fields.of(raw, entry, prefix, _PARTICIPATION_FIELDS, prefix.rstrip("."))
    initiative_id = fields.text("initiative_id")
    if initiative_id not in initiative_ids:
        raise fields.error("initiative_id", f"unknown initiative {initiative_id!r}")
    representatives = tuple(
        _representative(item, entry, f"{prefix}representatives[{position}].")
        for position, item in enumerate(fields.mappings("representatives"))
    )
    return Participation(
        initiative_id=initiative_id,
        role=fields.choice("role", PartnerRole),
        since_year=fields.optional_year("since_year"),
        representatives=representatives,
    )


def _partner(raw: object, index: int, initiative_ids: frozenset[str]) -> Partner:
    entry = _entry_label("partners", index, raw, "partner_id")
    fields = _Fields.of(raw, entry, "", _PARTNER_FIELDS, "partners")
    partner_id = fields.slug("partner_id")
    country_code = fields.text("country_code")
    if not _COUNTRY_CODE.fullmatch(country_code):
        raise fields.error("country_code", f"{country_code!r} is not ISO 3166-1 alpha-2")
    participations: list[Participation] = []
    held: set[tuple[str, PartnerRole]] = set()
    for position, item in enumerate(fields.mappings("participations")):
        prefix = f"participations[{position}]."
        participation = _participation(item, entry, prefix, initiative_ids)
        key = (participation.initiative_id, participation.role)
        if key in held:
            raise InvalidRegistryData(
                entry,
                prefix + "role",
                f"{participation.role} in {participation.initiative_id} is listed twice",
            )
        held.add(key)
        participations.append(participation)
    return Partner(
        partner_id=partner_id,
        name=fields.text("name"),
        kind=fields.choice("kind", OrganisationKind),
        country_code=country_code,
        participations=tuple(participations),
        revision=fields.positive_int("revision", default=1),
    )


def registry_from_mapping(data: Mapping[str, Any]) -> tuple[list[Initiative], list[Partner]]:
    """Build and validate the registry from parsed data (for example the YAML seed).

    Keeps the order of the input. Raises InvalidRegistryData naming the entry and field at fault.
    """
    if not isinstance(data, Mapping):
        raise InvalidRegistryData("registry", "", "expected a mapping")
    for name in data:
        if name not in _REGISTRY_FIELDS:
            raise InvalidRegistryData(
                "registry", str(name), f"unknown section; expected {sorted(_REGISTRY_FIELDS)}"
            )

    initiatives: list[Initiative] = []
    for index, raw in enumerate(_section(data, "initiatives")):
        initiative = _initiative(raw, index)
        if any(known.initiative_id == initiative.initiative_id for known in initiatives):
            raise InvalidRegistryData(
                _entry_label("initiatives", index, raw, "initiative_id"),
                "initiative_id",
                f"duplicate id {initiative.initiative_id!r}",
            )
        initiatives.append(initiative)

    initiative_ids = frozenset(initiative.initiative_id for initiative in initiatives)
    partners: list[Partner] = []
    for index, raw in enumerate(_section(data, "partners")):
        partner = _partner(raw, index, initiative_ids)
        if any(known.partner_id == partner.partner_id for known in partners):
            raise InvalidRegistryData(
                _entry_label("partners", index, raw, "partner_id"),
                "partner_id",
                f"duplicate id {partner.partner_id!r}",
            )
        partners.append(partner)
    return initiatives, partners
