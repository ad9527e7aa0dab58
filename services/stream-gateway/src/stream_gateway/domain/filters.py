"""Server-side filters of a subscription: what a record is about, and what a client asked for."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Subject:
    """What one record or derived state is about; empty fields are not known for it."""

    municipality: str = ""
    year: int = 0
    sector: str = ""
    vehicle: str = ""
    hub: str = ""
    fuel: str = ""


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """A client's filter: every field it sets must equal the subject's (empty: any)."""

    municipality: str = ""
    year: int = 0
    sector: str = ""
    vehicle: str = ""
    hub: str = ""
    fuel: str = ""

    def matches(self, subject: Subject) -> bool:
        # Spelled out: it runs for every record and filtering client.
        return (
            (not self.municipality or subject.municipality == self.municipality)
            and (not self.year or subject.year == self.year)
            and (not self.sector or subject.sector == self.sector)
            and (not self.vehicle or subject.vehicle == self.vehicle)
            and (not self.hub or subject.hub == self.hub)
            and (not self.fuel or subject.fuel == self.fuel)
        )

    @property
    def everything(self) -> bool:
        """Whether the filter lets every record through."""
        return not (
            self.municipality or self.year or self.sector or self.vehicle or self.hub or self.fuel
        )

    def describe(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


def normalise_enum(value: str, prefix: str) -> str:
    """Accepts an enum value by its proto name or its short form: `transport`,
    `SECTOR_TRANSPORT` and `sector_transport` are the same sector."""
    upper = value.strip().upper().replace("-", "_")
    if not upper:
        return ""
    return upper if upper.startswith(prefix) else prefix + upper
