"""FleetTelemetryService: translates wire messages to use-case calls and back."""

from __future__ import annotations

from typing import Any

import grpc

from fleet_telemetry.adapters.events import (
    reading_to_proto,
    timestamp_us,
    totals_to_proto,
    vehicle_fields_from_proto,
    vehicle_to_proto,
)
from fleet_telemetry.handlers import FleetHandlers, RegisterVehicle, SetVehicleBaseline
from greenpartners.fleet.v1 import fleet_pb2, fleet_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class FleetTelemetryApi(fleet_pb2_grpc.FleetTelemetryServiceServicer):
    def __init__(self, handlers: FleetHandlers) -> None:
        self.handlers = handlers

    async def RegisterVehicle(
        self, request: fleet_pb2.RegisterVehicleRequest, context: Context
    ) -> fleet_pb2.RegisterVehicleResponse:
        wire = request.vehicle
        fuel_type, vehicle_class, subsector = vehicle_fields_from_proto(wire)
        vehicle = await self.handlers.register_vehicle(
            RegisterVehicle(
                vehicle_id=wire.vehicle_id,
                owner_partner_id=wire.owner_partner_id,
                municipality_id=wire.municipality_id,
                fuel_type=fuel_type,
                vehicle_class=vehicle_class,
                covenant_subsector=subsector,
                registration_plate=wire.registration_plate,
            )
        )
        return fleet_pb2.RegisterVehicleResponse(vehicle=vehicle_to_proto(vehicle))

    async def GetVehicle(
        self, request: fleet_pb2.GetVehicleRequest, context: Context
    ) -> fleet_pb2.GetVehicleResponse:
        state = await self.handlers.get_vehicle(request.vehicle_id)
        response = fleet_pb2.GetVehicleResponse(
            vehicle=vehicle_to_proto(state.vehicle), totals=totals_to_proto(state.totals)
        )
        if state.baseline is not None:
            response.baseline.CopyFrom(reading_to_proto(state.baseline))
        if state.pending_reset is not None:
            response.pending_reset.CopyFrom(reading_to_proto(state.pending_reset))
        return response

    async def SetVehicleBaseline(
        self, request: fleet_pb2.SetVehicleBaselineRequest, context: Context
    ) -> fleet_pb2.SetVehicleBaselineResponse:
        wire = request.baseline
        corrected = await self.handlers.set_vehicle_baseline(
            SetVehicleBaseline(
                vehicle_id=request.vehicle_id,
                occurred_at_us=timestamp_us(wire.occurred_at)
                if wire.HasField("occurred_at")
                else None,
                odometer_m=wire.odometer_m,
                fuel_used_ml=wire.fuel_used_ml if wire.HasField("fuel_used_ml") else None,
                energy_used_wh=wire.energy_used_wh if wire.HasField("energy_used_wh") else None,
                reason=request.reason,
                requested_by=request.requested_by,
            )
        )
        response = fleet_pb2.SetVehicleBaselineResponse(
            baseline=reading_to_proto(corrected.baseline)
        )
        if corrected.previous_baseline is not None:
            response.previous_baseline.CopyFrom(reading_to_proto(corrected.previous_baseline))
        return response
