"""The AsyncAPI documents are generated from the code and must be fresh, like the contracts."""

from __future__ import annotations

from typing import Any

from servicekit import access, topics
from tools import asyncapi


def test_the_committed_asyncapi_documents_are_what_the_code_says() -> None:
    for path, text in asyncapi.documents().items():
        assert path.exists(), f"{path.name} missing: run 'make asyncapi'"
        assert path.read_text() == text, f"{path.name} is stale: run 'make asyncapi' and commit"


def test_every_topic_and_dead_letter_topic_has_its_producers_and_consumers() -> None:
    document: dict[str, Any] = asyncapi.topics_document()
    addresses = {channel["address"] for channel in document["channels"].values()}
    for spec in topics.CATALOGUE:
        assert {spec.name, topics.dead_letter_topic(spec.name)} <= addresses
    operations = document["operations"].values()
    ledger = "#/channels/ledger-entries-v1"
    assert {o["x-kafka-principal"] for o in operations if o["channel"]["$ref"] == ledger} == {
        "emissions-ledger",
        "dashboard",
        "operator",
    }
    dashboard = access.kafka_principal("dashboard")
    assert not [
        o for o in operations if o["x-kafka-principal"] == "dashboard" and o["action"] == "send"
    ]
    assert len([o for o in operations if o["x-kafka-principal"] == "dashboard"]) == len(
        dashboard.reads
    )


def test_protobuf_json_mapping_in_the_schemas() -> None:
    schemas = asyncapi.topics_document()["components"]["schemas"]
    entry = schemas["greenpartners.ledger.v1.LedgerEntry"]["properties"]
    assert entry["kgCo2e"] == {"type": "string"}
    assert entry["activityAt"] == {"type": "string", "format": "date-time"}
    assert "SECTOR_TRANSPORT" in entry["sector"]["enum"]
    sample = schemas["greenpartners.fleet.v1.TelemetrySample"]["properties"]
    assert sample["odometerM"] == {"type": "string", "format": "int64"}
