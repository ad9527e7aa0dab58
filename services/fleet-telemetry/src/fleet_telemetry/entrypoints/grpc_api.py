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
from servicekit.errors import InvalidArgument
from servicekit.identity import (
    CLIMATE_OFFICER,
    FLEET_MANAGER,
    OPERATOR,
    AccessPolicy,
    allow,
    current_principal,
)
from servicekit.validation import require_id, require_known_enum

Context = grpc.aio.ServicerContext[Any, Any]

MAX_PLATE_LENGTH = 16
MAX_REASON_LENGTH = 500

SERVICE = fleet_pb2.DESCRIPTOR.services_by_name["FleetTelemetryService"].full_name
_OWN_VEHICLES = "a fleet manager's own partner's vehicles only"
ACCESS: AccessPolicy = {
    "RegisterVehicle": allow(OPERATOR, FLEET_MANAGER, scope=_OWN_VEHICLES),
    "UpdateVehicle": allow(OPERATOR, FLEET_MANAGER, scope=_OWN_VEHICLES + ", same owner"),
    "GetVehicle": allow(
        OPERATOR,
        FLEET_MANAGER,
        CLIMATE_OFFICER,
        scope=_OWN_VEHICLES + "; a climate officer's municipality's vehicles",
    ),
    "SetVehicleBaseline": allow(OPERATOR, FLEET_MANAGER, scope=_OWN_VEHICLES),
}


def _vehicle_command(wire: fleet_pb2.Vehicle) -> RegisterVehicle:
    for field in ("vehicle_id", "owner_partner_id", "municipality_id"):
        require_id(f"vehicle.{field}", getattr(wire, field))
    for field, enum in (
        ("fuel_type", fleet_pb2.FuelType.DESCRIPTOR),
        ("vehicle_class", fleet_pb2.VehicleClass.DESCRIPTOR),
        ("covenant_subsector", fleet_pb2.CovenantSubsector.DESCRIPTOR),
    ):
        require_known_enum(f"vehicle.{field}", enum, getattr(wire, field))
    if len(wire.registration_plate) > MAX_PLATE_LENGTH:
        raise InvalidArgument(
            "vehicle.registration_plate", f"at most {MAX_PLATE_LENGTH} characters"
        )
    fuel_type, vehicle_class, subsector = vehicle_fields_from_proto(wire)
    return RegisterVehicle(
        vehicle_id=wire.vehicle_id,
        owner_partner_id=wire.owner_partner_id,
        municipality_id=wire.municipality_id,
        fuel_type=fuel_type,
        vehicle_class=vehicle_class,
        covenant_subsector=subsector,
        registration_plate=wire.registration_plate,
    )


class FleetTelemetryApi(fleet_pb2_grpc.FleetTelemetryServiceServicer):
    def __init__(self, handlers: FleetHandlers) -> None:
        self.handlers = handlers

    async def RegisterVehicle(
        self, request: fleet_pb2.RegisterVehicleRequest, context: Context
    ) -> fleet_pb2.RegisterVehicleResponse:
        vehicle = await self.handlers.register_vehicle(
            _vehicle_command(request.vehicle), current_principal()
        )
        return fleet_pb2.RegisterVehicleResponse(vehicle=vehicle_to_proto(vehicle))

    async def UpdateVehicle(
        self, request: fleet_pb2.UpdateVehicleRequest, context: Context
    ) -> fleet_pb2.UpdateVehicleResponse:
        vehicle = await self.handlers.update_vehicle(
            _vehicle_command(request.vehicle), current_principal()
        )
        return fleet_pb2.UpdateVehicleResponse(vehicle=vehicle_to_proto(vehicle))

    async def GetVehicle(
        self, request: fleet_pb2.GetVehicleRequest, context: Context
    ) -> fleet_pb2.GetVehicleResponse:
        state = await self.handlers.get_vehicle(
            require_id("vehicle_id", request.vehicle_id), current_principal()
        )
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
        require_id("vehicle_id", request.vehicle_id)
        if len(request.reason) > MAX_REASON_LENGTH:
            raise InvalidArgument("reason", f"at most {MAX_REASON_LENGTH} characters")
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
            ),
            current_principal(),
        )
        response = fleet_pb2.SetVehicleBaselineResponse(
            baseline=reading_to_proto(corrected.baseline)
        )
        if corrected.previous_baseline is not None:
            response.previous_baseline.CopyFrom(reading_to_proto(corrected.previous_baseline))
        return response
