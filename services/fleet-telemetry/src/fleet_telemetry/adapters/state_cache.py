"""The vehicle states of the partitions this instance owns, kept in memory between batches.

A cached state is only a hint: every batch reads each vehicle's revision and stream position
from the database (one query, rows locked) and uses the cached state only when both match.
So a state changed by another instance of the group, by a registration or by an operator's
baseline is reloaded, and a state cached from a batch whose transaction rolled back (its
position is then ahead of the stored one) is too.
"""

from __future__ import annotations

from collections.abc import Iterable

from fleet_telemetry.domain import StreamPosition, VehicleState


class VehicleStateCache:
    def __init__(self) -> None:
        self._states: dict[str, VehicleState] = {}

    def __len__(self) -> int:
        return len(self._states)

    def current(
        self, vehicle_id: str, revision: int, position: StreamPosition | None
    ) -> VehicleState | None:
        """The cached state when it is the stored one (same revision and position)."""
        state = self._states.get(vehicle_id)
        if state is None or state.revision != revision or state.position != position:
            return None
        return state

    def put(self, state: VehicleState) -> None:
        self._states[state.vehicle.vehicle_id] = state

    def put_all(self, states: Iterable[VehicleState]) -> None:
        for state in states:
            self.put(state)

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forgets the states of vehicles last seen in those partitions (and of any never seen
        in one)."""
        self._states = {
            vehicle_id: state
            for vehicle_id, state in self._states.items()
            if state.position is not None and state.position[0] not in partitions
        }
