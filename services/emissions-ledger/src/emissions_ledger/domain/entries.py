"""Ledger entries: turning fleet activity and locker-hub collections into CO2 accounting."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import (
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from emissions_ledger.domain.factors import (
    EmissionFactor,
    EnergyCarrier,
    FactorCatalogue,
    InventoryMethod,
)
from servicekit.ids import name_based_id

if TYPE_CHECKING:
    from emissions_ledger.domain.hourly import HourlyPricing

# Any arithmetic that would have to round raises instead: ledger amounts are exact.
EXACT_ARITHMETIC = Context(prec=60, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])

MUNICIPAL_TIME_ZONE = ZoneInfo("Europe/Copenhagen")

# IPCC in t CO2: a municipality's method when its commitment states none.
DEFAULT_METHOD = InventoryMethod()

# Fixed forever: changing it would give redelivered events new entry ids.
ENTRY_ID_NAMESPACE = uuid.UUID("6d5ca3ed-722e-4b7d-a3d6-2721cbdcdb3d")


class EntryKind(StrEnum):
    EMISSION = "emission"
    AVOIDED_EMISSION = "avoided_emission"


class Posting(StrEnum):
    """Why an entry is in the ledger: an event's first accounting, or a restatement's pair
    (the reversal of the entry it replaces, and the entry that replaces it)."""

    ORIGINAL = "original"
    REVERSAL = "reversal"
    RESTATEMENT = "restatement"


class Basis(StrEnum):
    """How an amount is known: metered (telemetry counters), modelled (a trip not driven, a
    detour estimated), or reported (by a climate officer, from bills, meter readings and
    statistics). They never share an inventory line."""

    METERED = "metered"
    MODELLED = "modelled"
    REPORTED = "reported"


class Sector(StrEnum):
    """Covenant of Mayors inventory sectors, in the order of the reporting template."""

    MUNICIPAL_BUILDINGS = "municipal_buildings"
    TERTIARY_BUILDINGS = "tertiary_buildings"
    RESIDENTIAL_BUILDINGS = "residential_buildings"
    PUBLIC_LIGHTING = "public_lighting"
    INDUSTRY = "industry"
    TRANSPORT = "transport"
    WASTE = "waste"


class Subsector(StrEnum):
    """Covenant of Mayors sub-sectors of transport and industry; NONE for sectors without."""

    MUNICIPAL_FLEET = "municipal_fleet"
    PUBLIC_TRANSPORT = "public_transport"
    PRIVATE_COMMERCIAL_TRANSPORT = "private_commercial_transport"
    NON_ETS = "non_ets"
    ETS = "ets"
    NONE = ""


class FuelType(StrEnum):
    DIESEL = "diesel"
    PETROL = "petrol"
    ELECTRIC = "electric"
    HVO100 = "hvo100"
    BIOGAS = "biogas"
    NATURAL_GAS = "natural_gas"


_CARRIER_OF_FUEL: Mapping[FuelType, EnergyCarrier] = {
    FuelType.DIESEL: EnergyCarrier.DIESEL,
    FuelType.PETROL: EnergyCarrier.GASOLINE,
    FuelType.ELECTRIC: EnergyCarrier.ELECTRICITY,
    FuelType.HVO100: EnergyCarrier.BIOFUEL,
    FuelType.BIOGAS: EnergyCarrier.BIOFUEL,
    FuelType.NATURAL_GAS: EnergyCarrier.NATURAL_GAS,
}

# Fuels whose consumption is accounted in litres.
_LITRE_FUELS = frozenset({FuelType.DIESEL, FuelType.PETROL, FuelType.HVO100, FuelType.BIOGAS})

_TRANSPORT_SUBSECTORS = frozenset(
    {
        Subsector.MUNICIPAL_FLEET,
        Subsector.PUBLIC_TRANSPORT,
        Subsector.PRIVATE_COMMERCIAL_TRANSPORT,
    }
)

_Member = TypeVar("_Member", bound=StrEnum)

LITRE = "l"
KILOWATT_HOUR = "kWh"


class UnaccountableActivity(ValueError):
    """Activity the ledger cannot account; the message names the offending field."""


class ImplausibleActivity(UnaccountableActivity):
    """Activity outside what the ledger can believe: a reporting year before the Covenant's
    earliest baseline or after the current year, or amounts no vehicle or hub produces.
    `reason` is the dead-letter reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# The Covenant's earliest recommended baseline year.
FIRST_REPORTING_YEAR = 1990
# Per event, far above anything one vehicle does in one activity window or one carrier in one
# collection; they keep a corrupt value (an overflowed or forged counter) out of the inventory.
MAX_ACTIVITY_AMOUNT = {"distance_m": 10**7, "fuel_used_ml": 10**7, "energy_used_wh": 10**8}
MAX_COLLECTED_MASS_G = 10**7
MAX_EXTRA_DISTANCE_M = 10**6


def _require_plausible_year(year: int, this_year: int | None) -> None:
    latest = 9999 if this_year is None else this_year
    if not FIRST_REPORTING_YEAR <= year <= latest:
        raise ImplausibleActivity(
            "year_out_of_range",
            f"reporting year {year} is outside {FIRST_REPORTING_YEAR} to the current year",
        )


def _require_at_most(field: str, amount: int, limit: int) -> None:
    if amount > limit:
        raise ImplausibleActivity("amount_out_of_bounds", f"{field}: above {limit}")


class InvalidPolicyData(ValueError):
    """The avoided-trip policy data is malformed; the message names the field."""


@dataclass(frozen=True)
class AvoidedTrip:
    """Both sides of an avoided-emission figure: the trip not driven and the carrier's detour."""

    avoided_trip_distance_m: int
    avoided_vehicle: str
    avoided_kg_co2e: Decimal
    carrier_extra_distance_m: int
    carrier_vehicle: str
    carrier_extra_kg_co2e: Decimal


@dataclass(frozen=True)
class CollectionProvenance:
    """Which collection an entry accounts: the carrier (to credit it), the hub, the mass and
    the kinds of waste collected (from the deposits the ledger saw)."""

    collection_id: str
    carrier_partner_id: str
    hub_id: str
    mass_g: int
    includes_hazardous: bool
    waste_types: tuple[str, ...]
    deposit_count: int


@dataclass(frozen=True)
class ReportedProvenance:
    """Who recorded a reported entry, when, in which batch and from where, and how its amount
    as reported became the factor's unit (`conversion`: factor units per reported unit)."""

    idempotency_key: str
    line_index: int
    recorded_by: str
    recorded_at: datetime
    reported_amount: str
    reported_unit: str
    conversion: str
    conversion_source: str
    conversion_rounded: bool
    note: str
    source_document: str
    source_file: str
    source_line: int


@dataclass(frozen=True)
class SampleProvenance:
    """Which telemetry samples an aggregated activity sums: how many, the first and the last."""

    sample_count: int
    first_sample_event_id: str
    last_sample_event_id: str


@dataclass(frozen=True)
class LedgerEntry:
    """One accounted activity; the kind says which way it counts.

    Amounts are never negative, except on a reversal: the exact negation of the entry it
    reverses (`restates_entry_id`), so that summing a year's entries gives its figures. A
    restatement re-prices the entry it replaces from the same activity; both carry the
    revision they make (the original is revision 0) and the restatement run that posted them.
    `late` marks an entry posted after its year was locked.
    """

    entry_id: str
    municipality_id: str
    year: int
    sector: Sector
    subsector: Subsector
    energy_carrier: EnergyCarrier
    activity_amount: Decimal
    activity_unit: str
    factor: EmissionFactor
    kg_co2e: Decimal
    kind: EntryKind
    source_event_id: str
    source_topic: str
    activity_at: datetime
    subject_id: str
    avoided_trip: AvoidedTrip | None = None
    # For vehicle activity: the samples behind the figure (None for other sources).
    samples: SampleProvenance | None = None
    posting: Posting = Posting.ORIGINAL
    revision: int = 0
    restates_entry_id: str | None = None
    restatement_id: str | None = None
    late: bool = False
    basis: Basis = Basis.METERED
    # For a carrier collection: what was collected, by whom, where.
    collection: CollectionProvenance | None = None
    # The distance behind the activity amount, in metres: a vehicle's metered km, or the
    # modelled trip or detour (negated on a reversal, as the amounts are). None when not known
    # (entries posted before the ledger recorded it).
    distance_m: int | None = None
    # For vehicle activity: the partner that owns the vehicle (None when not known).
    owner_partner_id: str | None = None
    # For reported activity: who recorded it, when, from where, and its unit conversion.
    reported: ReportedProvenance | None = None
    # For vehicle activity: when its period started (activity_at is its end); None when the
    # producer did not say, and on entries from before migration 10.
    activity_started_at: datetime | None = None


@dataclass(frozen=True)
class VehicleActivity:
    """A vehicle's distance and consumption over one period [period_start, period_end)
    (tz-aware; period_start None when the producer did not say)."""

    event_id: str
    vehicle_id: str
    municipality_id: str
    fuel_type: FuelType
    subsector: Subsector
    period_end: datetime
    distance_m: int
    fuel_used_ml: int
    energy_used_wh: int
    # None when the producer did not say (activity from before aggregation).
    samples: SampleProvenance | None = None
    period_start: datetime | None = None
    # The partner that owns the vehicle; "" when the event does not say.
    owner_partner_id: str = ""


@dataclass(frozen=True)
class WasteCollection:
    """A carrier collected waste from a locker hub, driving carrier_extra_distance_m extra."""

    event_id: str
    hub_id: str
    municipality_id: str
    carrier_partner_id: str
    collected_at: datetime
    carrier_extra_distance_m: int
    mass_g: int
    includes_hazardous: bool
    collection_id: str = ""
    deposit_ids: tuple[str, ...] = ()
    # The waste types of the deposits collected, as far as the ledger saw them deposited.
    waste_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class WasteDeposit:
    """A resident's deposit at a locker hub, as the ledger remembers it: it carries no
    emissions, but tells what a later collection took away."""

    event_id: str
    deposit_id: str
    hub_id: str
    municipality_id: str
    waste_type: str
    hazardous: bool
    mass_g: int
    deposited_at: datetime


@dataclass(frozen=True)
class VehicleProfile:
    name: str
    fuel_type: FuelType
    litres_per_100_km: Decimal


@dataclass(frozen=True)
class AvoidedTripPolicy:
    """The dedicated collection trip that shared carrier capacity replaces."""

    dedicated_trip_distance_m: int
    dedicated_vehicle: VehicleProfile
    carrier_vehicle: VehicleProfile
    # Waste companies drive under contract, so they default to private and commercial transport.
    subsector: Subsector = Subsector.PRIVATE_COMMERCIAL_TRANSPORT

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AvoidedTripPolicy:
        """Build the policy from parsed data, raising InvalidPolicyData on any flaw."""
        if not isinstance(data, Mapping):
            raise InvalidPolicyData("policy: must be a mapping")
        known = {"dedicated_trip_distance_m", "dedicated_vehicle", "carrier_vehicle", "subsector"}
        _reject_unknown_policy_fields("policy", data, known)

        distance = data.get("dedicated_trip_distance_m")
        if isinstance(distance, bool) or not isinstance(distance, int) or distance <= 0:
            raise InvalidPolicyData(
                f"policy: field 'dedicated_trip_distance_m' must be a positive whole number "
                f"of metres, got {distance!r}"
            )

        raw_subsector = data.get("subsector", Subsector.PRIVATE_COMMERCIAL_TRANSPORT.value)
        subsector = _member_named(Subsector, raw_subsector)
        if subsector is None or subsector not in _TRANSPORT_SUBSECTORS:
            allowed = ", ".join(sorted(s.value for s in _TRANSPORT_SUBSECTORS))
            raise InvalidPolicyData(
                f"policy: field 'subsector' is {raw_subsector!r}, expected one of: {allowed}"
            )

        return cls(
            dedicated_trip_distance_m=distance,
            dedicated_vehicle=_vehicle_profile("dedicated_vehicle", data.get("dedicated_vehicle")),
            carrier_vehicle=_vehicle_profile("carrier_vehicle", data.get("carrier_vehicle")),
            subsector=subsector,
        )


def entry_id_for(source_event_id: str, kind: EntryKind) -> str:
    """Deterministic entry id, so a redelivered event maps to the entry it already made."""
    return name_based_id(ENTRY_ID_NAMESPACE, f"{source_event_id}:{kind}")


LAST_INSTANT = timedelta(microseconds=1)


def reporting_year(at: datetime) -> int:
    """The calendar year of `at` in the municipality's local time."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"timestamp {at.isoformat()} must be timezone-aware")
    return at.astimezone(MUNICIPAL_TIME_ZONE).year


def entry_for_activity(
    activity: VehicleActivity,
    catalogue: FactorCatalogue,
    source_topic: str,
    this_year: int | None = None,
    method: InventoryMethod = DEFAULT_METHOD,
    hourly: HourlyPricing | None = None,
) -> LedgerEntry:
    """The emission entry of one period of vehicle activity, priced with a factor of the
    municipality's method only.

    Electricity of a municipality priced by the hour (`hourly`) takes the intensity of the hour
    its period lies within when that hour is known, the yearly factor otherwise.

    Raises UnaccountableActivity for activity that cannot be accounted and NoFactor when the
    catalogue has no factor for the carrier in the reporting year.
    """
    _require_text("event_id", activity.event_id)
    _require_text("vehicle_id", activity.vehicle_id)
    _require_text("municipality_id", activity.municipality_id)
    _require_aware("period_end", activity.period_end)
    if activity.period_start is not None:
        _require_aware("period_start", activity.period_start)
        if activity.period_start > activity.period_end:
            raise UnaccountableActivity("period_start: after period_end")
    _require_not_negative("distance_m", activity.distance_m)
    _require_not_negative("fuel_used_ml", activity.fuel_used_ml)
    _require_not_negative("energy_used_wh", activity.energy_used_wh)
    for field, limit in MAX_ACTIVITY_AMOUNT.items():
        _require_at_most(field, getattr(activity, field), limit)
    if activity.samples is not None:
        _require_not_negative("sample_count", activity.samples.sample_count)
    if activity.subsector not in _TRANSPORT_SUBSECTORS:
        raise UnaccountableActivity("subsector: transport activity needs a Covenant sub-sector")

    fuel = activity.fuel_type
    carrier = _CARRIER_OF_FUEL.get(fuel)
    if carrier is None:
        raise UnaccountableActivity(f"fuel_type: no energy carrier known for '{fuel}'")
    if fuel is FuelType.NATURAL_GAS:
        raise UnaccountableActivity(
            "fuel_used_ml: natural gas is metered by volume, which cannot be turned into the "
            "kWh of its emission factor without the gas's density and heating value"
        )

    if fuel is FuelType.ELECTRIC:
        measured_field = "energy_used_wh"
        if activity.energy_used_wh == 0 and activity.fuel_used_ml > 0:
            raise UnaccountableActivity(
                "energy_used_wh: an electric vehicle reported fuel but no energy"
            )
        amount = EXACT_ARITHMETIC.scaleb(Decimal(activity.energy_used_wh), -3)
        unit = KILOWATT_HOUR
    else:
        measured_field = "fuel_used_ml"
        if activity.fuel_used_ml == 0 and activity.energy_used_wh > 0:
            raise UnaccountableActivity(
                f"fuel_used_ml: a {fuel} vehicle reported energy but no fuel"
            )
        amount = EXACT_ARITHMETIC.scaleb(Decimal(activity.fuel_used_ml), -3)
        unit = LITRE

    # A period is half-open and ends on a window boundary at most: its last instant, not its
    # end, says the year (an activity ending at midnight on New Year's Eve is the old year's).
    year = reporting_year(activity.period_end - LAST_INSTANT)
    _require_plausible_year(year, this_year)
    factor = catalogue.for_method(carrier, year, method)
    if factor.activity_unit != unit:
        raise UnaccountableActivity(
            f"{measured_field}: {fuel} is measured in {unit} but factor "
            f"'{factor.factor_id}' is per {factor.activity_unit}"
        )
    if hourly is not None:
        factor = hourly.factor_for(
            activity.municipality_id,
            activity.period_start,
            activity.period_end,
            factor,
            method.approach.value,
        )

    return LedgerEntry(
        entry_id=entry_id_for(activity.event_id, EntryKind.EMISSION),
        municipality_id=activity.municipality_id,
        year=year,
        sector=Sector.TRANSPORT,
        subsector=activity.subsector,
        energy_carrier=carrier,
        activity_amount=amount,
        activity_unit=unit,
        factor=factor,
        kg_co2e=EXACT_ARITHMETIC.multiply(amount, factor.value),
        kind=EntryKind.EMISSION,
        source_event_id=activity.event_id,
        source_topic=source_topic,
        activity_at=activity.period_end,
        subject_id=activity.vehicle_id,
        samples=activity.samples,
        distance_m=activity.distance_m,
        owner_partner_id=activity.owner_partner_id or None,
        activity_started_at=activity.period_start,
    )


def entries_for_collection(
    collection: WasteCollection,
    policy: AvoidedTripPolicy,
    catalogue: FactorCatalogue,
    source_topic: str,
    this_year: int | None = None,
    method: InventoryMethod = DEFAULT_METHOD,
) -> list[LedgerEntry]:
    """The entries of a collection by shared carrier capacity instead of a dedicated trip,
    both modelled: the dedicated trip not driven (an avoided emission) and the carrier's
    detour (an emission; none when it drove no extra distance). Each is priced with its own
    vehicle's factor; the net is their difference, which a reader computes, never the ledger.
    """
    _require_text("event_id", collection.event_id)
    _require_text("hub_id", collection.hub_id)
    _require_text("municipality_id", collection.municipality_id)
    _require_aware("collected_at", collection.collected_at)
    _require_not_negative("carrier_extra_distance_m", collection.carrier_extra_distance_m)
    _require_not_negative("mass_g", collection.mass_g)
    _require_at_most(
        "carrier_extra_distance_m", collection.carrier_extra_distance_m, MAX_EXTRA_DISTANCE_M
    )
    _require_at_most("mass_g", collection.mass_g, MAX_COLLECTED_MASS_G)

    year = reporting_year(collection.collected_at)
    _require_plausible_year(year, this_year)
    dedicated = policy.dedicated_vehicle
    carrier_vehicle = policy.carrier_vehicle
    dedicated_factor = _litre_factor("dedicated_vehicle", dedicated, catalogue, year, method)
    carrier_factor = _litre_factor("carrier_vehicle", carrier_vehicle, catalogue, year, method)

    avoided_litres = _litres_for(policy.dedicated_trip_distance_m, dedicated)
    extra_litres = _litres_for(collection.carrier_extra_distance_m, carrier_vehicle)
    avoided_kg = EXACT_ARITHMETIC.multiply(avoided_litres, dedicated_factor.value)
    extra_kg = EXACT_ARITHMETIC.multiply(extra_litres, carrier_factor.value)
    trip = AvoidedTrip(
        avoided_trip_distance_m=policy.dedicated_trip_distance_m,
        avoided_vehicle=dedicated.name,
        avoided_kg_co2e=avoided_kg,
        carrier_extra_distance_m=collection.carrier_extra_distance_m,
        carrier_vehicle=carrier_vehicle.name,
        carrier_extra_kg_co2e=extra_kg,
    )
    provenance = CollectionProvenance(
        collection_id=collection.collection_id,
        carrier_partner_id=collection.carrier_partner_id,
        hub_id=collection.hub_id,
        mass_g=collection.mass_g,
        includes_hazardous=collection.includes_hazardous,
        waste_types=tuple(sorted(set(collection.waste_types))),
        deposit_count=len(collection.deposit_ids),
    )

    def modelled(
        kind: EntryKind, factor: EmissionFactor, litres: Decimal, kg: Decimal, distance_m: int
    ) -> LedgerEntry:
        return LedgerEntry(
            entry_id=entry_id_for(collection.event_id, kind),
            municipality_id=collection.municipality_id,
            year=year,
            sector=Sector.TRANSPORT,
            subsector=policy.subsector,
            energy_carrier=factor.energy_carrier,
            activity_amount=litres,
            activity_unit=LITRE,
            factor=factor,
            kg_co2e=kg,
            kind=kind,
            source_event_id=collection.event_id,
            source_topic=source_topic,
            activity_at=collection.collected_at,
            subject_id=collection.hub_id,
            avoided_trip=trip,
            basis=Basis.MODELLED,
            collection=provenance,
            distance_m=distance_m,
        )

    entries = [
        modelled(
            EntryKind.AVOIDED_EMISSION,
            dedicated_factor,
            avoided_litres,
            avoided_kg,
            policy.dedicated_trip_distance_m,
        )
    ]
    if collection.carrier_extra_distance_m > 0:
        entries.append(
            modelled(
                EntryKind.EMISSION,
                carrier_factor,
                extra_litres,
                extra_kg,
                collection.carrier_extra_distance_m,
            )
        )
    return entries


def _litres_for(distance_m: int, vehicle: VehicleProfile) -> Decimal:
    # metres / 1000 * litres per 100 km / 100, shifted by powers of ten to stay exact.
    product = EXACT_ARITHMETIC.multiply(Decimal(distance_m), vehicle.litres_per_100_km)
    return EXACT_ARITHMETIC.scaleb(product, -5)


def _litre_factor(
    field: str,
    vehicle: VehicleProfile,
    catalogue: FactorCatalogue,
    year: int,
    method: InventoryMethod,
) -> EmissionFactor:
    carrier = _CARRIER_OF_FUEL.get(vehicle.fuel_type)
    if carrier is None:
        raise UnaccountableActivity(
            f"{field}.fuel_type: no energy carrier for '{vehicle.fuel_type}'"
        )
    factor = catalogue.for_method(carrier, year, method)
    if factor.activity_unit != LITRE:
        raise UnaccountableActivity(
            f"{field}.fuel_type: factor '{factor.factor_id}' is per {factor.activity_unit}, "
            f"but the vehicle's consumption is in litres"
        )
    return factor


def _vehicle_profile(field: str, raw: object) -> VehicleProfile:
    if not isinstance(raw, Mapping):
        raise InvalidPolicyData(f"policy: field '{field}' must be a mapping")
    _reject_unknown_policy_fields(field, raw, {"name", "fuel_type", "litres_per_100_km"})

    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidPolicyData(f"{field}: field 'name' must be a non-empty string")

    raw_fuel = raw.get("fuel_type")
    fuel = _member_named(FuelType, raw_fuel)
    if fuel is None or fuel not in _LITRE_FUELS:
        allowed = ", ".join(sorted(f.value for f in _LITRE_FUELS))
        raise InvalidPolicyData(
            f"{field}: field 'fuel_type' is {raw_fuel!r}; litres per 100 km needs one of: {allowed}"
        )

    raw_rate = raw.get("litres_per_100_km")
    # A YAML float has already lost exactness, so only strings and integers are accepted.
    if isinstance(raw_rate, bool) or not isinstance(raw_rate, str | int):
        raise InvalidPolicyData(
            f"{field}: field 'litres_per_100_km' must be a quoted decimal string, got {raw_rate!r}"
        )
    try:
        rate = Decimal(raw_rate)
    except InvalidOperation:
        rate = Decimal("NaN")
    if not rate.is_finite() or rate < 0:
        raise InvalidPolicyData(
            f"{field}: field 'litres_per_100_km' must be a decimal >= 0, got {raw_rate!r}"
        )
    return VehicleProfile(name=name, fuel_type=fuel, litres_per_100_km=rate)


def _member_named(enum_type: type[_Member], raw: object) -> _Member | None:
    for member in enum_type:
        if member.value == raw:
            return member
    return None


def _reject_unknown_policy_fields(where: str, data: Mapping[Any, Any], known: set[str]) -> None:
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise InvalidPolicyData(f"{where}: unknown field '{unknown[0]}'")


def _require_text(field: str, value: str) -> None:
    if not value.strip():
        raise UnaccountableActivity(f"{field}: must not be empty")


def _require_aware(field: str, at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise UnaccountableActivity(f"{field}: must be timezone-aware")


def _require_not_negative(field: str, amount: int) -> None:
    if amount < 0:
        raise UnaccountableActivity(f"{field}: must not be negative, got {amount}")
