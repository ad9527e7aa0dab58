"""EmissionsLedgerService: translates wire messages to use-case calls and back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from emissions_ledger.adapters.covenant_export import (
    CSV_CONTENT_TYPE,
    XLSX_CONTENT_TYPE,
    report_csv,
    report_xlsx,
)
from emissions_ledger.adapters.covenant_wire import (
    covenant_report_to_proto,
    programme_view_to_proto,
)
from emissions_ledger.adapters.events import (
    activity_batch_from_proto,
    entry_to_proto,
    factor_to_proto,
    inventory_to_proto,
    line_key_from_proto,
    sector_change_to_proto,
)
from emissions_ledger.adapters.municipalities import MunicipalityDirectory
from emissions_ledger.domain.programmes import Programme
from emissions_ledger.domain.reported import MAX_LINES
from emissions_ledger.handlers import LedgerHandlers
from emissions_ledger.inventory_watch import InventoryWatch
from greenpartners.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from servicekit.codec import to_timestamp
from servicekit.database import decimal_text
from servicekit.enums import from_proto
from servicekit.errors import InvalidArgument
from servicekit.identity import (
    CLIMATE_OFFICER,
    DASHBOARD,
    OPERATOR,
    AccessPolicy,
    allow,
    current_principal,
    require_partner,
)
from servicekit.validation import require_id

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE = ledger_pb2.DESCRIPTOR.services_by_name["EmissionsLedgerService"].full_name
_MUNICIPALITY_SCOPE = "a climate officer reads their own municipality; dashboards read all"
_OWN_MUNICIPALITY = "a climate officer acts on their own municipality only"
ACCESS: AccessPolicy = {
    "GetInventory": allow(OPERATOR, CLIMATE_OFFICER, DASHBOARD, scope=_MUNICIPALITY_SCOPE),
    "ListEntries": allow(OPERATOR, CLIMATE_OFFICER, DASHBOARD, scope=_MUNICIPALITY_SCOPE),
    "WatchInventory": allow(OPERATOR, CLIMATE_OFFICER, DASHBOARD, scope=_MUNICIPALITY_SCOPE),
    "ListEmissionFactors": allow(OPERATOR, CLIMATE_OFFICER, DASHBOARD),
    "RestateInventory": allow(OPERATOR, CLIMATE_OFFICER, scope=_OWN_MUNICIPALITY),
    "LockInventoryYear": allow(OPERATOR, CLIMATE_OFFICER, scope=_OWN_MUNICIPALITY),
    "GetCovenantReport": allow(OPERATOR, CLIMATE_OFFICER, DASHBOARD, scope=_MUNICIPALITY_SCOPE),
    "ExportCovenantReport": allow(OPERATOR, CLIMATE_OFFICER, scope=_OWN_MUNICIPALITY),
    "RecordActivity": allow(OPERATOR, CLIMATE_OFFICER, scope=_OWN_MUNICIPALITY),
    "GetProgrammeView": allow(OPERATOR, CLIMATE_OFFICER, scope=_OWN_MUNICIPALITY),
}
MAX_REASON_LENGTH = 500


def _require_municipality(municipality_id: str) -> None:
    require_id("municipality_id", municipality_id)
    caller = current_principal()
    if not caller.has_role(DASHBOARD):
        require_partner(caller, municipality_id, "municipality_id")


class EmissionsLedgerApi(ledger_pb2_grpc.EmissionsLedgerServiceServicer):
    def __init__(
        self,
        handlers: LedgerHandlers,
        watch: InventoryWatch,
        municipalities: MunicipalityDirectory,
    ) -> None:
        self.handlers = handlers
        self.watch = watch
        self.municipalities = municipalities

    async def GetInventory(
        self, request: ledger_pb2.GetInventoryRequest, context: Context
    ) -> ledger_pb2.GetInventoryResponse:
        _require_municipality(request.municipality_id)
        await self.municipalities.require(request.municipality_id)
        inventory = await self.handlers.inventory(request.municipality_id, request.year)
        return inventory_to_proto(inventory)

    async def ListEntries(
        self, request: ledger_pb2.ListEntriesRequest, context: Context
    ) -> ledger_pb2.ListEntriesResponse:
        _require_municipality(request.municipality_id)
        await self.municipalities.require(request.municipality_id)
        line = line_key_from_proto(request.line) if request.HasField("line") else None
        entries, next_page_token = await self.handlers.entries(
            request.municipality_id, request.year, request.page_size, request.page_token, line
        )
        return ledger_pb2.ListEntriesResponse(
            entries=[entry_to_proto(p.entry, p.trace_id) for p in entries],
            next_page_token=next_page_token,
        )

    async def WatchInventory(
        self, request: ledger_pb2.WatchInventoryRequest, context: Context
    ) -> AsyncIterator[ledger_pb2.WatchInventoryResponse]:
        _require_municipality(request.municipality_id)
        await self.municipalities.require(request.municipality_id)
        changes = self.watch.watch(
            request.municipality_id, request.year, request.position, request.from_beginning
        )
        async for change in changes:
            response = ledger_pb2.WatchInventoryResponse(
                entries=[entry_to_proto(p.entry, p.trace_id) for p in change.entries],
                position=change.position,
            )
            if change.inventory is not None:
                response.inventory.CopyFrom(inventory_to_proto(change.inventory))
            yield response

    async def ListEmissionFactors(
        self, request: ledger_pb2.ListEmissionFactorsRequest, context: Context
    ) -> ledger_pb2.ListEmissionFactorsResponse:
        catalogue = self.handlers.catalogue
        return ledger_pb2.ListEmissionFactorsResponse(
            catalogue_version=catalogue.version,
            factors=[factor_to_proto(factor) for factor in catalogue.factors],
        )

    async def RestateInventory(
        self, request: ledger_pb2.RestateInventoryRequest, context: Context
    ) -> ledger_pb2.RestateInventoryResponse:
        _require_municipality(request.municipality_id)
        outcome = await self.handlers.restate(
            request.municipality_id, request.year, current_principal().subject
        )
        return ledger_pb2.RestateInventoryResponse(
            restatement_id=outcome.restatement_id,
            catalogue_version=outcome.catalogue_version,
            restated_entry_count=outcome.restated_entry_count,
            changes=[sector_change_to_proto(change) for change in outcome.changes],
            before=inventory_to_proto(outcome.before),
            after=inventory_to_proto(outcome.after),
        )

    async def LockInventoryYear(
        self, request: ledger_pb2.LockInventoryYearRequest, context: Context
    ) -> ledger_pb2.LockInventoryYearResponse:
        _require_municipality(request.municipality_id)
        if len(request.reason) > MAX_REASON_LENGTH:
            raise InvalidArgument("reason", f"at most {MAX_REASON_LENGTH} characters")
        lock = await self.handlers.lock_year(
            request.municipality_id, request.year, current_principal().subject, request.reason
        )
        return ledger_pb2.LockInventoryYearResponse(
            locked_at=to_timestamp(lock.locked_at), locked_by=lock.locked_by, reason=lock.reason
        )

    async def GetCovenantReport(
        self, request: ledger_pb2.GetCovenantReportRequest, context: Context
    ) -> ledger_pb2.GetCovenantReportResponse:
        _require_municipality(request.municipality_id)
        report = await self.handlers.covenant_report(
            request.municipality_id, request.baseline_year, request.monitoring_year
        )
        return covenant_report_to_proto(report, self.handlers.energy_contents)

    async def ExportCovenantReport(
        self, request: ledger_pb2.ExportCovenantReportRequest, context: Context
    ) -> ledger_pb2.ExportCovenantReportResponse:
        _require_municipality(request.municipality_id)
        if request.format not in (ledger_pb2.EXPORT_FORMAT_XLSX, ledger_pb2.EXPORT_FORMAT_CSV):
            raise InvalidArgument("format", "XLSX or CSV")
        report = await self.handlers.covenant_report(
            request.municipality_id, request.baseline_year, request.monitoring_year
        )
        stem = (
            f"covenant-{report.municipality_id}-bei{report.baseline.year}"
            f"-mei{report.monitoring.year}"
        )
        if request.format == ledger_pb2.EXPORT_FORMAT_XLSX:
            return ledger_pb2.ExportCovenantReportResponse(
                file_name=f"{stem}.xlsx",
                content_type=XLSX_CONTENT_TYPE,
                content=report_xlsx(report),
            )
        return ledger_pb2.ExportCovenantReportResponse(
            file_name=f"{stem}.csv", content_type=CSV_CONTENT_TYPE, content=report_csv(report)
        )

    async def RecordActivity(
        self, request: ledger_pb2.RecordActivityRequest, context: Context
    ) -> ledger_pb2.RecordActivityResponse:
        _require_municipality(request.municipality_id)
        require_id("idempotency_key", request.idempotency_key)
        if not 1 <= len(request.lines) <= MAX_LINES:
            raise InvalidArgument("lines", f"1 to {MAX_LINES} lines")
        await self.municipalities.require(request.municipality_id)
        recorded = await self.handlers.record_activity(
            activity_batch_from_proto(request),
            current_principal().subject,
            validate_only=request.validate_only,
        )
        return ledger_pb2.RecordActivityResponse(
            idempotency_key=recorded.batch.idempotency_key,
            replayed=recorded.replayed,
            recorded_by=recorded.batch.recorded_by,
            recorded_at=to_timestamp(recorded.batch.recorded_at),
            entries=[entry_to_proto(entry) for entry in recorded.entries],
            kg_co2e=decimal_text(recorded.kg_co2e),
            validated_only=request.validate_only,
        )

    async def GetProgrammeView(
        self, request: ledger_pb2.GetProgrammeViewRequest, context: Context
    ) -> ledger_pb2.GetProgrammeViewResponse:
        _require_municipality(request.municipality_id)
        programme = from_proto(ledger_pb2.Programme, request.programme, Programme)
        if programme is None:
            raise InvalidArgument("programme", "GREEN_FLEETS or MOLO_HUBS")
        await self.municipalities.require(request.municipality_id)
        view = await self.handlers.programme_view(request.municipality_id, request.year, programme)
        return programme_view_to_proto(view)
