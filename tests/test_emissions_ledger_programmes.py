"""Programme views and the factor approach per municipality on the running ledger, with events
through Kafka: Green Fleets and MoLo Hubs over the same entries as the Covenant report, never
more than the entries hold, and a contractor van that also collects at a hub counted once in
the Covenant figures; an LCA municipality priced in LCA only, an IPCC one in IPCC, and the
BEI and MEI of one municipality in one approach. SQLite and PostgreSQL. Figures worked out by
hand in the comments."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc
import pytest

from emissions_ledger.bootstrap import build
from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from greenpartners.lockers.v1 import lockers_pb2
from greenpartners.registry.v1 import registry_pb2
from partner_registry.adapters.data_files import load_seed
from partner_registry.adapters.events import partner_changed_event
from partner_registry.domain.partners import (
    CovenantCommitment,
    EmissionFactorApproach,
    EmissionReportingUnit,
)
from servicekit import topics
from servicekit.codec import to_timestamp
from servicekit.identity import OPERATOR
from servicekit.topics import ensure_topics
from tests.kafka_tools import connection, eventually, produce, read_until, unique_namespace
from tests.ledger_events import vehicle_activity
from tests.registry_seed import publish_partner_changes, seed_changelog
from tools.pki import Pki

AALBORG, SKIVE, CARRIER = "aalborg-kommune", "skive-kommune", "homerunner"
BASELINE, YEAR = 2013, 2025
HUB = "hub-aalborg-001"


def skive_reporting(approach: EmissionFactorApproach, revision: int) -> registry_pb2.PartnerChanged:
    """Skive Kommune's registry record with a Covenant commitment in `approach`."""
    _, partners = load_seed()
    skive = next(partner for partner in partners if partner.partner_id == SKIVE)
    unit = (
        EmissionReportingUnit.T_CO2E
        if approach is EmissionFactorApproach.LCA
        else EmissionReportingUnit.T_CO2
    )
    commitment = CovenantCommitment(
        signatory_year=2014,
        baseline_year=BASELINE,
        emission_factor_approach=approach,
        emission_reporting_unit=unit,
    )
    record = dataclasses.replace(skive, covenant_commitment=commitment, revision=revision)
    return partner_changed_event(record, f"skive-{revision}", datetime.now(UTC))


def activity(
    event_id: str,
    municipality: str,
    owner: str,
    fuel_type: int,
    year: int = YEAR,
    **amounts: int,
) -> Any:
    at = datetime(year, 5, 2, 10, 0, tzinfo=UTC)
    return vehicle_activity(
        event_id, fuel_type, at, municipality=municipality, owner=owner, **amounts
    )


def locker_event(event_id: str, **kind: Any) -> lockers_pb2.LockerEvent:
    return lockers_pb2.LockerEvent(
        event_id=event_id,
        occurred_at=to_timestamp(datetime(YEAR, 9, 12, 8, 15, tzinfo=UTC)),
        hub_id=HUB,
        municipality_id=AALBORG,
        **kind,
    )


async def test_programme_views_and_one_approach_per_municipality(
    kafka: str, database_url: str, pki: Pki
) -> None:
    namespace = unique_namespace("programmes")
    ledger = build(
        kafka_bootstrap_servers=kafka,
        topic_namespace=namespace,
        database_url=database_url,
        grpc_port=0,
        outbox_poll_interval_s=0.1,
    )
    await ensure_topics(connection(kafka), ledger.names.all_specs())
    # Aalborg as the registry's seed states it (no approach named: IPCC in t CO2); Skive signed
    # the Covenant reporting LCA in t CO2e.
    await publish_partner_changes(
        kafka,
        namespace,
        [*seed_changelog(), (SKIVE, skive_reporting(EmissionFactorApproach.LCA, 2))],
    )
    activities = ledger.topic(topics.ACTIVITY)
    fleet_events = [
        # Aalborg's own diesel van: 100 km on 8 l, x 2.66 (IPCC, provisional) = 21.28 kg CO2.
        activity("ak-van", AALBORG, AALBORG, fleet_pb2.FUEL_TYPE_DIESEL, **_km(100, ml=8_000)),
        # Aalborg's own EV: 50 km on 10 kWh, x 0.096 = 0.96 kg CO2.
        activity("ak-ev", AALBORG, AALBORG, fleet_pb2.FUEL_TYPE_ELECTRIC, **_km(50, wh=10_000)),
        # The carrier's van in Aalborg, a contractor: 40 km on 4 l = 10.64 kg CO2. The same
        # carrier collects at a hub below, driving a 3 km detour this van's fuel holds.
        activity("hr-van", AALBORG, CARRIER, fleet_pb2.FUEL_TYPE_DIESEL, **_km(40, ml=4_000)),
        # Skive's van, 2025: 8 l x 3.0622 (LCA, provisional) = 24.4976 kg CO2e; 2013 (its
        # BEI): 10 l x 3.0622 = 30.622 kg CO2e.
        activity("sk-van", SKIVE, SKIVE, fleet_pb2.FUEL_TYPE_DIESEL, **_km(100, ml=8_000)),
        activity(
            "sk-van13", SKIVE, SKIVE, fleet_pb2.FUEL_TYPE_DIESEL, BASELINE, **_km(90, ml=10_000)
        ),
        # Skive's EV: no LCA electricity factor with a source, so refused, not priced IPCC.
        activity("sk-ev", SKIVE, SKIVE, fleet_pb2.FUEL_TYPE_ELECTRIC, **_km(50, wh=10_000)),
    ]
    for event in fleet_events:
        await produce(kafka, activities, event.vehicle.vehicle_id, event)
    lockers = ledger.topic(topics.LOCKER_EVENTS)
    for event in (
        locker_event(
            "d1",
            waste_deposited=lockers_pb2.WasteDeposited(
                deposit_id="d1",
                waste_type=lockers_pb2.WASTE_TYPE_BATTERIES,
                hazardous=True,
                mass_g=700,
            ),
        ),
        locker_event(
            "d2",
            waste_deposited=lockers_pb2.WasteDeposited(
                deposit_id="d2", waste_type=lockers_pb2.WASTE_TYPE_TEXTILES, mass_g=1_800
            ),
        ),
        # The carrier takes both: 2.5 kg, a 14 km dedicated trip not driven (1.12 l x 2.66 =
        # 2.9792 kg avoided) for a 3 km detour (0.24 l x 2.66 = 0.6384 kg).
        locker_event(
            "k1",
            waste_collected=lockers_pb2.WasteCollected(
                collection_id="k1",
                carrier_partner_id=CARRIER,
                deposit_ids=["d1", "d2"],
                mass_g=2_500,
                carrier_extra_distance_m=3_000,
                includes_hazardous=True,
            ),
        ),
    ):
        await produce(kafka, lockers, HUB, event)

    await ledger.start()
    try:
        async with pki.channel(f"127.0.0.1:{ledger.grpc_port}", OPERATOR) as channel:
            stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)

            async def inventory(municipality: str, year: int = YEAR) -> Any:
                return await stub.GetInventory(
                    ledger_pb2.GetInventoryRequest(municipality_id=municipality, year=year)
                )

            async def entries(municipality: str, year: int = YEAR) -> list[Any]:
                request = ledger_pb2.ListEntriesRequest(municipality_id=municipality, year=year)
                return list((await stub.ListEntries(request)).entries)

            async def all_posted() -> None:
                assert (await inventory(AALBORG)).entry_count == 5  # 3 vehicles, 2 collection
                assert (await inventory(SKIVE)).entry_count == 1
                assert (await inventory(SKIVE, BASELINE)).entry_count == 1

            await eventually(all_posted, timeout_s=45)

            # Each municipality in its own approach, never the other's.
            aalborg_entries = await entries(AALBORG)
            assert {e.emission_factor.approach for e in aalborg_entries} == {"ipcc"}
            assert {e.emission_factor.unit.split("/")[0] for e in aalborg_entries} == {"kg CO2"}
            for year in (BASELINE, YEAR):
                (skive_van,) = await entries(SKIVE, year)
                assert skive_van.emission_factor.approach == "lca"
                assert skive_van.emission_factor.unit == "kg CO2e/l"
            assert skive_van.kg_co2e == "24.4976" and skive_van.distance_km == "100"
            dead = await read_until(
                kafka,
                ledger.topic(topics.dead_letter_topic(topics.ACTIVITY)),
                lambda records: len(records) >= 1,
            )
            assert [(r.key, r.headers["dlq-reason"]) for r in dead] == [
                ("v-sk-ev", "no_emission_factor")
            ]

            # km and the owner on the entries, km on the inventory lines.
            by_source = {e.source_event_id: e for e in aalborg_entries}
            assert (by_source["hr-van"].distance_km, by_source["hr-van"].owner_partner_id) == (
                "40",
                CARRIER,
            )
            lines = (await inventory(AALBORG)).lines
            modelled_detour = next(
                line
                for line in lines
                if line.basis == ledger_pb2.BASIS_MODELLED
                and line.kind == ledger_pb2.ENTRY_KIND_EMISSION
            )
            assert (modelled_detour.distance_km, modelled_detour.entries_without_distance) == (
                "3",
                0,
            )

            # Green Fleets: municipal 150 km (50 electric: 33.3 %), 21.28 + 0.96 = 22.24 kg,
            # 22.24 / 150 = 148.3 g/km; contractor 40 km, 4 l, 10.64 kg, 266 g/km.
            fleets = await stub.GetProgrammeView(
                ledger_pb2.GetProgrammeViewRequest(
                    municipality_id=AALBORG, year=YEAR, programme=ledger_pb2.PROGRAMME_GREEN_FLEETS
                )
            )
            assert (fleets.emission_factor_approach, fleets.emission_unit) == ("ipcc", "t CO2")
            municipal, contractor = fleets.green_fleets.fleets
            assert municipal.ownership == ledger_pb2.FLEET_OWNERSHIP_MUNICIPAL
            assert (municipal.distance_km, municipal.fossil_free_share_percent) == ("150", "33.3")
            assert (municipal.kg_co2e, municipal.g_co2e_per_km) == ("22.24", "148.3")
            assert contractor.ownership == ledger_pb2.FLEET_OWNERSHIP_CONTRACTOR
            (contractor_diesel,) = contractor.carriers
            assert (contractor_diesel.distance_km, contractor_diesel.litres) == ("40", "4")
            assert (contractor.kg_co2e, contractor.g_co2e_per_km) == ("10.64", "266")
            assert fleets.green_fleets.total.kg_co2e == "32.88"

            # MoLo Hubs: two deposits (2.5 kg, 0.7 kg hazardous), one collection, one avoided
            # trip of 14 km, the detour of 3 km; net 2.9792 - 0.6384 = 2.3408 kg.
            hubs = (
                await stub.GetProgrammeView(
                    ledger_pb2.GetProgrammeViewRequest(
                        municipality_id=AALBORG, year=YEAR, programme=ledger_pb2.PROGRAMME_MOLO_HUBS
                    )
                )
            ).molo_hubs
            assert (hubs.deposit_count, hubs.deposited_kg, hubs.hazardous_deposited_kg) == (
                2,
                "2.5",
                "0.7",
            )
            assert (hubs.collection_count, hubs.collected_kg) == (1, "2.5")
            assert (hubs.avoided_trip_km, hubs.avoided_kg_co2e) == ("14", "2.9792")
            assert (hubs.detour_km, hubs.detour_kg_co2e) == ("3", "0.6384")
            assert hubs.net_avoided_kg_co2e == "2.3408"
            # The carrier's van is metered in Aalborg that year: its fuel holds the detour.
            assert hubs.detour_kg_co2e_within_metered == "0.6384"

            # The views never hold more than the entries: 32.88 kg metered + 0.6384 kg detour
            # = 33.5184 kg, every emission the entries hold (avoided emissions are no part of
            # either); the entries listed one by one add up to the same.
            emitted = await inventory(AALBORG)
            listed = sum(
                (
                    Decimal(e.kg_co2e)
                    for e in aalborg_entries
                    if e.kind == ledger_pb2.ENTRY_KIND_EMISSION
                ),
                Decimal(0),
            )
            views = Decimal(fleets.green_fleets.total.kg_co2e) + Decimal(hubs.detour_kg_co2e)
            assert views == listed == Decimal(emitted.emissions_kg_co2e) == Decimal("33.5184")

            # The Covenant figure counts the carrier's detour once, inside its van's metered
            # litres: 32.88 kg = 0.03288 t, the modelled 0.6384 kg left out and said so.
            await _publish_aalborg_baseline(kafka, activities)

            async def baseline_posted() -> None:
                assert (await inventory(AALBORG, BASELINE)).entry_count == 1

            await eventually(baseline_posted, timeout_s=45)
            report = await stub.GetCovenantReport(
                ledger_pb2.GetCovenantReportRequest(
                    municipality_id=AALBORG, baseline_year=BASELINE, monitoring_year=YEAR
                )
            )
            assert (report.emission_factor_approach, report.emission_unit) == ("ipcc", "t CO2")
            assert report.monitoring.total_t_co2e == "0.03288"
            assert report.monitoring_detours_within_metered_t_co2e == "0.0006384"
            commercial = next(
                row
                for row in report.monitoring.rows
                if row.subsector == ledger_pb2.SUBSECTOR_PRIVATE_COMMERCIAL_TRANSPORT
            )
            assert (commercial.activity_amount, commercial.distance_km) == ("4", "40")

            # Skive's BEI and MEI: both LCA, in t CO2e.
            skive_report = await stub.GetCovenantReport(
                ledger_pb2.GetCovenantReportRequest(
                    municipality_id=SKIVE, baseline_year=BASELINE, monitoring_year=YEAR
                )
            )
            assert (skive_report.emission_factor_approach, skive_report.emission_unit) == (
                "lca",
                "t CO2e",
            )
            assert (skive_report.baseline.total_t_co2e, skive_report.monitoring.total_t_co2e) == (
                "0.030622",
                "0.0244976",
            )

            # Skive changes to IPCC: its years are LCA, so no report mixes the two ...
            await publish_partner_changes(
                kafka, namespace, [(SKIVE, skive_reporting(EmissionFactorApproach.IPCC, 3))]
            )
            request = ledger_pb2.GetCovenantReportRequest(
                municipality_id=SKIVE, baseline_year=BASELINE, monitoring_year=YEAR
            )

            async def refused() -> None:
                try:
                    await stub.GetCovenantReport(request)
                except grpc.aio.AioRpcError as mixed:
                    assert mixed.code() == grpc.StatusCode.FAILED_PRECONDITION
                    assert "priced lca in CO2e" in (mixed.details() or "")
                else:
                    raise AssertionError("a report of LCA entries for an IPCC municipality")

            await eventually(refused, timeout_s=30)
            # ... until both are restated, from their stored litres: 10 l x 2.67 (the IPCC
            # default for 2013) = 26.7 kg; 8 l x 2.66 = 21.28 kg.
            for year in (BASELINE, YEAR):
                restated = await stub.RestateInventory(
                    ledger_pb2.RestateInventoryRequest(municipality_id=SKIVE, year=year)
                )
                assert restated.restated_entry_count == 1
                if year == BASELINE:
                    with pytest.raises(grpc.aio.AioRpcError) as half:
                        await stub.GetCovenantReport(request)
                    assert half.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            skive_report = await stub.GetCovenantReport(request)
            assert (skive_report.emission_factor_approach, skive_report.emission_unit) == (
                "ipcc",
                "t CO2",
            )
            assert (skive_report.baseline.total_t_co2e, skive_report.monitoring.total_t_co2e) == (
                "0.0267",
                "0.02128",
            )
            # Skive's Green Fleets view: the van once, as restated (IPCC), km kept.
            skive_fleets = await stub.GetProgrammeView(
                ledger_pb2.GetProgrammeViewRequest(
                    municipality_id=SKIVE, year=YEAR, programme=ledger_pb2.PROGRAMME_GREEN_FLEETS
                )
            )
            (skive_fleet,) = skive_fleets.green_fleets.fleets
            assert (skive_fleet.distance_km, skive_fleet.kg_co2e) == ("100", "21.28")
    finally:
        await ledger.stop()


async def _publish_aalborg_baseline(kafka: str, topic: str) -> None:
    # Aalborg's 2013: 10 l x 2.67 (IPCC default) = 26.7 kg CO2.
    event = activity(
        "ak-van13", AALBORG, AALBORG, fleet_pb2.FUEL_TYPE_DIESEL, BASELINE, **_km(90, ml=10_000)
    )
    await produce(kafka, topic, event.vehicle.vehicle_id, event)


def _km(km: int, ml: int = 0, wh: int = 0) -> dict[str, int]:
    return {"distance_m": km * 1000, "fuel_used_ml": ml, "energy_used_wh": wh}
