"""Danish electricity by the hour through the running ledger: real Kafka, its gRPC server on
loopback, SQLite and PostgreSQL, and a local server speaking Energi Data Service's shape
(tests/fake_energi_data_service.py; every intensity it serves is made up).

An electric vehicle's activity within a known hour is priced with that hour's intensity; with
the source down it is priced with the yearly factor and says so, and a restatement re-prices it
once the hour is known, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from emissions_ledger.adapters.repository import LedgerRepository
from emissions_ledger.bootstrap import build
from emissions_ledger.domain import reporting_year
from emissions_ledger.domain.hourly import hour_start_of
from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from servicekit import topics
from servicekit.identity import CLIMATE_OFFICER
from servicekit.runtime import ServiceRuntime
from servicekit.topics import ensure_topics
from tests.fake_energi_data_service import FakeEnergiDataService, free_port
from tests.kafka_tools import connection, eventually, produce, unique_namespace
from tests.ledger_events import vehicle_activity
from tests.registry_seed import publish_registry_seed
from tools.pki import Pki

AALBORG = "aalborg-kommune"
OFFICER = "officer-anna"
# An hour the fetcher takes as settled (3 h) and within its backfill (1 day).
HOUR = hour_start_of(datetime.now(UTC) - timedelta(hours=5))
YEAR = reporting_year(HOUR)
# Made up: 1331 / 12 = 110.91666... g/kWh, 110.917 to the thousandth.
MADE_UP_VALUES = [100, 102, 104, 106, 108, 110, 112, 114, 116, 118, 120, 121]
# 12.5 kWh x 0.110917 kg/kWh; and x 0.096 kg/kWh, the shipped catalogue's latest yearly
# electricity factor (2023's, standing in provisionally for later years).
HOURLY_KG = Decimal("1.3864625")
YEARLY_KG = Decimal("1.2")


def made_up_day(server: FakeEnergiDataService) -> None:
    """Made-up intensities for every hour the fetcher wants; HOUR's are MADE_UP_VALUES."""
    first = hour_start_of(datetime.now(UTC) - timedelta(days=1, hours=1))
    for offset in range(24):
        hour = first + timedelta(hours=offset)
        server.add_hour("DK1", hour, MADE_UP_VALUES if hour == HOUR else [200] * 12)


def ledger_settings(kafka: str, database_url: str, url: str) -> dict[str, Any]:
    return {
        "kafka_bootstrap_servers": kafka,
        "topic_namespace": unique_namespace("hourly"),
        "database_url": database_url,
        "grpc_port": 0,
        "outbox_poll_interval_s": 0.1,
        "energi_data_service_enabled": True,
        "energi_data_service_url": url,
        "energi_data_service_timeout_s": 1.0,
        "energi_data_service_max_attempts": 1,
        "energi_data_service_min_request_interval_s": 0.0,
        "energi_data_service_poll_interval_s": 0.3,
        "energi_data_service_settle_hours": 3,
        "energi_data_service_backfill_days": 1,
        "hourly_electricity_municipalities": AALBORG,
    }


def activity(event_id: str, start: datetime, end: datetime, fuel_type: int) -> Any:
    electric = fuel_type == fleet_pb2.FUEL_TYPE_ELECTRIC
    return vehicle_activity(
        event_id,
        fuel_type,
        start,
        end,
        distance_m=20_000,
        energy_used_wh=12_500 if electric else 0,
        fuel_used_ml=0 if electric else 2_000,
    )


async def started(settings: dict[str, Any], kafka: str) -> ServiceRuntime:
    ledger = build(**settings)
    await ensure_topics(connection(kafka), ledger.names.all_specs())
    await publish_registry_seed(kafka, settings["topic_namespace"])
    await ledger.start()
    return ledger


async def hour_cached(ledger: ServiceRuntime) -> None:
    async with ledger.unit_of_work.read() as session:
        known = await LedgerRepository(session).intensities_of_hours("CO2Emis", "DK1", {HOUR})
    assert HOUR in known


def entries_request() -> ledger_pb2.ListEntriesRequest:
    return ledger_pb2.ListEntriesRequest(municipality_id=AALBORG, year=YEAR)


async def test_an_electric_vehicles_activity_is_priced_by_the_hour_it_lies_within(
    kafka: str, database_url: str, pki: Pki
) -> None:
    with FakeEnergiDataService() as server:
        made_up_day(server)
        settings = ledger_settings(kafka, database_url, server.url)
        ledger = await started(settings, kafka)
        try:
            await eventually(lambda: hour_cached(ledger), timeout_s=30)
            requests = len(server.requests)
            topic = ledger.topic(topics.ACTIVITY)
            quarter = timedelta(minutes=15)
            electric, diesel = fleet_pb2.FUEL_TYPE_ELECTRIC, fleet_pb2.FUEL_TYPE_DIESEL
            for event in (
                activity("ev", HOUR + quarter, HOUR + 2 * quarter, electric),
                activity("ev-across", HOUR + 3 * quarter, HOUR + 5 * quarter, electric),
                activity("van", HOUR + quarter, HOUR + 2 * quarter, diesel),
            ):
                await produce(kafka, topic, event.vehicle.vehicle_id, event)

            async with pki.channel(
                f"127.0.0.1:{ledger.grpc_port}", CLIMATE_OFFICER, AALBORG, OFFICER
            ) as channel:
                stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)

                async def all_posted() -> list[ledger_pb2.LedgerEntry]:
                    entries = list((await stub.ListEntries(entries_request())).entries)
                    assert len(entries) == 3
                    return entries

                await eventually(all_posted, timeout_s=45)
                by_event = {e.source_event_id: e for e in await all_posted()}
        finally:
            await ledger.stop()

    ev = by_event["ev"]
    assert Decimal(ev.kg_co2e) == HOURLY_KG
    factor = ev.emission_factor
    assert factor.hourly and not factor.provisional and not factor.hourly_fallback
    assert factor.value == "0.110917" and factor.unit == "kg CO2/kWh"
    assert factor.factor_id == f"energidataservice-co2emis-dk1-{HOUR:%Y-%m-%dT%H}Z"
    source = factor.hourly_intensity
    assert (source.dataset, source.price_area, source.g_co2_per_kwh) == (
        "CO2Emis",
        "DK1",
        "110.917",
    )
    assert source.hour_start.ToDatetime(tzinfo=UTC) == HOUR
    assert source.five_minute_values == 12 and source.fetched_at.seconds > 0
    assert factor.version.startswith("fetched ")
    assert ev.activity_started_at.ToDatetime(tzinfo=UTC) == HOUR + timedelta(minutes=15)

    across = by_event["ev-across"]
    assert Decimal(across.kg_co2e) == YEARLY_KG and not across.emission_factor.hourly
    assert across.emission_factor.hourly_fallback == "the activity does not lie within one hour"
    van = by_event["van"].emission_factor
    assert not van.hourly and not van.hourly_fallback
    # Pricing read the cache: posting asked the API for nothing.
    assert len(server.requests) == requests


async def test_with_the_source_down_the_yearly_factor_prices_and_a_restatement_re_prices_once(
    kafka: str, database_url: str, pki: Pki
) -> None:
    port = free_port()
    settings = ledger_settings(kafka, database_url, f"http://127.0.0.1:{port}")
    ledger = await started(settings, kafka)
    server = FakeEnergiDataService(port)
    made_up_day(server)
    try:

        async def found_unreachable() -> None:
            failed = ledger.metrics.get_sample_value(
                "ledger_grid_intensity_rounds_total", {"outcome": "unreachable"}
            )
            assert failed is not None and failed >= 1

        await eventually(found_unreachable, timeout_s=15)
        event = activity("ev", HOUR, HOUR + timedelta(minutes=15), fleet_pb2.FUEL_TYPE_ELECTRIC)
        await produce(kafka, ledger.topic(topics.ACTIVITY), "v-ev", event)
        async with pki.channel(
            f"127.0.0.1:{ledger.grpc_port}", CLIMATE_OFFICER, AALBORG, OFFICER
        ) as channel:
            stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)

            async def posted() -> ledger_pb2.LedgerEntry:
                entries = (await stub.ListEntries(entries_request())).entries
                assert len(entries) == 1
                return entries[0]

            await eventually(posted, timeout_s=45)
            original = await posted()
            assert Decimal(original.kg_co2e) == YEARLY_KG
            assert not original.emission_factor.hourly
            assert original.emission_factor.provisional
            note = original.emission_factor.hourly_fallback
            assert f"{HOUR:%Y-%m-%dT%H:%M}Z was not known" in note
            assert "Energi Data Service unreachable" in note

            # Nothing to re-price while the hour is unknown.
            restate = ledger_pb2.RestateInventoryRequest(municipality_id=AALBORG, year=YEAR)
            assert (await stub.RestateInventory(restate)).restated_entry_count == 0

            server.start()
            await eventually(lambda: hour_cached(ledger), timeout_s=30)
            restated = await stub.RestateInventory(restate)
            assert restated.restated_entry_count == 1
            (change,) = restated.changes
            assert (Decimal(change.kg_before), Decimal(change.kg_after)) == (YEARLY_KG, HOURLY_KG)
            assert Decimal(change.kg_difference) == Decimal("0.1864625")

            again = await stub.RestateInventory(restate)
            assert (again.restatement_id, again.restated_entry_count) == ("", 0)

            entries = list((await stub.ListEntries(entries_request())).entries)
            inventory = await stub.GetInventory(
                ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=YEAR)
            )
    finally:
        await ledger.stop()
        server.stop()

    _, reversal, replacement = entries
    assert (reversal.posting, Decimal(reversal.kg_co2e)) == (
        ledger_pb2.POSTING_REVERSAL,
        -YEARLY_KG,
    )
    assert replacement.posting == ledger_pb2.POSTING_RESTATEMENT
    assert replacement.emission_factor.hourly
    assert Decimal(replacement.kg_co2e) == HOURLY_KG
    assert replacement.restates_entry_id == original.entry_id
    assert Decimal(inventory.emissions_kg_co2e) == HOURLY_KG
