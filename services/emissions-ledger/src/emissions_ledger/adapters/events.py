"""Wire form of the events the ledger reads and writes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from emissions_ledger.adapters.repository import LineKey
from emissions_ledger.domain import (
    ActivityBatch,
    Basis,
    EmissionFactor,
    EnergyCarrier,
    EntryKind,
    FuelType,
    HourlyIntensity,
    Inventory,
    LedgerEntry,
    Posting,
    ReportedLine,
    SampleProvenance,
    Sector,
    SectorChange,
    Subsector,
    VehicleActivity,
    WasteCollection,
    WasteDeposit,
    approach_key,
)
from emissions_ledger.domain.inventory import distance_km
from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.ledger.v1 import ledger_pb2
from greenpartners.lockers.v1 import lockers_pb2
from servicekit.codec import from_timestamp, to_timestamp
from servicekit.database import decimal_text
from servicekit.enums import from_proto, to_proto
from servicekit.errors import InvalidArgument, PermanentEventError


def activity_from_event(event: fleet_pb2.VehicleActivity) -> VehicleActivity:
    vehicle = event.vehicle
    fuel_type = from_proto(fleet_pb2.FuelType, vehicle.fuel_type, FuelType)
    if fuel_type is None:
        raise PermanentEventError("schema_invalid", "vehicle.fuel_type is unspecified")
    subsector = from_proto(fleet_pb2.CovenantSubsector, vehicle.covenant_subsector, Subsector)
    if not event.HasField("period_end"):
        raise PermanentEventError("schema_invalid", "period_end is missing")
    return VehicleActivity(
        event_id=event.event_id,
        vehicle_id=vehicle.vehicle_id,
        municipality_id=vehicle.municipality_id,
        fuel_type=fuel_type,
        subsector=subsector or Subsector.NONE,
        period_end=from_timestamp(event.period_end),
        distance_m=event.distance_m,
        fuel_used_ml=event.fuel_used_ml,
        energy_used_wh=event.energy_used_wh,
        samples=_samples_of(event),
        # Activity from before aggregation may not say when its period started.
        period_start=from_timestamp(event.period_start) if event.HasField("period_start") else None,
        owner_partner_id=vehicle.owner_partner_id,
    )


def _samples_of(event: fleet_pb2.VehicleActivity) -> SampleProvenance | None:
    # Activity from before aggregation does not say how many samples it sums.
    if event.sample_count == 0:
        return None
    return SampleProvenance(
        sample_count=event.sample_count,
        first_sample_event_id=event.first_sample_event_id,
        last_sample_event_id=event.last_sample_event_id or event.source_sample_event_id,
    )


def deposit_from_event(event: lockers_pb2.LockerEvent) -> WasteDeposit:
    deposited = event.waste_deposited
    waste_type = lockers_pb2.WasteType.Name(deposited.waste_type)
    return WasteDeposit(
        event_id=event.event_id,
        deposit_id=deposited.deposit_id or event.event_id,
        hub_id=event.hub_id,
        municipality_id=event.municipality_id,
        waste_type=waste_type.removeprefix("WASTE_TYPE_").lower(),
        hazardous=deposited.hazardous,
        mass_g=deposited.mass_g,
        deposited_at=from_timestamp(event.occurred_at),
    )


def collection_from_event(event: lockers_pb2.LockerEvent) -> WasteCollection:
    collected = event.waste_collected
    return WasteCollection(
        event_id=event.event_id,
        hub_id=event.hub_id,
        municipality_id=event.municipality_id,
        carrier_partner_id=collected.carrier_partner_id,
        collected_at=from_timestamp(event.occurred_at),
        carrier_extra_distance_m=collected.carrier_extra_distance_m,
        mass_g=collected.mass_g,
        includes_hazardous=collected.includes_hazardous,
        collection_id=collected.collection_id,
        deposit_ids=tuple(collected.deposit_ids),
    )


def factor_to_proto(factor: EmissionFactor) -> ledger_pb2.EmissionFactor:
    return ledger_pb2.EmissionFactor(
        factor_id=factor.factor_id,
        value=decimal_text(factor.value),
        unit=factor.unit,
        source=factor.source,
        version=factor.version,
        approach=approach_key(factor.approach),
        valid_from_year=factor.valid_from_year or 0,
        valid_to_year=factor.valid_to_year or 0,
        provisional=factor.provisional,
        activity_unit=factor.activity_unit,
        hourly=factor.hourly is not None,
        hourly_intensity=None
        if factor.hourly is None
        else hourly_intensity_to_proto(factor.hourly),
        hourly_fallback=factor.hourly_fallback,
    )


def hourly_intensity_to_proto(intensity: HourlyIntensity) -> ledger_pb2.HourlyIntensity:
    return ledger_pb2.HourlyIntensity(
        dataset=intensity.dataset,
        price_area=intensity.price_area,
        hour_start=to_timestamp(intensity.hour_start),
        g_co2_per_kwh=decimal_text(intensity.g_co2_per_kwh),
        five_minute_values=intensity.five_minute_values,
        fetched_at=to_timestamp(intensity.fetched_at),
    )


# The wire numbers of the domain enums an entry carries, worked out once: every posted entry
# is announced, so its enums are translated thousands of times per batch.
_SECTORS = {sector: to_proto(ledger_pb2.Sector, sector) for sector in Sector}
_SUBSECTORS = {subsector: to_proto(ledger_pb2.Subsector, subsector) for subsector in Subsector}
_CARRIERS = {carrier: to_proto(ledger_pb2.EnergyCarrier, carrier) for carrier in EnergyCarrier}
_KINDS = {kind: to_proto(ledger_pb2.EntryKind, kind) for kind in EntryKind}
_POSTINGS = {posting: to_proto(ledger_pb2.Posting, posting) for posting in Posting}
_BASES = {basis: to_proto(ledger_pb2.Basis, basis) for basis in Basis}


def entry_to_proto(
    entry: LedgerEntry,
    trace_id: str = "",
    factor: ledger_pb2.EmissionFactor | None = None,
) -> ledger_pb2.LedgerEntry:
    """The entry's wire form; `factor` is its factor's (`factor_to_proto`), when the caller
    made it already."""
    wire = ledger_pb2.LedgerEntry()
    _fill_entry(wire, entry, trace_id, factor)
    return wire


def _fill_entry(
    wire: ledger_pb2.LedgerEntry,
    entry: LedgerEntry,
    trace_id: str,
    factor: ledger_pb2.EmissionFactor | None,
) -> None:
    """Writes the entry into an empty message: field by field, which costs less than a
    constructor's keyword arguments and lets an event's own entry be filled without a copy."""
    wire.entry_id = entry.entry_id
    wire.municipality_id = entry.municipality_id
    wire.year = entry.year
    wire.sector = _SECTORS[entry.sector]
    wire.subsector = _SUBSECTORS[entry.subsector]
    wire.energy_carrier = _CARRIERS[entry.energy_carrier]
    wire.activity_amount = decimal_text(entry.activity_amount)
    wire.activity_unit = entry.activity_unit
    wire.emission_factor.CopyFrom(factor_to_proto(entry.factor) if factor is None else factor)
    wire.kg_co2e = decimal_text(entry.kg_co2e)
    wire.kind = _KINDS[entry.kind]
    wire.source_event_id = entry.source_event_id
    wire.source_topic = entry.source_topic
    wire.activity_at.CopyFrom(to_timestamp(entry.activity_at))
    wire.subject_id = entry.subject_id
    wire.trace_id = trace_id
    wire.posting = _POSTINGS[entry.posting]
    wire.revision = entry.revision
    wire.restates_entry_id = entry.restates_entry_id or ""
    wire.restatement_id = entry.restatement_id or ""
    wire.late = entry.late
    wire.basis = _BASES[entry.basis]
    if entry.distance_m is not None:
        wire.distance_km = decimal_text(distance_km(entry.distance_m))
    wire.owner_partner_id = entry.owner_partner_id or ""
    if entry.activity_started_at is not None:
        wire.activity_started_at.CopyFrom(to_timestamp(entry.activity_started_at))
    collection = entry.collection
    if collection is not None:
        wire.collection.CopyFrom(
            ledger_pb2.CollectionProvenance(
                collection_id=collection.collection_id,
                carrier_partner_id=collection.carrier_partner_id,
                hub_id=collection.hub_id,
                mass_g=collection.mass_g,
                includes_hazardous=collection.includes_hazardous,
                waste_types=list(collection.waste_types),
                deposit_count=collection.deposit_count,
            )
        )
    trip = entry.avoided_trip
    if trip is not None:
        wire.avoided_trip.CopyFrom(
            ledger_pb2.AvoidedTrip(
                avoided_trip_distance_m=trip.avoided_trip_distance_m,
                avoided_vehicle=trip.avoided_vehicle,
                avoided_kg_co2e=decimal_text(trip.avoided_kg_co2e),
                carrier_extra_distance_m=trip.carrier_extra_distance_m,
                carrier_vehicle=trip.carrier_vehicle,
                carrier_extra_kg_co2e=decimal_text(trip.carrier_extra_kg_co2e),
            )
        )
    reported = entry.reported
    if reported is not None:
        wire.reported.CopyFrom(
            ledger_pb2.ReportedActivity(
                idempotency_key=reported.idempotency_key,
                line_index=reported.line_index,
                recorded_by=reported.recorded_by,
                recorded_at=to_timestamp(reported.recorded_at),
                reported_amount=reported.reported_amount,
                reported_unit=reported.reported_unit,
                conversion=reported.conversion,
                conversion_source=reported.conversion_source,
                conversion_rounded=reported.conversion_rounded,
                note=reported.note,
                source_document=reported.source_document,
                source_file=reported.source_file,
                source_line=reported.source_line,
            )
        )
    samples = entry.samples
    if samples is not None:
        # Filled in place (nearly every entry has samples): cheaper than building and copying.
        provenance = wire.samples
        provenance.SetInParent()
        provenance.sample_count = samples.sample_count
        provenance.first_sample_event_id = samples.first_sample_event_id
        provenance.last_sample_event_id = samples.last_sample_event_id


def entry_posted_event(entry: LedgerEntry, trace_id: str) -> ledger_pb2.LedgerEntryPosted:
    return entry_posted_events([entry], trace_id)[0]


def entry_posted_events(
    entries: Iterable[LedgerEntry], trace_id: str
) -> list[ledger_pb2.LedgerEntryPosted]:
    """The events announcing entries posted together, at one instant; the wire form of each
    factor they were priced with is made once."""
    occurred_at = to_timestamp(datetime.now(UTC))
    factors: dict[int, ledger_pb2.EmissionFactor] = {}
    events = []
    for entry in entries:
        factor = factors.get(id(entry.factor))
        if factor is None:
            factor = factors[id(entry.factor)] = factor_to_proto(entry.factor)
        # The posting of an entry happens once, so its event id can be the entry id.
        event = ledger_pb2.LedgerEntryPosted(event_id=entry.entry_id, occurred_at=occurred_at)
        _fill_entry(event.entry, entry, trace_id, factor)
        events.append(event)
    return events


def inventory_to_proto(inventory: Inventory) -> ledger_pb2.GetInventoryResponse:
    wire = ledger_pb2.GetInventoryResponse(
        municipality_id=inventory.municipality_id,
        year=inventory.year,
        lines=[
            ledger_pb2.InventoryLine(
                sector=to_proto(ledger_pb2.Sector, line.sector),
                subsector=to_proto(ledger_pb2.Subsector, line.subsector),
                energy_carrier=to_proto(ledger_pb2.EnergyCarrier, line.energy_carrier),
                kind=to_proto(ledger_pb2.EntryKind, line.kind),
                activity_amount=decimal_text(line.activity_amount),
                activity_unit=line.activity_unit,
                kg_co2e=decimal_text(line.kg_co2e),
                entry_count=line.entry_count,
                basis=to_proto(ledger_pb2.Basis, line.basis),
                distance_km=decimal_text(line.distance_km),
                entries_without_distance=line.entries_without_distance,
            )
            for line in inventory.lines
        ],
        emissions_kg_co2e=decimal_text(inventory.emissions_kg_co2e),
        avoided_kg_co2e=decimal_text(inventory.avoided_kg_co2e),
        entry_count=inventory.entry_count,
        late_entry_count=inventory.late_entry_count,
    )
    if inventory.locked_at is not None:
        wire.locked_at.CopyFrom(to_timestamp(inventory.locked_at))
    return wire


def sector_change_to_proto(change: SectorChange) -> ledger_pb2.SectorChange:
    return ledger_pb2.SectorChange(
        sector=to_proto(ledger_pb2.Sector, change.sector),
        subsector=to_proto(ledger_pb2.Subsector, change.subsector),
        kind=to_proto(ledger_pb2.EntryKind, change.kind),
        kg_before=decimal_text(change.kg_before),
        kg_after=decimal_text(change.kg_after),
        kg_difference=decimal_text(change.kg_difference),
        restated_entry_count=change.restated_entries,
    )


def activity_batch_from_proto(request: ledger_pb2.RecordActivityRequest) -> ActivityBatch:
    """The batch as sent; its lines' content is the domain's to check (an unknown enum number
    reads as missing, which the checks name)."""
    lines = tuple(
        ReportedLine(
            year=line.year,
            sector=from_proto(ledger_pb2.Sector, line.sector, Sector),
            subsector=Subsector.NONE
            if line.subsector == 0
            else from_proto(ledger_pb2.Subsector, line.subsector, Subsector),
            energy_carrier=from_proto(ledger_pb2.EnergyCarrier, line.energy_carrier, EnergyCarrier),
            amount=line.amount,
            unit=line.unit,
            note=line.note,
            source_document=line.source_document,
            source_file=line.source_file,
            source_line=line.source_line,
        )
        for line in request.lines
    )
    return ActivityBatch(request.municipality_id, request.idempotency_key, lines)


def line_key_from_proto(line: ledger_pb2.InventoryLineKey) -> LineKey:
    """The inventory line a request names; every field but the sub-sector is required."""
    sector = from_proto(ledger_pb2.Sector, line.sector, Sector)
    carrier = from_proto(ledger_pb2.EnergyCarrier, line.energy_carrier, EnergyCarrier)
    kind = from_proto(ledger_pb2.EntryKind, line.kind, EntryKind)
    basis = from_proto(ledger_pb2.Basis, line.basis, Basis)
    subsector = from_proto(ledger_pb2.Subsector, line.subsector, Subsector)
    if sector is None:
        raise InvalidArgument("line.sector", "required")
    if carrier is None:
        raise InvalidArgument("line.energy_carrier", "required")
    if kind is None:
        raise InvalidArgument("line.kind", "required")
    if basis is None:
        raise InvalidArgument("line.basis", "required")
    if subsector is None and line.subsector != 0:
        raise InvalidArgument("line.subsector", "not a sub-sector this ledger knows")
    if not line.activity_unit:
        raise InvalidArgument("line.activity_unit", "required")
    return LineKey(sector, subsector or Subsector.NONE, carrier, kind, basis, line.activity_unit)
