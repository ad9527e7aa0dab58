from dataclasses import replace
from datetime import UTC, datetime, timedelta

from emissions_ledger.adapters.data_files import load_factor_catalogue
from emissions_ledger.adapters.events import (
    entry_posted_event,
    entry_posted_events,
    entry_to_proto,
    factor_to_proto,
)
from emissions_ledger.domain import (
    FuelType,
    LedgerEntry,
    SampleProvenance,
    Subsector,
    VehicleActivity,
    entry_for_activity,
)
from greenpartners.ledger.v1 import ledger_pb2
from servicekit.codec import from_timestamp, to_timestamp

CATALOGUE = load_factor_catalogue()


def _entry(number: int, fuel: FuelType = FuelType.DIESEL, samples: int = 15) -> LedgerEntry:
    end = datetime(2025, 3, 4, 10, 15, tzinfo=UTC) + timedelta(minutes=15 * number)
    return entry_for_activity(
        VehicleActivity(
            event_id=f"activity-{number}",
            vehicle_id=f"van-{number % 2}",
            municipality_id="aalborg-kommune",
            fuel_type=fuel,
            subsector=Subsector.MUNICIPAL_FLEET,
            period_end=end,
            distance_m=7_440 + number,
            fuel_used_ml=760 if fuel is not FuelType.ELECTRIC else 0,
            energy_used_wh=2_100 if fuel is FuelType.ELECTRIC else 0,
            samples=SampleProvenance(samples, f"s-{number}-1", f"s-{number}-{samples}"),
            period_start=end - timedelta(minutes=15),
            owner_partner_id="aalborg-kommune",
        ),
        CATALOGUE,
        "fleet.activity.v1",
    )


def test_events_of_a_batch_carry_each_entry_as_it_is_announced_alone() -> None:
    entries = [
        _entry(0),
        _entry(1, FuelType.ELECTRIC),
        _entry(2),
        replace(_entry(3), samples=SampleProvenance(0, "", ""), activity_started_at=None),
        replace(_entry(4), samples=None, distance_m=None, owner_partner_id=None),
    ]
    before = datetime.now(UTC)

    events = entry_posted_events(entries, "a" * 32)

    assert len(events) == len(entries)
    for entry, event in zip(entries, events, strict=True):
        alone = entry_posted_event(entry, "a" * 32)
        assert event.event_id == entry.entry_id == alone.event_id
        assert event.entry == alone.entry == entry_to_proto(entry, "a" * 32)
        assert event.entry.emission_factor == factor_to_proto(entry.factor)
        assert event.entry.HasField("samples") == (entry.samples is not None)
        assert from_timestamp(event.occurred_at) >= before
    assert len({event.occurred_at.SerializeToString() for event in events}) == 1
    assert events[1].entry.energy_carrier == ledger_pb2.ENERGY_CARRIER_ELECTRICITY


def test_a_vehicle_entry_goes_on_the_wire_field_for_field() -> None:
    entry = _entry(7)
    factor = entry.factor

    wire = entry_to_proto(entry, "b" * 32)

    assert wire == ledger_pb2.LedgerEntry(
        entry_id=entry.entry_id,
        municipality_id="aalborg-kommune",
        year=2025,
        sector=ledger_pb2.SECTOR_TRANSPORT,
        subsector=ledger_pb2.SUBSECTOR_MUNICIPAL_FLEET,
        energy_carrier=ledger_pb2.ENERGY_CARRIER_DIESEL,
        activity_amount="0.76",
        activity_unit="l",
        emission_factor=ledger_pb2.EmissionFactor(
            factor_id=factor.factor_id,
            value=str(factor.value),
            unit=factor.unit,
            source=factor.source,
            version=factor.version,
            approach="ipcc",
            valid_from_year=factor.valid_from_year or 0,
            valid_to_year=factor.valid_to_year or 0,
            provisional=factor.provisional,
            activity_unit="l",
        ),
        kg_co2e="2.0216",
        kind=ledger_pb2.ENTRY_KIND_EMISSION,
        source_event_id="activity-7",
        source_topic="fleet.activity.v1",
        activity_at=to_timestamp(entry.activity_at),
        subject_id="van-1",
        trace_id="b" * 32,
        posting=ledger_pb2.POSTING_ORIGINAL,
        basis=ledger_pb2.BASIS_METERED,
        distance_km="7.447",
        owner_partner_id="aalborg-kommune",
        activity_started_at=to_timestamp(entry.activity_at - timedelta(minutes=15)),
        samples=ledger_pb2.SampleProvenance(
            sample_count=15, first_sample_event_id="s-7-1", last_sample_event_id="s-7-15"
        ),
    )
    assert entry_to_proto(replace(entry, distance_m=None)).distance_km == ""
