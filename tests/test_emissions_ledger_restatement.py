"""Factor versions on the running ledger: provisional pricing, a restatement after a factor is
published (reversal and replacement entries, the difference per sector, an audit trail,
idempotent), and a locked year whose later entries are flagged late. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from emissions_ledger import bootstrap
from emissions_ledger.adapters.tables import restatements
from emissions_ledger.bootstrap import build
from emissions_ledger.domain import FactorCatalogue
from greenpartners.fleet.v1 import fleet_pb2
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from servicekit import topics
from servicekit.data_files import load_packaged_yaml
from servicekit.identity import CLIMATE_OFFICER
from servicekit.topics import ensure_topics
from tests.kafka_tools import connection, eventually, produce, read_until, unique_namespace
from tests.ledger_events import vehicle_activity
from tests.registry_seed import publish_registry_seed
from tools.pki import Pki

AALBORG = "aalborg-kommune"
# A past year the shipped catalogue has no electricity figure for: priced provisionally.
YEAR = 2025
AT = datetime(YEAR, 3, 4, 10, 0, tzinfo=UTC)
OFFICER = "officer-anna"


def activity(event_id: str, fuel_type: int, fuel_ml: int = 0, energy_wh: int = 0) -> Any:
    return vehicle_activity(event_id, fuel_type, AT, fuel_used_ml=fuel_ml, energy_used_wh=energy_wh)


def catalogue_with_electricity_published_for(year: int, value: str) -> FactorCatalogue:
    """The shipped catalogue, as it reads once Green Power Denmark publishes `year`."""
    data = load_packaged_yaml("emissions_ledger", "emission_factors.yaml")
    data["version"] = f"{data['version']}+el-{year}"
    data["factors"].append(
        {
            "id": f"electricity-dk-mix-{year}",
            "carrier": "electricity",
            "approach": "ipcc",
            "value": value,
            "unit": "kg CO2/kWh",
            "activity_unit": "kWh",
            "source": "made up for this test: a published consumption mix",
            "version": str(year),
            "valid_from_year": year,
            "valid_to_year": year,
        }
    )
    return FactorCatalogue.from_mapping(yaml.safe_load(yaml.safe_dump(data)))


async def test_a_published_factor_restates_the_year_once_with_an_audit_trail(
    kafka: str, database_url: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka,
        "topic_namespace": unique_namespace("restate"),
        "database_url": database_url,
        "grpc_port": 0,
        "outbox_poll_interval_s": 0.1,
    }
    ledger = build(**settings)
    await ensure_topics(connection(kafka), ledger.names.all_specs())
    # The municipalities the ledger keeps inventories for come from the registry's changelog.
    await publish_registry_seed(kafka, settings["topic_namespace"])
    activity_topic = ledger.topic(topics.ACTIVITY)
    await produce(
        kafka, activity_topic, "v-ev", activity("ev", fleet_pb2.FUEL_TYPE_ELECTRIC, 0, 45_678)
    )
    await produce(
        kafka, activity_topic, "v-van", activity("van", fleet_pb2.FUEL_TYPE_DIESEL, 12_345)
    )
    query = ledger_pb2.GetInventoryRequest(municipality_id=AALBORG, year=YEAR)
    # 45.678 kWh x 0.096 (2023's figure standing in) + 12.345 l x 2.66 (2021's standing in).
    electric_before = Decimal("4.385088")
    diesel = Decimal("32.8377")

    await ledger.start()
    try:
        async with pki.channel(
            f"127.0.0.1:{ledger.grpc_port}", CLIMATE_OFFICER, AALBORG, OFFICER
        ) as channel:
            stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)

            async def both_posted() -> None:
                got = await stub.GetInventory(query)
                assert got.entry_count == 2
                assert Decimal(got.emissions_kg_co2e) == electric_before + diesel

            await eventually(both_posted, timeout_s=45)
            entries = (await stub.ListEntries(ledger_pb2.ListEntriesRequest(**_of_year()))).entries
            for entry in entries:
                assert entry.emission_factor.provisional, entry.source_event_id
                assert entry.posting == ledger_pb2.POSTING_ORIGINAL
            # Nothing is published yet that would price the year otherwise.
            unchanged = await stub.RestateInventory(
                ledger_pb2.RestateInventoryRequest(**_of_year())
            )
            assert (unchanged.restatement_id, unchanged.restated_entry_count) == ("", 0)

            # The year is submitted and locked; an event that arrives later is flagged late.
            lock = await stub.LockInventoryYear(
                ledger_pb2.LockInventoryYearRequest(**_of_year(), reason="MEI submitted")
            )
            assert lock.locked_by == OFFICER
            await produce(
                kafka, activity_topic, "v-late", activity("late", fleet_pb2.FUEL_TYPE_DIESEL, 1_000)
            )

            async def late_entry_flagged() -> None:
                got = await stub.GetInventory(query)
                assert got.entry_count == 3 and got.late_entry_count == 1
                assert got.locked_at.ToDatetime(tzinfo=UTC) == lock.locked_at.ToDatetime(tzinfo=UTC)

            await eventually(late_entry_flagged, timeout_s=45)
    finally:
        await ledger.stop()

    # Green Power Denmark publishes the year's mix: the ledger restarts with it.
    monkeypatch.setattr(
        bootstrap,
        "load_factor_catalogue",
        lambda: catalogue_with_electricity_published_for(YEAR, "0.085"),
    )
    published = build(**settings)
    await published.start()
    try:
        async with pki.channel(
            f"127.0.0.1:{published.grpc_port}", CLIMATE_OFFICER, AALBORG, OFFICER
        ) as channel:
            stub = ledger_pb2_grpc.EmissionsLedgerServiceStub(channel)
            restated = await stub.RestateInventory(ledger_pb2.RestateInventoryRequest(**_of_year()))

            # 45.678 kWh x 0.085 = 3.88263 kg, 0.502458 kg less; diesel untouched.
            electric_after = Decimal("3.88263")
            assert restated.restatement_id and restated.restated_entry_count == 1
            (change,) = restated.changes
            assert (change.sector, change.subsector, change.kind) == (
                ledger_pb2.SECTOR_TRANSPORT,
                ledger_pb2.SUBSECTOR_MUNICIPAL_FLEET,
                ledger_pb2.ENTRY_KIND_EMISSION,
            )
            assert (Decimal(change.kg_before), Decimal(change.kg_after)) == (
                electric_before,
                electric_after,
            )
            assert Decimal(change.kg_difference) == Decimal("-0.502458")
            late_diesel = Decimal("2.66")
            assert (
                Decimal(restated.before.emissions_kg_co2e) == electric_before + diesel + late_diesel
            )
            assert (
                Decimal(restated.after.emissions_kg_co2e) == electric_after + diesel + late_diesel
            )
            inventory = await stub.GetInventory(query)
            assert Decimal(inventory.emissions_kg_co2e) == Decimal(restated.after.emissions_kg_co2e)
            # Still three entries behind the figures; the pair came after the lock, so late.
            assert (inventory.entry_count, inventory.late_entry_count) == (3, 3)

            # Idempotent: the same factors again post nothing and change nothing.
            again = await stub.RestateInventory(ledger_pb2.RestateInventoryRequest(**_of_year()))
            assert (again.restatement_id, again.restated_entry_count, list(again.changes)) == (
                "",
                0,
                [],
            )
            assert (await stub.GetInventory(query)) == inventory

            # The audit trail: the original stays, reversed by its negation and replaced.
            entries = (await stub.ListEntries(ledger_pb2.ListEntriesRequest(**_of_year()))).entries
            of_ev = [entry for entry in entries if entry.source_event_id == "ev"]
            original, reversal, replacement = of_ev
            assert original.kg_co2e == "4.385088" and original.emission_factor.provisional
            assert (reversal.posting, reversal.kg_co2e, reversal.activity_amount) == (
                ledger_pb2.POSTING_REVERSAL,
                "-4.385088",
                "-45.678",
            )
            assert (replacement.posting, replacement.kg_co2e) == (
                ledger_pb2.POSTING_RESTATEMENT,
                "3.88263",
            )
            assert replacement.emission_factor.factor_id == f"electricity-dk-mix-{YEAR}"
            assert not replacement.emission_factor.provisional
            for entry in (reversal, replacement):
                assert entry.restates_entry_id == original.entry_id
                assert entry.restatement_id == restated.restatement_id
                assert (entry.revision, entry.late) == (1, True)

        async with published.unit_of_work.read() as session:
            trail = (await session.execute(select(restatements))).all()
        assert [
            (row.restatement_id, row.requested_by, row.restated_entry_count) for row in trail
        ] == [(restated.restatement_id, OFFICER, 1)]
        assert trail[0].catalogue_version.endswith(f"+el-{YEAR}")
    finally:
        await published.stop()

    # Every posting is announced: two originals, the late one, the reversal and replacement.
    announced = await read_until(
        kafka, ledger.topic(topics.LEDGER_ENTRIES), lambda r: len(r) > 5, timeout_s=3
    )
    assert len(announced) == 5


def _of_year() -> dict[str, Any]:
    return {"municipality_id": AALBORG, "year": YEAR}
