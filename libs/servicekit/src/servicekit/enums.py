"""Translation between protobuf enums (FUEL_TYPE_DIESEL) and domain StrEnums ("diesel").

The wire enums follow buf's naming rule (prefix + UPPER_SNAKE, zero value UNSPECIFIED); the
domain enums use the lower-case suffix as value, so the mapping is mechanical.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

DomainEnumT = TypeVar("DomainEnumT", bound=StrEnum)


def _prefix(proto_enum: Any) -> str:
    # Generated enum wrappers expose Name/Value on their metaclass, which no Protocol matches.
    unspecified = proto_enum.Name(0)
    return str(unspecified).removesuffix("UNSPECIFIED")


def from_proto(proto_enum: Any, number: int, domain_enum: type[DomainEnumT]) -> DomainEnumT | None:
    """The domain value, or None for UNSPECIFIED or a number this build does not know."""
    if number == 0:
        return None
    try:
        name = proto_enum.Name(number)
    except ValueError:
        return None
    suffix = name.removeprefix(_prefix(proto_enum)).lower()
    try:
        return domain_enum(suffix)
    except ValueError:
        return None


def to_proto(proto_enum: Any, value: StrEnum | None) -> Any:
    """The wire number (typed as the generated enum's ValueType, hence Any)."""
    if value is None or value.value == "":
        return 0
    return proto_enum.Value(_prefix(proto_enum) + value.value.upper())
