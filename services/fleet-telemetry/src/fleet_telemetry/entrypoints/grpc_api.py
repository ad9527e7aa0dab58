"""FleetTelemetryService: translates wire messages to use-case calls and back."""

from __future__ import annotations

from typing import Any

import grpc

from fleet_telemetry.adapters.events import vehicle_fields_from_proto, vehicle_to_proto
from fleet_telemetry.handlers import FleetHandlers, RegisterVehicle
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
        vehicle, totals = await self.handlers.get_vehicle(request.vehicle_id)
        return fleet_pb2.GetVehicleResponse(
            vehicle=vehicle_to_proto(vehicle),
            totals=fleet_pb2.VehicleTotals(
                distance_m=totals.distance_m,
                fuel_used_ml=totals.fuel_used_ml,
                energy_used_wh=totals.energy_used_wh,
                activity_records=totals.activity_records,
            ),
        )
