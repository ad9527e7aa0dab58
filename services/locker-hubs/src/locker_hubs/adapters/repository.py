"""Hubs with their compartments, deposits and collections, in the service's database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from locker_hubs.adapters.tables import collections, compartments, deposits, hubs
from locker_hubs.domain import (
    Compartment,
    CompartmentSize,
    CompartmentState,
    Deposit,
    Hub,
    WasteType,
)
from servicekit.database import insert_if_absent


class HubChanged(Exception):
    """The hub was saved by another unit of work after this one loaded it."""

    def __init__(self, hub_id: str) -> None:
        super().__init__(f"hub {hub_id} changed since it was loaded")
        self.hub_id = hub_id


@dataclass(frozen=True)
class RecordedCollection:
    """A carrier collection as stored, and as answered again to a retried call."""

    collection_id: str
    hub_id: str
    carrier_partner_id: str
    extra_distance_m: int
    deposit_ids: tuple[str, ...]
    mass_g: int
    includes_hazardous: bool
    collected_at: datetime


class HubRepository:
    """Loads and saves Hub aggregates; a save must follow a load through the same repository."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._loaded_versions: dict[str, int] = {}

    async def open_codes_held_by(self, holder: str, now: datetime) -> int:
        """Drop-off codes issued to one resident that are still open, at every hub."""
        count = await self.session.scalar(
            select(func.count())
            .select_from(compartments)
            .where(
                compartments.c.code_holder == holder,
                compartments.c.state == CompartmentState.RESERVED.value,
                compartments.c.code_expires_at > now,
            )
        )
        return int(count or 0)

    async def deposit_for_request(self, request_key: str) -> Deposit | None:
        """The deposit a call with this request key registered, if any."""
        row = (
            await self.session.execute(
                select(deposits).where(deposits.c.request_key == request_key)
            )
        ).first()
        return None if row is None else _deposit_from_row(row)

    async def tag_deposit(self, deposit_id: str, request_key: str) -> None:
        await self.session.execute(
            update(deposits)
            .where(deposits.c.deposit_id == deposit_id)
            .values(request_key=request_key)
        )

    async def list_hubs(self) -> list[Hub]:
        hub_rows = (await self.session.execute(select(hubs).order_by(hubs.c.hub_id))).all()
        compartment_rows = (
            await self.session.execute(
                _compartments_with_deposits().order_by(
                    compartments.c.hub_id, compartments.c.position
                )
            )
        ).all()
        by_hub: dict[str, list[Any]] = {}
        for row in compartment_rows:
            by_hub.setdefault(row.hub_id, []).append(row)
        return [self._hub_from_rows(row, by_hub.get(row.hub_id, [])) for row in hub_rows]

    async def get_hub(self, hub_id: str) -> Hub | None:
        hub_row = (await self.session.execute(select(hubs).where(hubs.c.hub_id == hub_id))).first()
        if hub_row is None:
            return None
        compartment_rows = (
            await self.session.execute(
                _compartments_with_deposits()
                .where(compartments.c.hub_id == hub_id)
                .order_by(compartments.c.position)
            )
        ).all()
        return self._hub_from_rows(hub_row, compartment_rows)

    async def add_hub_if_absent(self, hub: Hub) -> bool:
        """Inserts a new, empty hub with its compartments; False when the hub exists."""
        inserted = await insert_if_absent(
            self.session,
            hubs,
            {
                "hub_id": hub.hub_id,
                "name": hub.name,
                "municipality_id": hub.municipality_id,
                "latitude": hub.latitude,
                "longitude": hub.longitude,
                "version": 1,
            },
        )
        if not inserted:
            return False
        await self._save_deposits(hub)
        await self.session.execute(
            insert(compartments),
            [
                {
                    "compartment_id": compartment.compartment_id,
                    "hub_id": hub.hub_id,
                    "position": position,
                    "size": compartment.size.value,
                    "hazardous_only": compartment.hazardous_only,
                    **_compartment_state(compartment),
                }
                for position, compartment in enumerate(hub.compartments)
            ],
        )
        self._loaded_versions[hub.hub_id] = 1
        return True

    async def save_hub(self, hub: Hub) -> None:
        """Writes back the compartments of a loaded hub and the deposits they now hold.

        Raises HubChanged when another unit of work saved the hub in between.
        """
        version = self._loaded_versions.get(hub.hub_id)
        if version is None:
            raise RuntimeError(f"hub {hub.hub_id} was not loaded through this repository")
        result = await self.session.execute(
            update(hubs)
            .where(hubs.c.hub_id == hub.hub_id, hubs.c.version == version)
            .values(version=version + 1)
        )
        if getattr(result, "rowcount", 0) != 1:
            raise HubChanged(hub.hub_id)
        self._loaded_versions[hub.hub_id] = version + 1
        # Deposits first: a compartment refers to the deposit it holds.
        await self._save_deposits(hub)
        for compartment in hub.compartments:
            await self.session.execute(
                update(compartments)
                .where(compartments.c.compartment_id == compartment.compartment_id)
                .values(**_compartment_state(compartment))
            )

    async def get_collection(self, collection_id: str) -> RecordedCollection | None:
        row = (
            await self.session.execute(
                select(collections).where(collections.c.collection_id == collection_id)
            )
        ).first()
        if row is None:
            return None
        return RecordedCollection(
            collection_id=row.collection_id,
            hub_id=row.hub_id,
            carrier_partner_id=row.carrier_partner_id,
            extra_distance_m=row.extra_distance_m,
            deposit_ids=tuple(str(deposit_id) for deposit_id in row.deposit_ids),
            mass_g=row.mass_g,
            includes_hazardous=row.includes_hazardous,
            collected_at=row.collected_at,
        )

    async def add_collection(self, collection: RecordedCollection) -> None:
        """Stores a collection and marks its deposits as taken by it."""
        await self.session.execute(
            insert(collections).values(
                collection_id=collection.collection_id,
                hub_id=collection.hub_id,
                carrier_partner_id=collection.carrier_partner_id,
                extra_distance_m=collection.extra_distance_m,
                deposit_ids=list(collection.deposit_ids),
                mass_g=collection.mass_g,
                includes_hazardous=collection.includes_hazardous,
                collected_at=collection.collected_at,
            )
        )
        await self.session.execute(
            update(deposits)
            .where(deposits.c.deposit_id.in_(collection.deposit_ids))
            .values(collection_id=collection.collection_id)
        )

    async def _save_deposits(self, hub: Hub) -> None:
        for deposit in hub.held_deposits():
            await insert_if_absent(
                self.session,
                deposits,
                {
                    "deposit_id": deposit.deposit_id,
                    "hub_id": hub.hub_id,
                    "compartment_id": deposit.compartment_id,
                    "waste_type": deposit.waste_type.value,
                    "hazardous": deposit.hazardous,
                    "mass_g": deposit.mass_g,
                    "deposited_at": deposit.deposited_at,
                },
            )

    def _hub_from_rows(self, hub_row: Any, compartment_rows: Sequence[Any]) -> Hub:
        self._loaded_versions[hub_row.hub_id] = hub_row.version
        return Hub(
            hub_id=hub_row.hub_id,
            name=hub_row.name,
            municipality_id=hub_row.municipality_id,
            latitude=hub_row.latitude,
            longitude=hub_row.longitude,
            compartments=[_compartment_from_row(row) for row in compartment_rows],
        )


def _compartments_with_deposits() -> Any:
    return select(
        compartments.c.compartment_id,
        compartments.c.hub_id,
        compartments.c.size,
        compartments.c.hazardous_only,
        compartments.c.state,
        compartments.c.code_hash,
        compartments.c.code_expires_at,
        compartments.c.code_holder,
        compartments.c.code_request_id,
        compartments.c.deposit_id,
        deposits.c.waste_type,
        deposits.c.hazardous,
        deposits.c.mass_g,
        deposits.c.deposited_at,
    ).select_from(
        compartments.outerjoin(deposits, compartments.c.deposit_id == deposits.c.deposit_id)
    )


def _deposit_from_row(row: Any) -> Deposit:
    return Deposit(
        deposit_id=row.deposit_id,
        compartment_id=row.compartment_id,
        waste_type=WasteType(row.waste_type),
        hazardous=row.hazardous,
        mass_g=row.mass_g,
        deposited_at=row.deposited_at,
    )


def _compartment_from_row(row: Any) -> Compartment:
    deposit = None if row.deposit_id is None else _deposit_from_row(row)
    return Compartment(
        compartment_id=row.compartment_id,
        size=CompartmentSize(row.size),
        hazardous_only=row.hazardous_only,
        state=CompartmentState(row.state),
        code_hash=row.code_hash,
        code_expires_at=row.code_expires_at,
        code_holder=row.code_holder,
        code_request_id=row.code_request_id,
        deposit=deposit,
    )


def _compartment_state(compartment: Compartment) -> dict[str, Any]:
    return {
        "state": compartment.state.value,
        "code_hash": compartment.code_hash,
        "code_expires_at": compartment.code_expires_at,
        "code_holder": compartment.code_holder,
        "code_request_id": compartment.code_request_id,
        "deposit_id": compartment.deposit.deposit_id if compartment.deposit else None,
    }
