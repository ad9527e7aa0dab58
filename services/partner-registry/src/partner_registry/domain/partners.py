"""Partners, the initiatives they take part in, and who may use the MoLo Hubs lockers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, TypeVar

MOLO_HUBS = "molo-hubs"
COVENANT_OF_MAYORS = "covenant-of-mayors"


class OrganisationKind(StrEnum):
    MUNICIPALITY = "municipality"
    MUNICIPAL_ASSOCIATION = "municipal_association"
    UNIVERSITY = "university"
    ASSOCIATION = "association"
    COMPANY = "company"
    NETWORK = "network"
    PUBLIC_TRANSPORT_OPERATOR = "public_transport_operator"
    MUNICIPAL_COMPANY = "municipal_company"


class EmissionFactorApproach(StrEnum):
    """The Covenant's emission factor approaches: combustion on the territory (IPCC), or the
    life cycle including upstream (LCA)."""

    IPCC = "ipcc"
    LCA = "lca"


class EmissionReportingUnit(StrEnum):
    T_CO2 = "t_co2"
    T_CO2E = "t_co2e"


def default_reporting_unit(approach: EmissionFactorApproach) -> EmissionReportingUnit:
    """The unit when none is stated: LCA factors count CO2 equivalents only."""
    if approach is EmissionFactorApproach.LCA:
        return EmissionReportingUnit.T_CO2E
    return EmissionReportingUnit.T_CO2


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
    # MoLo Hubs: the locker hubs (locker-hubs' ids) carriers can be authorised at.
    hub_ids: tuple[str, ...] = ()
    revision: int = 1


@dataclass(frozen=True)
class Representative:
    """A public source's name and public title for someone; no other personal data."""

    name: str
    title: str


@dataclass(frozen=True)
class Participation:
    """One role a partner holds in one initiative."""

    initiative_id: str
    role: PartnerRole
    since_year: int | None
    representatives: tuple[Representative, ...] = ()
    # Last year of the participation; None while it lasts (or when unknown).
    until_year: int | None = None


@dataclass(frozen=True)
class EmissionTarget:
    target_year: int
    # Cut against the baseline year, in percent (70 = -70 %).
    reduction_percent: int
    climate_neutral: bool
    source: str


@dataclass(frozen=True)
class CovenantCommitment:
    """A municipality's Covenant of Mayors commitment."""

    signatory_year: int
    # None when no source at hand states it.
    baseline_year: int | None
    targets: tuple[EmissionTarget, ...] = ()
    # How its inventories are priced, the same for the baseline and every monitoring year.
    emission_factor_approach: EmissionFactorApproach = EmissionFactorApproach.IPCC
    emission_reporting_unit: EmissionReportingUnit = EmissionReportingUnit.T_CO2


@dataclass(frozen=True)
class CarrierAuthorization:
    """A carrier may collect at a hub from `valid_from` (inclusive) until `valid_until`
    (exclusive); None is open on that side."""

    hub_id: str
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    def valid_at(self, moment: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= moment) and (
            self.valid_until is None or moment < self.valid_until
        )


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
    covenant_commitment: CovenantCommitment | None = None
    carrier_authorizations: tuple[CarrierAuthorization, ...] = field(default=())

    def takes_part_in(self, initiative_id: str | None, role: PartnerRole | None = None) -> bool:
        """True when one participation matches both the initiative and the role (None: any)."""
        return any(
            (initiative_id is None or participation.initiative_id == initiative_id)
            and (role is None or participation.role == role)
            for participation in self.participations
        )

    @property
    def is_carrier(self) -> bool:
        return self.takes_part_in(MOLO_HUBS, PartnerRole.CARRIER)


@dataclass(frozen=True)
class AuthorizationDecision:
    authorized: bool
    reason: str


def authorize_carrier(
    partner: Partner | None, hub_id: str, at: datetime | None = None
) -> AuthorizationDecision:
    """Decide whether a partner may collect waste at a MoLo Hubs locker hub at a moment (now
    when None): a registered MoLo Hubs carrier with an authorisation at that hub valid then.

    locker-hubs makes the same decision from its read model of the changelog.
    """
    moment = at or datetime.now(UTC)
    if partner is None:
        return AuthorizationDecision(authorized=False, reason="unknown partner")
    if not partner.is_carrier:
        return AuthorizationDecision(
            authorized=False,
            reason=f"{partner.partner_id} is not registered as a MoLo Hubs carrier",
        )
    at_hub = [a for a in partner.carrier_authorizations if a.hub_id == hub_id]
    if not at_hub:
        return AuthorizationDecision(
            authorized=False, reason=f"{partner.partner_id} is not authorised at hub {hub_id}"
        )
    if not any(authorization.valid_at(moment) for authorization in at_hub):
        return AuthorizationDecision(
            authorized=False,
            reason=f"{partner.partner_id}'s authorisation at hub {hub_id} is not valid now",
        )
    return AuthorizationDecision(
        authorized=True, reason=f"{partner.partner_id} is authorised at hub {hub_id}"
    )


def filter_partners(
    partners: Iterable[Partner],
    initiative_id: str | None,
    role: PartnerRole | None,
    kind: OrganisationKind | None = None,
    country_code: str | None = None,
) -> list[Partner]:
    """Partners holding `role` in `initiative_id`, of `kind`, in `country_code` (None: no
    constraint), sorted by id.

    Initiative and role must hold in the same participation: a carrier in one initiative is
    not a carrier in another.
    """
    selected = [
        partner
        for partner in partners
        if ((initiative_id is None and role is None) or partner.takes_part_in(initiative_id, role))
        and (kind is None or partner.kind == kind)
        and (country_code is None or partner.country_code == country_code)
    ]
    return sorted(selected, key=lambda partner: partner.partner_id)


@dataclass(frozen=True)
class Page:
    partners: list[Partner]
    # The id the next page starts after; None on the last page.
    last_id: str | None


def page_after(sorted_partners: list[Partner], after_id: str | None, size: int) -> Page:
    """The `size` partners after `after_id` (from the start when None) of an id-sorted list."""
    rest = [p for p in sorted_partners if after_id is None or p.partner_id > after_id]
    page = rest[:size]
    return Page(page, page[-1].partner_id if len(rest) > size else None)


# The Covenant's earliest baseline year: no commitment year before it is plausible.
EARLIEST_COVENANT_YEAR = 1990
_COUNTRY_CODE_RULE = "ISO 3166-1 alpha-2 (two capital letters)"


@dataclass(frozen=True)
class Problem:
    """What is wrong with a record, and the field (path inside the record) at fault."""

    field: str
    problem: str


def partner_problem(partner: Partner, initiatives: Mapping[str, Initiative]) -> Problem | None:
    """The first rule a partner record breaks, None when it is valid.

    `initiatives` are the registry's initiatives by id: participations must name one, and an
    authorisation a hub of MoLo Hubs.
    """
    if not _SLUG.fullmatch(partner.partner_id):
        return Problem("partner_id", "must be a lowercase slug such as 'aalborg-kommune'")
    if not partner.name.strip():
        return Problem("name", "required")
    if not _COUNTRY_CODE.fullmatch(partner.country_code):
        return Problem("country_code", f"must be {_COUNTRY_CODE_RULE}")
    held: set[tuple[str, PartnerRole]] = set()
    for position, participation in enumerate(partner.participations):
        problem = _participation_problem(participation, initiatives, held)
        if problem is not None:
            return Problem(f"participations[{position}].{problem.field}", problem.problem)
        held.add((participation.initiative_id, participation.role))
    if partner.covenant_commitment is not None:
        problem = _commitment_problem(partner.covenant_commitment)
        if problem is not None:
            return Problem(f"covenant_commitment.{problem.field}", problem.problem)
    if partner.carrier_authorizations and not partner.is_carrier:
        return Problem("carrier_authorizations", "only a MoLo Hubs carrier can be authorised")
    molo_hubs = initiatives.get(MOLO_HUBS)
    hubs = frozenset(molo_hubs.hub_ids if molo_hubs is not None else ())
    for position, authorization in enumerate(partner.carrier_authorizations):
        field_prefix = f"carrier_authorizations[{position}]."
        if authorization.hub_id not in hubs:
            return Problem(field_prefix + "hub_id", "not a hub of MoLo Hubs")
        if (
            authorization.valid_from is not None
            and authorization.valid_until is not None
            and authorization.valid_until <= authorization.valid_from
        ):
            return Problem(field_prefix + "valid_until", "must be after valid_from")
    return None


def _participation_problem(
    participation: Participation,
    initiatives: Mapping[str, Initiative],
    held: set[tuple[str, PartnerRole]],
) -> Problem | None:
    if participation.initiative_id not in initiatives:
        return Problem("initiative_id", "unknown initiative")
    if (participation.initiative_id, participation.role) in held:
        return Problem(
            "role", f"{participation.role} in {participation.initiative_id} is listed twice"
        )
    since, until = participation.since_year, participation.until_year
    if since is not None and until is not None and until < since:
        return Problem("until_year", "must not be before since_year")
    for position, representative in enumerate(participation.representatives):
        if not representative.name.strip():
            return Problem(f"representatives[{position}].name", "required")
    return None


def _commitment_problem(commitment: CovenantCommitment) -> Problem | None:
    if commitment.signatory_year < EARLIEST_COVENANT_YEAR:
        return Problem("signatory_year", f"must be {EARLIEST_COVENANT_YEAR} or later")
    baseline = commitment.baseline_year
    if baseline is not None and baseline < EARLIEST_COVENANT_YEAR:
        return Problem("baseline_year", f"must be {EARLIEST_COVENANT_YEAR} or later")
    if (
        commitment.emission_factor_approach is EmissionFactorApproach.LCA
        and commitment.emission_reporting_unit is not EmissionReportingUnit.T_CO2E
    ):
        return Problem("emission_reporting_unit", "the LCA approach reports in t CO2e")
    for position, target in enumerate(commitment.targets):
        if target.target_year <= (baseline or EARLIEST_COVENANT_YEAR):
            return Problem(f"targets[{position}].target_year", "must be after the baseline year")
        if not 0 <= target.reduction_percent <= 100:
            return Problem(f"targets[{position}].reduction_percent", "must be 0 to 100")
    return None


def initiative_problem(initiative: Initiative) -> Problem | None:
    """The first rule an initiative record breaks, None when it is valid."""
    if not _SLUG.fullmatch(initiative.initiative_id):
        return Problem("initiative_id", "must be a lowercase slug such as 'green-fleets'")
    if not initiative.name.strip():
        return Problem("name", "required")
    starts_on, ends_on = initiative.starts_on, initiative.ends_on
    if starts_on is not None and ends_on is not None and ends_on < starts_on:
        return Problem("ends_on", f"{ends_on} is before starts_on {starts_on}")
    for position, hub_id in enumerate(initiative.hub_ids):
        if not _SLUG.fullmatch(hub_id):
            return Problem(f"hub_ids[{position}]", "must be a lowercase slug")
    if len(set(initiative.hub_ids)) != len(initiative.hub_ids):
        return Problem("hub_ids", "lists a hub twice")
    return None


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
    {"initiative_id", "name", "description", "programme", "starts_on", "ends_on", "hub_ids"}
)
_PARTNER_FIELDS = frozenset(
    {
        "partner_id",
        "name",
        "kind",
        "country_code",
        "participations",
        "revision",
        "covenant_commitment",
        "carrier_authorizations",
    }
)
_PARTICIPATION_FIELDS = frozenset(
    {"initiative_id", "role", "since_year", "until_year", "representatives"}
)
_REPRESENTATIVE_FIELDS = frozenset({"name", "title"})
_COMMITMENT_FIELDS = frozenset(
    {
        "signatory_year",
        "baseline_year",
        "targets",
        "emission_factor_approach",
        "emission_reporting_unit",
    }
)
_TARGET_FIELDS = frozenset({"target_year", "reduction_percent", "climate_neutral", "source"})
# In the seed, `every_hub: true` stands for one authorisation at each MoLo Hubs hub.
_AUTHORIZATION_FIELDS = frozenset({"hub_id", "every_hub", "valid_from", "valid_until"})

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

    def flag(self, name: str) -> bool:
        value = self.values.get(name, False)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {value!r}")
        return value

    def whole_number(self, name: str) -> int:
        value = self.values.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected a whole number, got {value!r}")
        return value

    def optional_moment(self, name: str) -> datetime | None:
        """A date as the start of that day in UTC, or an aware timestamp."""
        value = self.values.get(name)
        if value is None:
            return None
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise self.error(name, "a timestamp needs its time zone")
            return value.astimezone(UTC)
        day = self.optional_date(name)
        assert day is not None
        return datetime(day.year, day.month, day.day, tzinfo=UTC)

    def slugs(self, name: str) -> tuple[str, ...]:
        values = self.mappings(name)
        for position, value in enumerate(values):
            if not isinstance(value, str) or not _SLUG.fullmatch(value):
                raise self.error(f"{name}[{position}]", f"{value!r} is not a lowercase slug")
        return tuple(str(value) for value in values)

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
    initiative = Initiative(
        initiative_id=fields.slug("initiative_id"),
        name=fields.text("name"),
        description=fields.text("description", required=False),
        programme=fields.text("programme", required=False),
        starts_on=starts_on,
        ends_on=ends_on,
        hub_ids=fields.slugs("hub_ids"),
    )
    problem = initiative_problem(initiative)
    if problem is not None:
        raise InvalidRegistryData(entry, problem.field, problem.problem)
    return initiative


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
        until_year=fields.optional_year("until_year"),
        representatives=representatives,
    )


def _commitment(raw: object, entry: str) -> CovenantCommitment | None:
    if raw is None:
        return None
    prefix = "covenant_commitment."
    fields = _Fields.of(raw, entry, prefix, _COMMITMENT_FIELDS, "covenant_commitment")
    signatory_year = fields.optional_year("signatory_year")
    if signatory_year is None:
        raise fields.error("signatory_year", "missing")
    targets = []
    for position, item in enumerate(fields.mappings("targets")):
        target = _Fields.of(
            item, entry, f"{prefix}targets[{position}].", _TARGET_FIELDS, f"{prefix}targets"
        )
        targets.append(
            EmissionTarget(
                target_year=target.whole_number("target_year"),
                reduction_percent=target.whole_number("reduction_percent"),
                climate_neutral=target.flag("climate_neutral"),
                source=target.text("source"),
            )
        )
    approach = EmissionFactorApproach.IPCC
    if fields.values.get("emission_factor_approach") is not None:
        approach = fields.choice("emission_factor_approach", EmissionFactorApproach)
    unit = default_reporting_unit(approach)
    if fields.values.get("emission_reporting_unit") is not None:
        unit = fields.choice("emission_reporting_unit", EmissionReportingUnit)
    return CovenantCommitment(
        signatory_year=signatory_year,
        baseline_year=fields.optional_year("baseline_year"),
        targets=tuple(targets),
        emission_factor_approach=approach,
        emission_reporting_unit=unit,
    )


def _authorizations(
    raws: list[object], entry: str, initiatives: Mapping[str, Initiative]
) -> tuple[CarrierAuthorization, ...]:
    authorizations: list[CarrierAuthorization] = []
    for position, raw in enumerate(raws):
        prefix = f"carrier_authorizations[{position}]."
        fields = _Fields.of(raw, entry, prefix, _AUTHORIZATION_FIELDS, prefix.rstrip("."))
        valid_from = fields.optional_moment("valid_from")
        valid_until = fields.optional_moment("valid_until")
        if fields.flag("every_hub"):
            molo_hubs = initiatives.get(MOLO_HUBS)
            hub_ids = molo_hubs.hub_ids if molo_hubs is not None else ()
        else:
            hub_ids = (fields.slug("hub_id"),)
        authorizations += [CarrierAuthorization(hub, valid_from, valid_until) for hub in hub_ids]
    return tuple(authorizations)


def _partner(raw: object, index: int, initiatives: Mapping[str, Initiative]) -> Partner:
    entry = _entry_label("partners", index, raw, "partner_id")
    fields = _Fields.of(raw, entry, "", _PARTNER_FIELDS, "partners")
    initiative_ids = frozenset(initiatives)
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
    partner = Partner(
        partner_id=partner_id,
        name=fields.text("name"),
        kind=fields.choice("kind", OrganisationKind),
        country_code=country_code,
        participations=tuple(participations),
        revision=fields.positive_int("revision", default=1),
        covenant_commitment=_commitment(fields.values.get("covenant_commitment"), entry),
        carrier_authorizations=_authorizations(
            fields.mappings("carrier_authorizations"), entry, initiatives
        ),
    )
    problem = partner_problem(partner, initiatives)
    if problem is not None:
        raise InvalidRegistryData(entry, problem.field, problem.problem)
    return partner


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

    by_id = {initiative.initiative_id: initiative for initiative in initiatives}
    partners: list[Partner] = []
    for index, raw in enumerate(_section(data, "partners")):
        partner = _partner(raw, index, by_id)
        if any(known.partner_id == partner.partner_id for known in partners):
            raise InvalidRegistryData(
                _entry_label("partners", index, raw, "partner_id"),
                "partner_id",
                f"duplicate id {partner.partner_id!r}",
            )
        partners.append(partner)
    return initiatives, partners
