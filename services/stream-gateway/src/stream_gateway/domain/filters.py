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
        for field in fields(self):
            wanted = getattr(self, field.name)
            if wanted and getattr(subject, field.name) != wanted:
                return False
        return True

    def describe(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


def normalise_enum(value: str, prefix: str) -> str:
    """Accepts an enum value by its proto name or its short form: `transport`,
    `SECTOR_TRANSPORT` and `sector_transport` are the same sector."""
    upper = value.strip().upper().replace("-", "_")
    if not upper:
        return ""
    return upper if upper.startswith(prefix) else prefix + upper
